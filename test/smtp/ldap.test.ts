/**
 * The appliance with its users in a real slapd (the LDAP seed's directory):
 * MX delivery to an alias resolved through LDAP into the user's
 * homeDirectory Maildir, submission AUTH through auth_bind, the sender-login
 * map, and the directory stopped (4xx, never 5xx) then restarted (works
 * again without restarting the appliance) — with STARTTLS to slapd.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { freePort, startAppliance } from '../helpers/appliance.ts';
import { seedLdapConf, startSlapd, type DirectoryUser } from '../helpers/slapd.ts';
import { RawSmtp, dataBlock, transaction } from '../helpers/smtp-client.ts';
import { run } from '../cli/run.ts';

const dir = t.testdir();
const vmail = join(dir, 'vmail');
const USERS: DirectoryUser[] = [
  { uid: 'xomail', password: 'xomail-secret', accepts: ['test0@hosted.example', 'test1@hosted.example'], maildrop: ['xomail@mail.example.org'], home: join(vmail, 'xomail') },
  { uid: 'alice', password: 'alice-secret', accepts: ['alice@hosted.example'], maildrop: ['alice@mail.example.org'], home: join(vmail, 'alice') },
];
const slapd = await startSlapd(join(dir, 'slapd'), { users: USERS, tls: true });
t.teardown(() => slapd.stop());

const ports = { mx: await freePort(), submission: await freePort() };
// the shipped example's lookups, against the test directory
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
listen on 127.0.0.1 port ${ports.submission} tls-require pki mail.example.org auth <dir> senders <dir> tag SUBMIT
action "local" maildir "%{user.directory}/mailbox" virtual <dir> userbase <dir>
action "out" relay
match from any for domain <dir> action "local"
match from any tag SUBMIT for any action "out"
match from any for any reject
auth failure-delay 1s
log level debug
resolver 127.0.0.1:9
`,
);

const check = await run(['check', '-q', '-c', configPath]);
const app = await startAppliance(configPath, dir);
t.teardown(() => app.stop());

function delivered(user: string): string[] {
  try {
    return readdirSync(join(vmail, user, 'mailbox', 'new')).map((f) => readFileSync(join(vmail, user, 'mailbox', 'new', f), 'utf8'));
  } catch {
    return [];
  }
}

async function mx(): Promise<RawSmtp> {
  const c = await RawSmtp.connect(ports.mx);
  await c.greeting();
  await c.ehlo();
  return c;
}

async function submission(user: string, password: string): Promise<{ c: RawSmtp; auth: { code: number; enhanced: string; last: string } }> {
  const c = await RawSmtp.connect(ports.submission);
  await c.greeting();
  await c.ehlo();
  await c.starttls();
  return { c, auth: await c.authPlain(user, password) };
}

t.test('appliance check accepts the config and its ldap.conf', async (t) => {
  t.equal(check.code, 0, check.stderr);
});

t.test('MX: an alias in the directory is delivered to the maildrop user\'s homeDirectory Maildir', async (t) => {
  const c = await mx();
  const r = await transaction(c, 'someone@remote.example', ['test0@hosted.example', 'nobody@hosted.example', '*@hosted.example', 'test1@elsewhere.example'], dataBlock({ Subject: 'via ldap', From: 'someone@remote.example' }, 'hello through the directory'));
  await c.quit();
  t.equal(r.rcpt[0]!.code, 250, `alias accepted: ${r.rcpt[0]!.last}`);
  t.equal(r.rcpt[1]!.last.slice(0, 9), '550 5.1.1', 'an address the directory does not know');
  t.equal(r.rcpt[2]!.last.slice(0, 9), '550 5.1.1', '"*" is not a wildcard');
  t.equal(r.rcpt[3]!.code, 554, 'a domain the directory does not host');
  t.equal(r.end?.code, 250, `message accepted: ${r.end?.last}`);
  const mails = delivered('xomail');
  t.equal(mails.length, 1, 'one copy in /vmail/xomail/mailbox/new');
  t.match(mails[0], /hello through the directory/);
  t.same(delivered('alice'), []);
});

t.test('submission: AUTH by binding as the user; the sender-login map from the directory', async (t) => {
  const bad = await submission('xomail', 'wrong-password');
  t.equal(bad.auth.code, 535, 'a wrong password');
  await bad.c.quit();
  const { c, auth } = await submission('xomail', 'xomail-secret');
  t.equal(auth.code, 235, `auth_bind accepts the right password: ${auth.last}`);
  const own = await c.cmd('MAIL FROM:<test1@hosted.example>');
  t.equal(own.code, 250, 'an address of the user (mailacceptinggeneralid)');
  await c.cmd('RSET');
  const maildrop = await c.cmd('MAIL FROM:<xomail@mail.example.org>');
  t.equal(maildrop.code, 250, 'the user\'s maildrop address');
  await c.cmd('RSET');
  const other = await c.cmd('MAIL FROM:<alice@hosted.example>');
  t.equal(other.last.slice(0, 9), '553 5.7.1', `another user's address: ${other.last}`);
  await c.quit();
});

t.test('`appliance table lookup` asks the directory through the running appliance', async (t) => {
  const alias = await run(['table', 'lookup', 'dir', 'test0@hosted.example', '--kind', 'alias', '-c', configPath]);
  t.equal(alias.code, 0, alias.stderr);
  t.equal(alias.stdout, 'xomail@mail.example.org\n');
  const domain = await run(['table', 'lookup', 'dir', 'hosted.example', '--kind', 'domain', '-c', configPath]);
  t.equal(domain.stdout, 'found\n');
  const user = await run(['table', 'lookup', 'dir', 'xomail@mail.example.org', '--kind', 'userinfo', '-c', configPath]);
  t.equal(user.stdout, `xomail@mail.example.org 20000:20000:${join(vmail, 'xomail')}\n`);
  const senders = await run(['table', 'lookup', 'dir', 'xomail', '--kind', 'mailaddrmap', '-c', configPath]);
  t.equal(senders.stdout, 'test0@hosted.example, test1@hosted.example, xomail@mail.example.org\n');
  const none = await run(['table', 'lookup', 'dir', 'ghost@hosted.example', '--kind', 'alias', '-c', configPath]);
  t.equal(none.code, 1);
  t.equal(none.stderr, 'not found (alias)\n');
});

t.test('slapd stopped: 4xx at RCPT and AUTH, never 5xx; restarted: works again without restarting the appliance', async (t) => {
  await slapd.stop();
  let restarted = false;
  try {
    const c = await mx();
    // test1 was never looked up: the cache cannot answer for it.
    const r = await transaction(c, 'someone@remote.example', ['test1@hosted.example', 'unknown-while-down@hosted.example']);
    await c.quit();
    t.equal(r.rcpt[0]!.last.slice(0, 9), '451 4.3.0', `RCPT while the directory is down: ${r.rcpt[0]!.last}`);
    t.equal(r.rcpt[1]!.last.slice(0, 9), '451 4.3.0', 'not "user unknown" either');
    const s = await submission('alice', 'alice-secret');
    t.equal(s.auth.code, 454, `AUTH while the directory is down is temporary (RFC 4954 454 4.7.0): ${s.auth.last}`);
    t.equal(s.auth.enhanced, '4.7.0');
    await s.c.quit();
    const lookup = await run(['table', 'lookup', 'dir', 'test1@hosted.example', '--kind', 'alias', '-c', configPath]);
    t.equal(lookup.code, 1);
    t.match(lookup.stderr, /^lookup failed temporarily: table dir: alias lookup of "test1@hosted.example" failed: no LDAP server answered/);
    await slapd.start();
    restarted = true;
    const again = await mx();
    const r2 = await transaction(again, 'someone@remote.example', ['test1@hosted.example'], dataBlock({ Subject: 'after the restart' }, 'the directory is back'));
    await again.quit();
    t.equal(r2.rcpt[0]!.code, 250, `RCPT after slapd came back: ${r2.rcpt[0]!.last}`);
    t.equal(r2.end?.code, 250);
    t.equal(delivered('xomail').length, 2);
    const s2 = await submission('alice', 'alice-secret');
    t.equal(s2.auth.code, 235, 'AUTH after slapd came back');
    await s2.c.quit();
  } finally {
    if (!restarted) await slapd.start();
  }
  const lines = app.logLines();
  t.ok(lines.some((l) => l.msg === 'recipient deferred: temporary failure' && /no LDAP server answered/.test(String(l.err))), 'the deferral is logged with its cause');
  t.notOk(app.log().includes(slapd.readerPassword), 'the service password is never logged');
  t.notOk(app.log().includes('alice-secret'), 'user passwords are never logged');
});
