/**
 * The numbers an operator alerts on, counted in-process by the protocols
 * (plain increments on the hot path) and exposed on `metrics listen on …`
 * in Prometheus' text format by cli/metrics-server.ts. Gauges that are
 * cheaper to read than to maintain (queue size, sessions, certificate
 * expiry) are collected at scrape time by that server.
 */

export type Labels = Readonly<Record<string, string>>;

export class Counter {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  private readonly values = new Map<string, { labels: Labels; value: number }>();

  constructor(name: string, help: string, labelNames: readonly string[] = []) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
  }

  inc(labels: Labels = {}, n = 1): void {
    const key = this.labelNames.map((l) => labels[l] ?? '').join('\u0000');
    const entry = this.values.get(key);
    if (entry) entry.value += n;
    else this.values.set(key, { labels: Object.fromEntries(this.labelNames.map((l) => [l, labels[l] ?? ''])), value: n });
  }

  entries(): { labels: Labels; value: number }[] {
    return [...this.values.values()].map((e) => ({ labels: e.labels, value: e.value }));
  }

  /** The value for one label set (0 when never counted). */
  get(labels: Labels = {}): number {
    return this.values.get(this.labelNames.map((l) => labels[l] ?? '').join('\u0000'))?.value ?? 0;
  }
}

export class Metrics {
  readonly connections = new Counter('appliance_connections_total', 'Client connections accepted, by protocol', ['protocol']);
  readonly messagesReceived = new Counter('appliance_messages_received_total', 'Messages accepted after DATA (the 250), by listener tag', ['tag']);
  readonly recipientsRejected = new Counter('appliance_recipients_rejected_total', 'RCPT TO refused, by reply code', ['code']);
  readonly deliveries = new Counter(
    'appliance_deliveries_total',
    'Delivery outcomes per recipient: transport local (Maildir) or relay (remote SMTP); status delivered, deferred or bounced',
    ['transport', 'status'],
  );
  readonly bouncesSent = new Counter('appliance_dsn_sent_total', 'Delivery status notifications generated, by kind (failed, delayed)', ['kind']);
  readonly authFailures = new Counter('appliance_auth_failures_total', 'Failed logins, by protocol', ['protocol']);
  readonly tlsErrors = new Counter('appliance_tls_errors_total', 'TLS handshakes that failed, by protocol', ['protocol']);

  counters(): Counter[] {
    return [this.connections, this.messagesReceived, this.recipientsRejected, this.deliveries, this.bouncesSent, this.authFailures, this.tlsErrors];
  }
}
