/**
 * The outbound runner (Postfix's qmgr + smtp, OpenSMTPD's scheduler + mta):
 * picks due relay recipients from the queue, groups them by route (a relay
 * host, or the recipient domain's MX), delivers each group in one SMTP
 * transaction with nodemailer's SMTP client, and records every outcome.
 *
 * - The attempt is recorded before dialling (queue.claimDue, mox's rule), so
 *   a crash never causes a retry storm; kill -9 between the remote 250 and
 *   our update means that message is delivered twice (at-least-once).
 * - 2xx delivered; 4xx, connection and DNS trouble deferred with backoff;
 *   5xx, null MX, NXDOMAIN and `queue ttl` expiry failed with a DSN to the
 *   sender (never to the null sender). The DSN is queued before the update.
 * - STARTTLS whenever offered; the certificate is verified and, if that
 *   fails, delivery goes on unverified unless the action demands `tls` (or
 *   `smtp+tls://`); the outcome is in the log line of every attempt.
 * - Concurrency is bounded globally and per destination; within one pass a
 *   connection is kept after a transaction, so several messages to one host
 *   share it (RSET after a refused transaction; a kept connection the server
 *   has closed meanwhile is replaced transparently); the pass ends with QUIT.
 *   When a job ends, the next job of its destination goes first, so it finds
 *   that connection still in the pool; other destinations are served
 *   round-robin. Delivery starts while the pass is still claiming; MX answers
 *   are shared within a pass. A slot is held until its outcome is synced:
 *   after kill -9, at most `queue concurrency` messages were sent but not
 *   recorded (those are sent again).
 */
import { isIP } from 'node:net';
import { Readable } from 'node:stream';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { Config, RelayAction } from '../core/config/types.ts';
import type { Logger } from '../core/log.ts';
import type { Metrics } from '../core/metrics.ts';
import type { TableSet } from '../core/tables/registry.ts';
import type { Queue, QueuedMessage, QueuedRecipient, RecipientChange } from '../store/queue.ts';
import type { DkimSigner } from './dkim.ts';
import { fromDomainOf } from './dkim.ts';
import { buildDsn, shouldSendDsn, type DsnRecipient } from './dsn.ts';
import type { MxResolver } from './mx.ts';

export interface OutboundDeps {
  readonly queue: Queue;
  config(): Config;
  tables(): TableSet;
  readonly log: Logger;
  readonly mx: MxResolver;
  readonly dkim?: () => DkimSigner | undefined;
  /** Where a DSN goes: enqueues or delivers it like any message from the null sender. */
  submitDsn(recipient: string, message: Buffer): Promise<void>;
  readonly now?: () => number;
  readonly intervalMs?: number;
  readonly maxConcurrent?: number;
  readonly maxPerDestination?: number;
  readonly timeouts?: { connect?: number; greeting?: number; socket?: number };
  /** Counters for the metrics endpoint. */
  readonly metrics?: Metrics;
}

/** One SMTP transaction's worth: a message and the recipients that share a route. */
interface Job {
  readonly message: QueuedMessage;
  readonly recipients: QueuedRecipient[];
  readonly action: RelayAction;
  readonly actionName: string;
  /** Relay host label or recipient domain. */
  readonly destination: string;
}

interface Target {
  readonly host: string;
  readonly port: number;
  readonly servername: string;
  readonly addresses: readonly string[];
}

type Outcome = { readonly address: string; readonly kind: 'delivered' | 'deferred' | 'failed'; readonly code?: number; readonly enhanced?: string; readonly text: string };

export class OutboundRunner {
  private readonly d: OutboundDeps;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private active = 0;
  private readonly perDestination = new Map<string, number>();
  private stopping = false;
  private again = false;
  private lastHousekeeping = 0;
  private forceHousekeeping = false;
  /** MX answers of the pass running, by domain. */
  private mxOfPass: Map<string, ReturnType<MxResolver['resolve']>> | null = null;
  /** Connections kept open after a transaction, by route: messages to the same host reuse them. */
  private readonly idle = new Map<string, { conn: SMTPConnection; timer: NodeJS.Timeout }[]>();

  constructor(deps: OutboundDeps) {
    this.d = deps;
  }

  private now(): number {
    return this.d.now?.() ?? Date.now();
  }

