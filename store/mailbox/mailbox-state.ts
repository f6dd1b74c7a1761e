/**
 * One mailbox directory as this process knows it, shared by every view on it
 * (and by APPEND/COPY into it). It holds the current truth — UID → file,
 * flags, sizes — re-read from the directory on `refresh()` and changed by our
 * own writes, all serialised by one async mutex. Views keep their own
 * snapshots and diff against this state (view.ts).
 *
 * The directory is the truth for which messages exist and their flags (file
 * names); dovecot-uidlist for UIDs; the index cache only saves reads and
 * stats. A file seen for the first time gets its UID under the uidlist lock
 * (appended), its internal date from its mtime (as Dovecot), its CRLF size
 * from `,W=` in its name or, failing that, one streaming read that also
 * computes its MessageSummary.
 */
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../core/log.ts';
import { curName, flagsOfInfo, infoOfFlags, parseFileName, canonicalSystemFlag } from './filename.ts';
import type { CachedMessage, IndexCache } from './index-cache.ts';
import { MAX_KEYWORDS, addKeywords, readKeywords } from './keywords.ts';
import { MimeParser, type ParseResult } from './mime.ts';
import { KeywordLimitError } from './errors.ts';
import type { Flag, FlagOperation, MessageRecord, MessageSummary } from './types.ts';
import { UIDLIST, UidlistCorruptError, appendUidlist, lockUidlist, newMailboxGuid, readUidlist, readUidlistTail, rewriteUidlist, uidlistStamp, type Uidlist, type UidlistRecord } from './uidlist.ts';

/** tmp/ files older than this are leftovers of a crash (Maildir spec, Dovecot: 36 hours). */
const TMP_MAX_AGE_MS = 36 * 3600 * 1000;

/** File renames/unlinks in flight at once for one operation. */
const PARALLEL_FS = 8;

/** Summaries read from the index in one round trip when one is asked for. */
const READ_AHEAD = 64;
/** Messages parsed at once (this one and the next ones) when the index has no summary. */
const PARSE_AHEAD = 8;
const SUMMARY_WINDOW = 256;

/** dovecot-uidlist is rewritten without dead records once there are this many and they are a quarter of all. */
const COMPACT_MIN_DEAD = 32;

