/**
 * The durable outbound/retry queue (SPEC §store, §smtp outbound, §ops
 * `queue show`). Every message, local mail included, goes through here.
 *
 * Layout, in the `queue` sublevel of the data directory's LevelDB:
 *   queue/m/ID            the envelope record (JSON): sender, recipients and
 *                         their delivery state, size, number of body chunks
 *   queue/b/ID/NNNNNN     the body, in chunks of CHUNK_SIZE bytes (binary)
 *   queue/t/TIME!ID       the due index: one empty entry per message that has
 *                         a recipient to try, TIME (16 digits, epoch ms) being
 *                         the earliest next attempt among them
 *   queue/x/due-index     "1" once the due index covers every message
 *
 * Invariants:
 * - An envelope and all its body chunks are written in ONE synced batch, so
 *   when `enqueue` resolves the message survives kill -9, and a message is
 *   never half there. The message and its body are deleted in one synced
 *   batch too, when its last recipient is delivered or failed, or on remove.
 * - Every state change is a synced write; nothing lives only in memory: a
 *   reopened queue is the queue.
 * - Concurrent writes share fsyncs (group commit, store/group-commit.ts).
 * - `claim` records the attempt and its next retry time *before* the caller
 *   dials (mox): a crash mid-delivery never causes a retry storm; at worst the
 *   attempt is repeated at its next retry time.
 * - Changes to one message are serialised (read-modify-write under a per-id
 *   lock); changes to a message that is gone are no-ops (a concurrent remove).
 * - The due index changes in the same batch as its envelope, so a pass over
 *   what is due reads only due messages (not every envelope: a queue of
 *   100,000 deferred messages costs nothing between their retries). Each due
 *   envelope is still read and checked, so an index entry can only cause a
 *   read, never a delivery by itself. A queue written before the index existed
 *   is indexed once, before the first operation, from its envelopes.
 *
 * Ids are Postfix-style long queue ids: sortable by creation time and unique
 * (48-bit ms time + 40 random bits, monotonic within the process), 18
 * characters of Crockford base32.
 */
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Store } from './db.ts';
import { GroupCommit, type GroupCommitStats } from './group-commit.ts';

export type RecipientState = 'pending' | 'deferred' | 'held' | 'delivered' | 'failed';
/** What a delivery attempt can conclude for a recipient. */
export type AttemptOutcome = 'delivered' | 'deferred' | 'failed';
export type Transport = 'local' | 'relay';

export interface QueuedRecipient {
  readonly address: string;
  readonly state: RecipientState;
  /** Attempts started (counted by `claim`, before dialling). */
  readonly attempts: number;
  /** Epoch ms; a pending or deferred recipient is due when this is <= now. */
  readonly nextAttempt: number;
  readonly lastError?: string;
  readonly transport: Transport;
  /** The config action name that routed this recipient. */
  readonly action: string;
  /** Where to: the Maildir path for local, a host for a smarthost relay… */
  readonly route?: string;
}

export interface QueuedMessage {
  readonly id: string;
  /** Epoch ms. */
  readonly created: number;
  /** '' is the null sender (bounces, delay warnings). */
  readonly sender: string;
  /** Body size in bytes. */
  readonly size: number;
  readonly recipients: readonly QueuedRecipient[];
  readonly meta?: Readonly<Record<string, string>>;
}

export interface NewRecipient {
  readonly address: string;
  readonly transport: Transport;
  readonly action: string;
  readonly route?: string;
}

export interface NewMessage {
  readonly sender: string;
  readonly recipients: readonly NewRecipient[];
  /** The whole message (headers and body), as received; a stream is read to its end. */
  readonly body: Uint8Array | AsyncIterable<Uint8Array | string>;
  readonly meta?: Readonly<Record<string, string>>;
}

export interface RecipientChange {
  readonly address: string;
  readonly state: AttemptOutcome;
  readonly lastError?: string;
  /** For `deferred`: when to retry (epoch ms). Default: the time `claim` set, else now + nextRetryDelay(attempts). */
  readonly nextAttempt?: number;
}

