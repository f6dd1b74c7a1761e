/**
 * `dovecot-uidlist`, Dovecot's v3 format — the truth for UIDs (SPEC §store):
 *
 *   3 V<uidvalidity> N<nextuid> G<mailbox guid, 32 hex>
 *   <uid> [<key><value> …] :<file name base>
 *
 * UIDs ascend; a record whose file is gone is an expunged message (kept until
 * the file is rewritten). The next UID is the larger of N and the last UID + 1,
 * so records are appended without touching the header. Writers hold
 * `dovecot-uidlist.lock`; readers take no lock (Dovecot reads the same way).
 * A rewrite goes to `dovecot-uidlist.tmp` and is renamed over the file.
 */
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { withDotlock } from './dotlock.ts';

export const UIDLIST = 'dovecot-uidlist';

export interface UidlistRecord {
  readonly uid: number;
  /** The file name base (no `:2,` info). */
  readonly base: string;
  /** Extension fields as written (`W1234`), kept on rewrite. */
  readonly ext?: readonly string[];
}

export interface Uidlist {
  readonly uidValidity: number;
  readonly nextUid: number;
  readonly guid: string;
  /** Ascending UID; a base appears once (a later duplicate replaces the earlier, as in Dovecot). */
  readonly records: readonly UidlistRecord[];
  /** Other header fields, kept on rewrite. */
  readonly headerExt?: readonly string[];
}

export class UidlistCorruptError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UidlistCorruptError';
  }
}

/**
 * Parses the file. Read without the lock (`complete: false`), a last line
 * without its newline is a record being appended right now and is left for
 * the next read, as Dovecot's reader does.
 */
export function parseUidlist(text: string, complete = true): Uidlist {
  const lines = text.split('\n');
  if (!complete && lines.length > 1 && lines[lines.length - 1] !== '') lines.pop();
  const header = lines[0] ?? '';
  let uidValidity = 0;
  let nextUid = 0;
  let guid = '';
  const headerExt: string[] = [];
  if (!/^3 /.test(header)) {
    // Version 1 (Courier-compatible): "1 <uidvalidity> <nextuid>".
    const v1 = /^1 (\d+) (\d+)$/.exec(header);
    if (!v1) throw new UidlistCorruptError(`unsupported uidlist header ${JSON.stringify(header.slice(0, 80))}`);
    uidValidity = Number(v1[1]);
    nextUid = Number(v1[2]);
  } else {
    for (const field of header.slice(2).split(' ')) {
      if (field === '') continue;
      const key = field[0];
      const value = field.slice(1);
      if (key === 'V') uidValidity = Number(value);
      else if (key === 'N') nextUid = Number(value);
      else if (key === 'G') guid = value;
      else headerExt.push(field);
    }
  }
  if (!(uidValidity > 0) || !(nextUid > 0) || !Number.isSafeInteger(uidValidity) || !Number.isSafeInteger(nextUid)) {
    throw new UidlistCorruptError(`broken uidlist header ${JSON.stringify(header.slice(0, 80))}`);
  }
  const v3 = header.startsWith('3 ');
  const byBase = new Map<string, UidlistRecord>();
  let prev = 0;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    const m = /^(\d+) /.exec(line);
    if (!m) throw new UidlistCorruptError(`invalid uidlist line ${i + 1}`);
    const uid = Number(m[1]);
    if (!(uid > prev) || uid >= 0xffffffff) throw new UidlistCorruptError(`UIDs not ordered at line ${i + 1}`);
    prev = uid;
    let rest = line.slice(m[0].length);
    const ext: string[] = [];
    let base: string;
    if (v3) {
      const colon = rest.indexOf(':');
      if (colon < 0) throw new UidlistCorruptError(`no file name at line ${i + 1}`);
      for (const f of rest.slice(0, colon).split(' ')) if (f !== '') ext.push(f);
      base = rest.slice(colon + 1);
    } else {
      base = rest.trim();
    }
    rest = '';
    if (base === '' || base.includes('/')) throw new UidlistCorruptError(`broken file name at line ${i + 1}`);
    const colon = base.indexOf(':');
    if (colon >= 0) base = base.slice(0, colon);
    byBase.delete(base);
    byBase.set(base, ext.length > 0 ? { uid, base, ext } : { uid, base });
  }
  const records = [...byBase.values()].sort((a, b) => a.uid - b.uid);
  if (nextUid <= prev) nextUid = prev + 1;
  return { uidValidity, nextUid, guid, records, ...(headerExt.length > 0 ? { headerExt } : {}) };
}

export function formatUidlistHeader(u: Pick<Uidlist, 'uidValidity' | 'nextUid' | 'guid' | 'headerExt'>): string {
  const ext = u.headerExt && u.headerExt.length > 0 ? ` ${u.headerExt.join(' ')}` : '';
  return `3 V${u.uidValidity} N${u.nextUid} G${u.guid}${ext}\n`;
}

export function formatUidlistRecord(r: UidlistRecord): string {
  const ext = r.ext && r.ext.length > 0 ? ` ${r.ext.join(' ')}` : '';
  return `${r.uid}${ext} :${r.base}\n`;
}

