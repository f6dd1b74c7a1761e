/**
 * FETCH and UID FETCH (RFC 3501 §6.4.5, §7.4.2; RFC 3516 BINARY). Message
 * attributes come from the store's records and cached summaries, bodies
 * from byte ranges of the CRLF form; a large literal is streamed with
 * back-pressure, never held whole. Fetching a body without .PEEK sets \Seen
 * (once, for the whole set) and reports the new FLAGS.
 */
import { MessageGoneError } from '../../store/mailbox/errors.ts';
import type { MessageSummary, MimePart } from '../../store/mailbox/types.ts';
import type { CommandOf, FetchItem, Partial, Section } from '../protocol/command.ts';
import { encodeAstring, formatFlags, formatInternalDate, piecesText, type Piece } from '../protocol/encode.ts';
import { formatBodyStructure, formatEnvelope, resolvePart } from '../protocol/structure.ts';
import { decodeTransfer, splitHeader } from '../mime-text.ts';
import type { SelectedMailbox } from '../selected.ts';
import type { ImapSession, Tagged } from '../session.ts';
import { resolveSet } from './sets.ts';

/** Literals above this are streamed from the file instead of read into memory. */
const STREAM_ABOVE = 256 * 1024;

export async function fetchCommand(s: ImapSession, _tag: string, cmd: CommandOf<'FETCH'>): Promise<Tagged> {
  const sel = s.selected!;
  const r = resolveSet(sel, cmd.set, cmd.uid);
  if (!r.ok) return { status: 'BAD', text: r.text };
  let items = [...cmd.items];
  // RFC 3501 §6.4.8: UID FETCH always returns the UID.
  if (cmd.uid && !items.some((i) => i.kind === 'UID')) items = [{ kind: 'UID' }, ...items];
  const setsSeen = items.some((i) => (i.kind === 'BODY[]' && !i.peek) || (i.kind === 'BINARY[]' && !i.peek) || i.kind === 'RFC822' || i.kind === 'RFC822.TEXT');
  const wantsFlags = items.some((i) => i.kind === 'FLAGS');
  const uids = r.indexes.map((i) => sel.uids[i]!);
  const flagged = new Set<number>();
  if (setsSeen && !sel.readOnly) {
    const unseen = uids.filter((u) => !sel.isGone(u) && !sel.record(u)?.flags.includes('\\Seen'));
    if (unseen.length > 0) {
      const records = await sel.view.setFlags(unseen, 'add', ['\\Seen']);
      sel.updated(records);
      for (const rec of records) flagged.add(rec.uid);
    }
  }
  // Messages are prepared a window at a time, concurrently (index reads and
  // small bodies come from the thread pool), and written in order.
  let gone = 0;
  for (let w = 0; w < r.indexes.length; w += WINDOW) {
    const window = r.indexes.slice(w, w + WINDOW);
    const prepared = await Promise.all(
      window.map(async (i) => {
        const uid = sel.uids[i]!;
        const withFlags = !wantsFlags && flagged.has(uid) ? [...items, { kind: 'FLAGS' } as FetchItem] : items;
        try {
          return await prepare(sel, i + 1, uid, withFlags);
        } catch (err) {
          if (!(err instanceof MessageGoneError)) throw err;
          gone++;
          return null;
        }
      }),
    );
    for (const p of prepared) {
      if (!p) continue;
      try {
        await emit(s, sel, p);
      } catch (err) {
        if (!(err instanceof MessageGoneError)) throw err;
        gone++;
      }
    }
  }
  if (gone > 0) return { status: 'NO', code: 'EXPUNGEISSUED', text: 'Some messages were expunged and not returned' };
  return { status: 'OK', text: 'FETCH completed' };
}

/** Messages prepared at once (memory: at most WINDOW × STREAM_ABOVE of bodies). */
const WINDOW = 32;

/** A response item: text ready, or a byte range of the message (read now if small, streamed if large). */
type Out = { readonly pieces: Piece[] } | { readonly head: string; readonly start: number; readonly end: number; data?: Buffer };