export interface DueGroup {
  readonly message: QueuedMessage;
  readonly recipients: readonly QueuedRecipient[];
}

export interface QueueOptions {
  /** Clock, epoch ms (tests inject a fake one). */
  readonly now?: () => number;
  /** Jitter source for nextRetryDelay, in [0, 1). */
  readonly random?: () => number;
  /** Batch concurrent writes into one synced write (default true; false is for measurements). */
  readonly groupCommit?: boolean;
}

/** One line of `appliance queue show --json` (SPEC §ops). Times are ISO 8601. */
export interface QueueShowEntry {
  id: string;
  created: string;
  sender: string;
  size: number;
  recipients: {
    address: string;
    state: RecipientState;
    attempts: number;
    next_attempt: string;
    last_error: string | null;
  }[];
}

export class QueueEntryNotFoundError extends Error {
  readonly id: string;
  constructor(id: string) {
    super(`no message ${id} in the queue`);
    this.name = 'QueueEntryNotFoundError';
    this.id = id;
  }
}

/** Body chunk size: no LevelDB value is larger than this. */
export const CHUNK_SIZE = 256 * 1024;

const RETRY_SCHEDULE_MS = [1, 5, 15, 30, 60, 120, 240].map((m) => m * 60_000);
const RETRY_CAP_MS = 4 * 60 * 60_000;

/**
 * Delay before the next attempt after `attempts` attempts (1 → 1 min, then
 * 5 min, 15 min, 30 min, 1 h, 2 h, 4 h, and 4 h thereafter), with ±10% jitter
 * so that retries of one outage spread out; never more than 4 h.
 */
export function nextRetryDelay(attempts: number, random: () => number = Math.random): number {
  const i = Math.min(Math.max(Math.floor(attempts), 1), RETRY_SCHEDULE_MS.length) - 1;
  const base = RETRY_SCHEDULE_MS[i]!;
  const jitter = 1 + (random() * 2 - 1) * 0.1;
  return Math.min(Math.round(base * jitter), RETRY_CAP_MS);
}

/** The `queue show --json` form of a message (SPEC §ops). */
export function toQueueShowEntry(m: QueuedMessage): QueueShowEntry {
  return {
    id: m.id,
    created: new Date(m.created).toISOString(),
    sender: m.sender,
    size: m.size,
    recipients: m.recipients.map((r) => ({
      address: r.address,
      state: r.state,
      attempts: r.attempts,
      next_attempt: new Date(r.nextAttempt).toISOString(),
      last_error: r.lastError ?? null,
    })),
  };
}

// ---------------------------------------------------------------------------
// Storage records

/** The stored envelope record: the message plus what only the store needs. */
interface MessageRecord {
  v: 1;
  id: string;
  created: number;
  sender: string;
  size: number;
  chunks: number;
  recipients: QueuedRecipient[];
  meta?: Record<string, string>;
}

/** The queue's two sublevels, named from the root so that one root batch can write both. */
function openSublevels(store: Store) {
  return {
    messages: store.level.sublevel<string, string>(['queue', 'm'], { valueEncoding: 'utf8' }),
    bodies: store.level.sublevel<string, Buffer>(['queue', 'b'], { valueEncoding: 'buffer' }),
    due: store.level.sublevel<string, string>(['queue', 't'], { valueEncoding: 'utf8' }),
    marks: store.level.sublevel<string, string>(['queue', 'x'], { valueEncoding: 'utf8' }),
  };
}
type Sublevels = ReturnType<typeof openSublevels>;
type Sublevel = Sublevels['messages'] | Sublevels['bodies'] | Sublevels['due'] | Sublevels['marks'];

const DUE_INDEX_MARK = 'due-index';
const DUE_BATCH = 128;

/** When the message next has something to try: the earliest next attempt of its active recipients. */
function nextDue(rec: MessageRecord): number | undefined {
  let t: number | undefined;
  for (const r of rec.recipients) if (ACTIVE.has(r.state) && (t === undefined || r.nextAttempt < t)) t = r.nextAttempt;
  return t;
}

