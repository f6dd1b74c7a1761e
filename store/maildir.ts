/**
 * Maildir++ delivery (SPEC §store), as a transaction in maddy's shape:
 * `SpooledMessage.write` is the body, `deliverToMaildirs` the commit, and
 * `SpooledMessage.remove` the abort (it also ends every transaction).
 *
 * Durability — each step is required, in this order, and a target is reported
 * delivered only after the last one succeeded for it:
 *  1. the body is written once, streamed to a spool file (never whole in
 *     memory; the size limit is enforced while streaming);
 *  2. for each target it is placed in `tmp/` under a unique name: a hard link
 *     to that one file, or a copy when the target is on another filesystem
 *     (EXDEV); folders and Maildirs are created as needed (`ensureMaildir`,
 *     which fsyncs the parents of the directories it creates);
 *  3. the file is fsync'd: one fsync of the shared inode covers all its links
 *     (done once per spool, on the handle the spool keeps open until
 *     `remove`), and each copy is fsync'd itself;
 *  4. it is renamed from `tmp/` into `new/`;
 *  5. that `new/` directory is fsync'd.
 *
 * Invariants:
 *  - A file in `new/` is always complete: it only gets there by rename, after
 *    its fsync. Nothing is added to names in `new/` beyond `,S=<size>` (the
 *    `:2,FLAGS` info belongs to `cur/`, Maildir spec and Dovecot alike).
 *  - Targets are independent: one failing (ENOSPC, EACCES, EDQUOT, EROFS, a
 *    file where a directory should be…) is returned in `failed` and its
 *    `tmp/` file removed (or its `new/` file, if only the directory fsync
 *    failed: duplicate rather than lose, since the caller will retry). The
 *    others are delivered as if it did not exist.
 *  - A failure is temporary unless it is known to be permanent (a name too
 *    long, an invalid folder name, a relative path): an unwritable Maildir is
 *    an operator problem to fix, so mail waits in the queue rather than bounces.
 *  - Unique names are the only lock (as in Dovecot): `SECONDS.M<usec>P<pid>
 *    Q<counter>R<64 random bits>.HOST,S=<size>` never collides within a
 *    process (counter), across processes (pid) or across pid reuse, hosts and
 *    containers sharing a volume (random), so any number of sessions deliver
 *    at once with no coordination.
 *  - Memory is bounded: the body is streamed in and out in chunks of at most
 *    `SPOOL_FLUSH_BYTES` plus one source chunk; copies use copyFile (kernel).
 *
 * The spool is scratch, not a copy of record: it is never fsync'd for its own
 * sake, and belongs on the Maildirs' filesystem (DATA-DIR/spool beside
 * DATA-DIR/mail) so that step 2 is a link. Every spool ends with `remove()`.
 *
 * Folders are Maildir++ (`PATH/.Junk`, `PATH/.A.B` for `A/B`) with the
 * `maildirfolder` marker and names in modified UTF-7 (RFC 3501 §5.1.3), as
 * Dovecot's `LAYOUT=maildir++` lays them out. Stale spool files (after a
 * crash) are removed by `sweepSpool` at start-up.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { hostname as osHostname } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import type { Readable } from 'node:stream';

/** The body is written in batches of this size (bounded memory, few syscalls). */
export const SPOOL_FLUSH_BYTES = 64 * 1024;

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
const SPOOL_PREFIX = 'spool.';

export interface MaildirTarget {
  /** Absolute path of the Maildir (its INBOX). */
  readonly path: string;
  /** Maildir++ folder, `/` as hierarchy delimiter: `Junk` → PATH/.Junk, `A/B` → PATH/.A.B; default (or `INBOX`) = PATH itself. */
  readonly folder?: string;
}

export interface DeliveryResult {
  readonly target: MaildirTarget;
  /** The target's `path`, as given. */
  readonly path: string;
  /** Absolute path of the file in `new/`. */
  readonly file: string;
}

