/**
 * `metrics listen on`: GET /metrics in Prometheus text format with the
 * counters and gauges an operator alerts on, after real SMTP traffic; other
 * paths 404, other methods 405.
 */
import { request } from 'node:http';
import t from 'tap';
import { freePort, startAppliance, writeConfig } from '../helpers/appliance.ts';
import { queueShow, submit, waitFor } from '../helpers/outbound.ts';
import { RawSmtp, dataBlock, transaction } from '../helpers/smtp-client.ts';

function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The value of one sample line, `name{labels} value`. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

t.test('metrics endpoint', async (t) => {
  const dir = t.testdir();
  const port = await freePort();
  const cfg = await writeConfig(dir, { extra: `metrics listen on 127.0.0.1 port ${port}` });
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());

  // Traffic: one message in by MX (plus one unknown recipient), one failed login, one remote message queued.
  const c = await RawSmtp.connect(cfg.ports.mx);
  await c.greeting();
  await c.ehlo();
  const r = await transaction(c, 'someone@remote.example', ['alice@example.test', 'nobody@example.test'], dataBlock({ Subject: 'counted' }, 'hello'));
  await c.quit();
  t.equal(r.end?.code, 250);
  const s = await RawSmtp.connect(cfg.ports.smtps, { implicitTls: true });
  await s.greeting();
  await s.ehlo();
  t.equal((await s.authPlain('alice@example.test', 'wrong')).code, 535);
  await s.quit();
  await submit(cfg.ports.submission, { to: ['friend@remote.example'], subject: 'out', text: 'x\r\n' });
  await waitFor('the remote message deferred', async () => (await queueShow(cfg.path)).length === 1);

  const m = await get(port, '/metrics');
  t.equal(m.status, 200);
  t.match(m.type, /^text\/plain; version=0\.0\.4/);
  t.equal(sample(m.body, 'appliance_messages_received_total', 'tag="MX"'), 1, 'received by MX');
  t.equal(sample(m.body, 'appliance_messages_received_total', 'tag="SUBMIT"'), 1, 'received by submission');
  t.equal(sample(m.body, 'appliance_deliveries_total', 'transport="local",status="delivered"'), 1, 'delivered into a Maildir');
  await waitFor('the relay attempt counted', async () => (sample((await get(port, '/metrics')).body, 'appliance_deliveries_total', 'transport="relay",status="deferred"') ?? 0) >= 1);
  t.equal(sample(m.body, 'appliance_recipients_rejected_total', 'code="550"'), 1, 'the unknown recipient');
  t.equal(sample(m.body, 'appliance_auth_failures_total', 'protocol="smtp"'), 1, 'the wrong password');
  t.ok((sample(m.body, 'appliance_connections_total', 'protocol="smtp"') ?? 0) >= 3, 'connections counted');
  t.equal(sample(m.body, 'appliance_queue_messages'), 1, 'the queued remote message');
  const expiry = sample(m.body, 'appliance_certificate_expiry_timestamp_seconds', 'pki="mail.example.test",source="self-signed"');
  t.ok(expiry !== undefined && expiry * 1000 > Date.now() + 86_400_000, 'certificate expiry as a Unix time in the future');
  t.ok((sample(m.body, 'process_resident_memory_bytes') ?? 0) > 10_000_000, 'the process RSS');
  t.match(m.body, /# HELP appliance_deliveries_total /, 'HELP lines');
  t.match(m.body, /# TYPE appliance_queue_messages gauge/, 'TYPE lines');

  t.equal((await get(port, '/')).status, 404, 'other paths: 404');
  t.equal((await get(port, '/metrics', 'POST')).status, 405, 'other methods: 405');
  t.equal(await app.stop(), 0, 'stops with the endpoint open');
});