function dueKey(time: number, id: string): string {
  return `${String(Math.max(0, Math.floor(time))).padStart(16, '0')}!${id}`;
}

type Op =
  | { type: 'put'; key: string; value: string | Buffer; sublevel: Sublevel }
  | { type: 'del'; key: string; sublevel: Sublevel };

/** classic-level's `sync` (fsync before the write resolves); see store/db.ts. */
const SYNC = { sync: true } as object;

const FINAL: ReadonlySet<RecipientState> = new Set(['delivered', 'failed']);
const ACTIVE: ReadonlySet<RecipientState> = new Set(['pending', 'deferred']);

function chunkKey(id: string, i: number): string {
  return `${id}/${String(i).padStart(6, '0')}`;
}

function toMessage(rec: MessageRecord): QueuedMessage {
  const m: { -readonly [K in keyof QueuedMessage]: QueuedMessage[K] } = {
    id: rec.id,
    created: rec.created,
    sender: rec.sender,
    size: rec.size,
    recipients: rec.recipients.map((r) => ({ ...r })),
  };
  if (rec.meta) m.meta = { ...rec.meta };
  return m;
}

// ---------------------------------------------------------------------------
// Ids

const B32 = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const RANDOM_SPACE = 2 ** 40;

function base32(n: number, width: number): string {
  let s = '';
  for (let i = 0; i < width; i++) {
    s = B32[n % 32]! + s;
    n = Math.floor(n / 32);
  }
  return s;
}

/** Sortable unique ids: 10 chars of ms time, 8 chars random, monotonic within the process. */
class IdMaker {
  private lastTime = -1;
  private lastRandom = 0;

  next(now: number): string {
    let time = Math.max(0, Math.floor(now));
    let rnd: number;
    if (time <= this.lastTime) {
      time = this.lastTime;
      rnd = this.lastRandom + 1;
      if (rnd >= RANDOM_SPACE) {
        time++;
        rnd = 0;
      }
    } else {
      rnd = randomBytes(5).readUIntBE(0, 5);
    }
    this.lastTime = time;
    this.lastRandom = rnd;
    return base32(time, 10) + base32(rnd, 8);
  }
}

// ---------------------------------------------------------------------------

export class Queue {
  private readonly store: Store;
  private readonly messages: Sublevels['messages'];
  private readonly bodies: Sublevels['bodies'];
  private readonly dueIndex: Sublevels['due'];
  private readonly marks: Sublevels['marks'];
  private indexed: Promise<void> | null = null;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly writer: GroupCommit<Op> | undefined;
  private readonly ids = new IdMaker();
  private readonly locks = new Map<string, Promise<void>>();
  private closed = false;

  private constructor(store: Store, opts: QueueOptions) {
    this.store = store;
    const { messages, bodies, due, marks } = openSublevels(store);
    this.messages = messages;
    this.bodies = bodies;
    this.dueIndex = due;
    this.marks = marks;
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.writer = opts.groupCommit === false ? undefined : new GroupCommit<Op>((ops) => this.writeBatch(ops));
  }

  /** The queue of an open store. Nothing is cached: the store is the queue. */
  static open(store: Store, opts: QueueOptions = {}): Queue {
    return new Queue(store, opts);
  }

  /** Group-commit counters (zeros when group commit is off). */
  get writeStats(): GroupCommitStats {
    return this.writer?.stats ?? { batches: 0, commits: 0, largestGroup: 0 };
  }

