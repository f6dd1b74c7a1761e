/**
 * `metrics listen on ADDRESS [port N]`: GET /metrics in Prometheus' text
 * format (prom-client), for the alerts an operator of a mail server sets:
 * mail received, delivered, deferred, bounced; queue size; sessions; TLS and
 * login failures; days until a certificate expires. Plus the process's own
 * (RSS, CPU, event-loop lag, heap) from prom-client's default collectors.
 *
 * The counters are kept in core/metrics.ts by the protocols; the gauges are
 * read here at scrape time. Only GET /metrics is served; no other path, no
 * other method, nothing written.
 */
import { createServer, type Server } from 'node:http';
import type { Logger } from '../core/log.ts';
import type { Metrics } from '../core/metrics.ts';

export interface Gauges {
  /** Messages in the queue (any recipient not yet delivered or failed). */
  queueMessages(): Promise<number>;
  /** Open connections by protocol (smtp, imap). */
  connections(): Record<string, number>;
  /** Logged-in sessions by protocol (submission, imap). */
  loggedIn(): Record<string, number>;
  /** Each pki's certificate: its expiry and where it came from. */
  certificates(): { name: string; source: string; notAfter: Date }[];
}

/** The queue is counted at most this often (a count reads every key). */
const QUEUE_COUNT_TTL_MS = 10_000;

export async function startMetricsServer(host: string, port: number, metrics: Metrics, gauges: Gauges, log: Logger): Promise<Server> {
  const client = await import('prom-client');
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  for (const c of metrics.counters()) {
    new client.Counter({
      name: c.name,
      help: c.help,
      labelNames: [...c.labelNames],
      registers: [registry],
      collect() {
        this.reset();
        for (const e of c.entries()) this.inc({ ...e.labels }, e.value);
      },
    });
  }
  let queueCount: { value: number; at: number } | null = null;
  new client.Gauge({
    name: 'appliance_queue_messages',
    help: 'Messages in the queue waiting for delivery (deferred, held or pending)',
    registers: [registry],
    async collect() {
      if (!queueCount || Date.now() - queueCount.at > QUEUE_COUNT_TTL_MS) queueCount = { value: await gauges.queueMessages(), at: Date.now() };
      this.set(queueCount.value);
    },
  });
  new client.Gauge({
    name: 'appliance_connections',
    help: 'Open client connections, by protocol',
    labelNames: ['protocol'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [protocol, n] of Object.entries(gauges.connections())) this.set({ protocol }, n);
    },
  });
  new client.Gauge({
    name: 'appliance_sessions_logged_in',
    help: 'Logged-in sessions (appliance who), by protocol',
    labelNames: ['protocol'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [protocol, n] of Object.entries(gauges.loggedIn())) this.set({ protocol }, n);
    },
  });
  new client.Gauge({
    name: 'appliance_certificate_expiry_timestamp_seconds',
    help: 'When the certificate served for a pki expires (Unix time); alert on this minus time()',
    labelNames: ['pki', 'source'],
    registers: [registry],
    collect() {
      this.reset();
      for (const c of gauges.certificates()) this.set({ pki: c.name, source: c.source }, Math.floor(c.notAfter.getTime() / 1000));
    },
  });

  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method !== 'GET' || path !== '/metrics') {
      res.writeHead(req.method !== 'GET' && path === '/metrics' ? 405 : 404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: Error) => {
        log.error({ err: err.message }, 'metrics collection failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n');
      },
    );
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen on ${host} port ${port} for metrics: ${err.message}`)));
    server.listen(port, host, () => resolve());
  });
  server.unref();
  log.info({ listen: `${host}:${port}` }, 'metrics listening');
  return server;
}
