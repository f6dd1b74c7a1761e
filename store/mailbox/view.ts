/**
 * A session's view of a mailbox: a snapshot of the messages as of its last
 * `sync()`, diffed against the shared MailboxState. The view's own writes
 * (setFlags, expunge, MOVE out of it) update its snapshot at once and are
 * not reported again by `sync()`; everything else — other views, deliveries,
 * other programs — is reported by `sync()` only, so the IMAP layer decides
 * when to announce it (RFC 3501 §7.4.1, §5.5).
 */
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { Readable } from 'node:stream';
import { MessageGoneError, NoPermissionError } from './errors.ts';
import type { Entry, MailboxState } from './mailbox-state.ts';
import type { Flag, FlagOperation, MailboxChanges, MailboxView, MessageRecord, MessageSummary } from './types.ts';

export class View implements MailboxView {
  readonly name: string;
  readonly readOnly: boolean;
  messages: readonly MessageRecord[] = [];
  recentUids: ReadonlySet<number> = new Set();
  uidValidity = 0;
  uidNext = 1;
  highestModseq = 1;
  private seenVersion = -1;
  private closed = false;
  private readonly unlisten: (() => void)[] = [];
  readonly state: MailboxState;
  private readonly release: () => void;

  constructor(state: MailboxState, name: string, readOnly: boolean, release: () => void) {
    this.state = state;
    this.name = name;
    this.readOnly = readOnly;
    this.release = release;
  }

  /** The first snapshot (SELECT/EXAMINE): everything is "added", nothing reported. */
  async init(): Promise<void> {
    await this.sync();
  }

  async sync(): Promise<MailboxChanges> {
    const claimed = await this.state.mutex.run(async () => {
      await this.state.scan();
      // A read-write session takes the \Recent messages (new/ → cur/); a read-only one only sees them.
      if (this.readOnly) return this.state.recentUids();
      return this.state.claimRecent();
    });
    this.uidValidity = this.state.uidValidity;
    this.uidNext = this.state.nextUid;
    this.highestModseq = this.state.highestModseq;
    const changes = this.diff();
    if (claimed.length > 0 || changes.expunged.length > 0) {
      const recent = new Set(this.recentUids);
      for (const uid of claimed) recent.add(uid);
      for (const uid of changes.expunged) recent.delete(uid);
      this.recentUids = recent;
    }
    return changes;
  }

  private diff(): MailboxChanges {
    const current = this.state.records();
    if (this.seenVersion === this.state.version && this.seenVersion >= 0) return { added: [], expunged: [], flagsChanged: [] };
    const old = this.messages;
    const added: MessageRecord[] = [];
    const expunged: number[] = [];
    const flagsChanged: MessageRecord[] = [];
    let i = 0;
    let j = 0;
    while (i < old.length || j < current.length) {
      const a = old[i];
      const b = current[j];
      if (a && (!b || a.uid < b.uid)) {
        expunged.push(a.uid);
        i++;
      } else if (b && (!a || b.uid < a.uid)) {
        added.push(b);
        j++;
      } else {
        if (a !== b && a!.modseq !== b!.modseq && a!.flags.join(' ') !== b!.flags.join(' ')) flagsChanged.push(b!);
        i++;
        j++;
      }
    }
    this.messages = current;
    this.seenVersion = this.state.version;
    return { added, expunged, flagsChanged };
  }

  onChange(listener: () => void): () => void {
    const off = this.state.listen(this, listener);
    this.unlisten.push(off);
    return off;
  }

  private assertWritable(): void {
    if (this.readOnly) throw new NoPermissionError(`mailbox ${this.name} is open read-only`);
  }

  /** Replaces records of this view's snapshot by UID (own changes are not echoed by sync). */
  private patch(records: readonly MessageRecord[], removed: readonly number[]): void {
    if (records.length === 0 && removed.length === 0) return;
    const byUid = new Map(records.map((r) => [r.uid, r]));
    const gone = new Set(removed);
    this.messages = this.messages.filter((m) => !gone.has(m.uid)).map((m) => byUid.get(m.uid) ?? m);
    if (removed.length > 0 && [...this.recentUids].some((u) => gone.has(u))) this.recentUids = new Set([...this.recentUids].filter((u) => !gone.has(u)));
  }

  async setFlags(uids: readonly number[], op: FlagOperation, flags: readonly Flag[]): Promise<readonly MessageRecord[]> {
    this.assertWritable();
    const known = this.knownUids(uids);
    const records = await this.state.mutex.run(() => this.state.setFlags(known, op, flags, this));
    this.patch(records, []);
    this.highestModseq = Math.max(this.highestModseq, this.state.highestModseq);
    return records;
  }