  /**
   * Stores a message for delivery. Resolves once envelope and body are
   * synced to disk (the moment SMTP may answer 250); every recipient is
   * `pending` and due at once.
   */
  async enqueue(msg: NewMessage): Promise<QueuedMessage> {
    this.checkOpen();
    if (msg.recipients.length === 0) throw new TypeError('a queued message needs at least one recipient');
    const seen = new Set<string>();
    for (const r of msg.recipients) {
      if (seen.has(r.address)) throw new TypeError(`recipient ${r.address} given twice`);
      seen.add(r.address);
    }
    await this.ensureDueIndex();
    const chunks = await readChunks(msg.body);
    const size = chunks.reduce((n, c) => n + c.length, 0);
    this.checkOpen();
    const created = this.now();
    const id = this.ids.next(created);
    const rec: MessageRecord = {
      v: 1,
      id,
      created,
      sender: msg.sender,
      size,
      chunks: chunks.length,
      recipients: msg.recipients.map((r) => {
        const q: { -readonly [K in keyof QueuedRecipient]: QueuedRecipient[K] } = {
          address: r.address,
          state: 'pending',
          attempts: 0,
          nextAttempt: created,
          transport: r.transport,
          action: r.action,
        };
        if (r.route !== undefined) q.route = r.route;
        return q;
      }),
    };
    if (msg.meta) rec.meta = { ...msg.meta };
    const ops: Op[] = chunks.map((value, i) => ({ type: 'put', key: chunkKey(id, i), value, sublevel: this.bodies }));
    ops.push({ type: 'put', key: id, value: JSON.stringify(rec), sublevel: this.messages });
    ops.push({ type: 'put', key: dueKey(created, id), value: '', sublevel: this.dueIndex });
    await this.commit(ops, size);
    return toMessage(rec);
  }

  async get(id: string): Promise<QueuedMessage | undefined> {
    const rec = await this.record(id);
    return rec && toMessage(rec);
  }

  /**
   * The body, streamed back chunk by chunk from one consistent snapshot.
   * The stream errors with QueueEntryNotFoundError for an unknown id.
   */
  body(id: string): Readable {
    const db = this.store.level;
    const messages = this.messages;
    const bodies = this.bodies;
    async function* chunks(): AsyncGenerator<Buffer> {
      const snapshot = db.snapshot();
      try {
        const raw = await messages.get(id, { snapshot });
        if (raw === undefined) throw new QueueEntryNotFoundError(id);
        const rec = JSON.parse(raw) as MessageRecord;
        let i = 0;
        for await (const [key, value] of bodies.iterator({ gte: `${id}/`, lt: `${id}0`, snapshot })) {
          if (key !== chunkKey(id, i)) throw new Error(`queue message ${id}: body chunk ${i} missing`);
          i++;
          yield value;
        }
        if (i !== rec.chunks) throw new Error(`queue message ${id}: ${rec.chunks} body chunks expected, ${i} found`);
      } finally {
        await snapshot.close();
      }
    }
    return Readable.from(chunks(), { objectMode: false });
  }

