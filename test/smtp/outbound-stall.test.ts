/**
 * A receiver that reads the whole message and then never answers the final
 * dot (RFC 5321 §4.5.3.2.6 gives it 10 minutes; we wait `socket` timeout):
 * the recipient is deferred, never failed or bounced, the connection is not
 * reused, and the next attempt to a working server delivers it. The runner
 * is built here with its real queue, resolver and SMTP client, and a short
 * socket timeout instead of the production 120 s.
 * Loopback address used by this file: 127.0.0.60 (port 25).
 */
import { createServer, type Server, type Socket } from 'node:net';
import pino from 'pino';
import t from 'tap';
import { parseConfigText } from '../../core/config/index.ts';
import { openTables } from '../../core/tables/registry.ts';
import { MxResolver } from '../../smtp/mx.ts';
import { OutboundRunner } from '../../smtp/outbound.ts';
import { Store } from '../../store/db.ts';
import { Queue } from '../../store/queue.ts';
import { startDnsServer } from '../helpers/dns-server.ts';
import { startReceiver } from '../helpers/smtp-receiver.ts';

t.setTimeout(60_000);

/** Minimal SMTP that swallows DATA and goes silent after the final dot. */
function stallingServer(): Promise<{ server: Server; dataSeen: () => number; sockets: Set<Socket> }> {
  let dataSeen = 0;
  const sockets = new Set<Socket>();
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let inData = false;
    let buf = '';
    sock.write('220 stall.test ESMTP\r\n');
    sock.on('data', (chunk) => {
      buf += chunk.toString('latin1');
      for (;;) {
        const i = buf.indexOf('\r\n');
        if (i < 0) return;
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            dataSeen++; // and no answer, ever
          }
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') sock.write('250-stall.test\r\n250 8BITMIME\r\n');
        else if (verb === 'DATA') {
          inData = true;
          sock.write('354 go ahead\r\n');
        } else if (verb === 'QUIT') sock.end('221 bye\r\n');
        else sock.write('250 ok\r\n');
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(25, '127.0.0.60', () => resolve({ server, dataSeen: () => dataSeen, sockets }));
  });
}

t.test('a receiver silent after DATA: deferred, then delivered once it answers', async (t) => {
  const dns = await startDnsServer({
    'stall.test': [{ type: 'MX', preference: 10, exchange: 'mx.stall.test' }],
    'mx.stall.test': [{ type: 'A', address: '127.0.0.60' }],
  });
  t.teardown(() => dns.close());
  const dir = t.testdir();
  const loaded = parseConfigText(
    `hostname mail.example.test
data-dir "${dir}"
table users { "alice@example.test" = "$2b$10$bNAo1yPz8M6bajwHt2q4d.fEXW09kQzis/VxpJwnN8U5XZirQoLvq" }
listen on 127.0.0.1 port 2525 auth <users> tag SUBMIT
action "out" relay
match tag SUBMIT for any action "out"
`,
    `${dir}/appliance.conf`,
  );
  if (!loaded.ok) throw new Error(loaded.errors.map((d) => d.message).join('\n'));
  const config = loaded.config;
  const store = await Store.open(dir);
  t.teardown(() => store.close());
  const queue = Queue.open(store);
  const tables = openTables(config, {});
  const dsns: string[] = [];
  const runner = new OutboundRunner({
    queue,
    config: () => config,
    tables: () => tables,
    log: pino({ level: 'silent' }),
    mx: new MxResolver({ server: { host: '127.0.0.1', port: dns.port } }),
    submitDsn: async (recipient) => void dsns.push(recipient),
    timeouts: { socket: 1_500 },
  });
  t.teardown(() => runner.stop());

  const stall = await stallingServer();
  const msg = await queue.enqueue({
    sender: 'alice@example.test',
    recipients: [{ address: 'bob@stall.test', transport: 'relay', action: 'out' }],
    body: Buffer.from('From: alice@example.test\r\nTo: bob@stall.test\r\nSubject: stall\r\n\r\nhello\r\n'),
  });
  await runner.runOnce();
  t.equal(stall.dataSeen(), 1, 'the receiver got the whole message');
  const after = await queue.get(msg.id);
  const rcpt = after?.recipients[0];
  t.equal(rcpt?.state, 'deferred', 'no answer to the final dot defers: the message may or may not have been taken');
  t.match(rcpt?.lastError ?? '', /time|closed|ETIMEDOUT/i, 'the error names the timeout');
  t.same(dsns, [], 'no bounce');
  for (const s of stall.sockets) s.destroy();
  await new Promise<void>((r) => stall.server.close(() => r()));

  // The same host now answers: the retry delivers (one more copy at most, the RFC 1047 duplicate).
  const good = await startReceiver({ host: '127.0.0.60', tls: false });
  t.teardown(() => good.close());
  await queue.schedule(msg.id, Date.now());
  await runner.runOnce();
  await good.waitFor('the retried message', () => good.messages.length === 1, 10_000);
  t.equal((await queue.get(msg.id)) ?? null, null, 'delivered and removed from the queue');
  t.same(dsns, [], 'still no bounce');
});
