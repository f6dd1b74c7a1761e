/**
 * IMAP with its users in a real slapd (the LDAP howto's Dovecot setup):
 * LOGIN by binding as the user (auth_bind, `uid=%u,ou=mail,…`), the Maildir
 * found through the directory (`homeDirectory` of `<uid>@hostname`), and the
 * directory stopped (`NO [UNAVAILABLE]`, never "authentication failed") then
 * restarted (logins work again without restarting the appliance).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { freePort, startAppliance } from '../helpers/appliance.ts';
import { RawImap } from '../helpers/imap.ts';
import { seedLdapConf, startSlapd, type DirectoryUser } from '../helpers/slapd.ts';
import { RawSmtp, dataBlock, transaction } from '../helpers/smtp-client.ts';

t.setTimeout(90_000);
const dir = t.testdir();
const vmail = join(dir, 'vmail');
const USERS: DirectoryUser[] = [
  { uid: 'xomail', password: 'xomail-secret', accepts: ['test0@hosted.example'], maildrop: ['xomail@mail.example.org'], home: join(vmail, 'xomail') },
  { uid: 'alice', password: 'alice-secret', accepts: ['alice@hosted.example'], maildrop: ['alice@mail.example.org'], home: join(vmail, 'alice') },
];
const slapd = await startSlapd(join(dir, 'slapd'), { users: USERS, tls: true });
t.teardown(() => slapd.stop());

const ports = { mx: await freePort(), imap: await freePort() };
writeFileSync(join(dir, 'ldap.conf'), seedLdapConf(slapd, { starttls: true, authBind: true, timeout: '3s', extra: 'negative_cache_ttl 1s' }));
const configPath = join(dir, 'appliance.conf');
writeFileSync(
  configPath,
  `hostname mail.example.org
data-dir "${join(dir, 'data')}"
user root
pki mail.example.org self-signed
table dir ldap:${join(dir, 'ldap.conf')}
listen on 127.0.0.1 port ${ports.mx} tls pki mail.example.org tag MX
imap listen on 127.0.0.1 port ${ports.imap} auth <dir>
action "local" maildir "%{user.directory}/mailbox" virtual <dir> userbase <dir>
match from any for domain <dir> action "local"
match from any for any reject
auth failure-delay 1s
log level debug
resolver 127.0.0.1:9
`,
);
const app = await startAppliance(configPath, dir);
t.teardown(() => app.stop());

async function login(user: string, password: string): Promise<{ c: RawImap; reply: string }> {
  const c = await RawImap.connect(ports.imap);
  await c.expect(/^\* OK[^\r]*\r\n/);
  return { c, reply: await c.cmd('a1', `LOGIN ${user} "${password}"`) };
}

t.test('LOGIN binds as the user; the Maildir is the directory\'s homeDirectory', async (t) => {
  const mx = await RawSmtp.connect(ports.mx);
  await mx.greeting();
  await mx.ehlo();
  const r = await transaction(mx, 'someone@remote.example', ['test0@hosted.example'], dataBlock({ Subject: 'read me over imap', From: 'someone@remote.example' }, 'through the directory'));
  await mx.quit();
  t.equal(r.end?.code, 250, `delivered: ${r.end?.last}`);

  const bad = await login('xomail', 'wrong-password');
  t.match(bad.reply, /a1 NO \[AUTHENTICATIONFAILED\]/, 'a wrong password');
  bad.c.close();

  const { c, reply } = await login('xomail', 'xomail-secret');
  t.match(reply, /a1 OK/, 'auth_bind accepts the right password');
  const select = await c.cmd('a2', 'SELECT INBOX');
  t.match(select, /\* 1 EXISTS/, 'the message delivered to /vmail/xomail/mailbox');
  const fetch = await c.cmd('a3', 'FETCH 1 BODY.PEEK[HEADER.FIELDS (SUBJECT)]');
  t.match(fetch, /Subject: read me over imap/);
  await c.cmd('a4', 'LOGOUT');
  c.close();
});

t.test('slapd stopped: NO [UNAVAILABLE], not a failed login; restarted: works again', async (t) => {
  await slapd.stop();
  let restarted = false;
  try {
    // alice never logged in: no cached answer can hide the outage.
    const down = await login('alice', 'alice-secret');
    t.match(down.reply, /a1 NO \[UNAVAILABLE\]/, `while the directory is down: ${down.reply.trim()}`);
    down.c.close();
    await slapd.start();
    restarted = true;
    const { c, reply } = await login('alice', 'alice-secret');
    t.match(reply, /a1 OK/, 'after slapd came back');
    t.match(await c.cmd('a2', 'SELECT INBOX'), /\* 0 EXISTS[\s\S]*a2 OK/, 'an empty INBOX in her homeDirectory');
    c.close();
  } finally {
    if (!restarted) await slapd.start();
  }
  t.notOk(app.log().includes('alice-secret'), 'user passwords are never logged');
});