export interface DeliveryFailure {
  readonly target: MaildirTarget;
  readonly error: MaildirDeliveryError;
}

export interface DeliveryOutcome {
  readonly delivered: DeliveryResult[];
  readonly failed: DeliveryFailure[];
}

/**
 * The file system calls delivery makes, injectable so tests can produce the
 * failures root cannot (ENOSPC, EDQUOT, EIO on fsync…). Errors are Node's:
 * an `Error` with an errno `code`.
 */
export interface MaildirFs {
  /** Returns the first directory created, or undefined (as fs.promises.mkdir). */
  mkdir(path: string, options: { recursive: boolean; mode: number }): Promise<string | undefined>;
  stat(path: string): Promise<{ isDirectory(): boolean }>;
  link(existingPath: string, newPath: string): Promise<void>;
  copyFile(src: string, dest: string, mode: number): Promise<void>;
  rename(oldPath: string, newPath: string): Promise<void>;
  unlink(path: string): Promise<void>;
  writeFile(path: string, data: string, options: { flag: string; mode: number }): Promise<void>;
  /** fsync(2) of a file or a directory, by path. */
  fsync(path: string): Promise<void>;
}

/** Spool files whose write handle is still open (until `remove`), by path. */
const openSpools = new Map<string, fsp.FileHandle>();

export const nodeMaildirFs: MaildirFs = Object.freeze({
  mkdir: (path: string, options: { recursive: boolean; mode: number }) => fsp.mkdir(path, options),
  stat: (path: string) => fsp.stat(path),
  link: (existingPath: string, newPath: string) => fsp.link(existingPath, newPath),
  copyFile: (src: string, dest: string, mode: number) => fsp.copyFile(src, dest, mode),
  rename: (oldPath: string, newPath: string) => fsp.rename(oldPath, newPath),
  unlink: (path: string) => fsp.unlink(path),
  writeFile: (path: string, data: string, options: { flag: string; mode: number }) => fsp.writeFile(path, data, options),
  async fsync(path: string) {
    const spool = openSpools.get(path);
    if (spool) return spool.sync();
    const fh = await fsp.open(path, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
});

/** The message exceeded the size limit while it was being received. */
export class MessageTooLargeError extends Error {
  /** Bytes received when reception stopped (more than `limit`; the rest was not read). */
  readonly size: number;
  readonly limit: number;
  constructor(size: number, limit: number) {
    super(`message exceeds the size limit of ${limit} bytes`);
    this.name = 'MessageTooLargeError';
    this.size = size;
    this.limit = limit;
  }
}

/** One target's failure. `temporary` unless known permanent (module header). */
export class MaildirDeliveryError extends Error {
  readonly temporary: boolean;
  /** The errno code (`ENOSPC`…) or `EINVAL` for a target we refuse. */
  readonly code: string | undefined;
  constructor(message: string, opts: { temporary: boolean; code: string | undefined; cause?: unknown }) {
    super(message, { cause: opts.cause });
    this.name = 'MaildirDeliveryError';
    this.temporary = opts.temporary;
    this.code = opts.code;
  }
}

/** Errors that no retry can fix. Everything else, unknown included, is temporary. */
const PERMANENT_CODES: ReadonlySet<string> = new Set(['ENAMETOOLONG']);

class InvalidTargetError extends Error {
  readonly code = 'EINVAL';
  constructor(message: string) {
    super(message);
    this.name = 'InvalidTargetError';
  }
}

function errnoCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

// --- unique names -------------------------------------------------------

let deliveries = 0;

/** The host part of a Maildir name: `/` → `\057`, `:` → `\072` (Maildir spec), and `,` → `\054` so `,S=` stays unambiguous. */
export function escapeMaildirHost(hostname: string): string {
  return hostname.replace(/[/:,]/g, (c) => `\\0${c.charCodeAt(0).toString(8)}`);
}

/**
 * A Maildir file name: `SECONDS.M<usec>P<pid>Q<counter>R<random hex>.HOST,S=<size>`.
 * Without `now`, the microseconds are the wall clock's milliseconds refined by
 * the monotonic clock; with `now` (a fake clock) they come from `now` alone.
 */
export function uniqueName(size: number, hostname: string, now?: Date): string {
  let sec: number;
  let usec: number;
  if (now) {
    const ms = now.getTime();
    sec = Math.floor(ms / 1000);
    usec = (ms - sec * 1000) * 1000;
  } else {
    const ms = Date.now();
    sec = Math.floor(ms / 1000);
    usec = (ms - sec * 1000) * 1000 + Number(process.hrtime.bigint() / 1000n % 1000n);
  }
  deliveries = deliveries >= Number.MAX_SAFE_INTEGER ? 1 : deliveries + 1;
  return `${sec}.M${usec}P${process.pid}Q${deliveries}R${randomBytes(8).toString('hex')}.${escapeMaildirHost(hostname)},S=${size}`;
}

// --- folders and directories -------------------------------------------

/** Modified UTF-7 (RFC 3501 §5.1.3), as Dovecot stores folder names on disk. */
export function encodeMailboxName(name: string): string {
  let out = '';
  let run: number[] = [];
  const flush = (): void => {
    if (run.length === 0) return;
    const b = Buffer.alloc(run.length * 2);
    run.forEach((unit, i) => b.writeUInt16BE(unit, i * 2));
    out += `&${b.toString('base64').replace(/=+$/, '').replace(/\//g, ',')}-`;
    run = [];
  };
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e) {
      flush();
      out += c === 0x26 ? '&-' : name[i];
    } else {
      run.push(c);
    }
  }
  flush();
  return out;
}