  async expunge(uids?: readonly number[]): Promise<readonly number[]> {
    this.assertWritable();
    const candidates = uids ? this.knownUids(uids) : this.messages.map((m) => m.uid);
    const removed = await this.state.mutex.run(() => this.state.expunge(candidates, true, this));
    this.patch([], removed);
    return removed;
  }

  /** Removes UIDs whatever their flags (MOVE). */
  async removeMoved(uids: readonly number[]): Promise<readonly number[]> {
    this.assertWritable();
    const removed = await this.state.mutex.run(() => this.state.expunge(this.knownUids(uids), false, this));
    this.patch([], removed);
    return removed;
  }

  private knownUids(uids: readonly number[]): number[] {
    const mine = new Set(this.messages.map((m) => m.uid));
    return uids.filter((u) => mine.has(u));
  }

  entry(uid: number): Entry {
    const e = this.state.entries.get(uid);
    if (!e) throw new MessageGoneError(uid);
    return e;
  }

  /** Opens the message file, re-scanning once if another program renamed it. */
  private async openEntry(uid: number): Promise<{ e: Entry; fh: fsp.FileHandle }> {
    for (let attempt = 0; ; attempt++) {
      const e = this.entry(uid);
      try {
        return { e, fh: await fsp.open(this.state.path(e), 'r') };
      } catch (err) {
        if ((err as { code?: string }).code !== 'ENOENT' || attempt > 0) {
          if ((err as { code?: string }).code === 'ENOENT') throw new MessageGoneError(uid);
          throw err;
        }
        await this.state.refresh();
      }
    }
  }

  async read(uid: number, start = 0, end?: number): Promise<Readable> {
    const { e, fh } = await this.openEntry(uid);
    const stop = Math.min(end ?? e.vsize, e.vsize);
    const from = Math.max(0, Math.min(start, stop));
    if (!e.bareLf) {
      if (stop - from <= SMALL_READ) return Readable.from(stop > from ? [await readRange(fh, from, stop)] : []);
      return createReadStream('', { fd: fh, start: from, end: stop - 1, autoClose: true });
    }
    return Readable.from(normalized(fh, from, stop));
  }

  async readBuffer(uid: number, start = 0, end?: number): Promise<Buffer> {
    const { e, fh } = await this.openEntry(uid);
    const stop = Math.min(end ?? e.vsize, e.vsize);
    const from = Math.max(0, Math.min(start, stop));
    if (!e.bareLf) return readRange(fh, from, stop);
    const parts: Buffer[] = [];
    for await (const c of normalized(fh, from, stop)) parts.push(c);
    return Buffer.concat(parts);
  }

  async summary(uid: number): Promise<MessageSummary> {
    const e = this.entry(uid);
    try {
      return await this.state.summary(e);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') {
        await this.state.refresh();
        const again = this.entry(uid);
        try {
          return await this.state.summary(again);
        } catch (err2) {
          if ((err2 as { code?: string }).code === 'ENOENT') throw new MessageGoneError(uid);
          throw err2;
        }
      }
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const off of this.unlisten) off();
    this.release();
  }
}

/** The file's bytes with bare LF → CRLF, the range [from, to) of that form, one buffer per 64 KiB read. Closes the handle. */
async function* normalized(fh: fsp.FileHandle, from: number, to: number): AsyncGenerator<Buffer> {
  try {
    let out = 0; // offset in the CRLF form
    let prevCr = false;
    const buf = Buffer.alloc(64 * 1024);
    let pos = 0;
    while (out < to) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (bytesRead === 0) break;
      pos += bytesRead;
      const src = buf.subarray(0, bytesRead);
      const dst = Buffer.allocUnsafe(src.length * 2);
      let d = 0;
      let s = 0;
      for (let i = src.indexOf(0x0a); i >= 0; i = src.indexOf(0x0a, i + 1)) {
        const cr = i > 0 ? src[i - 1] === 0x0d : prevCr;
        if (cr) continue;
        d += src.copy(dst, d, s, i);
        dst[d++] = 0x0d;
        dst[d++] = 0x0a;
        s = i + 1;
      }
      d += src.copy(dst, d, s);
      prevCr = src[src.length - 1] === 0x0d;
      const start = out;
      out += d;
      if (out <= from) continue;
      yield dst.subarray(Math.max(0, from - start), Math.min(d, to - start));
    }
  } finally {
    await fh.close();
  }
}

/** Up to this size a read is one buffer (a stream per small message costs more than the read). */
const SMALL_READ = 256 * 1024;

/** Bytes [from, to) of the file; closes the handle. */
async function readRange(fh: fsp.FileHandle, from: number, to: number): Promise<Buffer> {
  try {
    const buf = Buffer.allocUnsafe(to - from);
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await fh.read(buf, off, buf.length - off, from + off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    return off === buf.length ? buf : buf.subarray(0, off);
  } finally {
    await fh.close();
  }
}