  start(): void {
    this.timer = setInterval(() => void this.runOnce(), this.d.intervalMs ?? 15_000);
    this.timer.unref();
    void this.runOnce();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
    await this.closeIdle();
  }

  /** `queue flush`: a pass that also checks expiry and delay warnings now. */
  flush(): Promise<void> {
    this.forceHousekeeping = true;
    return this.runOnce();
  }

  /** One pass over everything due; a call during a pass asks for one more pass after it. */
  runOnce(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = this.pass()
      .catch((err: unknown) => this.d.log.error({ err: (err as Error).message }, 'outbound pass failed'))
      .finally(() => {
        this.running = null;
        if (this.again && !this.stopping) {
          this.again = false;
          void this.runOnce();
        }
      });
    return this.running;
  }

  private async pass(): Promise<void> {
    const config = this.d.config();
    // Expiry and delay warnings read every envelope: at most every 30 s, not on every queued message.
    if (this.forceHousekeeping || this.now() - this.lastHousekeeping >= HOUSEKEEPING_MS) {
      this.forceHousekeeping = false;
      this.lastHousekeeping = this.now();
      await this.expire(config);
      await this.warnDelays(config);
    }
    const maxConcurrent = this.d.maxConcurrent ?? config.queue.concurrency;
    const maxPer = this.d.maxPerDestination ?? config.queue.destinationConcurrency;
    // MX answers are shared by the jobs of one pass (mx.ts caches nothing; the next pass asks again).
    this.mxOfPass = new Map();
    // Jobs wait per destination; destinations are served round-robin. Delivery starts while the
    // claims go on (a large flush does not wait for its last claim before its first connection).
    const pending = new Map<string, Job[]>();
    let claiming = true;
    let claimError: unknown;
    let wake: (() => void) | null = null;
    const signal = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    const claims = (async () => {
      try {
        for await (const group of this.d.queue.claimDue(this.now(), (r) => r.transport === 'relay')) {
          for (const job of this.split(config, group.message, [...group.recipients])) {
            const list = pending.get(job.destination);
            if (list) list.push(job);
            else pending.set(job.destination, [job]);
          }
          signal();
          if (this.stopping) break;
        }
      } catch (err) {
        claimError = err;
      } finally {
        claiming = false;
        signal();
      }
    })();
    const inFlight = new Set<Promise<void>>();
    // Destinations whose job just ended: their connection waits in the pool, so their next job
    // goes first and reuses it (otherwise, with more destinations than slots, the pool is trimmed
    // for other routes and nearly every message pays a new connection).
    const warm: string[] = [];
    const take = (destination: string, list: Job[]): Job => {
      const job = list.shift()!;
      pending.delete(destination);
      if (list.length > 0) pending.set(destination, list); // round-robin: to the back of the line
      return job;
    };
    const next = (): Job | undefined => {
      if (this.active >= maxConcurrent) return undefined;
      while (warm.length > 0) {
        const destination = warm.shift()!;
        const list = pending.get(destination);
        if (list && (this.perDestination.get(destination) ?? 0) < maxPer) return take(destination, list);
      }
      for (const [destination, list] of pending) {
        if ((this.perDestination.get(destination) ?? 0) >= maxPer) continue;
        return take(destination, list);
      }
      return undefined;
    };
    while (!this.stopping && (claiming || pending.size > 0 || inFlight.size > 0)) {
      const job = next();
      if (!job) {
        if (inFlight.size === 0 && !claiming) break;
        const woken = new Promise<void>((r) => (wake = r));
        await Promise.race(claiming ? [woken, ...inFlight] : inFlight);
        continue;
      }
      this.active++;
      this.perDestination.set(job.destination, (this.perDestination.get(job.destination) ?? 0) + 1);
      const p: Promise<void> = this.run(job).finally(() => {
        this.active--;
        this.perDestination.set(job.destination, (this.perDestination.get(job.destination) ?? 1) - 1);
        inFlight.delete(p);
        if (pending.has(job.destination)) warm.push(job.destination);
      });
      inFlight.add(p);
    }
    await claims;
    await Promise.all(inFlight);
    this.mxOfPass = null;
    // Connections are shared within a pass (a flush of many messages to one host); each pass ends with QUIT.
    await this.closeIdle();
    if (claimError) throw claimError;
  }