  /**
   * The whole body of a message read by `get`/`claim`, in memory (a relay
   * transaction sends it from memory anyway): one `getMany` of its chunk keys,
   * which follow from its size (every chunk but the last is CHUNK_SIZE), with
   * no envelope read and no iterator. Chunks are written and deleted in one
   * batch with their envelope, so a message removed meanwhile shows as
   * missing chunks: QueueEntryNotFoundError.
   */
  async bodyOf(message: Pick<QueuedMessage, 'id' | 'size'>): Promise<Buffer> {
    const { id, size } = message;
    const keys = Array.from({ length: Math.ceil(size / CHUNK_SIZE) }, (_, i) => chunkKey(id, i));
    if (keys.length === 0) {
      if ((await this.messages.get(id)) === undefined) throw new QueueEntryNotFoundError(id);
      return Buffer.alloc(0);
    }
    const chunks = await this.bodies.getMany(keys);
    if (chunks.some((c) => c === undefined)) {
      if (chunks.every((c) => c === undefined)) throw new QueueEntryNotFoundError(id);
      throw new Error(`queue message ${id}: body chunk ${chunks.indexOf(undefined)} missing`);
    }
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks as Buffer[]);
    if (body.length !== size) throw new Error(`queue message ${id}: ${size} body bytes expected, ${body.length} found`);
    return body;
  }

  /** Every queued message, oldest first (by id, i.e. by arrival). */
  async *list(): AsyncGenerator<QueuedMessage> {
    for await (const raw of this.messages.values()) yield toMessage(JSON.parse(raw) as MessageRecord);
  }

  async count(): Promise<number> {
    let n = 0;
    for await (const _ of this.messages.keys()) n++;
    return n;
  }

  /**
   * Recipients due at `now` (pending or deferred, nextAttempt <= now, and
   * accepted by `filter`), grouped per message, oldest message first.
   * Marks nothing: see `claim`.
   */
  async *due(now: number = this.now(), filter?: (r: QueuedRecipient, m: QueuedMessage) => boolean): AsyncGenerator<DueGroup> {
    await this.ensureDueIndex();
    // The iterator reads a snapshot of the index: entries that callers move while we go
    // (claims push them into the future) are neither lost nor seen twice.
    // Envelopes are fetched DUE_BATCH at a time (one getMany), not one random read each.
    let ids: string[] = [];
    const flush = async function* (this: Queue): AsyncGenerator<DueGroup> {
      const raws = await this.messages.getMany(ids);
      ids = [];
      for (const raw of raws) {
        if (raw === undefined) continue;
        const message = toMessage(JSON.parse(raw) as MessageRecord);
        const recipients = message.recipients.filter((r) => isDue(r, now) && (!filter || filter(r, message)));
        if (recipients.length > 0) yield { message, recipients };
      }
    };
    for await (const key of this.dueIndex.keys({ lt: dueKey(now + 1, '') })) {
      ids.push(key.slice(key.indexOf('!') + 1));
      if (ids.length >= DUE_BATCH) yield* flush.call(this);
    }
    if (ids.length > 0) yield* flush.call(this);
  }

  /**
   * Starts an attempt for these recipients of a message: for each that is
   * still due, counts the attempt and records its next retry time
   * (now + nextRetryDelay(attempts)), synced, before the caller dials. Returns
   * the recipients claimed (none if another runner claimed them first, or the
   * message is gone); their `nextAttempt` is the retry time recorded.
   */
  async claim(id: string, addresses: readonly string[], now: number = this.now()): Promise<DueGroup | undefined> {
    const wanted = new Set(addresses);
    return this.modify(id, (rec) => {
      const claimed: QueuedRecipient[] = [];
      rec.recipients = rec.recipients.map((r) => {
        if (!wanted.has(r.address) || !isDue(r, now)) return r;
        const attempts = r.attempts + 1;
        const c = { ...r, attempts, nextAttempt: now + nextRetryDelay(attempts, this.random) };
        claimed.push(c);
        return c;
      });
      return { write: claimed.length > 0, result: claimed.length > 0 ? { message: toMessage(rec), recipients: claimed } : undefined };
    });
  }

  /**
   * `due` and `claim` together: yields only what this caller claimed, oldest
   * first. Claims are made DUE_BATCH at a time, concurrently, so group commit
   * writes each batch of them with one fsync (one synced write per message
   * otherwise); each is still synced before it is yielded.
   */
  async *claimDue(now: number = this.now(), filter?: (r: QueuedRecipient, m: QueuedMessage) => boolean): AsyncGenerator<DueGroup> {
    let batch: DueGroup[] = [];
    const claimBatch = (): Promise<(DueGroup | undefined)[]> => {
      const groups = batch;
      batch = [];
      return Promise.all(groups.map((g) => this.claim(g.message.id, g.recipients.map((r) => r.address), now)));
    };
    for await (const group of this.due(now, filter)) {
      batch.push(group);
      if (batch.length < DUE_BATCH) continue;
      for (const claimed of await claimBatch()) if (claimed) yield claimed;
    }
    for (const claimed of await claimBatch()) if (claimed) yield claimed;
  }

  /**
   * Records attempt outcomes. A recipient already delivered or failed is left
   * alone; a held recipient stays held when deferred. When no recipient is
   * left to deliver, the message and its body are deleted in the same synced
   * batch. Unknown ids and addresses are ignored (a concurrent remove).
   */
  async update(id: string, changes: readonly RecipientChange[]): Promise<void> {
    const now = this.now();
    const byAddress = new Map(changes.map((c) => [c.address, c]));
    await this.modify(id, (rec) => {
      let changed = false;
      rec.recipients = rec.recipients.map((r) => {
        const c = byAddress.get(r.address);
        if (!c || FINAL.has(r.state)) return r;
        changed = true;
        const u: { -readonly [K in keyof QueuedRecipient]: QueuedRecipient[K] } = { ...r };
        if (c.lastError !== undefined) u.lastError = c.lastError;
        if (c.state === 'deferred') {
          if (r.state !== 'held') u.state = 'deferred';
          u.nextAttempt =
            c.nextAttempt ?? (r.nextAttempt > now ? r.nextAttempt : now + nextRetryDelay(Math.max(1, r.attempts), this.random));
        } else {
          u.state = c.state;
        }
        return u;
      });
      return { write: changed, result: undefined };
    });
  }

  /** Holds the message: no recipient is due until release. False if there is no such message. */
  /** Merges metadata into a message (e.g. how many delay warnings were sent); false for an unknown id. */
  async annotate(id: string, meta: Readonly<Record<string, string>>): Promise<boolean> {
    const r = await this.modify(id, (rec) => {
      rec.meta = { ...(rec.meta ?? {}), ...meta };
      return { write: true, result: true };
    });
    return r === true;
  }

  hold(id: string): Promise<boolean> {
    return this.setStates(id, (r) => (ACTIVE.has(r.state) ? { ...r, state: 'held' } : r));
  }

  /** Releases a held message: held recipients become pending (never tried) or deferred, due at their retry time. */
  release(id: string): Promise<boolean> {
    return this.setStates(id, (r) => (r.state === 'held' ? { ...r, state: r.attempts > 0 ? 'deferred' : 'pending' } : r));
  }

  /** Makes the message's pending/deferred recipients due now (`queue flush`). */
  schedule(id: string, now: number = this.now()): Promise<boolean> {
    return this.setStates(id, (r) => (ACTIVE.has(r.state) && r.nextAttempt > now ? { ...r, nextAttempt: now } : r));
  }

  /** Deletes the message and its body, without a bounce (`smtpctl remove`). False if there is no such message. */
  async remove(id: string): Promise<boolean> {
    await this.ensureDueIndex();
    return this.withLock(id, async () => {
      const rec = await this.record(id);
      if (!rec) return false;
      await this.commit(this.deleteOps(rec));
      return true;
    });
  }

  /** Waits for writes in flight; further calls that write throw. Does not close the store. */
  async close(): Promise<void> {
    this.closed = true;
    await this.writer?.drain();
    await Promise.all([...this.locks.values()]);
  }

  // -------------------------------------------------------------------------

  private checkOpen(): void {
    if (this.closed) throw new Error('the queue is closed');
  }

  private async record(id: string): Promise<MessageRecord | undefined> {
    const raw = await this.messages.get(id);
    return raw === undefined ? undefined : (JSON.parse(raw) as MessageRecord);
  }

  private deleteOps(rec: MessageRecord): Op[] {
    const ops: Op[] = [{ type: 'del', key: rec.id, sublevel: this.messages }];
    const due = nextDue(rec);
    if (due !== undefined) ops.push({ type: 'del', key: dueKey(due, rec.id), sublevel: this.dueIndex });
    for (let i = 0; i < rec.chunks; i++) ops.push({ type: 'del', key: chunkKey(rec.id, i), sublevel: this.bodies });
    return ops;
  }

  private async setStates(id: string, f: (r: QueuedRecipient) => QueuedRecipient): Promise<boolean> {
    return this.modify(id, (rec) => {
      let changed = false;
      rec.recipients = rec.recipients.map((r) => {
        const u = f(r);
        if (u !== r) changed = true;
        return u;
      });
      return { write: changed, result: true };
    }).then((r) => r ?? false);
  }

  /**
   * Read-modify-write of one record under its lock. `f` edits the record;
   * when it asks to write, the record is stored, or deleted with its body
   * if no recipient is left to deliver. Undefined if there is no such message.
   */
  private async modify<T>(id: string, f: (rec: MessageRecord) => { write: boolean; result: T }): Promise<T | undefined> {
    this.checkOpen();
    await this.ensureDueIndex();
    return this.withLock(id, async () => {
      const rec = await this.record(id);
      if (!rec) return undefined;
      const dueBefore = nextDue(rec);
      const { write, result } = f(rec);
      if (write) {
        const done = rec.recipients.every((r) => FINAL.has(r.state));
        const ops: Op[] = [];
        if (dueBefore !== undefined) ops.push({ type: 'del', key: dueKey(dueBefore, id), sublevel: this.dueIndex });
        if (done) {
          ops.push(...this.deleteOps({ ...rec, recipients: [] }));
        } else {
          ops.push({ type: 'put', key: id, value: JSON.stringify(rec), sublevel: this.messages });
          const dueAfter = nextDue(rec);
          if (dueAfter !== undefined) ops.push({ type: 'put', key: dueKey(dueAfter, id), value: '', sublevel: this.dueIndex });
        }
        await this.commit(ops);
      }
      return result;
    });
  }

  /**
   * Builds the due index of a queue written before it existed (or whose build
   * was interrupted): every envelope read once, the entries and the mark in
   * one synced batch. Every operation waits for it, so nothing races it.
   */
  private ensureDueIndex(): Promise<void> {
    this.indexed ??= (async () => {
      if ((await this.marks.get(DUE_INDEX_MARK)) === '1') return;
      const ops: Op[] = [];
      for await (const key of this.dueIndex.keys()) ops.push({ type: 'del', key, sublevel: this.dueIndex });
      for await (const raw of this.messages.values()) {
        const rec = JSON.parse(raw) as MessageRecord;
        const due = nextDue(rec);
        if (due !== undefined) ops.push({ type: 'put', key: dueKey(due, rec.id), value: '', sublevel: this.dueIndex });
      }
      ops.push({ type: 'put', key: DUE_INDEX_MARK, value: '1', sublevel: this.marks });
      await this.writeBatch(ops);
    })().catch((err: unknown) => {
      this.indexed = null; // try again with the next operation
      throw err;
    });
    return this.indexed;
  }

  private async withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id);
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    this.locks.set(id, mine);
    try {
      if (prev) await prev;
      return await fn();
    } finally {
      release();
      if (this.locks.get(id) === mine) this.locks.delete(id);
    }
  }

  private commit(ops: Op[], bytes = 0): Promise<void> {
    return this.writer ? this.writer.commit(ops, bytes) : this.writeBatch(ops);
  }

  private async writeBatch(ops: Op[]): Promise<void> {
    await this.store.level.batch<string, string | Buffer>(ops, SYNC);
  }
}

