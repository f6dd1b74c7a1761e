/**
 * SMTPUTF8 (RFC 6531): a message whose envelope needs it goes to a server
 * that offers it, and fails cleanly (a DSN, 5.6.7) at one that does not —
 * never sent mangled. Loopback addresses used by this file: 127.0.0.38, 127.0.0.39.
 */
import t from 'tap';
import { startAppliance, writeConfig } from '../helpers/appliance.ts';
import { startDnsServer } from '../helpers/dns-server.ts';
import { bouncesFor, dsnRecipients, submit, waitFor } from '../helpers/outbound.ts';
import { startReceiver } from '../helpers/smtp-receiver.ts';

t.setTimeout(60_000);

t.test('a UTF-8 recipient: delivered where SMTPUTF8 is offered, bounced 5.6.7 where not', async (t) => {
  const dns = await startDnsServer({
    'modern.test': [{ type: 'MX', preference: 10, exchange: 'mx.modern.test' }],
    'mx.modern.test': [{ type: 'A', address: '127.0.0.38' }],
    'old.test': [{ type: 'MX', preference: 10, exchange: 'mx.old.test' }],
    'mx.old.test': [{ type: 'A', address: '127.0.0.39' }],
  });
  t.teardown(() => dns.close());
  const modern = await startReceiver({ host: '127.0.0.38', port: 25, tls: false });
  t.teardown(() => modern.close());
  const old = await startReceiver({ host: '127.0.0.39', port: 25, tls: false, smtpUtf8: false });
  t.teardown(() => old.close());
  const dir = t.testdir();
  const cfg = await writeConfig(dir, { resolver: `127.0.0.1:${dns.port}` });
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());

  await submit(cfg.ports.submission, { to: ['jürgen@modern.test'], subject: 'utf8 modern', text: 'hallo\r\n' });
  await modern.waitFor('the UTF-8 message', () => modern.messages.length === 1, 15_000);
  t.same(modern.messages[0]!.to, ['jürgen@modern.test'], 'delivered with its UTF-8 address intact');

  await submit(cfg.ports.submission, { to: ['jürgen@old.test'], subject: 'utf8 old', text: 'hallo\r\n' });
  await waitFor('a DSN for the old server', () => bouncesFor(cfg.dataDir, 'utf8 old').length === 1, 15_000);
  t.equal(old.messages.length, 0, 'nothing was sent to the server without SMTPUTF8');
  const recipients = dsnRecipients(bouncesFor(cfg.dataDir, 'utf8 old')[0]!);
  t.equal(recipients.length, 1);
  t.match(recipients[0], { action: 'failed', status: '5.6.7' });
});