  /** Recipients of one message → jobs: one per relay action and destination domain. */
  private split(config: Config, message: QueuedMessage, recipients: QueuedRecipient[]): Job[] {
    const jobs = new Map<string, Job>();
    for (const r of recipients) {
      const action = config.actions.get(r.action);
      if (!action || action.method.type !== 'relay') {
        // The action was renamed or removed by a reload: relay by MX, as the mail was accepted for relaying.
        this.d.log.warn({ qid: message.id, to: r.address, action: r.action }, 'queued action no longer exists; delivering by MX');
      }
      const method: RelayAction = action?.method.type === 'relay' ? action.method : { type: 'relay', backup: false };
      const domain = r.address.slice(r.address.lastIndexOf('@') + 1).toLowerCase();
      const destination = method.host ? `${method.host.host}:${method.host.port}` : domain;
      const key = `${r.action}|${destination}`;
      let job = jobs.get(key);
      if (!job) jobs.set(key, (job = { message, recipients: [], action: method, actionName: r.action, destination }));
      job.recipients.push(r);
    }
    return [...jobs.values()];
  }

  /**
   * One attempt: the SMTP transaction, its log lines, then the outcome,
   * synced. The slot is held until then, so after kill -9 the messages sent
   * but not yet recorded (delivered again: at-least-once) are at most the
   * global concurrency.
   */
  private async run(job: Job): Promise<void> {
    const started = this.now();
    let outcomes: Outcome[];
    let via = '';
    let tls = 'none';
    try {
      const r = await this.deliver(job);
      outcomes = r.outcomes;
      via = r.via;
      tls = r.tls;
    } catch (err) {
      const e = err as Error;
      outcomes = job.recipients.map((rc) => ({ address: rc.address, kind: 'deferred', text: e.message }));
    }
    for (const o of outcomes) {
      this.d.metrics?.deliveries.inc({ transport: 'relay', status: o.kind === 'failed' ? 'bounced' : o.kind });
      this.d.log.info(
        { qid: job.message.id, to: o.address, relay: via || job.destination, tls, delay: Math.round((this.now() - job.message.created) / 1000), attempt_ms: this.now() - started, status: o.kind === 'delivered' ? 'sent' : o.kind === 'failed' ? 'bounced' : 'deferred', response: o.text },
        `delivery ${o.kind === 'delivered' ? 'sent' : o.kind === 'failed' ? 'bounced' : 'deferred'}`,
      );
    }
    await this.record(job.message, outcomes, via);
  }

  /** Bounces first (queued), then the outcome: a crash in between can only duplicate a DSN. */
  private async record(message: QueuedMessage, outcomes: Outcome[], via: string): Promise<void> {
    const failed = outcomes.filter((o) => o.kind === 'failed');
    if (failed.length > 0) await this.bounce(message, failed.map((o) => dsnRecipient(o, via, 'failed')));
    const changes: RecipientChange[] = outcomes.map((o) => ({ address: o.address, state: o.kind, ...(o.kind === 'delivered' ? {} : { lastError: o.text }) }));
    await this.d.queue.update(message.id, changes);
  }

  private bounce(message: QueuedMessage, recipients: DsnRecipient[]): Promise<void> {
    return this.notify(message, recipients);
  }

  /** Builds and submits a DSN (failed or delayed) to the message's sender. */
  private async notify(message: QueuedMessage, recipients: DsnRecipient[]): Promise<void> {
    if (!shouldSendDsn(message.sender)) return;
    const config = this.d.config();
    const headers = await readHeaders(this.d.queue.body(message.id));
    const dsn = buildDsn({
      reportingMta: config.hostname,
      originalSender: message.sender,
      queueId: message.id,
      arrival: new Date(message.created),
      recipients,
      originalHeaders: headers,
      now: new Date(this.now()),
    });
    try {
      await this.d.submitDsn(dsn.recipient, dsn.message);
      this.d.metrics?.bouncesSent.inc({ kind: recipients[0]?.action ?? 'failed' });
    } catch (err) {
      this.d.log.error({ qid: message.id, to: dsn.recipient, err: (err as Error).message }, 'could not queue the bounce');
      throw err;
    }
  }