const KEYWORD = /^[^\u0000-\u0020\u007f-\uffff(){%*"\\\]]{1,200}$/;

export interface Entry {
  readonly uid: number;
  readonly base: string;
  sub: 'new' | 'cur';
  /** The file's current name in `sub` (a file in new/ may carry info too, as Dovecot leaves it). */
  name: string;
  info: string;
  readonly vsize: number;
  readonly bareLf: boolean;
  readonly mtimeMs: number;
  record: MessageRecord;
}

/** A file to add (APPEND/COPY): already complete in tmp/. */
export interface NewFile {
  readonly tmpPath: string;
  readonly base: string;
  readonly flags: readonly Flag[];
  readonly vsize: number;
  readonly bareLf: boolean;
  readonly mtimeMs: number;
  readonly summary?: MessageSummary;
}

export interface StateContext {
  readonly cache: IndexCache;
  readonly log: Logger;
  /** Counts file reads done to learn sizes/summaries (tests: "opens without reading bodies"). */
  readonly counters: { bodyReads: number };
  /** The clock for housekeeping (tests); default Date.now. */
  readonly now?: () => number;
}

/** Serialises async sections. */
export class Mutex {
  private tail: Promise<void> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tail.then(fn);
    this.tail = p.then(
      () => undefined,
      () => undefined,
    );
    return p;
  }
}

let lastUidValidity = 0;
/** Dovecot's way: the current time, strictly increasing within the process. */
export function nextUidValidity(): number {
  lastUidValidity = Math.max(Math.floor(Date.now() / 1000), lastUidValidity + 1);
  return lastUidValidity;
}

/** Creates the uidlist of a new mailbox unless one exists (under its lock; `locked`: the caller holds it). */
export async function initUidlist(dir: string, locked = false): Promise<Uidlist> {
  const init = async (): Promise<Uidlist> => {
    const existing = await readUidlist(dir, true);
    if (existing) return existing.uidlist;
    const u: Uidlist = { uidValidity: nextUidValidity(), nextUid: 1, guid: newMailboxGuid(), records: [] };
    await rewriteUidlist(dir, u);
    return u;
  };
  return locked ? init() : lockUidlist(dir, init);
}

export class MailboxState {
  dir: string;
  readonly mutex = new Mutex();
  readonly entries = new Map<number, Entry>();
  uidValidity = 0;
  guid = '';
  nextUid = 1;
  highestModseq = 1;
  /** Changes whenever `entries` changes (views compare it). */
  version = 0;
  refs = 0;
  /** Set when the directory was deleted or renamed away under us. */
  gone = false;
  private keywords: string[] = [];
  private keywordsStamp = '';
  private uidlistStampValue: string | undefined;
  /** The uidlist file read last and how many bytes of it were parsed (append-only reads). */
  private uidlistIno: bigint | undefined;
  private uidlistOffset = 0;
  private uidlistBases = new Map<string, number>();
  private dirStamp = { new: '', cur: '' };
  private loaded = false;
  private sorted: MessageRecord[] | undefined;
  private readonly listeners = new Set<{ fn: () => void; owner: unknown }>();
  private notifyScheduled = false;
  private notifyExcept: Set<unknown> | undefined;
  private readonly ctx: StateContext;

  constructor(dir: string, ctx: StateContext) {
    this.dir = dir;
    this.ctx = ctx;
  }

  /** Messages ascending by UID (the array is replaced, never mutated, when anything changes). */
  records(): readonly MessageRecord[] {
    if (!this.sorted) this.sorted = [...this.entries.values()].map((e) => e.record).sort((a, b) => a.uid - b.uid);
    return this.sorted;
  }

  /** Messages in new/ (\Recent, not yet claimed by a session). */
  recentUids(): number[] {
    const out: number[] = [];
    for (const e of this.entries.values()) if (e.sub === 'new') out.push(e.uid);
    return out.sort((a, b) => a - b);
  }

  listen(owner: unknown, fn: () => void): () => void {
    const l = { fn, owner };
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Wakes listeners (coalesced, on the next tick); `except` is the writer, who knows. */
  notify(except?: unknown): void {
    if (!this.notifyScheduled) {
      this.notifyScheduled = true;
      this.notifyExcept = except === undefined ? undefined : new Set([except]);
      setImmediate(() => {
        this.notifyScheduled = false;
        const skip = this.notifyExcept;
        this.notifyExcept = undefined;
        for (const l of [...this.listeners]) {
          if (skip?.has(l.owner)) continue;
          try {
            l.fn();
          } catch (err) {
            this.ctx.log.error({ err, dir: this.dir }, 'mailbox change listener failed');
          }
        }
      });
    } else if (this.notifyExcept !== undefined) {
      // A second writer (or an outside event) in the same tick: everyone but a single common writer hears it.
      if (except === undefined || !this.notifyExcept.has(except)) this.notifyExcept = undefined;
    }
  }

  path(e: Entry): string {
    return join(this.dir, e.sub, e.name);
  }

  refresh(): Promise<boolean> {
    return this.mutex.run(() => this.scan());
  }

  private changed(): void {
    this.version++;
    this.sorted = undefined;
  }

  /** The flags of an info string, one frozen array per distinct string (most messages share a few). */
  private flagsOf(info: string): readonly Flag[] {
    let f = this.flagsByInfo.get(info);
    if (!f) {
      if (this.flagsByInfo.size > 4096) this.flagsByInfo.clear();
      f = Object.freeze(flagsOfInfo(info, this.keywords));
      this.flagsByInfo.set(info, f);
    }
    return f;
  }

  private readonly flagsByInfo = new Map<string, readonly Flag[]>();

  private async refreshKeywords(): Promise<void> {
    let stamp = '';
    try {
      const st = await fsp.stat(join(this.dir, 'dovecot-keywords'), { bigint: true });
      stamp = `${st.ino}:${st.size}:${st.mtimeNs}`;
    } catch {
      stamp = 'none';
    }
    if (stamp === this.keywordsStamp) return;
    this.keywords = await readKeywords(this.dir);
    this.keywordsStamp = stamp;
    this.flagsByInfo.clear();
  }

  /** new/ and cur/ stamps; `dirty` when changed within the last 2 s (it may change again within its timestamp's granularity: never trusted). */
  private async readDirStamp(): Promise<{ new: string; cur: string; raw: string }> {
    const [n, c] = await Promise.all([fsp.stat(join(this.dir, 'new'), { bigint: true }), fsp.stat(join(this.dir, 'cur'), { bigint: true })]);
    const now = BigInt(Date.now()) * 1_000_000n;
    const stamp = (st: typeof n): string => (now - st.mtimeNs < 2_000_000_000n ? 'dirty' : `${st.ino}:${st.mtimeNs}`);
    return { new: stamp(n), cur: stamp(c), raw: `${n.ino}:${n.mtimeNs}:${c.ino}:${c.mtimeNs}` };
  }

  /** Re-reads the directory and the control files; returns whether anything changed. Caller holds the mutex. */
  async scan(): Promise<boolean> {
    let dirStamp: { new: string; cur: string; raw: string };
    try {
      dirStamp = await this.readDirStamp();
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') throw err;
      // The mailbox was deleted (or renamed by another program): everything is gone.
      this.gone = true;
      if (this.entries.size === 0) return false;
      this.entries.clear();
      this.changed();
      return true;
    }
    const ulStamp = await uidlistStamp(this.dir);
    await this.refreshKeywords();
    const newSame = this.loaded && dirStamp.new !== 'dirty' && dirStamp.new === this.dirStamp.new;
    const curSame = this.loaded && dirStamp.cur !== 'dirty' && dirStamp.cur === this.dirStamp.cur;
    if (newSame && curSame && ulStamp === this.uidlistStampValue) return false;

    // An unchanged directory is not listed again: its files are those we know (a delivery only touches new/).
    // A rename by another program while we list may hide a file from readdir: list again until the
    // directories held still, and if they never do, expunge nothing this time.
    let files = await this.listFiles(newSame ? 'new' : curSame ? 'cur' : undefined);
    let stable = false;
    for (let attempt = 0; attempt < 3; attempt++) {
      const after = await this.readDirStamp().catch(() => undefined);
      if (after?.raw === dirStamp.raw) {
        stable = true;
        break;
      }
      if (!after) break;
      dirStamp = after;
      files = await this.listFiles();
    }
    await this.readUidlistState(ulStamp);
    let cacheEntries: Map<number, CachedMessage> | undefined;
    if (!this.loaded) {
      const { meta, entries } = await this.ctx.cache.load(this.guid, this.uidValidity);
      cacheEntries = entries;
      if (meta) this.highestModseq = Math.max(this.highestModseq, meta.highestModseq);
    }

    // Files without a UID yet, or whose UID we saw expunged: a reappearing file gets a new one, as in Dovecot.
    const needsUid = (base: string): boolean => {
      const uid = this.uidlistBases.get(base);
      return uid === undefined || (this.expunged.size > 0 && this.expunged.has(uid));
    };
    const fresh = [...files.keys()].filter(needsUid);
    if (fresh.length > 0) {
      await lockUidlist(this.dir, async () => {
        const cur = await this.readUidlistState(await uidlistStamp(this.dir), true);
        const add: UidlistRecord[] = [];
        let next = Math.max(cur.nextUid, this.nextUid);
        for (const base of fresh.sort()) {
          if (!files.has(base) || !needsUid(base)) continue;
          add.push({ uid: next, base });
          this.uidlistBases.set(base, next);
          next++;
        }
        await appendUidlist(this.dir, add);
        this.nextUid = next;
        await this.ownAppendDone();
        return cur;
      });
    }

    let anything = false;
    const seen = new Set<number>();
    const cachePut = new Map<number, CachedMessage>();
    const toAnalyze: { uid: number; base: string; sub: 'new' | 'cur'; info: string; name: string }[] = [];
    for (const [base, f] of files) {
      const uid = this.uidlistBases.get(base);
      if (uid === undefined) continue;
      seen.add(uid);
      const e = this.entries.get(uid);
      if (e && e.base === base) {
        if (e.sub !== f.sub || e.name !== f.name) {
          const oldFlags = e.record.flags;
          e.sub = f.sub;
          e.name = f.name;
          e.info = f.info;
          const flags = this.flagsOf(f.info);
          if (flags.join(' ') !== oldFlags.join(' ')) {
            e.record = { ...e.record, flags, modseq: ++this.highestModseq };
            cachePut.set(uid, cachedOf(e));
          }
          anything = true;
        }
        continue;
      }
      const c = cacheEntries?.get(uid);
      if (c && c.base === base) {
        const entry: Entry = {
          uid, base, sub: f.sub, name: f.name, info: f.info, vsize: c.vsize, bareLf: c.bareLf, mtimeMs: c.mtimeMs,
          record: { uid, flags: this.flagsOf(f.info), internalDate: new Date(c.mtimeMs), size: c.vsize, modseq: c.modseq },
        };
        this.entries.set(uid, entry);
        anything = true;
        continue;
      }
      toAnalyze.push({ uid, base, sub: f.sub, info: f.info, name: f.name });
    }
    for (const uid of [...this.entries.keys()]) {
      if (seen.has(uid) || !stable) continue;
      this.entries.delete(uid);
      this.noteExpunged(uid);
      anything = true;
    }
    const deleted: number[] = [];
    if (cacheEntries && stable) for (const uid of cacheEntries.keys()) if (!seen.has(uid)) deleted.push(uid);

    // New files: stat (internal date) and, without ,W= and ,S= in the name, one read for the size.
    const summaries: { uid: number; base: string; summary: MessageSummary }[] = [];
    await forEachLimit(toAnalyze, 4, async (a) => {
      const path = join(this.dir, a.sub, a.name);
      // Not a message we can read (a directory, no permission…): skipped, said once; gone meanwhile: the next scan.
      const unreadable = (err: unknown): void => {
        if ((err as { code?: string }).code === 'ENOENT' || this.unreadable.has(a.base)) return;
        if (this.unreadable.size < 10_000) this.unreadable.add(a.base);
        this.ctx.log.warn({ err, file: path }, 'a file in the Maildir is not a readable message; skipped');
      };
      let st;
      try {
        st = await fsp.stat(path);
      } catch (err) {
        unreadable(err);
        return;
      }
      if (!st.isFile()) {
        unreadable(Object.assign(new Error('not a regular file'), { code: 'EISDIR' }));
        return;
      }
      const parsed = parseFileName(a.name);
      let vsize: number;
      let bareLf: boolean;
      if (parsed.vsize !== undefined && parsed.size !== undefined && parsed.size === st.size) {
        vsize = parsed.vsize;
        bareLf = parsed.vsize !== parsed.size;
      } else {
        let r: ParseResult;
        try {
          r = await this.analyze(path);
        } catch (err) {
          unreadable(err);
          return;
        }
        vsize = r.size;
        bareLf = r.bareLf;
        summaries.push({ uid: a.uid, base: a.base, summary: r.summary });
      }
      const modseq = ++this.highestModseq;
      const entry: Entry = {
        uid: a.uid, base: a.base, sub: a.sub, name: a.name, info: a.info, vsize, bareLf, mtimeMs: st.mtimeMs,
        record: { uid: a.uid, flags: this.flagsOf(a.info), internalDate: new Date(st.mtimeMs), size: vsize, modseq },
      };
      this.entries.set(a.uid, entry);
      cachePut.set(a.uid, cachedOf(entry));
      anything = true;
    });
    // Unstable: forget the stamps so that the next scan lists everything again.
    this.dirStamp = stable ? dirStamp : { new: '', cur: '' };
    if (!this.loaded) await this.sweepTmp();
    this.loaded = true;
    if (anything) this.changed();
    if (cachePut.size > 0 || deleted.length > 0 || cacheEntries) {
      await this.ctx.cache.write(this.guid, { uidValidity: this.uidValidity, highestModseq: this.highestModseq }, cachePut, deleted);
    }
    for (const s of summaries) await this.ctx.cache.putSummary(this.guid, s.uid, s.base, s.summary);
    return anything;
  }

  /** Removes tmp/ files older than 36 hours (the Maildir rule: a writer that crashed left them), once per load. */
  private async sweepTmp(): Promise<void> {
    const tmp = join(this.dir, 'tmp');
    const names = await fsp.readdir(tmp).catch(() => [] as string[]);
    const limit = (this.ctx.now?.() ?? Date.now()) - TMP_MAX_AGE_MS;
    for (const name of names) {
      const path = join(tmp, name);
      try {
        // ctime: how long the file has sat there (an APPEND sets an old mtime, its internal date, on a fresh file).
        const st = await fsp.lstat(path);
        if (st.isFile() && st.ctimeMs < limit) await fsp.unlink(path);
      } catch {
        // gone meanwhile, or not ours to remove
      }
    }
  }

  /** Base names of files that are not readable messages (warned about once). */
  private readonly unreadable = new Set<string>();

  /** UIDs seen expunged in this process (bounded: a reappearing file of an older one is rare). */
  private readonly expunged = new Set<number>();

  private noteExpunged(uid: number): void {
    if (this.expunged.size >= 100_000) this.expunged.clear();
    this.expunged.add(uid);
  }

  /**
   * Reads the uidlist; a corrupt one is set aside as `dovecot-uidlist.broken`
   * (Dovecot deletes it) so that a new one, with a new UIDVALIDITY, replaces it.
   * `locked`: the caller holds the lock.
   */
  private async readUidlistRecovering(locked: boolean): Promise<Awaited<ReturnType<typeof readUidlist>>> {
    try {
      return await readUidlist(this.dir, locked);
    } catch (err) {
      if (!(err instanceof UidlistCorruptError)) throw err;
      const setAside = async (): Promise<void> => {
        try {
          await readUidlist(this.dir, true);
          return; // repaired meanwhile
        } catch (again) {
          if (!(again instanceof UidlistCorruptError)) throw again;
          this.ctx.log.error({ dir: this.dir, err: again }, 'corrupt dovecot-uidlist set aside; the mailbox gets a new UIDVALIDITY');
          await fsp.rename(join(this.dir, UIDLIST), join(this.dir, `${UIDLIST}.broken`));
        }
      };
      await lockUidlist(this.dir, setAside, locked);
      return readUidlist(this.dir, locked);
    }
  }

  /** Reads the uidlist if it changed (or `force`), creating it when missing. Updates uidValidity, nextUid, bases. */
  private async readUidlistState(stamp: string | undefined, force = false): Promise<Uidlist> {
    const unchanged = { uidValidity: this.uidValidity, nextUid: this.nextUid, guid: this.guid, records: [] };
    if (!force && this.loaded && stamp !== undefined && stamp === this.uidlistStampValue) return unchanged;
    if (this.loaded && this.uidlistIno !== undefined) {
      // Append-only: read just the new lines, as long as it is the same file.
      const tail = await readUidlistTail(this.dir, this.uidlistIno, this.uidlistOffset, force).catch((err: unknown) => {
        if (err instanceof UidlistCorruptError) return { kind: 'replaced' as const };
        throw err;
      });
      if (tail.kind === 'tail') {
        for (const rec of tail.records) {
          this.uidlistBases.set(rec.base, rec.uid);
          if (rec.uid >= this.nextUid) this.nextUid = rec.uid + 1;
        }
        this.uidlistOffset = tail.offset;
        this.uidlistStampValue = tail.stamp;
        return { ...unchanged, nextUid: this.nextUid };
      }
    }
    let r = await this.readUidlistRecovering(force);
    if (!r) {
      await initUidlist(this.dir, force);
      r = await readUidlist(this.dir, true);
      if (!r) throw new Error(`cannot create ${this.dir}/dovecot-uidlist`);
    }
    const u = r.uidlist;
    if (this.loaded && u.uidValidity !== this.uidValidity) {
      // UIDVALIDITY changed under us (the uidlist was replaced): every old UID is void.
      this.ctx.log.warn({ dir: this.dir, old: this.uidValidity, new: u.uidValidity }, 'mailbox UIDVALIDITY changed on disk');
      this.entries.clear();
      this.expunged.clear();
      this.nextUid = 1;
      this.changed();
      this.loaded = false;
    }
    if (!u.guid) {
      // An old or foreign uidlist without a GUID: give it one (Dovecot does the same), keeping UIDs.
      await lockUidlist(this.dir, async () => {
        const again = await readUidlist(this.dir, true);
        if (again && !again.uidlist.guid) await rewriteUidlist(this.dir, { ...again.uidlist, guid: newMailboxGuid() });
      }, force);
      return this.readUidlistState(undefined, force);
    }
    this.uidValidity = u.uidValidity;
    this.guid = u.guid;
    this.nextUid = Math.max(u.nextUid, this.nextUid);
    this.uidlistBases = new Map(u.records.map((rec) => [rec.base, rec.uid]));
    this.uidlistStampValue = r.stamp;
    this.uidlistIno = r.ino;
    this.uidlistOffset = r.offset;
    return u;
  }

  /** After our own append under the lock: everything up to the end has been parsed. */
  private async ownAppendDone(): Promise<void> {
    const st = await fsp.stat(join(this.dir, UIDLIST), { bigint: true });
    this.uidlistStampValue = `${st.ino}:${st.size}:${st.mtimeNs}`;
    if (st.ino === this.uidlistIno) this.uidlistOffset = Number(st.size);
    else this.uidlistIno = undefined; // not the file we read: read it whole next time
  }

  private async listFiles(unchanged?: 'new' | 'cur'): Promise<Map<string, { sub: 'new' | 'cur'; name: string; info: string }>> {
    const out = new Map<string, { sub: 'new' | 'cur'; name: string; info: string }>();
    if (unchanged) {
      for (const e of this.entries.values()) if (e.sub === unchanged) out.set(e.base, { sub: e.sub, name: e.name, info: e.info });
    }
    for (const sub of ['new', 'cur'] as const) {
      if (sub === unchanged) continue;
      let names: string[];
      try {
        names = await fsp.readdir(join(this.dir, sub));
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOENT') continue;
        throw err;
      }
      for (const name of names) {
        if (name.charCodeAt(0) === 0x2e || name.includes('\n') || name.includes('\r')) continue;
        // Base and info only (sizes are parsed for new files alone): this loop runs over every file.
        const colon = name.indexOf(':');
        const base = colon < 0 ? name : name.slice(0, colon);
        const info = colon >= 0 && name.startsWith(':2,', colon) ? name.slice(colon + 3) : '';
        const prev = out.get(base);
        // The same base in new/ and cur/ (a move in progress): cur/ wins.
        if (prev && prev.sub === 'cur') continue;
        out.set(base, { sub, name, info });
      }
    }
    return out;
  }

  private async analyze(path: string): Promise<ParseResult> {
    this.ctx.counters.bodyReads++;
    const parser = new MimeParser();
    // Plain reads into one buffer: a stream per file costs more than reading a typical message.
    const fh = await fsp.open(path, 'r');
    try {
      const buf = Buffer.allocUnsafe(64 * 1024);
      for (let pos = 0; ; ) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        parser.write(buf.subarray(0, bytesRead));
        pos += bytesRead;
      }
    } finally {
      await fh.close();
    }
    return parser.end();
  }

  /**
   * The parsed summary: from a small in-memory window, else from the index —
   * reading ahead the summaries of the next messages in UID order, since a
   * FETCH asks for them in turn — else computed once (one read) and cached;
   * on such a miss the next few uncached messages are parsed too, in
   * parallel, so that a cold FETCH of every message's structure waits on the
   * thread pool several files at a time rather than one by one.
   */
  async summary(e: Entry): Promise<MessageSummary> {
    const hit = this.summaryWindow.get(e.uid);
    if (hit && hit.base === e.base) return hit.summary;
    const inFlight = this.parsing.get(e.uid);
    if (inFlight && inFlight.base === e.base) return inFlight.promise;
    const records = this.records();
    let lo = 0;
    let hi = records.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (records[mid]!.uid < e.uid) lo = mid + 1;
      else hi = mid;
    }
    const wanted = [{ uid: e.uid, base: e.base }];
    const ahead = this.readAheadPause > 0 ? 1 : READ_AHEAD;
    if (this.readAheadPause > 0) this.readAheadPause--;
    for (let i = lo + 1; i < records.length && wanted.length < ahead; i++) {
      const next = this.entries.get(records[i]!.uid);
      if (next && !this.summaryWindow.has(next.uid)) wanted.push({ uid: next.uid, base: next.base });
    }
    const got = await this.ctx.cache.getSummaries(this.guid, wanted);
    let found = 0;
    got.forEach((s, i) => {
      if (s && i > 0) {
        this.remember(wanted[i]!.uid, wanted[i]!.base, s);
        found++;
      }
    });
    // Nothing ahead is cached (a cold index): stop reading ahead for a while.
    if (wanted.length > 1 && found === 0) this.readAheadPause = READ_AHEAD;
    if (got[0]) return got[0];
    const mine = this.startParse(e);
    let started = 1;
    for (let i = lo + 1; i < records.length && started < PARSE_AHEAD; i++) {
      const next = this.entries.get(records[i]!.uid);
      if (!next || this.summaryWindow.has(next.uid) || this.parsing.has(next.uid)) continue;
      this.startParse(next);
      started++;
    }
    return mine;
  }

  /** Parses a message and caches its summary; the promise is shared by whoever asks meanwhile. */
  private startParse(x: Entry): Promise<MessageSummary> {
    const promise = (async () => {
      const r = await this.analyze(this.path(x));
      await this.ctx.cache.putSummary(this.guid, x.uid, x.base, r.summary);
      return r.summary;
    })();
    const job = { base: x.base, promise };
    this.parsing.set(x.uid, job);
    const done = (): void => {
      if (this.parsing.get(x.uid) === job) this.parsing.delete(x.uid);
    };
    // A parse ahead that fails (the file went away) is simply dropped; whoever awaits it sees the error.
    promise.then((s) => {
      done();
      this.remember(x.uid, x.base, s);
    }, done);
    return promise;
  }

  private remember(uid: number, base: string, summary: MessageSummary): void {
    this.summaryWindow.delete(uid);
    this.summaryWindow.set(uid, { base, summary });
    for (const k of this.summaryWindow.keys()) {
      if (this.summaryWindow.size <= SUMMARY_WINDOW) break;
      this.summaryWindow.delete(k);
    }
  }

  private readAheadPause = 0;
  private readonly parsing = new Map<number, { base: string; promise: Promise<MessageSummary> }>();

  /** Summaries read ahead from the index or parsed ahead (at most SUMMARY_WINDOW, oldest dropped first). */
  private readonly summaryWindow = new Map<number, { base: string; summary: MessageSummary }>();

  /** Moves the given messages from new/ to cur/ (a session has seen them). Returns those moved. Caller holds the mutex. */
  async claimRecent(): Promise<number[]> {
    const claimed: number[] = [];
    for (const uid of this.recentUids()) {
      const e = this.entries.get(uid)!;
      const name = curName(e.base, e.info);
      try {
        await fsp.rename(this.path(e), join(this.dir, 'cur', name));
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOENT') continue; // someone else moved it: the next scan sees where
        throw err;
      }
      e.sub = 'cur';
      e.name = name;
      claimed.push(uid);
    }
    return claimed;
  }

  /** Canonical flags: system flags in their usual case, \Recent and unknown system flags dropped, keywords deduplicated case-insensitively. */
  private canonicalFlags(flags: readonly Flag[]): Flag[] {
    const out = new Map<string, Flag>();
    for (const f of flags) {
      if (f.startsWith('\\')) {
        const c = canonicalSystemFlag(f);
        if (c) out.set(c.toLowerCase(), c);
        continue;
      }
      // A keyword must be an IMAP atom: anything else could not be written to dovecot-keywords or sent back.
      if (!KEYWORD.test(f)) continue;
      const known = this.keywords.find((k) => k !== undefined && k.toLowerCase() === f.toLowerCase());
      out.set(f.toLowerCase(), known ?? f);
    }
    return [...out.values()];
  }

  private keywordIndex = (kw: string): number | undefined => {
    const i = this.keywords.findIndex((k) => k !== undefined && k.toLowerCase() === kw.toLowerCase());
    return i < 0 ? undefined : i;
  };

  /** Gives new keywords their letters; all or none (KeywordLimitError past 26, before any message changes). */
  private async defineKeywords(wanted: readonly string[]): Promise<void> {
    const defined = this.keywords.filter((k) => k !== undefined).length;
    if (defined + wanted.length > MAX_KEYWORDS) throw new KeywordLimitError(wanted, MAX_KEYWORDS);
    this.keywords = await addKeywords(this.dir, wanted);
    this.keywordsStamp = '';
    this.flagsByInfo.clear();
    // Another writer may have taken the last letters meanwhile.
    const missing = wanted.filter((k) => this.keywordIndex(k) === undefined);
    if (missing.length > 0) throw new KeywordLimitError(missing, MAX_KEYWORDS);
  }

  /** Applies a flag change to the UIDs that exist; returns their records. Caller holds the mutex. */
  async setFlags(asked: readonly number[], op: FlagOperation, flags: readonly Flag[], origin: unknown): Promise<MessageRecord[]> {
    const uids = [...new Set(asked)];
    await this.refreshKeywords();
    let wanted = this.canonicalFlags(flags);
    const newKeywords = wanted.filter((f) => !f.startsWith('\\') && this.keywordIndex(f) === undefined);
    if (newKeywords.length > 0 && op !== 'remove') {
      await this.defineKeywords(newKeywords);
      wanted = this.canonicalFlags(flags);
    }
    const wantedLower = new Set(wanted.map((f) => f.toLowerCase()));
    const results: (MessageRecord | undefined)[] = new Array(uids.length);
    const cachePut = new Map<number, CachedMessage>();
    try {
      // Renames go to the thread pool a few at a time (one by one, a STORE on a big mailbox waits on each).
      await forEachLimit([...uids.keys()], PARALLEL_FS, async (i) => {
        const uid = uids[i]!;
        const e = this.entries.get(uid);
        if (!e) return;
        let next: Flag[];
        if (op === 'replace') next = wanted;
        else if (op === 'add') next = [...e.record.flags, ...wanted.filter((f) => !e.record.flags.some((g) => g.toLowerCase() === f.toLowerCase()))];
        else next = e.record.flags.filter((f) => !wantedLower.has(f.toLowerCase()));
        const info = infoOfFlags(next, this.keywordIndex, e.info);
        const nextFlags = this.flagsOf(info);
        if (info !== e.info || e.sub !== 'cur' || e.name !== curName(e.base, e.info)) {
          const name = curName(e.base, info);
          try {
            await fsp.rename(this.path(e), join(this.dir, 'cur', name));
          } catch (err) {
            if ((err as { code?: string }).code === 'ENOENT') return; // renamed/removed by someone else: the next sync tells
            throw err;
          }
          e.sub = 'cur';
          e.name = name;
          e.info = info;
        }
        if (nextFlags.join(' ') !== e.record.flags.join(' ')) {
          e.record = { ...e.record, flags: nextFlags, modseq: ++this.highestModseq };
          cachePut.set(uid, cachedOf(e));
        }
        results[i] = e.record;
      });
    } finally {
      // Whatever was renamed is announced, even if a later rename failed.
      if (cachePut.size > 0) {
        this.changed();
        await this.ctx.cache.write(this.guid, { uidValidity: this.uidValidity, highestModseq: this.highestModseq }, cachePut, []);
        this.notify(origin);
      }
    }
    return results.filter((r): r is MessageRecord => r !== undefined);
  }

  /** Removes messages (their files); `requireDeleted` keeps those without \Deleted. Returns the UIDs removed. Caller holds the mutex. */
  async expunge(asked: readonly number[], requireDeleted: boolean, origin: unknown): Promise<number[]> {
    const uids = [...new Set(asked)];
    const gone = new Set<number>();
    let failure: unknown;
    await forEachLimit(uids, PARALLEL_FS, async (uid) => {
      const e = this.entries.get(uid);
      if (!e || failure !== undefined) return;
      if (requireDeleted && !e.record.flags.includes('\\Deleted')) return;
      try {
        await fsp.unlink(this.path(e));
      } catch (err) {
        if ((err as { code?: string }).code !== 'ENOENT') {
          failure ??= err;
          return;
        }
        // Renamed by another program meanwhile: find it by its base before giving up.
        const again = await this.findByBase(e.base);
        if (again) await fsp.unlink(again).catch(() => undefined);
      }
      this.entries.delete(uid);
      this.noteExpunged(uid);
      gone.add(uid);
    });
    // Ascending, whatever was removed before a failure included.
    const removed = uids.filter((u) => gone.has(u)).sort((a, b) => a - b);
    if (failure !== undefined && removed.length === 0) throw failure;
    if (failure !== undefined) this.ctx.log.error({ err: failure, dir: this.dir }, 'expunge stopped by a file system error');
    if (removed.length > 0) {
      this.changed();
      await this.ctx.cache.write(this.guid, { uidValidity: this.uidValidity, highestModseq: ++this.highestModseq }, new Map(), removed);
      this.notify(origin);
      const dead = this.uidlistBases.size - this.entries.size;
      if (dead >= COMPACT_MIN_DEAD && dead * 4 >= this.uidlistBases.size) await this.compactUidlist();
    }
    return removed;
  }

  /**
   * Rewrites dovecot-uidlist without the records of expunged messages (Dovecot
   * does so once a quarter of them are dead): under the lock, re-read whole;
   * a record is dropped only if its UID is below what our last scan covered
   * and we have no such message — anything newer (another writer) is kept.
   */
  private async compactUidlist(): Promise<void> {
    const covered = this.nextUid;
    await lockUidlist(this.dir, async () => {
      const r = await readUidlist(this.dir, true);
      if (!r || r.uidlist.uidValidity !== this.uidValidity) return;
      const keep = r.uidlist.records.filter((rec) => rec.uid >= covered || this.entries.has(rec.uid));
      const nextUid = Math.max(r.uidlist.nextUid, this.nextUid);
      await rewriteUidlist(this.dir, { ...r.uidlist, nextUid, records: keep });
      const st = await fsp.stat(join(this.dir, UIDLIST), { bigint: true });
      this.uidlistBases = new Map(keep.map((rec) => [rec.base, rec.uid]));
      this.uidlistIno = st.ino;
      this.uidlistOffset = Number(st.size);
      this.uidlistStampValue = `${st.ino}:${st.size}:${st.mtimeNs}`;
      this.nextUid = nextUid;
    });
  }

  private async findByBase(base: string): Promise<string | undefined> {
    for (const sub of ['cur', 'new']) {
      const names = await fsp.readdir(join(this.dir, sub)).catch(() => [] as string[]);
      const n = names.find((x) => x === base || x.startsWith(`${base}:`));
      if (n) return join(this.dir, sub, n);
    }
    return undefined;
  }

  /** Adds complete files from tmp/ into cur/ with new UIDs (APPEND, COPY). Caller holds the mutex. */
  async addFiles(files: readonly NewFile[], origin: unknown): Promise<number[]> {
    if (!this.loaded) await this.scan();
    await this.refreshKeywords();
    const kws = [...new Set(files.flatMap((f) => this.canonicalFlags(f.flags)).filter((f) => !f.startsWith('\\') && this.keywordIndex(f) === undefined))];
    if (kws.length > 0) await this.defineKeywords(kws);
    const uids: number[] = [];
    const cachePut = new Map<number, CachedMessage>();
    await lockUidlist(this.dir, async () => {
      const cur = await this.readUidlistState(await uidlistStamp(this.dir), true);
      let next = Math.max(cur.nextUid, this.nextUid);
      const recs: UidlistRecord[] = [];
      for (const f of files) {
        const info = infoOfFlags(this.canonicalFlags(f.flags), this.keywordIndex);
        const name = curName(f.base, info);
        await fsp.rename(f.tmpPath, join(this.dir, 'cur', name));
        const uid = next++;
        recs.push({ uid, base: f.base });
        this.uidlistBases.set(f.base, uid);
        const entry: Entry = {
          uid, base: f.base, sub: 'cur', name, info, vsize: f.vsize, bareLf: f.bareLf, mtimeMs: f.mtimeMs,
          record: { uid, flags: this.flagsOf(info), internalDate: new Date(f.mtimeMs), size: f.vsize, modseq: ++this.highestModseq },
        };
        this.entries.set(uid, entry);
        cachePut.set(uid, cachedOf(entry));
        uids.push(uid);
      }
      await appendUidlist(this.dir, recs);
      this.nextUid = next;
      await this.ownAppendDone();
    });
    this.changed();
    await this.ctx.cache.write(this.guid, { uidValidity: this.uidValidity, highestModseq: this.highestModseq }, cachePut, []);
    for (const [i, f] of files.entries()) if (f.summary) await this.ctx.cache.putSummary(this.guid, uids[i]!, f.base, f.summary);
    this.notify(origin);
    return uids;
  }
}

function cachedOf(e: Entry): CachedMessage {
  return { base: e.base, vsize: e.vsize, bareLf: e.bareLf, mtimeMs: e.mtimeMs, modseq: e.record.modseq };
}

async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let i = 0;
  const worker = async (): Promise<void> => {
    while (i < items.length) await fn(items[i++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
