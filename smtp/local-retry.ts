/**
 * Retries local deliveries that failed temporarily at DATA time (disk full,
 * an unwritable Maildir): the queue is the local transport's second chance.
 * Each due recipient is written to its Maildir again; success removes it
 * from the queue, failure defers it with backoff. Past `queue ttl` a
 * recipient is marked failed (the bounce itself comes with the outbound
 * issue's DSN support; the log says so).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Logger } from '../core/log.ts';
import type { Metrics } from '../core/metrics.ts';
import { SpooledMessage, deliverToMaildirs } from '../store/maildir.ts';
import type { Queue, RecipientChange } from '../store/queue.ts';

export interface LocalRetryOptions {
  readonly queue: Queue;
  readonly dataDir: string;
  readonly hostname: () => string;
  readonly ttl: () => number;
  readonly log: Logger;
  readonly intervalMs?: number;
  readonly now?: () => number;
  /** Told each Maildir written, after its commit (IDLE sessions). */
  readonly onDelivered?: (maildir: string) => void;
  /** Counters for the metrics endpoint. */
  readonly metrics?: Metrics;
}

export class LocalRetry {
  private readonly o: LocalRetryOptions;
  private readonly spoolDir: string;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(o: LocalRetryOptions) {
    this.o = o;
    this.spoolDir = join(o.dataDir, 'spool');
    mkdirSync(this.spoolDir, { recursive: true, mode: 0o700 });
  }

  start(): void {
    this.timer = setInterval(() => void this.runOnce(), this.o.intervalMs ?? 30_000);
    this.timer.unref();
  }

  /** One pass over the due local recipients; concurrent calls share the pass. */
  runOnce(): Promise<void> {
    if (!this.running) {
      this.running = this.pass().finally(() => {
        this.running = null;
      });
    }
    return this.running;
  }

  private async pass(): Promise<void> {
    const now = this.o.now?.() ?? Date.now();
    const q = this.o.queue;
    // claimDue records the attempt and its next retry time before we try (mox): a crash never retries in a storm.
    for await (const { message, recipients } of q.claimDue(now, (r) => r.transport === 'local')) {
      let spool: SpooledMessage | null = null;
      try {
        // Queued copies carry no Return-Path (smtp/inbound.ts): the Maildir copy gets it here.
        const returnPath = Buffer.from(`Return-Path: <${message.sender}>\r\n`);
        spool = await SpooledMessage.write(this.spoolDir, Readable.from(q.body(message.id)), { maxBytes: Number.MAX_SAFE_INTEGER, prefix: returnPath });
        const targets = recipients.map((r) => ({ path: r.route ?? '' }));
        const result = await deliverToMaildirs(spool, targets, { hostname: this.o.hostname() });
        const changes: RecipientChange[] = [];
        for (const d of result.delivered) {
          this.o.onDelivered?.(d.path);
          const r = recipients.find((x) => x.route === d.path);
          if (r) changes.push({ address: r.address, state: 'delivered' });
        }
        for (const f of result.failed) {
          const r = recipients.find((x) => x.route === f.target.path);
          if (!r) continue;
          const expired = now - message.created > this.o.ttl();
          changes.push(
            expired
              ? { address: r.address, state: 'failed', lastError: `expired: ${f.error.message}` }
              : { address: r.address, state: 'deferred', lastError: f.error.message },
          );
          this.o.log.warn({ qid: message.id, to: r.address, err: f.error.message, attempts: r.attempts, expired }, expired ? 'local delivery expired (no bounce yet: DSN comes with outbound delivery)' : 'local delivery deferred');
        }
        await q.update(message.id, changes);
        for (const c of changes) this.o.metrics?.deliveries.inc({ transport: 'local', status: c.state === 'failed' ? 'bounced' : c.state });
        for (const c of changes) if (c.state === 'delivered') this.o.log.info({ qid: message.id, to: c.address, status: 'sent', relay: 'maildir' }, 'delivered from queue');
      } catch (err) {
        this.o.log.error({ qid: message.id, err: (err as Error).message }, 'local retry failed');
      } finally {
        await spool?.remove();
      }
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}
