/**
 * Connection reuse: messages queued for one host go out over a few shared
 * connections (at most the per-destination concurrency, set here with
 * `queue destination-concurrency 3`), not one each.
 * Loopback address used by this file: 127.0.0.49.
 */
import t from 'tap';
import { startAppliance, writeConfig } from '../helpers/appliance.ts';
import { startDnsServer } from '../helpers/dns-server.ts';
import { logged, queueFlush, queueShow, submit, waitFor } from '../helpers/outbound.ts';
import { startReceiver } from '../helpers/smtp-receiver.ts';

t.setTimeout(90_000);

t.test('twelve queued messages to one host share at most three connections (queue destination-concurrency 3)', async (t) => {
  const dns = await startDnsServer({
    'reuse.test': [{ type: 'MX', preference: 10, exchange: 'mx.reuse.test' }],
    'mx.reuse.test': [{ type: 'A', address: '127.0.0.49' }],
  });
  t.teardown(() => dns.close());
  const dir = t.testdir();
  const cfg = await writeConfig(dir, { resolver: `127.0.0.1:${dns.port}`, extra: 'queue destination-concurrency 3' });
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());

  // Nothing listens yet: every message is deferred and waits.
  const count = 12;
  for (let i = 0; i < count; i++) await submit(cfg.ports.submission, { to: [`user${i}@reuse.test`], subject: `reuse ${i}`, text: `message ${i}\r\n` });
  await waitFor('every message deferred', async () => logged(app, 'delivery deferred').length >= count, 20_000);

  const receiver = await startReceiver({ host: '127.0.0.49', port: 25, tls: false });
  t.teardown(() => receiver.close());
  await queueFlush(cfg.path);
  await receiver.waitFor('all messages', () => receiver.messages.length === count, 20_000);
  t.equal(receiver.messages.length, count, 'each message delivered once');
  t.same(new Set(receiver.messages.map((m) => m.to[0])).size, count, 'to its own recipient');
  t.ok(receiver.sessions.length <= 3, `${receiver.sessions.length} connections for ${count} messages (per-destination limit 3)`);
  t.ok(receiver.sessions.length < count, 'connections were reused');
  t.same(await queueShow(cfg.path), [], 'queue empty');
});
