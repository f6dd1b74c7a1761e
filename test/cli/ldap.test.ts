/**
 * The CLI with LDAP tables: `appliance check` reports ldap.conf errors at
 * PATH:LINE (and uses the conf cannot serve), `appliance start` refuses a
 * wrong service password with a clear message, starts (and warns) when the
 * directory is only unreachable, and `appliance table lookup` asks the
 * directory when the appliance is not running.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { freePort, startAppliance } from '../helpers/appliance.ts';
import { MAIL_OU, READER_DN, startSlapd } from '../helpers/slapd.ts';
import { run } from './run.ts';

const dir = t.testdir();
const slapd = await startSlapd(join(dir, 'slapd'), {
  users: [{ uid: 'xomail', password: 'xomail-secret', accepts: ['test0@hosted.example'], maildrop: ['xomail@mail.example.org'], home: '/var/vmail/xomail' }],
});
t.teardown(() => slapd.stop());

function ldapConf(name: string, o: { url?: string; password?: string; extra?: string } = {}): string {
  const path = join(dir, name);
  writeFileSync(
    path,
    `url ${o.url ?? slapd.url}
username ${READER_DN}
password ${o.password ?? slapd.readerPassword}
basedn ${MAIL_OU}
timeout 2s
domain_filter (|(mailacceptinggeneralid=*@%s)(maildrop=*@%s))
alias_filter (mailacceptinggeneralid=%s)
alias_attributes maildrop
userinfo_filter (&(objectClass=posixAccount)(maildrop=%s))
userinfo_attributes homeDirectory
${o.extra ?? ''}`,
  );
  return path;
}

async function config(name: string, ldapPath: string, listenerAuth = ''): Promise<string> {
  const path = join(dir, `${name}.conf`);
  writeFileSync(
    path,
    `hostname mail.example.org
data-dir "${join(dir, `data-${name}`)}"
user root
pki mail.example.org self-signed
table dir ldap:${ldapPath}
listen on 127.0.0.1 port ${await freePort()} tls pki mail.example.org ${listenerAuth} tag MX
action "local" maildir virtual <dir> userbase <dir>
match from any for domain <dir> action "local"
match from any for any reject
log level info
resolver 127.0.0.1:9
`,
  );
  return path;
}

t.test('check: every ldap.conf error at PATH:LINE; uses the conf cannot answer at their config line', async (t) => {
  const bad = join(dir, 'bad-ldap.conf');
  writeFileSync(bad, `url ldap://127.0.0.1:389\nbasedn ${MAIL_OU}\nalias_filter mailacceptinggeneralid=%s\nalias_attributes maildrop\ntimout 5\ndomain_filter (mailacceptinggeneralid=*@%q)\nuserinfo_filter (maildrop=%s)\nuserinfo_attributes homeDirectory\n`);
  const cfg = await config('bad', bad);
  const r = await run(['check', '-c', cfg]);
  t.equal(r.code, 2);
  t.equal(
    r.stderr,
    [
      `${bad}:3:1: alias_filter: "mailacceptinggeneralid=%s" must be in parentheses, e.g. (mailacceptinggeneralid=%s)`,
      `${bad}:5:1: unknown key "timout" (did you mean "timeout"?)`,
      `${bad}:6:1: domain_filter: unknown placeholder "%q" (use %s, %u, %n, %d or %%)`,
      '',
    ].join('\n'),
  );
  const noAuth = await config('noauth', ldapConf('noauth-ldap.conf'), 'auth <dir>');
  const r2 = await run(['check', '-c', noAuth]);
  t.equal(r2.code, 2);
  t.match(r2.stderr, new RegExp(`^${noAuth.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:6:\\d+: table dir is used for auth \\(credentials lookups\\) but .*noauth-ldap\\.conf has no credentials_filter/credentials_attributes or auth_bind yes\\n$`));
  const missingCa = await config('noca', ldapConf('noca-ldap.conf', { extra: 'starttls yes\nca_file /nonexistent/ca.pem\n' }));
  const r3 = await run(['check', '-c', missingCa]);
  t.equal(r3.code, 2);
  t.equal(r3.stderr, `${join(dir, 'noca-ldap.conf')}:12:1: ca_file /nonexistent/ca.pem: no such file\n`);
  const good = await config('good', ldapConf('good-ldap.conf'));
  const r4 = await run(['check', '-q', '-c', good]);
  t.equal(r4.code, 0, r4.stderr);
});

t.test('start: a wrong service password stops the start with a clear error', async (t) => {
  const cfg = await config('wrongpw', ldapConf('wrongpw-ldap.conf', { password: 'not-the-password' }));
  const r = await run(['start', '-c', cfg], { timeoutMs: 30_000 });
  t.equal(r.code, 2);
  t.match(r.stderr, /table dir: the service bind as "cn=mailAccountReader,ou=Manager,dc=example,dc=org" was refused by ldap:\/\/127\.0\.0\.1:\d+: invalid credentials \(result code 49\); check username and password in .*wrongpw-ldap\.conf/);
  t.notOk(r.stderr.includes('not-the-password') || r.stdout.includes('not-the-password'), 'the password itself is not printed');
});

t.test('start: an unreachable directory is a warning; lookups are deferred until it answers', async (t) => {
  const cfg = await config('down', ldapConf('down-ldap.conf', { url: `ldap://127.0.0.1:${await freePort()}` }));
  const app = await startAppliance(cfg, dir, 'down');
  t.teardown(() => app.stop());
  t.ok(
    app.logLines().some((l) => l.level === 40 && /directory unreachable/.test(String(l.msg)) && /ECONNREFUSED/.test(String(l.err))),
    'a warning names the problem',
  );
  const r = await run(['table', 'lookup', 'dir', 'test0@hosted.example', '-c', cfg]);
  t.equal(r.code, 1);
  t.match(r.stderr, /^lookup failed temporarily: .*no LDAP server answered/);
});

t.test('table lookup without a running appliance opens the directory itself', async (t) => {
  const cfg = await config('offline', ldapConf('offline-ldap.conf'));
  const alias = await run(['table', 'lookup', 'dir', 'test0@hosted.example', '--kind', 'alias', '-c', cfg]);
  t.equal(alias.code, 0, alias.stderr);
  t.equal(alias.stdout, 'xomail@mail.example.org\n');
  const json = await run(['table', 'lookup', 'dir', 'hosted.example', '--kind', 'domain', '--json', '-c', cfg]);
  t.same(JSON.parse(json.stdout), { kind: 'domain', result: 'found', value: 'found' });
  const injected = await run(['table', 'lookup', 'dir', '*@hosted.example', '--kind', 'alias', '-c', cfg]);
  t.equal(injected.code, 1);
  t.equal(injected.stderr, 'not found (alias)\n');
  const unserved = await run(['table', 'lookup', 'dir', 'xomail', '--kind', 'credentials', '-c', cfg]);
  t.equal(unserved.code, 1);
  t.match(unserved.stderr, /has no credentials_filter/);
});
