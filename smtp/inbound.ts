/**
 * Durable acceptance: what happens between the end of DATA and the 250.
 *
 * Design (mox's, chosen by measurement — bench/RESULTS.md): local
 * recipients are written straight into their Maildirs at DATA time (tmp/ →
 * fsync → new/ → fsync of the directory, one body written once and
 * hard-linked to every mailbox); relay recipients, and local ones whose
 * delivery failed temporarily (disk full, permissions), go into the LevelDB
 * queue in one synced, group-committed write. Only when both are done is the
 * client told 250. Compared with queue-first (OpenSMTPD, Postfix) a local
 * message costs one durable write instead of two, and a crash after the 250
 * cannot deliver it twice: nothing is left to redeliver. The other design's
 * guarantee is kept: a local delivery that fails temporarily is queued and
 * retried (local-retry.ts), never bounced, never lost.
 *
 * If the queue write itself fails the client gets 451 and will retry; any
 * mailbox already written then receives a second copy on that retry (logged).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable, Transform } from 'node:stream';
import { formatAddress, type MailAddress } from '../core/address.ts';
import type { Logger } from '../core/log.ts';
import { MessageTooLargeError, SpooledMessage, deliverToMaildirs, type MaildirTarget } from '../store/maildir.ts';
import { nextRetryDelay, type NewRecipient, type Queue } from '../store/queue.ts';
import type { AcceptedRecipient } from './session.ts';

export interface CommitRequest {
  readonly id: string;
  readonly stream: Readable;
  readonly prefix: Buffer;
  readonly sender: MailAddress | null;
  readonly recipients: readonly AcceptedRecipient[];
  readonly maxBytes: number;
  readonly log: Logger;
  /**
   * Mail from outside: `verify` reads the message as received and returns
   * header lines (Authentication-Results, Received-SPF) to put on top;
   * `filter` removes forged ones from the message on the way into its final
   * file. That costs one more pass over the spooled bytes (page cache, no
   * extra fsync).
   */
  readonly authenticate?: {
    verify(message: Readable): Promise<string>;
    filter(): Transform;
  };
}

export type CommitResult =
  | { readonly kind: 'too-big'; readonly size: number }
  | { readonly kind: 'accepted'; readonly size: number; readonly delivered: number; readonly queued: number; readonly queueId?: string };

export interface InboundCommit {
  commit(req: CommitRequest): Promise<CommitResult>;
}


export class MaildirFirstCommit implements InboundCommit {
  private readonly spoolDir: string;
  private readonly queue: Queue;
  private readonly hostname: () => string;
  private readonly onDelivered: ((maildir: string) => void) | undefined;

  /** `onDelivered` is told each Maildir written (after its commit), so IDLE sessions learn of new mail at once. */
  constructor(opts: { dataDir: string; queue: Queue; hostname: () => string; onDelivered?: (maildir: string) => void }) {
    this.spoolDir = join(opts.dataDir, 'spool');
    mkdirSync(this.spoolDir, { recursive: true, mode: 0o700 });
    this.queue = opts.queue;
    this.hostname = opts.hostname;
    this.onDelivered = opts.onDelivered;
  }

  async commit(req: CommitRequest): Promise<CommitResult> {
    // RFC 5321 §4.4: the delivering server records the envelope sender in Return-Path.
    // It is written for the Maildir copies only; queued copies are sent on without it.
    const returnPath = Buffer.from(`Return-Path: <${req.sender ? formatAddress(req.sender) : ''}>\r\n`);
    let spool: SpooledMessage;
    try {
      spool = await SpooledMessage.write(this.spoolDir, req.stream, { maxBytes: req.maxBytes, prefix: Buffer.concat([returnPath, req.prefix]) });
    } catch (err) {
      if (err instanceof MessageTooLargeError) {
        await drain(req.stream);
        return { kind: 'too-big', size: err.size };
      }
      throw err;
    }
    if (req.authenticate) {
      try {
        spool = await this.withAuthenticationResults(req, spool, returnPath);
      } catch (err) {
        await spool.remove();
        throw err;
      }
    }
    try {
      return await this.deliver(req, spool, returnPath.length);
    } finally {
      await spool.remove();
    }
  }