interface Prepared {
  readonly seq: number;
  readonly uid: number;
  readonly outs: Out[];
}

async function prepare(sel: SelectedMailbox, seq: number, uid: number, items: readonly FetchItem[]): Promise<Prepared> {
  const rec = sel.record(uid);
  if (!rec) throw new MessageGoneError(uid);
  let summary: Promise<MessageSummary> | undefined;
  const sum = () => (summary ??= sel.view.summary(uid));
  const outs: Out[] = [];
  for (const item of items) {
    switch (item.kind) {
      case 'UID':
        outs.push({ pieces: [`UID ${uid}`] });
        break;
      case 'FLAGS':
        outs.push({ pieces: [`FLAGS ${formatFlags(sel.flagsOf(uid))}`] });
        break;
      case 'INTERNALDATE':
        outs.push({ pieces: [`INTERNALDATE ${formatInternalDate(rec.internalDate)}`] });
        break;
      case 'RFC822.SIZE':
        outs.push({ pieces: [`RFC822.SIZE ${rec.size}`] });
        break;
      case 'ENVELOPE':
        outs.push({ pieces: ['ENVELOPE ', ...formatEnvelope((await sum()).envelope)] });
        break;
      case 'BODYSTRUCTURE':
        outs.push({ pieces: ['BODYSTRUCTURE ', ...formatBodyStructure((await sum()).root, true)] });
        break;
      case 'BODY':
        outs.push({ pieces: ['BODY ', ...formatBodyStructure((await sum()).root, false)] });
        break;
      case 'RFC822':
        outs.push({ head: 'RFC822', start: 0, end: rec.size });
        break;
      case 'RFC822.HEADER': {
        const root = (await sum()).root;
        outs.push({ head: 'RFC822.HEADER', start: root.headerStart, end: root.bodyStart });
        break;
      }
      case 'RFC822.TEXT': {
        const root = (await sum()).root;
        outs.push({ head: 'RFC822.TEXT', start: root.bodyStart, end: root.bodyEnd });
        break;
      }
      case 'BODY[]':
        outs.push(await bodySection(sel, uid, rec.size, item.section, item.partial, sum));
        break;
      case 'BINARY[]':
      case 'BINARY.SIZE':
        outs.push(await binarySection(sel, uid, item, sum));
        break;
    }
  }
  // Small ranges are read now, all of a message's at once.
  await Promise.all(
    outs.map(async (o) => {
      if ('pieces' in o) return;
      const len = Math.max(0, o.end - o.start);
      if (len > 0 && len <= STREAM_ABOVE) o.data = await sel.view.readBuffer(uid, o.start, o.end);
    }),
  );
  return { seq, uid, outs };
}

async function emit(s: ImapSession, sel: SelectedMailbox, p: Prepared): Promise<void> {
  // Small responses go out as one piece list; a large literal is streamed in place.
  let pending: Piece[] = [`* ${p.seq} FETCH (`];
  for (let k = 0; k < p.outs.length; k++) {
    const o = p.outs[k]!;
    if (k > 0) pending.push(' ');
    if ('pieces' in o) {
      pending.push(...o.pieces);
      continue;
    }
    const len = Math.max(0, o.end - o.start);
    pending.push(`${o.head} {${len}}\r\n`);
    if (len === 0) continue;
    if (o.data) {
      pending.push(o.data);
      continue;
    }
    await s.write(pending);
    pending = [];
    await s.pipe(await sel.view.read(p.uid, o.start, o.end));
  }
  pending.push(')');
  await s.send(pending);
}

function sectionLabel(kind: string, section: Section, partial: Partial | undefined): string {
  let t = section.text ?? '';
  if (section.fields) t += ` (${section.fields.map((f) => piecesText(encodeAstring(f))).join(' ')})`;
  const p = section.part.join('.');
  return `${kind}[${p && t ? `${p}.${t}` : p || t}]${partial ? `<${partial.offset}>` : ''}`;
}

function applyPartial(start: number, end: number, partial: Partial | undefined): [number, number] {
  if (!partial) return [start, end];
  const s = Math.min(end, start + partial.offset);
  return [s, Math.min(end, s + partial.length)];
}