/**
 * The directory of a Maildir++ folder: `undefined`/`INBOX` → PATH, `Junk` →
 * PATH/.Junk, `A/B` → PATH/.A.B. Throws (permanent) on a relative PATH or a
 * name Maildir++ cannot hold: an empty level, `.` (the on-disk separator), NUL.
 */
export function maildirFolderPath(path: string, folder?: string): string {
  if (!isAbsolute(path) || path.includes('\0')) throw new InvalidTargetError(`not an absolute Maildir path: ${JSON.stringify(path)}`);
  if (folder === undefined || folder === '' || folder.toUpperCase() === 'INBOX') return path;
  const levels = folder.split('/');
  for (const level of levels) {
    if (level === '' || level.includes('.') || level.includes('\0')) {
      throw new InvalidTargetError(`invalid Maildir++ folder name ${JSON.stringify(folder)} (empty level, "." or NUL)`);
    }
  }
  return join(path, `.${levels.map(encodeMailboxName).join('.')}`);
}

/**
 * Creates PATH/{cur,new,tmp} (mode 0700) and missing parents; idempotent and
 * safe to run concurrently. Directories it creates are made durable (their
 * parents fsync'd). `folder: true` also writes the Maildir++ `maildirfolder`
 * marker. A non-directory in the way is an ENOTDIR error.
 */
export function ensureMaildir(path: string, opts: { fs?: MaildirFs; folder?: boolean } = {}): Promise<void> {
  // Concurrent callers share one run: none may go on before the directories are durable.
  const fs = opts.fs ?? nodeMaildirFs;
  let running = ensuring.get(fs);
  if (!running) ensuring.set(fs, (running = new Map()));
  const key = `${opts.folder ? 'f' : 'm'}:${path}`;
  let p = running.get(key);
  if (!p) {
    const map = running;
    p = createMaildir(fs, path, opts.folder === true).finally(() => map.delete(key));
    map.set(key, p);
  }
  return p;
}

const ensuring = new WeakMap<MaildirFs, Map<string, Promise<void>>>();

