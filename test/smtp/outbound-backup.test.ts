/**
 * `relay backup`: the appliance as a domain's secondary MX. Mail it accepts
 * for that domain goes only to MX hosts preferred over itself (RFC 5321
 * §5.1), never back to itself; when it is the best MX the mail waits
 * (deferred, not bounced) instead of looping. Loopback address used by this
 * file: 127.0.0.62.
 */
import t from 'tap';
import { startAppliance, writeConfig } from '../helpers/appliance.ts';
import { startDnsServer } from '../helpers/dns-server.ts';
import { logged, queueFlush, queueShow, waitFor } from '../helpers/outbound.ts';
import { RawSmtp, dataBlock, transaction } from '../helpers/smtp-client.ts';
import { startReceiver } from '../helpers/smtp-receiver.ts';

t.setTimeout(90_000);

t.test('relay backup: only to better MX hosts, never to itself', async (t) => {
  const dns = await startDnsServer({
    // We (mail.example.test) are the secondary of backup.test, and the best MX of loop.test.
    'backup.test': [
      { type: 'MX', preference: 10, exchange: 'primary.backup.test' },
      { type: 'MX', preference: 20, exchange: 'mail.example.test' },
      { type: 'MX', preference: 30, exchange: 'tertiary.backup.test' },
    ],
    'loop.test': [
      { type: 'MX', preference: 5, exchange: 'mail.example.test' },
      { type: 'MX', preference: 10, exchange: 'primary.backup.test' },
    ],
    'primary.backup.test': [{ type: 'A', address: '127.0.0.62' }],
    'tertiary.backup.test': [{ type: 'A', address: '127.0.0.62' }],
    'mail.example.test': [{ type: 'A', address: '127.0.0.1' }],
  });
  t.teardown(() => dns.close());
  const dir = t.testdir();
  const cfg = await writeConfig(dir, {
    resolver: `127.0.0.1:${dns.port}`,
    rules: `match from any for domain { backup.test, loop.test } action "backup"
match from any for domain <domains> action "local"
match from any for any reject`,
    extra: 'action "backup" relay backup',
  });
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const receiver = await startReceiver({ host: '127.0.0.62', port: 25, tls: false });
  t.teardown(() => receiver.close());

  const mx = await RawSmtp.connect(cfg.ports.mx);
  await mx.greeting();
  await mx.ehlo();
  const a = await transaction(mx, 'someone@remote.example', ['user@backup.test'], dataBlock({ Subject: 'held for the primary' }, 'via the backup MX'));
  const b = await transaction(mx, 'someone@remote.example', ['user@loop.test'], dataBlock({ Subject: 'would loop' }, 'we are the best MX'));
  await mx.quit();
  t.equal(a.end?.code, 250, `accepted as backup MX: ${a.end?.last}`);
  t.equal(b.end?.code, 250, `accepted for loop.test: ${b.end?.last}`);

  await receiver.waitFor('the message at the primary', () => receiver.messages.length >= 1, 20_000);
  t.same(receiver.messages.map((m) => m.to), [['user@backup.test']], 'delivered to the preferred MX');
  const sent = logged(app, 'delivery sent', (l) => l.to === 'user@backup.test');
  t.match(String(sent[0]?.relay), /^primary\.backup\.test/, 'to primary.backup.test');

  await waitFor('loop.test deferred', () => logged(app, 'delivery deferred', (l) => l.to === 'user@loop.test').length > 0, 20_000);
  const deferred = logged(app, 'delivery deferred', (l) => l.to === 'user@loop.test')[0]!;
  t.match(String(deferred.response), /is the best MX of loop\.test/, 'deferred: we are the best MX');
  await queueFlush(cfg.path);
  const queued = await queueShow(cfg.path);
  t.equal(queued.length, 1, 'still queued, not bounced');
  t.equal(receiver.messages.length, 1, 'nothing went to the less preferred MX (30) of loop.test either');
});