function sliceBuf(b: Buffer, partial: Partial | undefined): Buffer {
  if (!partial) return b;
  const s = Math.min(b.length, partial.offset);
  return b.subarray(s, Math.min(b.length, s + partial.length));
}

async function bodySection(sel: SelectedMailbox, uid: number, size: number, section: Section, partial: Partial | undefined, sum: () => Promise<MessageSummary>): Promise<Out> {
  const head = sectionLabel('BODY', section, partial);
  const literal = (b: Buffer): Out => ({ pieces: [`${head} {${b.length}}\r\n`, b] });
  if (section.part.length === 0 && !section.text) {
    const [a, b] = applyPartial(0, size, partial);
    return { head, start: a, end: b };
  }
  const summary = await sum();
  let headerOf: MimePart | null;
  let part: MimePart | null = null;
  if (section.part.length === 0) headerOf = summary.root;
  else {
    part = resolvePart(summary, section.part);
    if (!part) return literal(Buffer.alloc(0));
    // HEADER/TEXT of a part are those of the message it encloses (message/rfc822).
    headerOf = part.message ? part.message.root : null;
  }
  switch (section.text) {
    case undefined: {
      const [a, b] = applyPartial(part!.bodyStart, part!.bodyEnd, partial);
      return { head, start: a, end: b };
    }
    case 'MIME': {
      const [a, b] = applyPartial(part!.headerStart, part!.bodyStart, partial);
      return { head, start: a, end: b };
    }
    case 'TEXT': {
      if (!headerOf) return literal(Buffer.alloc(0));
      const [a, b] = applyPartial(headerOf.bodyStart, headerOf.bodyEnd, partial);
      return { head, start: a, end: b };
    }
    case 'HEADER': {
      if (!headerOf) return literal(Buffer.alloc(0));
      const [a, b] = applyPartial(headerOf.headerStart, headerOf.bodyStart, partial);
      return { head, start: a, end: b };
    }
    case 'HEADER.FIELDS':
    case 'HEADER.FIELDS.NOT': {
      if (!headerOf) return literal(Buffer.alloc(0));
      const block = await sel.view.readBuffer(uid, headerOf.headerStart, headerOf.bodyStart);
      const names = new Set(section.fields!.map((f) => f.toLowerCase()));
      const keep = section.text === 'HEADER.FIELDS';
      const fields = splitHeader(block).filter((f) => names.has(f.name) === keep);
      return literal(sliceBuf(Buffer.concat([...fields.map((f) => f.raw), Buffer.from('\r\n')]), partial));
    }
  }
}

async function binarySection(sel: SelectedMailbox, uid: number, item: Extract<FetchItem, { kind: 'BINARY[]' | 'BINARY.SIZE' }>, sum: () => Promise<MessageSummary>): Promise<Out> {
  const label = `${item.kind === 'BINARY.SIZE' ? 'BINARY.SIZE' : 'BINARY'}[${item.part.join('.')}]`;
  let data: Buffer;
  if (item.part.length === 0) data = await sel.view.readBuffer(uid);
  else {
    const part = resolvePart(await sum(), item.part);
    if (!part) data = Buffer.alloc(0);
    else {
      const raw = await sel.view.readBuffer(uid, part.bodyStart, part.bodyEnd);
      const decoded = part.children || part.message ? raw : decodeTransfer(raw, part.encoding);
      // RFC 3516 §4.3: an encoding we cannot undo is NO [UNKNOWN-CTE]; served as is, flagged in the log instead.
      data = decoded ?? raw;
    }
  }
  if (item.kind === 'BINARY.SIZE') return { pieces: [`${label} ${data.length}`] };
  const partial = item.partial;
  const out = sliceBuf(data, partial);
  const head = `${label}${partial ? `<${partial.offset}>` : ''}`;
  // literal8 (~{n}) when the bytes hold a NUL, which a plain literal may not carry.
  return { pieces: [`${head} ${out.includes(0) ? '~' : ''}{${out.length}}\r\n`, out] };
}