  /**
   * `bounce warn-interval`: a delay warning (DSN, Action: delayed) for the
   * recipients still waiting, once per interval — with one interval at each
   * multiple of it, with a list at each listed delay (OpenSMTPD). The count
   * sent is kept with the message; the warning is queued before the count is
   * recorded, so a crash can repeat a warning, never lose one.
   */
  private async warnDelays(config: Config): Promise<void> {
    const now = this.now();
    const intervals = config.bounce.warnIntervals;
    if (intervals.length === 0) return;
    for await (const m of this.d.queue.list()) {
      if (!shouldSendDsn(m.sender)) continue;
      const waiting = m.recipients.filter((r) => r.transport === 'relay' && r.state === 'deferred');
      if (waiting.length === 0) continue;
      const sent = Number(m.meta?.['delay-warnings'] ?? '0');
      const dueAfter = intervals.length === 1 ? intervals[0]! * (sent + 1) : intervals[sent];
      if (dueAfter === undefined || now - m.created < dueAfter || now - m.created >= config.queue.ttl) continue;
      const until = new Date(m.created + config.queue.ttl);
      await this.notify(
        m,
        waiting.map((r) => ({
          address: r.address,
          action: 'delayed' as const,
          status: /\b(4\.\d{1,3}\.\d{1,3})\b/.exec(r.lastError ?? '')?.[1] ?? '4.4.1',
          diagnostic: `X-Appliance; ${r.lastError ?? 'not delivered yet'}`,
          willRetryUntil: until,
        })),
      );
      await this.d.queue.annotate(m.id, { 'delay-warnings': String(sent + 1) });
      this.d.log.info({ qid: m.id, to: m.sender, waiting: waiting.length, warning: sent + 1 }, 'delay warning sent');
    }
  }

  /** Recipients past `queue ttl` fail with a DSN, whatever their next attempt. */
  private async expire(config: Config): Promise<void> {
    const now = this.now();
    for await (const m of this.d.queue.list()) {
      if (now - m.created <= config.queue.ttl) continue;
      const late = m.recipients.filter((r) => r.transport === 'relay' && (r.state === 'pending' || r.state === 'deferred'));
      if (late.length === 0) continue;
      const outcomes: Outcome[] = late.map((r) => ({ address: r.address, kind: 'failed', enhanced: '4.4.7', text: `message expired after ${duration(config.queue.ttl)} in the queue${r.lastError ? `; last error: ${r.lastError}` : ''}` }));
      for (const o of outcomes) this.d.log.info({ qid: m.id, to: o.address, status: 'expired' }, 'delivery expired');
      await this.record(m, outcomes, '');
    }
  }

  private async deliver(job: Job): Promise<{ outcomes: Outcome[]; via: string; tls: string }> {
    const config = this.d.config();
    const all = (kind: Outcome['kind'], text: string, enhanced?: string): Outcome[] =>
      job.recipients.map((r) => ({ address: r.address, kind, text, ...(enhanced ? { enhanced } : {}) }));
    let targets: Target[];
    if (job.action.host) {
      const h = job.action.host;
      targets = [{ host: h.host, port: h.port, servername: h.host, addresses: [h.host] }];
    } else {
      let answer = this.mxOfPass?.get(job.destination);
      if (!answer) {
        answer = this.d.mx.resolve(job.destination);
        this.mxOfPass?.set(job.destination, answer);
      }
      const r = await answer;
      switch (r.kind) {
        case 'null-mx':
          return { outcomes: all('failed', `domain ${job.destination} does not accept mail (null MX)`, '5.1.10'), via: '', tls: 'none' };
        case 'nxdomain':
          return { outcomes: all('failed', `domain ${job.destination} does not exist`, '5.1.2'), via: '', tls: 'none' };
        case 'no-address':
          return { outcomes: all('deferred', `no address for the mail servers of ${job.destination}`), via: '', tls: 'none' };
        case 'tempfail':
          return { outcomes: all('deferred', `DNS lookup for ${job.destination} failed: ${r.error}`), via: '', tls: 'none' };
        case 'hosts': {
          // RFC 5321 §5.1: never deliver to ourselves nor to an MX no better than ours (a backup MX's loop).
          // `relay backup [mx NAME]`: we are that MX (by default our hostname) for the domain.
          const self = (job.action.backupMx ?? config.hostname).toLowerCase();
          const own = r.hosts.find((h) => h.host.toLowerCase() === self);
          const usable = own ? r.hosts.filter((h) => h.preference < own.preference) : r.hosts;
          if (usable.length === 0) {
            return { outcomes: all('deferred', `this server (${config.hostname}) is the best MX of ${job.destination}: mail loops back to itself`), via: '', tls: 'none' };
          }
          targets = usable.map((h) => ({ host: h.host, port: 25, servername: h.host, addresses: h.addresses }));
          break;
        }
      }
    }
    const body = await this.d.queue.bodyOf(job.message);
    const signed = await this.sign(body);
    let lastError = 'no mail server could be reached';
    for (const target of targets) {
      for (const address of target.addresses) {
        const attempt = await this.transact(config, job, target, address, signed);
        if (attempt.kind === 'unreachable') {
          lastError = attempt.text;
          continue;
        }
        return { outcomes: attempt.outcomes, via: `${target.host}[${address}]:${target.port}`, tls: attempt.tls };
      }
    }
    return { outcomes: all('deferred', lastError), via: '', tls: 'none' };
  }

