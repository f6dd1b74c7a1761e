/**
 * The session policy in process (smtp/session.ts), for what a loopback test
 * client cannot show: clients from other addresses. The end-to-end tests
 * connect from 127.0.0.1, which is exempt from `smtp limit
 * connections-per-ip`, may AUTH before STARTTLS on a `tls` listener, and is
 * `from local`. Here the hooks get smtp-server-shaped sessions with a
 * non-loopback remoteAddress, a real config, real tables and the real
 * failure limiter; only `sleep` is recorded instead of waited.
 */
import pino from 'pino';
import type { SMTPServerAuthentication, SMTPServerSession } from 'smtp-server';
import t from 'tap';
import { AuthFailureLimiter } from '../../core/auth/failures.ts';
import { hashPassword } from '../../core/auth/passwords.ts';
import { formatDiagnostic, parseConfigText, type Config, type ListenerDecl } from '../../core/config/index.ts';
import { openTables } from '../../core/tables/registry.ts';
import { SmtpSessionPolicy, type SessionRuntime } from '../../smtp/session.ts';

const OUTSIDE = '203.0.113.7';
const OTHER = '198.51.100.9';
const LOOPBACK = '127.0.0.1';

async function makeConfig(): Promise<Config> {
  const alice = await hashPassword('alice-secret', 'bcrypt');
  const text = `hostname mail.example.test
data-dir "/nonexistent/appliance"
pki mail.example.test self-signed
table domains { example.test }
table users { "alice@example.test" = "${alice}" }
listen on 0.0.0.0 port 25 tls pki mail.example.test tag MX
listen on 0.0.0.0 port 587 tls-require pki mail.example.test auth <users> senders <users> tag SUBMIT
listen on 0.0.0.0 port 465 smtps pki mail.example.test auth <users> tag SUBMIT
listen on 0.0.0.0 port 2525 tls pki mail.example.test auth <users> tag SUBMIT
action "local" maildir userbase <users>
action "out" relay
match from any for domain <domains> action "local"
match from any tag SUBMIT for any action "out"
match from local for any action "out"
match from any for any reject
smtp limit connections-per-ip 3
auth failure-delay 1s
auth max-failures 5
`;
  const r = parseConfigText(text, '/etc/appliance/appliance.conf');
  if (!r.ok) throw new Error(r.errors.map(formatDiagnostic).join('\n'));
  return r.config;
}

interface Harness {
  readonly rt: SessionRuntime;
  readonly slept: number[];
  stopping: boolean;
  policy(port: number): SmtpSessionPolicy;
}

async function harness(): Promise<Harness> {
  const config = await makeConfig();
  const tables = openTables(config, {});
  const h: Harness = {
    slept: [],
    stopping: false,
    rt: undefined as unknown as SessionRuntime,
    policy(port: number) {
      const decl = config.listeners.find((l: ListenerDecl) => l.port === port);
      if (!decl) throw new Error(`no listener on port ${port}`);
      return new SmtpSessionPolicy(decl, h.rt);
    },
  };
  (h as { rt: SessionRuntime }).rt = {
    config: () => config,
    tables: () => tables,
    log: pino({ level: 'silent' }),
    authFailures: new AuthFailureLimiter({ maxFailures: config.auth.maxFailures, windowMs: 15 * 60_000 }),
    inbound: {
      commit: () => Promise.reject(new Error('no DATA in these tests')),
    },
    connectionsByIp: new Map(),
    shuttingDown: () => h.stopping,
    sleep: async (ms: number) => {
      h.slept.push(ms);
    },
  };
  return h;
}

let ids = 0;
/** The parts of an smtp-server session the policy reads. */
function session(remoteAddress: string, secure = false): SMTPServerSession {
  return {
    id: `S${++ids}`,
    remoteAddress,
    remotePort: 40000 + ids,
    localAddress: '192.0.2.1',
    localPort: 25,
    clientHostname: `[${remoteAddress}]`,
    hostNameAppearsAs: 'client.example.net',
    openingCommand: 'EHLO',
    transmissionType: 'ESMTP',
    secure,
    envelope: { mailFrom: false, rcptTo: [] },
    transaction: 1,
  } as unknown as SMTPServerSession;
}