async function createMaildir(fs: MaildirFs, path: string, folder: boolean): Promise<void> {
  const toSync = new Set<string>();
  const first = await fs.mkdir(path, { recursive: true, mode: DIR_MODE });
  if (first !== undefined) {
    for (let d = path; ; d = dirname(d)) {
      toSync.add(dirname(d));
      if (d === first || dirname(d) === d) break;
    }
  } else {
    await assertDirectory(fs, path);
  }
  for (const sub of ['cur', 'new', 'tmp']) {
    const dir = join(path, sub);
    try {
      await fs.mkdir(dir, { recursive: false, mode: DIR_MODE });
      toSync.add(path);
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
      await assertDirectory(fs, dir);
    }
  }
  if (folder) {
    try {
      await fs.writeFile(join(path, 'maildirfolder'), '', { flag: 'wx', mode: FILE_MODE });
      toSync.add(path);
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
  }
  await Promise.all([...toSync].map((d) => fs.fsync(d)));
}

async function assertDirectory(fs: MaildirFs, path: string): Promise<void> {
  if (!(await fs.stat(path)).isDirectory()) {
    throw Object.assign(new Error(`ENOTDIR: not a directory, ${path}`), { code: 'ENOTDIR', path });
  }
}

async function ensureTarget(fs: MaildirFs, target: MaildirTarget, dir: string): Promise<void> {
  await ensureMaildir(target.path, { fs });
  if (dir !== target.path) await ensureMaildir(dir, { fs, folder: true });
}

// --- the spool (the body, written once) --------------------------------

export type MessageSource = Readable | AsyncIterable<Buffer | Uint8Array | string> | Iterable<Buffer | Uint8Array>;

export interface SpoolOptions {
  /** Limit on the bytes read from the source (the prefix is not counted: it is ours). */
  readonly maxBytes: number;
  /** Written before the source, e.g. a `Received:` header. */
  readonly prefix?: Buffer;
}

let spooled = 0;
/** Spools whose inode has been fsync'd: later deliveries of the same spool skip the fsync. */
const syncedSpools = new WeakSet<SpooledMessage>();

/** A message body written once to a spool file, delivered from there by hard links. */
export class SpooledMessage {
  /** Absolute path of the spool file. */
  readonly path: string;
  /** Bytes in the file: prefix + body. */
  readonly size: number;
  private removed = false;

  private constructor(path: string, size: number) {
    this.path = path;
    this.size = size;
  }

  /**
   * Streams `source` (after `prefix`) into a new file of `dir`. Past
   * `maxBytes` of source it stops reading, removes the file and throws
   * `MessageTooLargeError`; a Readable source is left undestroyed so the
   * caller can drain it (an SMTP session must read the rest of DATA). Any
   * other error also removes the file.
   */
  static async write(dir: string, source: MessageSource, opts: SpoolOptions): Promise<SpooledMessage> {
    spooled = spooled >= Number.MAX_SAFE_INTEGER ? 1 : spooled + 1;
    const path = join(dir, `${SPOOL_PREFIX}${Date.now()}.P${process.pid}Q${spooled}R${randomBytes(6).toString('hex')}`);
    const fh = await fsp.open(path, 'wx', FILE_MODE);
    let size = 0;
    try {
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      const flush = async (): Promise<void> => {
        if (pendingBytes === 0) return;
        const data = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
        pending = [];
        pendingBytes = 0;
        for (let off = 0; off < data.length; ) {
          const { bytesWritten } = await fh.write(data, off, data.length - off);
          off += bytesWritten;
        }
      };
      if (opts.prefix && opts.prefix.length > 0) {
        pending.push(opts.prefix);
        pendingBytes += opts.prefix.length;
        size += opts.prefix.length;
      }
      let received = 0;
      for await (const chunk of chunks(source)) {
        const buf = toBuffer(chunk);
        received += buf.length;
        if (received > opts.maxBytes) throw new MessageTooLargeError(received, opts.maxBytes);
        if (buf.length === 0) continue;
        pending.push(buf);
        pendingBytes += buf.length;
        size += buf.length;
        if (pendingBytes >= SPOOL_FLUSH_BYTES) await flush();
      }
      await flush();
    } catch (err) {
      await fh.close().catch(() => undefined);
      await fsp.unlink(path).catch(() => undefined);
      throw err;
    }
    // The handle stays open until remove(): the fsync before delivery then costs one call, not three.
    openSpools.set(path, fh);
    return new SpooledMessage(path, size);
  }

  /** The spooled bytes from `start`, streamed from the file (e.g. into the queue). */
  stream(start = 0): Readable {
    return createReadStream(this.path, { start });
  }

  /** Closes and removes the spool file (the Maildir links stay); idempotent. Every spool must end here. */
  async remove(): Promise<void> {
    if (this.removed) return;
    const fh = openSpools.get(this.path);
    if (fh) {
      openSpools.delete(this.path);
      await fh.close().catch(() => undefined);
    }
    try {
      await fsp.unlink(this.path);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    this.removed = true;
  }
}

function chunks(source: MessageSource): AsyncIterable<unknown> {
  // A Readable's default iterator destroys the stream when we stop early; the caller must be able to drain it.
  const r = source as Readable;
  if (typeof r.iterator === 'function' && typeof r.pipe === 'function') {
    return { [Symbol.asyncIterator]: () => r.iterator({ destroyOnReturn: false }) };
  }
  return source as AsyncIterable<unknown>;
}

function toBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (typeof chunk === 'string') return Buffer.from(chunk, 'utf8');
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  throw new TypeError(`message source yielded a ${typeof chunk}, not bytes`);
}

/** Removes spool files older than `olderThanMs` (all by default): leftovers of a crash. Returns how many. */
export async function sweepSpool(dir: string, olderThanMs = 0, now: number = Date.now()): Promise<number> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return 0;
    throw err;
  }
  let removed = 0;
  for (const name of names) {
    if (!name.startsWith(SPOOL_PREFIX)) continue;
    const file = join(dir, name);
    try {
      const st = await fsp.stat(file);
      if (now - st.mtimeMs < olderThanMs) continue;
      await fsp.unlink(file);
      removed++;
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
  return removed;
}

// --- delivery ------------------------------------------------------------

export interface DeliverOptions {
  /** Host part of the names; default: the machine's hostname. */
  readonly hostname?: string;
  readonly now?: () => Date;
  readonly fs?: MaildirFs;
}

interface Slot {
  readonly target: MaildirTarget;
  dir?: string;
  /** Our file in tmp/, until renamed. */
  tmp?: string;
  /** Our file in new/, once renamed. */
  file?: string;
  /** tmp/ holds a link to the spool inode (rather than a copy). */
  linked?: boolean;
  durable?: boolean;
  error?: MaildirDeliveryError;
}

/**
 * Delivers one spooled message to several Maildirs durably (module header).
 * Never throws for a target's failure: each is in `failed`. `delivered` and
 * `failed` keep the order of `targets`.
 */
export async function deliverToMaildirs(source: SpooledMessage, targets: readonly MaildirTarget[], opts: DeliverOptions = {}): Promise<DeliveryOutcome> {
  const fs = opts.fs ?? nodeMaildirFs;
  const host = opts.hostname ?? osHostname();
  const slots: Slot[] = targets.map((target) => ({ target }));

  // 2. into tmp/ (link, or copy + fsync on EXDEV)
  await Promise.all(
    slots.map(async (s) => {
      try {
        await place(fs, source, s, host, opts.now);
      } catch (err) {
        s.error = failure(s.target, 'writing into tmp/', err);
      }
    }),
  );

  // 3. one fsync covers every link to the spool inode
  const linked = slots.filter((s) => !s.error && s.linked);
  if (linked.length > 0 && !syncedSpools.has(source)) {
    try {
      await fs.fsync(source.path);
      syncedSpools.add(source);
    } catch (err) {
      for (const s of linked) s.error = failure(s.target, 'fsync of the message file', err);
    }
  }

  // 4–5. rename into new/, fsync new/
  await Promise.all(
    slots.map(async (s) => {
      if (s.error) return;
      try {
        await commit(fs, s);
      } catch (err) {
        s.error = failure(s.target, s.file ? 'fsync of new/' : 'rename into new/', err);
      }
    }),
  );

  await Promise.all(slots.map((s) => (s.error ? cleanUp(fs, s) : undefined)));

  const delivered: DeliveryResult[] = [];
  const failed: DeliveryFailure[] = [];
  for (const s of slots) {
    if (s.error) failed.push({ target: s.target, error: s.error });
    else delivered.push({ target: s.target, path: s.target.path, file: s.file! });
  }
  return { delivered, failed };
}

async function place(fs: MaildirFs, source: SpooledMessage, s: Slot, host: string, now: (() => Date) | undefined): Promise<void> {
  const dir = maildirFolderPath(s.target.path, s.target.folder);
  s.dir = dir;
  let ensured = false;
  let copy = false;
  for (let attempt = 0; ; attempt++) {
    const tmp = join(dir, 'tmp', uniqueName(source.size, host, now?.()));
    try {
      if (!copy) {
        await fs.link(source.path, tmp);
        s.tmp = tmp;
        s.linked = true;
        return;
      }
      // Another filesystem: copy (in the kernel, streamed), then fsync this inode itself.
      s.tmp = tmp;
      await fs.copyFile(source.path, tmp, fsConstants.COPYFILE_EXCL);
      await fs.fsync(tmp);
      return;
    } catch (err) {
      const code = errnoCode(err);
      if (copy && code !== 'EEXIST') await fs.unlink(tmp).catch(() => undefined); // a partial copy of ours
      s.tmp = undefined;
      if (code === 'ENOENT' && !ensured) {
        ensured = true;
        await ensureTarget(fs, s.target, dir);
      } else if (code === 'EXDEV' && !copy) {
        copy = true;
      } else if (code !== 'EEXIST' || attempt >= 3) {
        throw err; // EEXIST cannot happen with unique names: never overwrite, try another name
      }
    }
  }
}

async function commit(fs: MaildirFs, s: Slot): Promise<void> {
  const dir = s.dir!;
  const tmp = s.tmp!;
  const newDir = join(dir, 'new');
  const file = join(newDir, basename(tmp));
  try {
    await fs.rename(tmp, file);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
    await ensureTarget(fs, s.target, dir); // new/ removed under us; tmp/ exists
    await fs.rename(tmp, file);
  }
  s.tmp = undefined;
  s.file = file;
  await fs.fsync(newDir);
  s.durable = true;
}

/** A failed target leaves nothing behind: not its tmp/ file, and not a new/ file whose directory fsync failed. */
async function cleanUp(fs: MaildirFs, s: Slot): Promise<void> {
  const leftover = s.tmp ?? (s.durable ? undefined : s.file);
  if (!leftover) return;
  try {
    await fs.unlink(leftover);
  } catch {
    // Best effort: a stale tmp/ file is swept by Maildir readers after 36 h; a complete new/ file is at worst a duplicate.
  }
}

function failure(target: MaildirTarget, step: string, err: unknown): MaildirDeliveryError {
  const code = errnoCode(err);
  const what = target.folder ? `${target.path} (folder ${target.folder})` : target.path;
  const temporary = err instanceof InvalidTargetError ? false : !(code !== undefined && PERMANENT_CODES.has(code));
  const detail = err instanceof Error ? err.message : String(err);
  return new MaildirDeliveryError(`maildir ${what}: ${step} failed: ${detail}`, { temporary, code, cause: err });
}
