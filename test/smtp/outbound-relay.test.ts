/**
 * Relay host (smarthost), end to end with the built appliance:
 * `action NAME relay host smtp+tls://smarthost@127.0.0.45:PORT auth <secrets>`
 * with `secrets` holding `smarthost = "relayuser:relaypass"`. The smarthost
 * is an in-test `smtp-server` that requires STARTTLS and AUTH; its
 * certificate (self-signed, for IP 127.0.0.45) is trusted by the appliance
 * through NODE_EXTRA_CA_CERTS, so the certificate is really verified.
 *  - right credentials: delivered over verified TLS with AUTH, EHLO with our
 *    hostname, several recipients in one transaction, queue empty;
 *  - wrong password: deferred, retried by flush and deferred again, never
 *    bounced; delivered once the smarthost takes the password again;
 *  - smtp+tls:// to a smarthost without STARTTLS, or whose certificate does
 *    not verify: deferred, and neither AUTH nor MAIL is ever sent in clear or
 *    to the unverified server.
 * Loopback address used by this file: 127.0.0.45 (three ephemeral ports).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startAppliance, writeConfig, type RunningAppliance } from '../helpers/appliance.ts';
import { ALICE, bouncesFor, logged, maildir, queueFlush, queueShow, sleep, submit, waitFor } from '../helpers/outbound.ts';
import { selfSignedCert, startReceiver, type Receiver } from '../helpers/smtp-receiver.ts';

t.setTimeout(120_000);

const HOST = '127.0.0.45';
const dir = mkdtempSync(join(tmpdir(), 'appliance-outbound-relay-'));
let app: RunningAppliance;
let cfg: Awaited<ReturnType<typeof writeConfig>>;
let smart: Receiver;
let plain: Receiver;
let untrusted: Receiver;
let acceptedPassword = 'relaypass';

t.before(async () => {
  const pem = await selfSignedCert('smarthost.test', { dns: ['smarthost.test'], ips: [HOST] });
  const caPath = join(dir, 'smarthost-ca.pem');
  writeFileSync(caPath, pem.cert);
  const auth = (user: string, pass: string) => user === 'relayuser' && pass === acceptedPassword;
  smart = await startReceiver({ host: HOST, port: 0, tls: pem, requireTls: true, auth });
  plain = await startReceiver({ host: HOST, port: 0, tls: false, auth: () => true });
  untrusted = await startReceiver({ host: HOST, port: 0, auth: () => true }); // a fresh self-signed certificate nobody trusts
  cfg = await writeConfig(dir, {
    rules: `match from any for domain <domains> action "local"
match from any tag SUBMIT for domain <notls> action "smart-notls"
match from any tag SUBMIT for domain <badcert> action "smart-badcert"
match from any tag SUBMIT for any action "smart"
match from any for any reject`,
    extra: `table secrets { smarthost = "relayuser:relaypass" }
table notls { notls.test }
table badcert { badcert.test }
action "smart" relay host smtp+tls://smarthost@${HOST}:${smart.port} auth <secrets>
action "smart-notls" relay host smtp+tls://smarthost@${HOST}:${plain.port} auth <secrets>
action "smart-badcert" relay host smtp+tls://smarthost@${HOST}:${untrusted.port} auth <secrets>`,
  });
  const saved = process.env.NODE_EXTRA_CA_CERTS;
  process.env.NODE_EXTRA_CA_CERTS = caPath; // read by the appliance process at its start
  try {
    app = await startAppliance(cfg.path, dir);
  } finally {
    if (saved === undefined) delete process.env.NODE_EXTRA_CA_CERTS;
    else process.env.NODE_EXTRA_CA_CERTS = saved;
  }
});

t.teardown(async () => {
  await app?.stop();
  await Promise.all([smart?.close(), plain?.close(), untrusted?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

t.test('delivered through the smarthost with AUTH over verified STARTTLS', async (t) => {
  const to = ['someone@far.test', 'other@elsewhere.test'];
  await submit(cfg.ports.submission, { to, subject: 'via smarthost', text: 'relayed\r\n' });
  await smart.waitFor('the message at the smarthost', () => smart.messages.length >= 1);
  await sleep(300);
  t.equal(smart.messages.length, 1, 'one transaction for both domains (one route)');
  const m = smart.messages[0]!;
  t.same([...m.to].sort(), [...to].sort());
  t.equal(m.from, ALICE.address);
  t.equal(m.session.user, 'relayuser', 'authenticated as relayuser');
  t.ok(m.session.secure, 'over STARTTLS');
  t.equal(m.session.ehlo, 'mail.example.test');
  t.match(m.data.toString('latin1'), /\r\nSubject: via smarthost\r\n/);
  t.same(smart.authFailures, []);
  const sent = logged(app, 'delivery sent');
  t.equal(sent.length, 2);
  for (const l of sent) {
    t.equal(l.relay, `${HOST}[${HOST}]:${smart.port}`);
    t.match(String(l.tls), /^TLSv1\.[23] /);
    t.notMatch(String(l.tls), /unverified/, 'the certificate was verified');
  }
  await waitFor('an empty queue', async () => (await queueShow(cfg.path)).length === 0);
});

t.test('wrong password: deferred, retried, never bounced', async (t) => {
  acceptedPassword = 'changed-at-the-provider';
  t.teardown(() => void (acceptedPassword = 'relaypass'));
  const subject = 'smarthost wrong password';
  await submit(cfg.ports.submission, { to: ['x@far.test'], subject, text: 'x\r\n' });
  await waitFor('a deferral', () => logged(app, 'delivery deferred', (l) => l.to === 'x@far.test').length >= 1);
  t.match(logged(app, 'delivery deferred', (l) => l.to === 'x@far.test')[0], { status: 'deferred', response: /relay authentication failed: 535/ });
  t.same(smart.authFailures, ['relayuser'], 'the smarthost saw one failed login');
  const state = async () => (await queueShow(cfg.path)).flatMap((e) => e.recipients).find((r) => r.address === 'x@far.test');
  t.match(await state(), { state: 'deferred', attempts: 1, last_error: /relay authentication failed/ });

  await queueFlush(cfg.path);
  t.match(await state(), { state: 'deferred', attempts: 2 }, 'deferred again after a flush');
  t.equal(smart.authFailures.length, 2);
  await sleep(500);
  t.equal(logged(app, 'delivery bounced').length, 0, 'never bounced');
  t.equal(bouncesFor(cfg.dataDir, subject).length, 0, 'no DSN to alice');
  t.equal(maildir(cfg.dataDir, 'alice').length, 0);

  acceptedPassword = 'relaypass';
  const before = smart.messages.length;
  await queueFlush(cfg.path);
  await smart.waitFor('the message', () => smart.messages.length > before);
  t.same(smart.messages.at(-1)!.to, ['x@far.test'], 'delivered once the password works again');
  t.equal((await queueShow(cfg.path)).length, 0);
});

t.test('smtp+tls:// never talks in clear or to an unverified smarthost', async (t) => {
  await submit(cfg.ports.submission, { to: ['y@notls.test'], subject: 'smarthost without starttls', text: 'x\r\n' });
  await submit(cfg.ports.submission, { to: ['z@badcert.test'], subject: 'smarthost with a bad certificate', text: 'x\r\n' });
  await waitFor('two deferrals', () => logged(app, 'delivery deferred', (l) => l.to === 'y@notls.test' || l.to === 'z@badcert.test').length >= 2);
  const q = (await queueShow(cfg.path)).flatMap((e) => e.recipients);
  t.match(q.find((r) => r.address === 'y@notls.test'), { state: 'deferred', last_error: /STARTTLS|TLS/i });
  t.match(q.find((r) => r.address === 'z@badcert.test'), { state: 'deferred', last_error: /certificate/i });
  t.equal(plain.messages.length + plain.refused.length, 0, 'no mail to the smarthost without TLS');
  t.equal(untrusted.messages.length + untrusted.refused.length, 0, 'no mail to the unverified smarthost');
  t.ok(plain.sessions.every((s) => s.user === undefined) && untrusted.sessions.every((s) => s.user === undefined), 'no AUTH at either');
  t.equal(logged(app, 'delivery bounced').length, 0, 'deferred, not bounced');
});
