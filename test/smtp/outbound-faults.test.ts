/**
 * Remote delivery faults, end to end with the built appliance and an in-test
 * DNS server: what is temporary stays queued (deferred, never a bounce), what
 * is permanent bounces at once, and the queue gives up after `queue ttl`.
 *  - connection refused at every MX address → deferred (ECONNREFUSED kept
 *    as the last error);
 *  - DNS SERVFAIL, and a DNS server that does not answer → deferred;
 *  - NXDOMAIN → DSN 5.1.2; null MX (`0 .`, RFC 7505) → DSN 5.1.10, without
 *    any connection attempt;
 *  - `queue ttl` expiry → DSN (4.4.7, with the last error), sent with the
 *    null sender — seen on the wire by routing the appliance's own mail
 *    (`from socket`) to a receiver — and a DSN that itself fails is
 *    dropped, never bounced.
 * Loopback addresses used by this file: 127.0.0.44 (nothing listens on its
 * port 25) and 127.0.0.46 (the DSN receiver).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startAppliance, writeConfig } from '../helpers/appliance.ts';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.ts';
import { ALICE, bouncesFor, dsnRecipients, logged, queueFlush, queueShow, sleep, submit, waitFor } from '../helpers/outbound.ts';
import { startReceiver } from '../helpers/smtp-receiver.ts';

t.setTimeout(120_000);

const dir = mkdtempSync(join(tmpdir(), 'appliance-outbound-faults-'));
let dns: DnsServer;

t.before(async () => {
  dns = await startDnsServer({
    'refused.test': [{ type: 'MX', preference: 10, exchange: 'mx.refused.test' }],
    'mx.refused.test': [{ type: 'A', address: '127.0.0.44' }],
    'servfail.test': [{ type: 'MX', preference: 10, exchange: 'mx.servfail.test' }],
    'silent.test': [{ type: 'MX', preference: 10, exchange: 'mx.silent.test' }],
    'nullmx.test': [{ type: 'MX', preference: 0, exchange: '.' }],
  });
  dns.fail('servfail.test', 'SERVFAIL');
  dns.fail('silent.test', 'drop');
});

t.teardown(async () => {
  await dns?.close();
  rmSync(dir, { recursive: true, force: true });
});

t.test('temporary failures defer, permanent ones bounce', async (t) => {
  const home = join(dir, 'one');
  mkdirSync(home);
  const cfg = await writeConfig(home, { resolver: `127.0.0.1:${dns.port}` });
  const app = await startAppliance(cfg.path, home);
  t.teardown(() => app.stop());

  const recipientState = async (address: string) => (await queueShow(cfg.path)).flatMap((e) => e.recipients).find((r) => r.address === address);

  await t.test('connection refused → deferred', async (t) => {
    await submit(cfg.ports.submission, { to: ['a@refused.test'], subject: 'fault refused', text: 'x\r\n' });
    await waitFor('a deferral', () => logged(app, 'delivery deferred', (l) => l.to === 'a@refused.test').length >= 1);
    const line = logged(app, 'delivery deferred', (l) => l.to === 'a@refused.test')[0]!;
    t.match(String(line.response), /ECONNREFUSED/);
    t.match(await recipientState('a@refused.test'), { state: 'deferred', attempts: 1, last_error: /127\.0\.0\.44:25.*ECONNREFUSED/ });
  });

  await t.test('DNS SERVFAIL → deferred', async (t) => {
    await submit(cfg.ports.submission, { to: ['b@servfail.test'], subject: 'fault servfail', text: 'x\r\n' });
    await waitFor('a deferral', () => logged(app, 'delivery deferred', (l) => l.to === 'b@servfail.test').length >= 1);
    t.match(await recipientState('b@servfail.test'), { state: 'deferred', last_error: /DNS lookup for servfail\.test failed: .*ESERVFAIL/ });
    t.ok(dns.queries.some((q) => q.name === 'servfail.test' && q.type === 'MX'), 'the MX was asked');
  });

  await t.test('DNS server silent (timeout) → deferred', async (t) => {
    await submit(cfg.ports.submission, { to: ['c@silent.test'], subject: 'fault dns timeout', text: 'x\r\n' });
    await waitFor('a deferral', () => logged(app, 'delivery deferred', (l) => l.to === 'c@silent.test').length >= 1, 20_000);
    t.match(await recipientState('c@silent.test'), { state: 'deferred', last_error: /ETIMEOUT/ });
  });

  await t.test('NXDOMAIN → DSN 5.1.2', async (t) => {
    const subject = 'fault nxdomain';
    await submit(cfg.ports.submission, { to: ['d@nosuch.test'], subject, text: 'x\r\n' });
    await waitFor('the DSN', () => bouncesFor(cfg.dataDir, subject).length >= 1);
    const blocks = dsnRecipients(bouncesFor(cfg.dataDir, subject)[0]!);
    t.equal(blocks.length, 1);
    t.match(blocks[0], { 'final-recipient': /nosuch|d@nosuch\.test/, action: 'failed', status: '5.1.2', 'diagnostic-code': /nosuch\.test does not exist/ });
    t.equal(await recipientState('d@nosuch.test'), undefined, 'gone from the queue');
  });

  await t.test('null MX → DSN 5.1.10 without connecting anywhere', async (t) => {
    const subject = 'fault null mx';
    await submit(cfg.ports.submission, { to: ['e@nullmx.test'], subject, text: 'x\r\n' });
    await waitFor('the DSN', () => bouncesFor(cfg.dataDir, subject).length >= 1);
    const dsn = bouncesFor(cfg.dataDir, subject)[0]!;
    t.match(dsn, /^From: .*MAILER-DAEMON@mail\.example\.test/im);
    const blocks = dsnRecipients(dsn);
    t.equal(blocks.length, 1);
    t.match(blocks[0], { 'final-recipient': /e@nullmx\.test/, action: 'failed', status: '5.1.10', 'diagnostic-code': /null MX/ });
    t.equal(await recipientState('e@nullmx.test'), undefined, 'gone from the queue');
    t.notOk(dns.queries.some((q) => q.name === 'nullmx.test' && q.type !== 'MX'), 'no address lookup after a null MX');
  });

  await t.test('the temporary ones are still queued, no DSN for them', async (t) => {
    await sleep(300);
    for (const [address, subject] of [
      ['a@refused.test', 'fault refused'],
      ['b@servfail.test', 'fault servfail'],
      ['c@silent.test', 'fault dns timeout'],
    ] as const) {
      t.match(await recipientState(address), { state: 'deferred' }, address);
      t.equal(bouncesFor(cfg.dataDir, subject).length, 0, `no DSN for ${address}`);
      t.equal(logged(app, 'delivery bounced', (l) => l.to === address).length, 0);
    }
  });
});

t.test('queue ttl expiry → DSN with the null sender; a failing DSN is not bounced', async (t) => {
  const home = join(dir, 'two');
  mkdirSync(home);
  const catcher = await startReceiver({ host: '127.0.0.46', tls: false, onData: () => '550 5.7.1 No bounces here' });
  t.teardown(() => catcher.close());
  const cfg = await writeConfig(home, {
    resolver: `127.0.0.1:${dns.port}`,
    // The appliance's own mail (bounces) goes to the catcher, to see its envelope.
    rules: `match from socket for any action "dsn-out"
match from any for domain <domains> action "local"
match from any tag SUBMIT for any action "out"
match from any for any reject`,
    extra: 'action "dsn-out" relay host smtp://127.0.0.46:25\nqueue ttl 3s',
  });
  const app = await startAppliance(cfg.path, home);
  t.teardown(() => app.stop());

  const subject = 'fault expiry';
  await submit(cfg.ports.submission, { to: ['late@refused.test'], subject, text: 'x\r\n' });
  await waitFor('a deferral', () => logged(app, 'delivery deferred', (l) => l.to === 'late@refused.test').length >= 1);
  t.equal(catcher.refused.length, 0, 'no DSN before the ttl');
  await sleep(3_200);
  await queueFlush(cfg.path);
  await catcher.waitFor('the DSN', () => catcher.refused.length >= 1);
  const dsn = catcher.refused[0]!;
  t.equal(dsn.from, '', 'sent with the null sender (MAIL FROM:<>)');
  t.same(dsn.to, [ALICE.address], 'to the original sender');
  const text = dsn.data.toString('latin1');
  t.match(text, /^From: .*MAILER-DAEMON@mail\.example\.test/im);
  t.match(text, /Content-Type: text\/rfc822-headers[\s\S]*Subject: fault expiry/);
  const blocks = dsnRecipients(text);
  t.equal(blocks.length, 1);
  t.match(blocks[0], { 'final-recipient': /late@refused\.test/, action: 'failed', status: '4.4.7', 'diagnostic-code': /expired after 3 seconds in the queue; last error: .*ECONNREFUSED/ });
  t.equal(logged(app, 'delivery expired', (l) => l.to === 'late@refused.test').length, 1);

  // The catcher refused the DSN with 550: failed, and no bounce of the bounce.
  await waitFor('the DSN recorded as bounced', () => logged(app, 'delivery bounced', (l) => l.to === ALICE.address).length >= 1);
  await waitFor('an empty queue', async () => (await queueShow(cfg.path)).length === 0);
  await sleep(500);
  t.equal(logged(app, 'bounce submitted').length, 1, 'one DSN only: none for the failed DSN');
  t.equal(catcher.refused.length + catcher.messages.length, 1, 'nothing more reached the catcher');
});