  private async sign(body: Buffer): Promise<Buffer> {
    const signer = this.d.dkim?.();
    if (!signer) return body;
    const headerEnd = body.indexOf('\r\n\r\n');
    const domain = fromDomainOf(headerEnd === -1 ? body : body.subarray(0, headerEnd + 2));
    if (!domain) return body;
    const { header } = await signer.sign(body, domain);
    return header ? Buffer.concat([Buffer.from(header), body]) : body;
  }

  /** One SMTP session to one address. `unreachable` means: try the next address. */
  private async transact(
    config: Config,
    job: Job,
    target: Target,
    address: string,
    body: Buffer,
  ): Promise<{ kind: 'done'; outcomes: Outcome[]; tls: string } | { kind: 'unreachable'; text: string }> {
    const scheme = job.action.host?.scheme ?? 'smtp';
    const mustTls = scheme === 'smtp+tls' || job.action.tls !== undefined;
    const verify = job.action.tls ? job.action.tls.verify : true;
    const first = await this.session(config, job, target, address, body, { scheme, requireTls: mustTls, rejectUnauthorized: verify });
    if (first.kind === 'tls-verify-failed' && !mustTls) {
      // Opportunistic TLS: an unverifiable certificate still beats plain text (RFC 7435).
      const second = await this.session(config, job, target, address, body, { scheme, requireTls: false, rejectUnauthorized: false });
      if (second.kind === 'done') return { ...second, tls: `${second.tls} (unverified: ${first.text})` };
      return second.kind === 'tls-verify-failed' ? { kind: 'unreachable', text: second.text } : second;
    }
    if (first.kind === 'tls-verify-failed') {
      return { kind: 'done', outcomes: job.recipients.map((r) => ({ address: r.address, kind: 'deferred', text: `TLS required but the certificate does not verify: ${first.text}` })), tls: 'failed' };
    }
    return first;
  }