type HookError = (Error & { responseCode?: number }) | undefined;

function connect(p: SmtpSessionPolicy, s: SMTPServerSession): Promise<HookError> {
  return new Promise((resolve) => p.onConnect(s, (err) => resolve(err ?? undefined)));
}

function auth(p: SmtpSessionPolicy, s: SMTPServerSession, username: string, password: string): Promise<{ err: HookError; user?: unknown }> {
  const a = { method: 'PLAIN', username, password, validatePassword: () => false } as unknown as SMTPServerAuthentication;
  return new Promise((resolve) => p.onAuth(a, s, (err, res) => resolve({ err: err ?? undefined, user: res?.user })));
}

function mailFrom(p: SmtpSessionPolicy, s: SMTPServerSession, address: string): Promise<HookError> {
  return new Promise((resolve) => p.onMailFrom({ address, args: false }, s, (err) => resolve(err ?? undefined)));
}

function rcptTo(p: SmtpSessionPolicy, s: SMTPServerSession, address: string): Promise<HookError> {
  return new Promise((resolve) => p.onRcptTo({ address, args: false }, s, (err) => resolve(err ?? undefined)));
}

function replyOf(err: HookError): string {
  return err ? `${err.responseCode} ${err.message}` : 'ok';
}

t.test('connections-per-ip: a non-loopback address gets 421 4.7.0 past the limit, counted across listeners', async (t) => {
  const h = await harness();
  const mx = h.policy(25);
  const submission = h.policy(587);
  const open: [SmtpSessionPolicy, SMTPServerSession][] = [];
  for (const p of [mx, mx, submission]) {
    const s = session(OUTSIDE);
    t.equal(replyOf(await connect(p, s)), 'ok', 'within the limit of 3');
    open.push([p, s]);
  }
  t.equal(h.rt.connectionsByIp.get(OUTSIDE), 3);
  const refusedMx = await connect(mx, session(OUTSIDE));
  t.match(replyOf(refusedMx), /^421 4\.7\.0 Too many connections/, 'the 4th on MX is refused');
  t.match(replyOf(await connect(submission, session(OUTSIDE))), /^421 4\.7\.0 /, 'and on submission: the count is per address, not per listener');
  t.equal(h.rt.connectionsByIp.get(OUTSIDE), 3, 'refused sessions are not counted');
  t.equal(replyOf(await connect(mx, session(OTHER))), 'ok', 'another address has its own count');
  t.equal(replyOf(await connect(mx, session('2001:db8::7'))), 'ok', 'IPv6 too');

  // Closing one frees a place; closing all forgets the address.
  const [p0, s0] = open.shift()!;
  p0.onClose(s0);
  const again = session(OUTSIDE);
  t.equal(replyOf(await connect(mx, again)), 'ok', 'a place freed by a close is taken again');
  open.push([mx, again]);
  for (const [p, s] of open) p.onClose(s);
  t.notOk(h.rt.connectionsByIp.has(OUTSIDE), 'no entry left once every session closed (memory stays bounded)');
});

t.test('connections-per-ip: loopback is exempt (which is why the end-to-end 500-connection test cannot hit the limit)', async (t) => {
  const h = await harness();
  const mx = h.policy(25);
  for (let i = 0; i < 20; i++) {
    t.equal(replyOf(await connect(mx, session(i % 2 ? LOOPBACK : '::1'))), 'ok', `loopback session ${i + 1} of 20`);
  }
});

