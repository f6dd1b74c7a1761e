/** Where a logged-in user's Maildir is: the one local delivery writes. */
import t from 'tap';
import { parseConfigText } from '../../core/config/index.ts';
import { locateMaildir } from '../../core/mail-location.ts';
import { openTables } from '../../core/tables/registry.ts';
import type { Table } from '../../core/tables/types.ts';

function setup(actions: string) {
  const r = parseConfigText(`hostname mail.example.test
data-dir "/var/lib/appliance"
table users { "alice@example.test" = "$2b$10$bNAo1yPz8M6bajwHt2q4d.fEXW09kQzis/VxpJwnN8U5XZirQoLvq", "bob" = "$2b$10$bNAo1yPz8M6bajwHt2q4d.fEXW09kQzis/VxpJwnN8U5XZirQoLvq" }
listen on 127.0.0.1 port 2525 tls-require pki mail.example.test auth <users>
pki mail.example.test self-signed
${actions}
`);
  if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('; '));
  const tables = openTables(r.config, { kv: () => { throw new Error('no db'); }, file: { onReload: () => {}, onReloadError: () => {} } });
  return { config: r.config, tables };
}

t.test('default Maildir of the maildir action used by the rules', async (t) => {
  const { config, tables } = setup(`action "local" maildir userbase <users>
match from any for domain { example.test } action "local"`);
  t.same(await locateMaildir(config, tables, 'alice@example.test'), { kind: 'found', value: '/var/lib/appliance/mail/example.test/alice' });
  t.same(await locateMaildir(config, tables, 'bob'), { kind: 'found', value: '/var/lib/appliance/mail/mail.example.test/bob' }, 'a bare login name: the hostname as domain');
  t.same(await locateMaildir(config, tables, 'nobody@example.test'), { kind: 'none' });
  await tables.close();
});

t.test('the action path template', async (t) => {
  const { config, tables } = setup(`action "local" maildir "/srv/mail/%{dest.domain}/%{user.username}/Maildir" userbase <users>
match from any for domain { example.test } action "local"`);
  t.same(await locateMaildir(config, tables, 'alice@example.test'), { kind: 'found', value: '/srv/mail/example.test/alice@example.test/Maildir' });
  await tables.close();
});

t.test('a directory that is down is a temporary failure', async (t) => {
  const { config } = setup(`action "local" maildir userbase <users>
match from any for domain { example.test } action "local"`);
  const down: Table = { lookup: async () => ({ kind: 'tempfail', error: new Error('ldap down') }) } as unknown as Table;
  const r = await locateMaildir(config, { get: () => down }, 'alice@example.test');
  t.equal(r.kind, 'tempfail');
});

t.test('a bare login is also tried as LOGIN@hostname (the LDAP howto\'s mailbox address)', async (t) => {
  const r = parseConfigText(`hostname mail.example.test
data-dir "/var/lib/appliance"
table users { "carol@mail.example.test" = "$2b$10$bNAo1yPz8M6bajwHt2q4d.fEXW09kQzis/VxpJwnN8U5XZirQoLvq" }
listen on 127.0.0.1 port 2525 tls-require pki mail.example.test auth <users>
pki mail.example.test self-signed
action "local" maildir "/srv/vmail/%{dest.user}" userbase <users>
match from any for domain { mail.example.test } action "local"
`);
  if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('; '));
  const tables = openTables(r.config, { kv: () => { throw new Error('no db'); }, file: { onReload: () => {}, onReloadError: () => {} } });
  const asked: string[] = [];
  const users = tables.get('users')!;
  const spy = { lookup: (kind: 'userinfo', key: string) => (asked.push(key), users.lookup(kind, key)) } as unknown as Table;
  t.same(await locateMaildir(r.config, { get: () => spy }, 'Carol'), { kind: 'found', value: '/srv/vmail/carol' });
  t.same(asked, ['carol', 'carol@mail.example.test'], 'the login first, then LOGIN@hostname');
  t.same(await locateMaildir(r.config, tables, 'dave'), { kind: 'none' });
  await tables.close();
});