function isDue(r: QueuedRecipient, now: number): boolean {
  return ACTIVE.has(r.state) && r.nextAttempt <= now;
}

/**
 * The body as a list of CHUNK_SIZE pieces (the last one shorter). A Buffer is
 * sliced without copying; a stream is re-cut as it comes, never concatenated
 * into one buffer.
 */
async function readChunks(body: Uint8Array | AsyncIterable<Uint8Array | string>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  if (body instanceof Uint8Array) {
    const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    for (let off = 0; off < buf.length; off += CHUNK_SIZE) out.push(buf.subarray(off, off + CHUNK_SIZE));
    return out;
  }
  let parts: Buffer[] = [];
  let partsLength = 0;
  for await (const piece of body) {
    let buf = typeof piece === 'string' ? Buffer.from(piece) : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
    while (buf.length > 0) {
      const take = Math.min(CHUNK_SIZE - partsLength, buf.length);
      parts.push(buf.subarray(0, take));
      partsLength += take;
      buf = buf.subarray(take);
      if (partsLength === CHUNK_SIZE) {
        out.push(Buffer.concat(parts, partsLength));
        parts = [];
        partsLength = 0;
      }
    }
  }
  if (partsLength > 0) out.push(Buffer.concat(parts, partsLength));
  return out;
}
