/**
 * A private OpenLDAP server for tests: Debian's `slapd` run in the foreground
 * from a temp directory with its own slapd.conf (never the system instance),
 * an mdb database loaded with `slapadd`, on a loopback port. The directory is
 * the LDAP seed's: the `postfixUser` schema (mailacceptinggeneralid →
 * maildrop), `posixAccount` users under ou=mail with `{SSHA}` passwords from
 * `slappasswd`, a `cn=mailAccountReader` service account that may read
 * ou=mail, and users who may only authenticate (their password hashes are
 * readable by nobody). Optionally TLS (ldaps:// and STARTTLS) with a test CA
 * made by `openssl`. stop()/start() keep data and port (a directory restart).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort } from './appliance.ts';

export const SLAPD = '/usr/sbin/slapd';
export const BASE_DN = 'dc=example,dc=org';
export const MAIL_OU = `ou=mail,${BASE_DN}`;
export const READER_DN = `cn=mailAccountReader,ou=Manager,${BASE_DN}`;
export const ADMIN_DN = `cn=admin,${BASE_DN}`;

export interface DirectoryUser {
  /** The login (uid). */
  readonly uid: string;
  readonly password: string;
  /** The addresses mail is accepted for (mailacceptinggeneralid). */
  readonly accepts: readonly string[];
  /** Where that mail goes (maildrop). */
  readonly maildrop: readonly string[];
  readonly home: string;
  readonly uidNumber?: number;
  /** A ready {SSHA} hash of `password` (many users: one slappasswd run, not one each). */
  readonly hash?: string;
}

export interface SlapdOptions {
  readonly users: readonly DirectoryUser[];
  readonly readerPassword?: string;
  /** Also listen on ldaps:// and allow STARTTLS, with a CA made for the test. */
  readonly tls?: boolean;
}

export interface Slapd {
  readonly dir: string;
  readonly url: string;
  /** ldaps:// url (tls only). */
  readonly ldapsUrl?: string;
  /** PEM file of the test CA (tls only). */
  readonly caFile?: string;
  readonly readerPassword: string;
  readonly adminPassword: string;
  /** Stops the server (SIGTERM, waits for exit); data and port are kept. */
  stop(): Promise<void>;
  /** Starts it again on the same port(s). */
  start(): Promise<void>;
  /** The server's log (its -d output). */
  log(): string;
}

/**
 * An ldap.conf with the seed's lookups (as examples/ldap.conf) against a
 * test slapd: the service bind, domains, aliases, mailboxes, sender maps;
 * optionally STARTTLS with the test CA and auth_bind with the seed's DN
 * template; `extra` lines at the end.
 */
export function seedLdapConf(slapd: Slapd, o: { url?: string; password?: string; timeout?: string; starttls?: boolean; authBind?: boolean; extra?: string } = {}): string {
  return [
    `url ${o.url ?? slapd.url}`,
    ...(o.starttls ? ['starttls yes', `ca_file ${slapd.caFile}`] : []),
    `username ${READER_DN}`,
    `password ${o.password ?? slapd.readerPassword}`,
    `basedn ${MAIL_OU}`,
    `timeout ${o.timeout ?? '2s'}`,
    ...(o.authBind ? ['auth_bind yes', `bind_dn_template uid=%u,${MAIL_OU}`] : []),
    'domain_filter (|(mailacceptinggeneralid=*@%s)(maildrop=*@%s))',
    'alias_filter (mailacceptinggeneralid=%s)',
    'alias_attributes maildrop',
    'userinfo_filter (&(objectClass=posixAccount)(maildrop=%s))',
    'userinfo_attributes uidNumber,gidNumber,homeDirectory',
    'mailaddrmap_filter (&(objectClass=postfixUser)(uid=%s))',
    'mailaddrmap_attributes mailacceptinggeneralid,maildrop',
    'mailaddr_filter (|(mailacceptinggeneralid=%s)(maildrop=%s))',
    o.extra ?? '',
    '',
  ].join('\n');
}

/** The seed's postfixUser schema, in slapd.conf syntax (the seed gives it as cn=config LDIF). */
export const POSTFIX_SCHEMA = `attributetype ( 1.3.6.1.4.1.4203.666.1.200 NAME 'mailacceptinggeneralid'
  DESC 'Postfix mail local address alias attribute'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024} )
attributetype ( 1.3.6.1.4.1.4203.666.1.201 NAME 'maildrop'
  DESC 'Postfix mail final destination attribute'
  EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.15{1024} )
objectclass ( 1.3.6.1.4.1.4203.666.1.100 NAME 'postfixUser'
  DESC 'Postfix mail user class' SUP top AUXILIARY
  MAY ( mailacceptinggeneralid $ maildrop ) )
`;

export function slappasswd(password: string): string {
  return execFileSync('/usr/sbin/slappasswd', ['-h', '{SSHA}', '-s', password], { encoding: 'utf8' }).trim();
}

/** LDIF value: base64 (`attr:: …`) when it is not a safe string (RFC 2849). */
function ldifLine(attr: string, value: string): string {
  return /^[\x21-\x39\x3b\x3d-\x7e][\x20-\x7e]*$/.test(value) && !value.endsWith(' ') ? `${attr}: ${value}` : `${attr}:: ${Buffer.from(value).toString('base64')}`;
}