  private session(
    config: Config,
    job: Job,
    target: Target,
    address: string,
    body: Buffer,
    opts: { scheme: string; requireTls: boolean; rejectUnauthorized: boolean },
    allowReuse = true,
  ): Promise<{ kind: 'done'; outcomes: Outcome[]; tls: string } | { kind: 'unreachable'; text: string } | { kind: 'tls-verify-failed'; text: string }> {
    const key = [address, target.port, opts.scheme, opts.requireTls, opts.rejectUnauthorized, job.action.host?.label ?? '', job.action.helo ?? config.hostname].join('|');
    const idle = allowReuse ? this.takeIdle(key) : undefined;
    // A new connection must not push the open ones (busy + idle) past the global limit: close idle ones on other routes first.
    if (!idle) this.trimIdle((this.d.maxConcurrent ?? config.queue.concurrency) - this.active);
    return new Promise((resolve) => {
      const t = this.d.timeouts ?? {};
      const conn =
        idle?.conn ??
        new SMTPConnection({
          host: address,
          port: target.port,
          secure: opts.scheme === 'smtps',
          ignoreTLS: opts.scheme === 'smtp+notls',
          requireTLS: opts.requireTls,
          opportunisticTLS: !opts.requireTls && opts.scheme !== 'smtp+notls',
          name: job.action.helo ?? config.hostname,
          connectionTimeout: t.connect ?? 30_000,
          greetingTimeout: t.greeting ?? 30_000,
          socketTimeout: t.socket ?? 120_000,
          // No SNI for an IP address (RFC 6066; Node warns, DEP0123): the certificate is then checked against the IP.
          tls: { rejectUnauthorized: opts.rejectUnauthorized, ...(isIP(target.servername) ? {} : { servername: target.servername }), minVersion: 'TLSv1.2' },
          logger: false,
        });
      let settled = false;
      const tlsOf = () => {
        const sock = (conn as unknown as { _socket?: { getProtocol?: () => string | null; getCipher?: () => { name: string } } })._socket;
        const proto = sock?.getProtocol?.();
        return proto ? `${proto} ${sock?.getCipher?.()?.name ?? ''}`.trim() : 'none';
      };
      /** Ends this transaction; a connection still in good order waits in the pool for the next message. */
      const finish = (v: Parameters<typeof resolve>[0], reusable = false) => {
        if (settled) return;
        settled = true;
        conn.removeAllListeners('error');
        if (reusable && !this.stopping && !isDestroyed(conn)) this.release(key, conn);
        else {
          conn.on('error', () => undefined);
          try {
            conn.quit();
          } catch {
            conn.close();
          }
        }
        resolve(v);
      };
      conn.removeAllListeners('error');
      conn.once('error', (err: SMTPConnection.SMTPError) => {
        if (isVerifyError(err)) return finish({ kind: 'tls-verify-failed', text: err.message });
        if (err.responseCode) {
          // The server answered the connection (greeting or EHLO) with an error: that is its answer for all.
          return finish({ kind: 'done', outcomes: job.recipients.map((r) => smtpOutcome(r.address, err.responseCode!, err.response ?? err.message)), tls: tlsOf() });
        }
        finish({ kind: 'unreachable', text: `${address}:${target.port}: ${err.message}` });
      });
      const send = () => {
        // RFC 6531: an address beyond ASCII needs SMTPUTF8 at the receiver; without it those
        // recipients fail cleanly (5.6.7) instead of being sent mangled (the client would send anyway).
        const exts = (conn as unknown as { _supportedExtensions?: string[] })._supportedExtensions ?? [];
        const utf8 = exts.includes('SMTPUTF8');
        const wide = (a: string) => /[^\x00-\x7f]/.test(a);
        const refused = utf8 ? [] : wide(job.message.sender) ? job.recipients : job.recipients.filter((r) => wide(r.address));
        const utf8Failures: Outcome[] = refused.map((r) => ({ address: r.address, kind: 'failed', enhanced: '5.6.7', text: 'the receiving server does not support SMTPUTF8 (RFC 6531), needed for this address' }));
        const sendable = job.recipients.filter((r) => !refused.includes(r));
        if (sendable.length === 0) return finish({ kind: 'done', outcomes: utf8Failures, tls: tlsOf() }, true);
        const envelope: SMTPConnection.Envelope = {
          from: job.message.sender === '' ? '' : job.message.sender,
          to: sendable.map((r) => r.address),
          size: body.length,
          use8BitMime: hasEightBit(body),
        };
        conn.send(envelope, Readable.from([body]), (err, info) => {
          if (err) {
            if (idle && !err.responseCode) {
              // A kept connection the server closed in the meantime: try again on a new one.
              settled = true;
              conn.removeAllListeners('error');
              conn.on('error', () => undefined);
              conn.close();
              void this.session(config, job, target, address, body, opts, false).then(resolve);
              return;
            }
            if (err.responseCode) {
              // MAIL FROM, every RCPT, or DATA refused: the same answer for every recipient.
              const rejected = new Map((err as unknown as { rejectedErrors?: SMTPConnection.SMTPError[] }).rejectedErrors?.map((e) => [(e as { recipient?: string }).recipient ?? '', e]) ?? []);
              const outcomes = sendable.map((r) => {
                const e = rejected.get(r.address) ?? err;
                return smtpOutcome(r.address, e.responseCode ?? err.responseCode!, e.response ?? err.response ?? err.message);
              });
              // The session is fine after a refused transaction: RSET, then it may carry the next message.
              if (err.responseCode !== 421 && !isDestroyed(conn)) {
                return conn.reset((resetErr) => finish({ kind: 'done', outcomes: [...utf8Failures, ...outcomes], tls: tlsOf() }, !resetErr));
              }
              return finish({ kind: 'done', outcomes: [...utf8Failures, ...outcomes], tls: tlsOf() });
            }
            // Lost the connection mid-transaction: the remote may or may not have the message; retry (at-least-once).
            return finish({ kind: 'done', outcomes: [...utf8Failures, ...sendable.map((r): Outcome => ({ address: r.address, kind: 'deferred', text: err.message }))], tls: tlsOf() });
          }
          const rejected = new Map((info.rejectedErrors ?? []).map((e) => [(e as { recipient?: string }).recipient ?? '', e]));
          finish(
            {
              kind: 'done',
              outcomes: [...utf8Failures, ...sendable.map((r): Outcome => {
                const e = rejected.get(r.address);
                if (e || info.rejected.includes(r.address)) return smtpOutcome(r.address, e?.responseCode ?? 550, e?.response ?? 'rejected');
                return { address: r.address, kind: 'delivered', code: 250, text: info.response };
              })],
              tls: tlsOf(),
            },
            true,
          );
        });
      };
      if (idle) return send();
      conn.connect(() => {
        const auth = job.action.auth;
        if (!auth || !job.action.host) return send();
        void relayCredentials(this.d.tables(), auth.name, job.action.host.label).then(
          (creds) => {
            if (!creds) {
              return finish({ kind: 'done', outcomes: job.recipients.map((r) => ({ address: r.address, kind: 'deferred', text: `no credentials "${job.action.host?.label ?? ''}" in table ${auth.name}` })), tls: tlsOf() });
            }
            conn.login({ user: creds.user, pass: creds.pass }, (err) => {
              if (err) {
                const code = err.responseCode ?? 0;
                // A refused login is the operator's to fix: keep the mail (deferred), never bounce it.
                return finish({ kind: 'done', outcomes: job.recipients.map((r) => ({ address: r.address, kind: 'deferred', ...(code ? { code } : {}), text: `relay authentication failed: ${err.response ?? err.message}` })), tls: tlsOf() });
              }
              send();
            });
          },
          (err: Error) => finish({ kind: 'done', outcomes: job.recipients.map((r) => ({ address: r.address, kind: 'deferred', text: err.message })), tls: tlsOf() }),
        );
      });
    });
  }

