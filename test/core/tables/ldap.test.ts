/**
 * The LDAP table against a real slapd (test/helpers/slapd.ts) loaded with the
 * seed's directory: lookups of every kind, filter injection, auth_bind,
 * a wrong service password, the directory going away and coming back,
 * STARTTLS/ldaps with a test CA, failover, a directory that never answers,
 * and the cache.
 */
import { writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { LdapTable } from '../../../core/tables/ldap.ts';
import { ServiceBindError } from '../../../core/tables/ldap-pool.ts';
import { freePort } from '../../helpers/appliance.ts';
import { MAIL_OU, READER_DN, makeTestCa, seedLdapConf, startSlapd, type DirectoryUser } from '../../helpers/slapd.ts';

const USERS: DirectoryUser[] = [
  { uid: 'xomail', password: 'xomail-secret', accepts: ['test0@hosted.example', 'test1@hosted.example'], maildrop: ['xomail@mail.example.org'], home: '/var/vmail/xomail' },
  { uid: 'alice', password: 'alice secret', accepts: ['alice@hosted.example', 'team@other.example'], maildrop: ['alice@mail.example.org'], home: '/var/vmail/alice' },
  // An address made of filter metacharacters, matched only literally.
  { uid: 'odd', password: 'odd-secret', accepts: ['we(ird)*\\x@hosted.example'], maildrop: ['odd@mail.example.org'], home: '/var/vmail/odd' },
];

const dir = t.testdir();
const slapd = await startSlapd(join(dir, 'slapd'), { users: USERS, tls: true });
t.teardown(() => slapd.stop());

/** The example's lookups, against this server. */
function confText(o: { url?: string; password?: string; timeout?: string; extra?: string } = {}): string {
  return seedLdapConf(slapd, o);
}

let n = 0;
function open(text: string, o: { now?: () => number } = {}): LdapTable {
  const path = join(dir, `ldap-${++n}.conf`);
  writeFileSync(path, text);
  const table = LdapTable.open('dir', path, o);
  t.teardown(() => table.close());
  return table;
}

t.test('the seed directory: domains, aliases, mailboxes, senders', async (t) => {
  const d = open(confText());
  t.same(await d.verify(), undefined, 'the service bind works');
  t.same(await d.lookup('domain', 'hosted.example'), { kind: 'found', value: true });
  t.same(await d.lookup('domain', 'Other.Example.'), { kind: 'found', value: true }, 'case and a trailing dot do not matter');
  t.same(await d.lookup('domain', 'mail.example.org'), { kind: 'found', value: true }, 'the domain of the mailboxes (maildrop)');
  t.same(await d.lookup('domain', 'elsewhere.example'), { kind: 'none' });
  t.same(await d.lookup('alias', 'test0@hosted.example'), { kind: 'found', value: ['xomail@mail.example.org'] });
  t.same(await d.lookup('alias', 'TEST1@hosted.example'), { kind: 'found', value: ['xomail@mail.example.org'] });
  t.same(await d.lookup('alias', 'nobody@hosted.example'), { kind: 'none' });
  t.same(await d.lookup('userinfo', 'xomail@mail.example.org'), { kind: 'found', value: { username: 'xomail@mail.example.org', uid: 20000, gid: 20000, directory: '/var/vmail/xomail' } });
  t.same(await d.lookup('userinfo', 'test0@hosted.example'), { kind: 'none' }, 'an alias is not a mailbox');
  t.same(await d.lookup('mailaddrmap', 'xomail'), { kind: 'found', value: ['test0@hosted.example', 'test1@hosted.example', 'xomail@mail.example.org'] });
  t.same(await d.lookup('mailaddr', 'team@other.example'), { kind: 'found', value: true });
  t.same(await d.lookup('mailaddr', 'alice@mail.example.org'), { kind: 'found', value: true });
  t.same(await d.lookup('mailaddr', 'carol@mail.example.org'), { kind: 'none' });
  const r = await d.lookup('credentials', 'xomail');
  t.equal(r.kind, 'tempfail', 'a kind without a filter is not "not found"');
  t.match(r.kind === 'tempfail' ? r.error.message : '', /has no credentials_filter/);
});

t.test('the reader cannot read password hashes (the seed ACL): credentials come from auth_bind', async (t) => {
  const d = open(confText({ extra: 'credentials_filter (&(objectClass=posixAccount)(uid=%u))\ncredentials_attributes uid,userPassword\n' }));
  t.same(await d.lookup('credentials', 'xomail'), { kind: 'none' }, 'the entry is found but its userPassword is not readable');
  t.equal(d.authenticate, undefined, 'without auth_bind the generic hash check is used');
});

t.test('filter injection through the key is escaped (RFC 4515)', async (t) => {
  const d = open(confText({ extra: 'cache_ttl 0\n' }));
  for (const key of ['*', '*@hosted.example', 'te*@hosted.example', 'test0@hosted.example)(uid=*', '*)(|(uid=*', 'test0@hosted.example\0', '\\2a@hosted.example', '\\']) {
    t.same(await d.lookup('alias', key), { kind: 'none' }, `alias ${JSON.stringify(key)} matches nothing`);
    t.same(await d.lookup('mailaddr', key), { kind: 'none' }, `mailaddr ${JSON.stringify(key)} matches nothing`);
  }
  t.same(await d.lookup('domain', '*'), { kind: 'none' }, 'a domain "*" is not "any domain"');
  t.same(await d.lookup('mailaddrmap', '*'), { kind: 'none' }, 'a login "*" is not every user');
  t.same(await d.lookup('alias', 'we(ird)*\\x@hosted.example'), { kind: 'found', value: ['odd@mail.example.org'] }, 'the metacharacters match themselves');
});

t.test('auth_bind with bind_dn_template: the directory checks the password', async (t) => {
  const d = open(confText({ extra: `auth_bind yes\nbind_dn_template uid=%u,${MAIL_OU}\n` }));
  t.ok(d.services().has('credentials'));
  t.same(await d.authenticate!('xomail', 'xomail-secret'), { kind: 'found', value: true });
  t.same(await d.authenticate!('alice', 'alice secret'), { kind: 'found', value: true });
  t.same(await d.authenticate!('xomail', 'wrong'), { kind: 'found', value: false });
  t.same(await d.authenticate!('nobody', 'xomail-secret'), { kind: 'found', value: false });
  t.same(await d.authenticate!('xomail', ''), { kind: 'found', value: false }, 'an empty password is not an unauthenticated bind');
  t.same(await d.authenticate!('*', 'xomail-secret'), { kind: 'found', value: false });
  t.same(await d.authenticate!(`xomail,${MAIL_OU}`, 'xomail-secret'), { kind: 'found', value: false }, 'a DN in the user name is escaped');
  t.same(await d.authenticate!('xomail\0', 'xomail-secret'), { kind: 'found', value: false });
});

t.test('auth_bind without a template: the DN is searched with credentials_filter', async (t) => {
  const d = open(confText({ extra: 'auth_bind yes\ncredentials_filter (&(objectClass=posixAccount)(uid=%u))\ncredentials_attributes uid,userPassword\n' }));
  t.same(await d.authenticate!('xomail', 'xomail-secret'), { kind: 'found', value: true });
  t.same(await d.authenticate!('xomail', 'alice secret'), { kind: 'found', value: false });
  t.same(await d.authenticate!('*', 'xomail-secret'), { kind: 'found', value: false }, 'a wildcard user name finds no entry');
  t.same(await d.authenticate!('nobody', 'x'), { kind: 'found', value: false });
});

t.test('a wrong service password is an error, never "not found"', async (t) => {
  const d = open(confText({ password: 'not-the-password', extra: `auth_bind yes\nbind_dn_template uid=%u,${MAIL_OU}\n` }));
  await t.rejects(d.verify(), ServiceBindError);
  await t.rejects(d.verify(), /service bind as "cn=mailAccountReader,ou=Manager,dc=example,dc=org" was refused by ldap:\/\/127\.0\.0\.1:\d+: invalid credentials \(result code 49\); check username and password/);
  const r = await d.lookup('alias', 'test0@hosted.example');
  t.equal(r.kind, 'tempfail');
  t.match(r.kind === 'tempfail' ? r.error.message : '', /invalid credentials/);
  t.same(await d.authenticate!('xomail', 'xomail-secret'), { kind: 'found', value: true }, 'user binds do not need the service account');
});

t.test('the directory stops: temporary failures; it restarts: answers again, same table', async (t) => {
  const d = open(confText({ extra: `cache_ttl 0\nauth_bind yes\nbind_dn_template uid=%u,${MAIL_OU}\n` }));
  t.same(await d.lookup('alias', 'test0@hosted.example'), { kind: 'found', value: ['xomail@mail.example.org'] }, 'a pooled connection is open');
  await slapd.stop();
  try {
    for (const kind of ['alias', 'domain', 'userinfo', 'mailaddrmap'] as const) {
      const r = await d.lookup(kind, kind === 'domain' ? 'hosted.example' : 'test0@hosted.example');
      t.equal(r.kind, 'tempfail', `${kind} while the directory is down`);
    }
    const a = await d.authenticate!('xomail', 'xomail-secret');
    t.equal(a.kind, 'tempfail', 'authentication while the directory is down');
    const v = await d.verify();
    t.match(v?.message ?? '', /no LDAP server answered .*ECONNREFUSED/, 'verify reports an unreachable directory without throwing');
  } finally {
    await slapd.start();
  }
  t.same(await d.lookup('alias', 'test0@hosted.example'), { kind: 'found', value: ['xomail@mail.example.org'] });
  t.same(await d.authenticate!('xomail', 'xomail-secret'), { kind: 'found', value: true });
});

t.test('STARTTLS and ldaps with a test CA; a server the CA did not sign is refused', async (t) => {
  const starttls = open(confText({ extra: `starttls yes\nca_file ${slapd.caFile}\n` }));
  t.same(await starttls.lookup('alias', 'test0@hosted.example'), { kind: 'found', value: ['xomail@mail.example.org'] });
  const ldaps = open(confText({ url: slapd.ldapsUrl!, extra: `ca_file ${slapd.caFile}\nauth_bind yes\nbind_dn_template uid=%u,${MAIL_OU}\n` }));
  t.same(await ldaps.lookup('domain', 'hosted.example'), { kind: 'found', value: true });
  t.same(await ldaps.authenticate!('xomail', 'xomail-secret'), { kind: 'found', value: true });
  const otherCa = makeTestCa(t.testdir());
  const untrusted = open(confText({ extra: `starttls yes\nca_file ${otherCa.caFile}\n` }));
  const r = await untrusted.lookup('alias', 'test0@hosted.example');
  t.equal(r.kind, 'tempfail');
  t.match(r.kind === 'tempfail' ? r.error.message : '', /certificate/i);
  const byName = open(confText({ url: slapd.url.replace('127.0.0.1', 'localhost'), extra: `starttls yes\nca_file ${slapd.caFile}\n` }));
  t.same(await byName.lookup('domain', 'hosted.example'), { kind: 'found', value: true }, 'a host name is checked against the certificate too');
});

t.test('failover: a dead first url, the second answers', async (t) => {
  const dead = await freePort();
  const d = open(confText({ url: `ldap://127.0.0.1:${dead} ${slapd.url}` }));
  t.same(await d.verify(), undefined);
  t.same(await d.lookup('alias', 'test1@hosted.example'), { kind: 'found', value: ['xomail@mail.example.org'] });
});

t.test('a directory that accepts connections but never answers: a temporary failure within the timeout', async (t) => {
  const sockets: Socket[] = [];
  const silent = createServer((s) => sockets.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const port = (silent.address() as { port: number }).port;
  const d = open(confText({ url: `ldap://127.0.0.1:${port}`, timeout: '300ms' }));
  const r = await d.lookup('alias', 'test0@hosted.example');
  t.equal(r.kind, 'tempfail');
  t.match(r.kind === 'tempfail' ? r.error.message : '', /no answer from the directory within 300 ms/);
});

t.test('the cache keeps found and not-found answers for their TTLs, never failures', async (t) => {
  let now = 1_000_000;
  const d = open(confText({ extra: 'cache_ttl 60\nnegative_cache_ttl 10\n' }), { now: () => now });
  t.same(await d.lookup('alias', 'test0@hosted.example'), { kind: 'found', value: ['xomail@mail.example.org'] });
  t.same(await d.lookup('alias', 'ghost@hosted.example'), { kind: 'none' });
  t.same(d.cacheStats(), { hits: 0, misses: 2, size: 2 });
  await slapd.stop();
  try {
    t.same(await d.lookup('alias', 'TEST0@hosted.example'), { kind: 'found', value: ['xomail@mail.example.org'] }, 'served from the cache while the directory is down');
    t.same(await d.lookup('alias', 'ghost@hosted.example'), { kind: 'none' }, 'a negative answer too');
    now += 11_000;
    t.equal((await d.lookup('alias', 'ghost@hosted.example')).kind, 'tempfail', 'the negative answer expired: asked again');
    t.same(await d.lookup('alias', 'test0@hosted.example'), { kind: 'found', value: ['xomail@mail.example.org'] }, 'the positive one lives longer');
    now += 50_000;
    t.equal((await d.lookup('alias', 'test0@hosted.example')).kind, 'tempfail', 'the positive answer expired too');
  } finally {
    await slapd.start();
  }
  t.same(await d.lookup('alias', 'test0@hosted.example'), { kind: 'found', value: ['xomail@mail.example.org'] }, 'a failure was not cached');
});
