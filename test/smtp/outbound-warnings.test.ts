/**
 * `bounce warn-interval`: while a recipient waits, the sender gets a delay
 * warning (DSN, Action: delayed) once per interval — not at every retry.
 * Loopback address used by this file: 127.0.0.44 (nothing listens there).
 */
import t from 'tap';
import { startAppliance, writeConfig } from '../helpers/appliance.ts';
import { startDnsServer } from '../helpers/dns-server.ts';
import { bouncesFor, dsnRecipients, queueFlush, sleep, submit, waitFor } from '../helpers/outbound.ts';

t.setTimeout(90_000);

t.test('one delay warning per interval, naming the waiting recipient', async (t) => {
  const dns = await startDnsServer({
    'slow.test': [{ type: 'MX', preference: 10, exchange: 'mx.slow.test' }],
    'mx.slow.test': [{ type: 'A', address: '127.0.0.44' }],
  });
  t.teardown(() => dns.close());
  const dir = t.testdir();
  const cfg = await writeConfig(dir, { resolver: `127.0.0.1:${dns.port}`, extra: 'bounce warn-interval 6s\nqueue ttl 1h\n' });
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());

  await submit(cfg.ports.submission, { to: ['late@slow.test'], subject: 'warn me', text: 'hello\r\n' });
  await queueFlush(cfg.path);
  t.equal(bouncesFor(cfg.dataDir, 'warn me').length, 0, 'no warning before the interval');
  // 6 s: the second warning is due 12 s after submission, leaving a loaded CI machine about 6 s to check there is none yet.
  await sleep(6200);
  await queueFlush(cfg.path);
  await waitFor('a delay warning', () => bouncesFor(cfg.dataDir, 'warn me').length === 1, 10_000);
  const dsn = bouncesFor(cfg.dataDir, 'warn me')[0]!;
  t.match(dsn, /^Subject: Delayed Mail \(still being retried\)/m);
  const recipients = dsnRecipients(dsn);
  t.equal(recipients.length, 1);
  t.match(recipients[0], { 'final-recipient': /late@slow\.test/i, action: 'delayed' });
  await queueFlush(cfg.path);
  t.equal(bouncesFor(cfg.dataDir, 'warn me').length, 1, 'a retry within the interval sends no second warning');
});