  /** An idle connection for this route, if one is kept open. */
  private takeIdle(key: string): { conn: SMTPConnection } | undefined {
    const list = this.idle.get(key);
    while (list && list.length > 0) {
      const e = list.pop()!;
      clearTimeout(e.timer);
      if (!isDestroyed(e.conn)) return { conn: e.conn };
    }
    return undefined;
  }

  /** Closes idle connections (any route) until at most `keep` remain. */
  private trimIdle(keep: number): void {
    let count = 0;
    for (const list of this.idle.values()) count += list.length;
    for (const [key, list] of this.idle) {
      while (count > Math.max(0, keep) && list.length > 0) {
        const e = list.shift()!;
        clearTimeout(e.timer);
        count--;
        try {
          e.conn.quit();
        } catch {
          e.conn.close();
        }
      }
      if (list.length === 0) this.idle.delete(key);
      if (count <= Math.max(0, keep)) break;
    }
  }

  /** Keeps a connection for the next message to the same host, closing it after a short idle time. */
  private release(key: string, conn: SMTPConnection): void {
    let list = this.idle.get(key);
    if (!list) this.idle.set(key, (list = []));
    const entry = {
      conn,
      timer: setTimeout(() => {
        const l = this.idle.get(key);
        const i = l?.indexOf(entry) ?? -1;
        if (i !== -1) l!.splice(i, 1);
        try {
          conn.quit();
        } catch {
          conn.close();
        }
      }, IDLE_CONNECTION_MS),
    };
    entry.timer.unref();
    conn.removeAllListeners('error');
    conn.on('error', () => undefined); // an idle connection the server drops is simply not reused
    list.push(entry);
  }