export function formatUidlist(u: Uidlist): string {
  return formatUidlistHeader(u) + u.records.map(formatUidlistRecord).join('');
}

export function newMailboxGuid(): string {
  return randomBytes(16).toString('hex');
}

/** Reads the uidlist of a mailbox directory; undefined if there is none (or it is empty). Throws UidlistCorruptError. */
export async function readUidlist(dir: string, locked = false): Promise<{ uidlist: Uidlist; stamp: string; ino: bigint; offset: number } | undefined> {
  let fh;
  try {
    fh = await fsp.open(join(dir, UIDLIST), 'r');
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const st = await fh.stat({ bigint: true });
    const data = await fh.readFile();
    const text = data.toString('utf8');
    if (text.trim() === '') return undefined;
    // The stamp is of what was read: a partial last line makes the next stamp differ (the file grows).
    const offset = locked ? data.length : data.lastIndexOf(0x0a) + 1;
    return { uidlist: parseUidlist(text, locked), stamp: `${st.ino}:${st.size}:${st.mtimeNs}`, ino: st.ino, offset };
  } finally {
    await fh.close();
  }
}

/**
 * Reads what was appended since `offset` (bytes of complete lines already
 * parsed) if the file is still the same inode and has not shrunk; otherwise
 * `replaced` (rewritten by rename: read it whole). Records only — the header
 * changes only by a rewrite.
 */
export async function readUidlistTail(
  dir: string,
  ino: bigint,
  offset: number,
  locked: boolean,
): Promise<{ kind: 'replaced' } | { kind: 'tail'; records: UidlistRecord[]; offset: number; stamp: string }> {
  let fh;
  try {
    fh = await fsp.open(join(dir, UIDLIST), 'r');
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return { kind: 'replaced' };
    throw err;
  }
  try {
    const st = await fh.stat({ bigint: true });
    const size = Number(st.size);
    if (st.ino !== ino || size < offset) return { kind: 'replaced' };
    const buf = Buffer.alloc(size - offset);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    const data = buf.subarray(0, got);
    const end = locked ? data.length : data.lastIndexOf(0x0a) + 1;
    const records: UidlistRecord[] = [];
    for (const line of data.subarray(0, end).toString('utf8').split('\n')) {
      if (line === '') continue;
      const r = parseRecordLine(line, true);
      if (!r) throw new UidlistCorruptError('invalid uidlist line appended');
      records.push(r);
    }
    return { kind: 'tail', records, offset: offset + end, stamp: `${st.ino}:${st.size}:${st.mtimeNs}` };
  } finally {
    await fh.close();
  }
}

function parseRecordLine(line: string, v3: boolean): UidlistRecord | undefined {
  const m = /^(\d+) /.exec(line);
  if (!m) return undefined;
  const uid = Number(m[1]);
  if (!(uid > 0) || uid >= 0xffffffff) return undefined;
  const rest = line.slice(m[0].length);
  const ext: string[] = [];
  let base: string;
  if (v3) {
    const colon = rest.indexOf(':');
    if (colon < 0) return undefined;
    for (const f of rest.slice(0, colon).split(' ')) if (f !== '') ext.push(f);
    base = rest.slice(colon + 1);
  } else {
    base = rest.trim();
  }
  const info = base.indexOf(':');
  if (info >= 0) base = base.slice(0, info);
  if (base === '' || base.includes('/')) return undefined;
  return ext.length > 0 ? { uid, base, ext } : { uid, base };
}

/** The file's identity and size, to tell whether it changed since a read without reading it. */
export async function uidlistStamp(dir: string): Promise<string | undefined> {
  try {
    const st = await fsp.stat(join(dir, UIDLIST), { bigint: true });
    return `${st.ino}:${st.size}:${st.mtimeNs}`;
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Runs `fn` holding dovecot-uidlist.lock (`alreadyHeld`: the caller holds it, run `fn` as it is). */
export function lockUidlist<T>(dir: string, fn: () => Promise<T>, alreadyHeld = false): Promise<T> {
  return alreadyHeld ? fn() : withDotlock(join(dir, UIDLIST), () => fn());
}

/** Appends records (caller holds the lock and re-read the file under it). */
export async function appendUidlist(dir: string, records: readonly UidlistRecord[]): Promise<void> {
  if (records.length === 0) return;
  const fh = await fsp.open(join(dir, UIDLIST), 'a+', 0o600);
  try {
    // A file cut short after its last newline (a crash mid-write elsewhere) must not swallow our first line.
    const { size } = await fh.stat();
    const last = Buffer.alloc(1);
    const cut = size > 0 && (await fh.read(last, 0, 1, size - 1)).bytesRead === 1 && last[0] !== 0x0a;
    await fh.writeFile((cut ? '\n' : '') + records.map(formatUidlistRecord).join(''));
    await fh.datasync();
  } finally {
    await fh.close();
  }
}

/** Replaces the whole file by rename (caller holds the lock). */
export async function rewriteUidlist(dir: string, u: Uidlist): Promise<void> {
  const tmp = join(dir, `${UIDLIST}.tmp`);
  const fh = await fsp.open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(formatUidlist(u));
    await fh.datasync();
  } finally {
    await fh.close();
  }
  await fsp.rename(tmp, join(dir, UIDLIST));
}