export function directoryLdif(users: readonly DirectoryUser[], readerPassword: string): string {
  const entries: string[][] = [
    ['dn: dc=example,dc=org', 'objectClass: dcObject', 'objectClass: organization', 'o: Example', 'dc: example'],
    [`dn: ou=Manager,${BASE_DN}`, 'objectClass: organizationalUnit', 'ou: Manager'],
    [`dn: ${READER_DN}`, 'objectClass: organizationalRole', 'objectClass: simpleSecurityObject', 'cn: mailAccountReader', `userPassword: ${slappasswd(readerPassword)}`],
    [`dn: ${MAIL_OU}`, 'objectClass: organizationalUnit', 'objectClass: top', 'ou: mail'],
  ];
  users.forEach((u, i) => {
    const n = u.uidNumber ?? 20000 + i;
    entries.push([
      `dn: uid=${u.uid},${MAIL_OU}`,
      'objectClass: account',
      'objectClass: posixAccount',
      'objectClass: postfixUser',
      'objectClass: top',
      `uid: ${u.uid}`,
      `cn: ${u.uid}`,
      `uidNumber: ${n}`,
      `gidNumber: ${n}`,
      `homeDirectory: ${u.home}`,
      ...u.accepts.map((a) => ldifLine('mailacceptinggeneralid', a)),
      ...u.maildrop.map((a) => ldifLine('maildrop', a)),
      `userPassword: ${u.hash ?? slappasswd(u.password)}`,
    ]);
  });
  return `${entries.map((e) => e.join('\n')).join('\n\n')}\n`;
}

/** A CA and a server certificate for 127.0.0.1/localhost, made with openssl. */
export function makeTestCa(dir: string): { caFile: string; certFile: string; keyFile: string } {
  const p = (f: string) => join(dir, f);
  const run = (args: string[]) => execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('ca.key'), '-out', p('ca.pem'), '-days', '2', '-subj', '/CN=appliance test LDAP CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', p('server.key'), '-out', p('server.csr'), '-subj', '/CN=localhost']);
  writeFileSync(p('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n');
  run(['x509', '-req', '-in', p('server.csr'), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-out', p('server.pem'), '-days', '2', '-extfile', p('server.ext')]);
  return { caFile: p('ca.pem'), certFile: p('server.pem'), keyFile: p('server.key') };
}

export async function startSlapd(dir: string, o: SlapdOptions): Promise<Slapd> {
  mkdirSync(join(dir, 'db'), { recursive: true });
  const readerPassword = o.readerPassword ?? 'reader-secret';
  const adminPassword = 'admin-secret';
  const port = await freePort();
  const tlsPort = o.tls ? await freePort() : undefined;
  const certs = o.tls ? makeTestCa(dir) : undefined;
  writeFileSync(join(dir, 'postfix.schema'), POSTFIX_SCHEMA);
  const conf = join(dir, 'slapd.conf');
  writeFileSync(
    conf,
    `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include ${join(dir, 'postfix.schema')}
pidfile ${join(dir, 'slapd.pid')}
argsfile ${join(dir, 'slapd.args')}
modulepath /usr/lib/ldap
moduleload back_mdb
${certs ? `TLSCACertificateFile ${certs.caFile}\nTLSCertificateFile ${certs.certFile}\nTLSCertificateKeyFile ${certs.keyFile}\n` : ''}
database mdb
maxsize 67108864
suffix "${BASE_DN}"
rootdn "${ADMIN_DN}"
rootpw ${slappasswd(adminPassword)}
directory ${join(dir, 'db')}
index objectClass eq
index uid eq
index mailacceptinggeneralid eq,sub
index maildrop eq

# The seed's ACLs: hashes only for authentication, ou=mail for the reader.
access to attrs=userPassword
  by self =xw
  by anonymous auth
  by * none
access to dn.subtree="${MAIL_OU}"
  by dn.base="${READER_DN}" read
  by * none
access to * by * none
`,
  );
  writeFileSync(join(dir, 'data.ldif'), directoryLdif(o.users, readerPassword));
  execFileSync('/usr/sbin/slapadd', ['-f', conf, '-l', join(dir, 'data.ldif')], { stdio: ['ignore', 'ignore', 'pipe'] });

  const urls = [`ldap://127.0.0.1:${port}/`, ...(tlsPort ? [`ldaps://127.0.0.1:${tlsPort}/`] : [])];
  const logPath = join(dir, 'slapd.log');
  let child: ChildProcess | null = null;
  const start = async () => {
    const fd = openSync(logPath, 'a');
    // -d 0: stay in the foreground (the test owns the process), no debug output.
    child = spawn(SLAPD, ['-f', conf, '-h', urls.join(' '), '-d', '0'], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    const deadline = Date.now() + 15_000;
    while (!(await accepts(port))) {
      if (child.exitCode !== null) throw new Error(`slapd exited (${child.exitCode}):\n${readFileSync(logPath, 'utf8')}`);
      if (Date.now() > deadline) throw new Error(`slapd not listening within 15 s:\n${readFileSync(logPath, 'utf8')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  await start();
  return {
    dir,
    url: `ldap://127.0.0.1:${port}`,
    ...(tlsPort ? { ldapsUrl: `ldaps://127.0.0.1:${tlsPort}` } : {}),
    ...(certs ? { caFile: certs.caFile } : {}),
    readerPassword,
    adminPassword,
    stop,
    start,
    log: () => readFileSync(logPath, 'utf8'),
  };
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