  /**
   * QUIT on every idle connection; resolves when their sockets are closed (at
   * most CLOSE_WAIT_MS, then they are destroyed). The next pass starts after
   * that, so its new connections never add to ones still closing: the global
   * limit holds as the receiving side counts.
   */
  private async closeIdle(): Promise<void> {
    const closing: Promise<void>[] = [];
    for (const list of this.idle.values()) {
      for (const e of list) {
        clearTimeout(e.timer);
        const sock = (e.conn as unknown as { _socket?: { destroyed: boolean; once(ev: 'close', f: () => void): void; destroy(): void } })._socket;
        if (sock && !sock.destroyed) {
          closing.push(
            new Promise<void>((resolve) => {
              const t = setTimeout(() => {
                sock.destroy();
                resolve();
              }, CLOSE_WAIT_MS);
              sock.once('close', () => {
                clearTimeout(t);
                resolve();
              });
            }),
          );
        }
        try {
          e.conn.quit();
        } catch {
          e.conn.close();
        }
      }
    }
    this.idle.clear();
    await Promise.all(closing);
  }

}

/** `queue ttl` in words: "4 days", "6 hours", "90 minutes", "3 seconds" (not "0 hours" for a short ttl). */
function duration(ms: number): string {
  const units: [number, string][] = [[86_400_000, 'day'], [3_600_000, 'hour'], [60_000, 'minute'], [1_000, 'second']];
  for (const [size, name] of units) {
    if (ms >= size && ms % size === 0) return `${ms / size} ${name}${ms === size ? '' : 's'}`;
  }
  const s = Math.round(ms / 1000);
  return `${s} second${s === 1 ? '' : 's'}`;
}

/** How long a connection waits for the next message to its host. */
const IDLE_CONNECTION_MS = 5_000;
/** How long the end of a pass waits for its idle connections to close after QUIT. */
const CLOSE_WAIT_MS = 2_000;
/** How often expiry and delay warnings are checked. */
const HOUSEKEEPING_MS = 30_000;

function isDestroyed(conn: SMTPConnection): boolean {
  return (conn as unknown as { _destroyed?: boolean })._destroyed === true;
}

function smtpOutcome(address: string, code: number, response: string): Outcome {
  const enhanced = /\b([245]\.\d{1,3}\.\d{1,3})\b/.exec(response)?.[1];
  const kind: Outcome['kind'] = code >= 200 && code < 300 ? 'delivered' : code >= 500 ? 'failed' : 'deferred';
  return { address, kind, code, text: response, ...(enhanced ? { enhanced } : {}) };
}

function dsnRecipient(o: Outcome, via: string, action: 'failed' | 'delayed'): DsnRecipient {
  const host = /^([^[\]]+)\[/.exec(via)?.[1];
  return {
    address: o.address,
    action,
    status: o.enhanced ?? (o.code ? `${Math.floor(o.code / 100)}.0.0` : '5.0.0'),
    ...(host ? { remoteMta: host } : {}),
    diagnostic: o.code ? `smtp; ${o.text}` : `X-Appliance; ${o.text}`,
    lastAttempt: new Date(),
  };
}

/** `label = "user:password"` in the relay's auth table (OpenSMTPD's relay credentials). */
async function relayCredentials(tables: TableSet, tableName: string, label: string | undefined): Promise<{ user: string; pass: string } | null> {
  const table = tables.get(tableName);
  if (!table || !label) return null;
  const r = await table.lookup('credentials', label);
  if (r.kind === 'tempfail') throw r.error;
  if (r.kind === 'none') return null;
  const secret = r.value.hash;
  const colon = secret.indexOf(':');
  if (colon <= 0) return null;
  return { user: secret.slice(0, colon), pass: secret.slice(colon + 1) };
}

function isVerifyError(err: { code?: string; message: string }): boolean {
  return /certificate|self[- ]signed|unable to verify|altname|UNABLE_TO_|CERT_|DEPTH_ZERO/i.test(`${err.code ?? ''} ${err.message}`) && err.code !== 'EAUTH';
}

function hasEightBit(buf: Buffer): boolean {
  for (const b of buf) if (b > 0x7f) return true;
  return false;
}

/** The header block of a queued message (bounded), for DSNs. */
async function readHeaders(stream: Readable, max = 256 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of stream) {
    chunks.push(c as Buffer);
    size += (c as Buffer).length;
    const all = Buffer.concat(chunks);
    const end = all.indexOf('\r\n\r\n');
    if (end !== -1) {
      stream.destroy();
      return all.subarray(0, end + 2);
    }
    if (size > max) {
      stream.destroy();
      return all.subarray(0, max);
    }
  }
  return Buffer.concat(chunks);
}
