/**
 * Remote delivery, end to end with the built appliance: alice submits over
 * the submission port; the appliance looks the recipient domain's MX up in an
 * in-test DNS server and delivers to an in-test `smtp-server` on
 * 127.0.0.4x:25 (tests run as root). Covered here:
 *  - delivery by MX: the bytes the receiver gets are the bytes stored for a
 *    local recipient of the same message; EHLO with our hostname; STARTTLS
 *    taken when offered (the receiver's self-signed certificate does not
 *    verify: delivery goes on, and the log line says so); several
 *    recipients in one transaction; the queue is empty afterwards;
 *  - 451 at the end of DATA: deferred (queue show says why), delivered once
 *    by `appliance queue flush`;
 *  - 550 at RCPT for one of three recipients: the two others delivered in
 *    one transaction, one DSN in alice's Maildir naming only the refused one;
 *  - MX preference order with fallback to the next MX when the first refuses
 *    connections; a domain without MX delivered to its A record.
 * Loopback addresses used by this file: 127.0.0.41, .42, .43 (and .44, where
 * nothing listens).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startAppliance, writeConfig, type RunningAppliance } from '../helpers/appliance.ts';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.ts';
import { ALICE, bouncesFor, dsnRecipients, logged, maildir, queueFlush, queueShow, sleep, submit, waitFor } from '../helpers/outbound.ts';
import { startReceiver, type Receiver } from '../helpers/smtp-receiver.ts';

t.setTimeout(120_000);

const dir = mkdtempSync(join(tmpdir(), 'appliance-outbound-'));
let dns: DnsServer;
let app: RunningAppliance;
let cfg: Awaited<ReturnType<typeof writeConfig>>;
let good: Receiver;
let flaky: Receiver;
let picky: Receiver;
let flakyAnswers = 0;

t.before(async () => {
  dns = await startDnsServer({
    'a.test': [{ type: 'MX', preference: 10, exchange: 'mx.a.test' }],
    'mx.a.test': [{ type: 'A', address: '127.0.0.41' }],
    'b.test': [{ type: 'MX', preference: 10, exchange: 'mx.b.test' }],
    'mx.b.test': [{ type: 'A', address: '127.0.0.42' }],
    'c.test': [{ type: 'MX', preference: 10, exchange: 'mx.c.test' }],
    'mx.c.test': [{ type: 'A', address: '127.0.0.43' }],
    // Two MX: the preferred one refuses connections (nothing listens on 127.0.0.44:25).
    'e.test': [
      { type: 'MX', preference: 20, exchange: 'mx2.e.test' },
      { type: 'MX', preference: 10, exchange: 'mx1.e.test' },
    ],
    'mx1.e.test': [{ type: 'A', address: '127.0.0.44' }],
    'mx2.e.test': [{ type: 'A', address: '127.0.0.41' }],
    // Two working MX, listed worst first: the preferred one (10) must get the mail.
    'g.test': [
      { type: 'MX', preference: 20, exchange: 'backup.g.test' },
      { type: 'MX', preference: 10, exchange: 'primary.g.test' },
    ],
    'primary.g.test': [{ type: 'A', address: '127.0.0.41' }],
    'backup.g.test': [{ type: 'A', address: '127.0.0.42' }],
    // No MX: the domain's own address (RFC 5321 §5.1).
    'f.test': [{ type: 'A', address: '127.0.0.41' }],
  });
  good = await startReceiver({ host: '127.0.0.41' });
  flaky = await startReceiver({
    host: '127.0.0.42',
    onData: () => (flakyAnswers++ === 0 ? '451 4.3.0 Temporary failure, try again later' : undefined),
  });
  picky = await startReceiver({
    host: '127.0.0.43',
    onRcpt: (address) => (address.startsWith('nobody@') ? `550 5.1.1 <${address}>: Recipient address rejected: User unknown` : undefined),
  });
  cfg = await writeConfig(dir, { resolver: `127.0.0.1:${dns.port}` });
  app = await startAppliance(cfg.path, dir);
});

t.teardown(async () => {
  await app?.stop();
  await Promise.all([good?.close(), flaky?.close(), picky?.close(), dns?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

t.test('delivery by MX: same bytes, our EHLO name, STARTTLS, one transaction for three recipients', async (t) => {
  const to = ['one@a.test', 'two@a.test', 'three@a.test'];
  const subject = 'outbound mx delivery';
  // bob (local) gets the same message: his Maildir copy is the reference for the bytes.
  await submit(cfg.ports.submission, { to: [...to, 'bob@example.test'], subject, text: 'Hello remote world.\r\nSecond line, with a dot:\r\n.\r\nend.\r\n' });
  await good.waitFor('the message at mx.a.test', () => good.messages.length >= 1);
  await waitFor('bob\'s copy', () => maildir(cfg.dataDir, 'bob').length >= 1);
  await sleep(300); // anything extra would have arrived by now
  t.equal(good.messages.length, 1, 'one transaction');
  const m = good.messages[0]!;
  t.same([...m.to].sort(), [...to].sort(), 'all three recipients in that transaction');
  t.equal(m.from, ALICE.address, 'envelope sender is alice');
  t.equal(m.session.ehlo, 'mail.example.test', 'EHLO with our hostname');
  t.ok(m.session.secure, 'delivered over STARTTLS');
  t.match(m.session.tlsVersion, /^TLSv1\.[23]$/);
  const stored = maildir(cfg.dataDir, 'bob')[0]!;
  t.match(stored, /^Return-Path: <alice@example\.test>\r\n/, 'the local copy starts with Return-Path (added at final delivery only)');
  const local = stored.slice(stored.indexOf('\r\n') + 2);
  t.equal(m.data.toString('latin1'), local, 'the receiver got exactly the bytes stored for the local recipient, less its Return-Path');
  t.match(m.data.toString('latin1'), /\r\nSubject: outbound mx delivery\r\n/);
  t.match(m.data.toString('latin1'), /\r\n\.\r\nend\.\r\n/, 'a line holding only "." arrives as sent (dot-stuffed on the wire, once)');

  const sent = logged(app, 'delivery sent', (l) => typeof l.to === 'string' && (l.to as string).endsWith('@a.test'));
  t.equal(sent.length, 3, 'one log line per recipient');
  for (const l of sent) {
    t.equal(l.relay, 'mx.a.test[127.0.0.41]:25');
    t.equal(l.status, 'sent');
    t.match(String(l.tls), /^TLSv1\.[23] .*\(unverified: /, 'TLS outcome logged: encrypted, certificate not verified');
    t.match(String(l.response), /^250 /);
    t.type(l.qid, 'string');
    t.type(l.delay, 'number');
  }
  await waitFor('an empty queue', async () => (await queueShow(cfg.path)).length === 0);
  t.pass('queue show is empty');
});

t.test('451 at the end of DATA: deferred, then delivered once by queue flush', async (t) => {
  const subject = 'outbound 451 then 250';
  await submit(cfg.ports.submission, { to: ['x@b.test'], subject, text: 'retry me\r\n' });
  await waitFor('a deferral logged', () => logged(app, 'delivery deferred', (l) => l.to === 'x@b.test').length >= 1);
  t.equal(flaky.messages.length, 0, 'nothing accepted yet');
  t.equal(flaky.refused.length, 1, 'the first DATA was answered 451');
  const deferred = logged(app, 'delivery deferred', (l) => l.to === 'x@b.test')[0]!;
  t.equal(deferred.relay, 'mx.b.test[127.0.0.42]:25');
  t.match(String(deferred.response), /^451 4\.3\.0 /);
  const q = await queueShow(cfg.path);
  const entry = q.find((e) => e.recipients.some((r) => r.address === 'x@b.test'));
  t.ok(entry, 'still queued');
  t.equal(entry?.sender, ALICE.address);
  t.match(entry?.recipients[0], { address: 'x@b.test', state: 'deferred', attempts: 1, last_error: /451 4\.3\.0/ });
  t.ok(Date.parse(entry!.recipients[0]!.next_attempt) > Date.now(), 'next attempt in the future (backoff)');

  const out = await queueFlush(cfg.path);
  t.match(out, /flushed: 1 scheduled, 0 still queued/);
  t.equal(flaky.messages.length, 1, 'delivered by the flush');
  t.same(flaky.messages[0]!.to, ['x@b.test']);
  t.match(flaky.messages[0]!.data.toString('latin1'), /\r\nSubject: outbound 451 then 250\r\n/);
  t.same(await queueShow(cfg.path), [], 'queue empty');
  await queueFlush(cfg.path);
  await sleep(500);
  t.equal(flaky.messages.length, 1, 'delivered once: another flush sends nothing');
  t.equal(logged(app, 'delivery sent', (l) => l.to === 'x@b.test').length, 1);
  t.equal(bouncesFor(cfg.dataDir, subject).length, 0, 'no DSN for a deferral');
});

t.test('550 at RCPT for one of three: two delivered, one DSN naming only the refused one', async (t) => {
  const subject = 'outbound one of three refused';
  await submit(cfg.ports.submission, { to: ['one@c.test', 'nobody@c.test', 'three@c.test'], subject, text: 'partial\r\n' });
  await picky.waitFor('the message at mx.c.test', () => picky.messages.length >= 1);
  await waitFor('the DSN in alice\'s Maildir', () => bouncesFor(cfg.dataDir, subject).length >= 1);
  await waitFor('an empty queue', async () => (await queueShow(cfg.path)).length === 0);
  await sleep(500);
  t.equal(picky.messages.length, 1, 'one transaction');
  t.same([...picky.messages[0]!.to].sort(), ['one@c.test', 'three@c.test'], 'the two others delivered');
  const dsns = bouncesFor(cfg.dataDir, subject);
  t.equal(dsns.length, 1, 'exactly one DSN');
  const dsn = dsns[0]!;
  t.match(dsn, /^From: .*MAILER-DAEMON@mail\.example\.test/im, 'from MAILER-DAEMON');
  t.match(dsn, /^To: .*alice@example\.test/im);
  t.match(dsn, /^Content-Type: multipart\/report;[\s\S]*?report-type="?delivery-status"?/im, 'RFC 6522 report');
  t.match(dsn, /^Auto-Submitted: auto-replied/im);
  const blocks = dsnRecipients(dsn);
  t.equal(blocks.length, 1, 'one recipient block');
  t.match(blocks[0], { 'final-recipient': /^rfc822; ?nobody@c\.test$/i, action: 'failed', status: '5.1.1', 'remote-mta': /mx\.c\.test/, 'diagnostic-code': /^smtp; ?550 5\.1\.1 <nobody@c\.test>/ });
  const beforeHeaders = dsn.split(/Content-Type: text\/rfc822-headers/i)[0]!;
  t.notMatch(beforeHeaders, /one@c\.test|three@c\.test/, 'the report names only the refused recipient');
  t.match(dsn, /Content-Type: text\/rfc822-headers[\s\S]*Subject: outbound one of three refused/, 'original headers attached');
  t.notMatch(dsn, /^partial$/m, 'not the original body');
  const bounced = logged(app, 'delivery bounced', (l) => typeof l.to === 'string' && (l.to as string).endsWith('@c.test'));
  t.same(bounced.map((l) => l.to), ['nobody@c.test']);
  t.equal(logged(app, 'delivery sent', (l) => typeof l.to === 'string' && (l.to as string).endsWith('@c.test')).length, 2);
  // The DSN itself came from the null sender: the log of its submission says so.
  const submitted = logged(app, 'bounce submitted', (l) => l.to === ALICE.address);
  t.ok(submitted.length >= 1, 'bounce submitted to alice');
});

t.test('MX order: the preferred MX refuses, the next one gets it; no MX: the A record', async (t) => {
  const before = good.messages.length;
  await submit(cfg.ports.submission, { to: ['fallback@e.test'], subject: 'outbound mx fallback', text: 'x\r\n' });
  await good.waitFor('the message at mx2.e.test', () => good.messages.length > before);
  t.same(good.messages.at(-1)!.to, ['fallback@e.test']);
  t.match(logged(app, 'delivery sent', (l) => l.to === 'fallback@e.test'), [{ relay: 'mx2.e.test[127.0.0.41]:25' }]);
  const mxQueries = dns.queries.filter((q) => q.name === 'mx1.e.test' || q.name === 'mx2.e.test');
  t.ok(mxQueries.length >= 2, 'both MX hosts resolved');

  const flakyBefore = flaky.messages.length + flaky.refused.length;
  await submit(cfg.ports.submission, { to: ['order@g.test'], subject: 'outbound mx order', text: 'x\r\n' });
  await good.waitFor('the message at primary.g.test', () => good.messages.some((m) => m.to.includes('order@g.test')));
  t.match(logged(app, 'delivery sent', (l) => l.to === 'order@g.test'), [{ relay: 'primary.g.test[127.0.0.41]:25' }], 'preference 10 before 20');
  t.equal(flaky.messages.length + flaky.refused.length, flakyBefore, 'nothing at the backup MX');

  await submit(cfg.ports.submission, { to: ['direct@f.test'], subject: 'outbound implicit mx', text: 'x\r\n' });
  await good.waitFor('the message for f.test', () => good.messages.some((m) => m.to.includes('direct@f.test')));
  t.match(logged(app, 'delivery sent', (l) => l.to === 'direct@f.test'), [{ relay: 'f.test[127.0.0.41]:25' }]);
  await waitFor('an empty queue', async () => (await queueShow(cfg.path)).length === 0);
});