  /** The spooled message again, with the verification's headers on top and forged ones removed; the first spool is removed. */
  private async withAuthenticationResults(req: CommitRequest, spool: SpooledMessage, returnPath: Buffer): Promise<SpooledMessage> {
    const auth = req.authenticate!;
    const received = returnPath.length + req.prefix.length;
    let headers = '';
    try {
      headers = await auth.verify(spool.stream(received));
    } catch (err) {
      // A verifier bug must not cost the message: it goes on without the header (logged once).
      req.log.error({ id: req.id, err: err instanceof Error ? err.message : String(err) }, 'message authentication failed; delivered without Authentication-Results');
    }
    const source = spool.stream(received);
    const filter = auth.filter();
    source.on('error', (err) => filter.destroy(err));
    const next = await SpooledMessage.write(this.spoolDir, source.pipe(filter), {
      maxBytes: Number.MAX_SAFE_INTEGER,
      prefix: Buffer.concat([returnPath, Buffer.from(headers), req.prefix]),
    });
    await spool.remove();
    return next;
  }

  private async deliver(req: CommitRequest, spool: SpooledMessage, localOnlyBytes: number): Promise<CommitResult> {
    // One copy per distinct mailbox, even across recipients (two aliases of one user).
    const mailboxes = new Map<string, { target: MaildirTarget; address: MailAddress; action: string }>();
    const relays = new Map<string, NewRecipient>();
    for (const r of req.recipients) {
      for (const d of r.destinations) {
        if (d.kind === 'mailbox') {
          if (!mailboxes.has(d.path)) mailboxes.set(d.path, { target: { path: d.path }, address: d.address, action: d.action.name });
        } else {
          const address = formatAddress(d.address);
          const key = `${d.action.name}:${address.toLowerCase()}`;
          if (!relays.has(key)) relays.set(key, { address, transport: 'relay', action: d.action.name });
        }
      }
    }
    const queued: NewRecipient[] = [...relays.values()];
    const localErrors = new Map<string, string>();
    let delivered = 0;
    if (mailboxes.size > 0) {
      const result = await deliverToMaildirs(spool, [...mailboxes.values()].map((m) => m.target), { hostname: this.hostname() });
      delivered = result.delivered.length;
      for (const d of result.delivered) this.onDelivered?.(d.path);
      for (const f of result.failed) {
        const m = mailboxes.get(f.target.path)!;
        req.log.warn({ id: req.id, mailbox: f.target.path, err: f.error.message, temporary: f.error.temporary }, 'local delivery failed; queued for retry');
        queued.push({ address: formatAddress(m.address), transport: 'local', action: m.action, route: f.target.path });
        localErrors.set(formatAddress(m.address), f.error.message);
      }
    }
    const size = spool.size - localOnlyBytes;
    if (queued.length === 0) return { kind: 'accepted', size, delivered, queued: 0 };
    try {
      const msg = await this.queue.enqueue({
        sender: req.sender ? formatAddress(req.sender) : '',
        recipients: queued,
        body: spool.stream(localOnlyBytes),
        meta: { transaction: req.id },
      });
      // Local retries wait a little: whatever failed is unlikely to be fixed in the next second.
      const retry = queued.filter((q) => q.transport === 'local');
      if (retry.length > 0) {
        await this.queue.update(
          msg.id,
          retry.map((q) => ({ address: q.address, state: 'deferred' as const, nextAttempt: Date.now() + nextRetryDelay(0), lastError: localErrors.get(q.address) ?? 'local delivery failed' })),
        );
      }
      return { kind: 'accepted', size, delivered, queued: queued.length, queueId: msg.id };
    } catch (err) {
      if (delivered > 0) {
        req.log.error({ id: req.id, delivered, err: err instanceof Error ? err.message : String(err) }, 'queue write failed after local delivery: the client will retry and those mailboxes get a second copy');
      }
      throw err;
    }
  }
}

async function drain(stream: Readable): Promise<void> {
  if (stream.readableEnded) return;
  await new Promise<void>((resolve) => {
    stream.on('end', resolve);
    stream.on('error', () => resolve());
    stream.resume();
  });
}