t.test('AUTH before STARTTLS: refused to a non-loopback client on tls and tls-require listeners', async (t) => {
  const h = await harness();
  const tlsAuth = h.policy(2525);
  const outside = session(OUTSIDE);
  await connect(tlsAuth, outside);
  t.same(outside.disabledCommands, ['AUTH'], 'tls + auth, outside client: AUTH disabled until STARTTLS');
  await new Promise<void>((resolve) => tlsAuth.onSecure(null, outside, () => resolve()));
  t.equal(outside.disabledCommands, undefined, 'after STARTTLS the listener command list applies again');

  const local = session(LOOPBACK);
  await connect(tlsAuth, local);
  t.equal(local.disabledCommands, undefined, 'tls + auth, loopback client: AUTH offered before STARTTLS (SPEC §config listen)');

  const requireTls = h.policy(587);
  for (const ip of [OUTSIDE, LOOPBACK]) {
    const s = session(ip);
    await connect(requireTls, s);
    t.same(s.disabledCommands, ['AUTH'], `tls-require: AUTH disabled before STARTTLS for ${ip} too`);
  }
  const smtps = session(OUTSIDE, true);
  await connect(h.policy(465), smtps);
  t.equal(smtps.disabledCommands, undefined, 'smtps: the session is TLS from the start');

  // Should AUTH reach the hook anyway (a library change), the hook itself refuses it without TLS.
  const plain = session(OUTSIDE);
  await connect(tlsAuth, plain);
  const r = await auth(tlsAuth, plain, 'alice@example.test', 'alice-secret');
  t.match(replyOf(r.err), /^538 5\.7\.11 /, 'the hook: 538 5.7.11 encryption required');
  t.same(h.slept, [], 'no failure delay: nothing was tried');
  t.ok(h.rt.authFailures.allowed(OUTSIDE), 'and no failure counted');
});

t.test('AUTH failures: each answered after the failure delay; after max-failures even the right password gets 454 4.7.0', async (t) => {
  const h = await harness();
  const p = h.policy(587);
  const s = session(OUTSIDE, true);
  await connect(p, s);
  for (let i = 1; i <= 5; i++) {
    const r = await auth(p, s, 'alice@example.test', `wrong-${i}`);
    t.match(replyOf(r.err), /^535 5\.7\.8 /, `failure ${i}: 535 5.7.8`);
  }
  t.same(h.slept, [1000, 1000, 1000, 1000, 1000], 'each failure waited auth failure-delay (1s) before answering');
  const locked = await auth(p, s, 'alice@example.test', 'alice-secret');
  t.match(replyOf(locked.err), /^454 4\.7\.0 Too many authentication failures/, 'locked out: the right password is refused too');
  t.equal(h.slept.length, 5, 'a locked-out attempt is answered at once (nothing to delay)');
  const other = session(OTHER, true);
  await connect(p, other);
  const ok = await auth(p, other, 'alice@example.test', 'alice-secret');
  t.equal(replyOf(ok.err), 'ok', 'the lockout is per client address');
  t.equal(ok.user, 'alice@example.test');
});

t.test('"from local" is loopback only: the same RCPT relays from 127.0.0.1 and is refused from outside', async (t) => {
  const h = await harness();
  const mx = h.policy(25);
  const outside = session(OUTSIDE);
  await connect(mx, outside);
  t.equal(replyOf(await mailFrom(mx, outside, 'someone@attacker.example')), 'ok');
  t.match(replyOf(await rcptTo(mx, outside, 'victim@external.org')), /^554 5\.7\.1 /, 'outside client on MX: relay denied');
  t.match(replyOf(await rcptTo(mx, outside, 'nobody@example.test')), /^550 5\.1\.1 /, 'unknown local user: 550 5.1.1');
  t.equal(replyOf(await rcptTo(mx, outside, 'alice@example.test')), 'ok', 'a local user is accepted');
  const local = session(LOOPBACK);
  await connect(mx, local);
  t.equal(replyOf(await mailFrom(mx, local, 'cron@mail.example.test')), 'ok');
  t.equal(replyOf(await rcptTo(mx, local, 'victim@external.org')), 'ok', 'loopback client on MX: "from local" relays');
});

t.test('shutting down: new sessions and new transactions get 421 4.3.2', async (t) => {
  const h = await harness();
  const mx = h.policy(25);
  const open = session(OUTSIDE);
  await connect(mx, open);
  h.stopping = true;
  t.match(replyOf(await connect(mx, session(OTHER))), /^421 4\.3\.2 /, 'new session refused');
  t.match(replyOf(await mailFrom(mx, open, 'someone@example.net')), /^421 4\.3\.2 /, 'MAIL in an open session refused');
  mx.onClose(open);
  t.notOk(h.rt.connectionsByIp.has(OUTSIDE));
});
