/**
 * SEARCH and UID SEARCH (RFC 3501 §6.4.4) with every RFC 3501 key.
 * CHARSET UTF-8 and US-ASCII are accepted (others: NO [BADCHARSET]).
 * Header keys compare against decoded header values (RFC 2047), BODY and
 * TEXT against decoded text parts (transfer encoding and charset undone),
 * case-insensitively. Each message's data is read at most once per search
 * and only when a key needs it.
 */
import { MessageGoneError } from '../../store/mailbox/errors.ts';
import type { EnvelopeHeaders, MessageRecord, MessageSummary, MimePart } from '../../store/mailbox/types.ts';
import type { CommandOf, SearchKey } from '../protocol/command.ts';
import { selectIndexes } from '../protocol/sequence.ts';
import { decodeCharset, decodeHeaderValue, decodeTransfer, fieldValue, splitHeader } from '../mime-text.ts';
import type { SelectedMailbox } from '../selected.ts';
import type { ImapSession, Tagged } from '../session.ts';

const CHARSETS = new Set(['UTF-8', 'US-ASCII']);
/** Bytes of one message's text searched at most (BODY/TEXT). */
const MAX_SEARCH_BYTES = 16 * 1024 * 1024;

export async function searchCommand(s: ImapSession, _tag: string, cmd: CommandOf<'SEARCH'>): Promise<Tagged> {
  if (cmd.charset && !CHARSETS.has(cmd.charset)) return { status: 'NO', code: 'BADCHARSET (UTF-8 US-ASCII)', text: 'Unsupported charset' };
  const sel = s.selected!;
  const hits: number[] = [];
  const needsData = usesMessageData(cmd.key);
  // A window of messages at a time: their index entries are read concurrently.
  for (let w = 0; w < sel.uids.length; w += WINDOW) {
    const batch: Candidate[] = [];
    for (let i = w; i < Math.min(w + WINDOW, sel.uids.length); i++) {
      const uid = sel.uids[i]!;
      const rec = sel.record(uid);
      if (!rec || sel.isGone(uid)) continue;
      const m = new Candidate(sel, i, rec);
      if (needsData) m.summary().catch(() => undefined);
      batch.push(m);
    }
    for (const m of batch) {
      try {
        if (await matches(m, cmd.key)) hits.push(cmd.uid ? m.rec.uid : m.index + 1);
      } catch (err) {
        if (!(err instanceof MessageGoneError)) throw err;
      }
    }
  }
  await s.send(`* SEARCH${hits.length > 0 ? ` ${hits.join(' ')}` : ''}`);
  return { status: 'OK', text: 'SEARCH completed' };
}

const WINDOW = 64;

/** Whether any key needs more than the record (flags, size, dates, numbers). */
function usesMessageData(key: SearchKey): boolean {
  switch (key.k) {
    case 'header':
    case 'body':
    case 'text':
      return true;
    case 'date':
      return key.which === 'sent';
    case 'not':
      return usesMessageData(key.key);
    case 'or':
      return usesMessageData(key.a) || usesMessageData(key.b);
    case 'and':
      return key.keys.some(usesMessageData);
    default:
      return false;
  }
}

/** Header keys answered from the cached envelope, without reading the file. */
const ENVELOPE_FIELDS: Readonly<Record<string, keyof EnvelopeHeaders>> = { from: 'from', to: 'to', cc: 'cc', bcc: 'bcc', subject: 'subject' };

/** One message under test, loading its header and text lazily. */
class Candidate {
  readonly sel: SelectedMailbox;
  readonly index: number;
  readonly rec: MessageRecord;
  private summaryP: Promise<MessageSummary> | undefined;
  private headerP: Promise<Map<string, string[]>> | undefined;
  private textP: Promise<string> | undefined;

  constructor(sel: SelectedMailbox, index: number, rec: MessageRecord) {
    this.sel = sel;
    this.index = index;
    this.rec = rec;
  }

  summary(): Promise<MessageSummary> {
    return (this.summaryP ??= this.sel.view.summary(this.rec.uid));
  }

  /** Lowercased field name → decoded values, lowercased. */
  headers(): Promise<Map<string, string[]>> {
    return (this.headerP ??= (async () => {
      const root = (await this.summary()).root;
      const block = await this.sel.view.readBuffer(this.rec.uid, root.headerStart, root.bodyStart);
      const map = new Map<string, string[]>();
      for (const f of splitHeader(block)) {
        const list = map.get(f.name) ?? [];
        list.push(decodeHeaderValue(fieldValue(f)).toLowerCase());
        map.set(f.name, list);
      }
      return map;
    })());
  }

  /** The decoded text of the body's text parts, lowercased. */
  text(): Promise<string> {
    return (this.textP ??= (async () => {
      const root = (await this.summary()).root;
      const parts: string[] = [];
      let budget = MAX_SEARCH_BYTES;
      const walk = async (p: MimePart): Promise<void> => {
        if (budget <= 0) return;
        if (p.children) {
          for (const c of p.children) await walk(c);
          return;
        }
        if (p.message) return walk(p.message.root);
        if (p.type !== 'text') return;
        const end = Math.min(p.bodyEnd, p.bodyStart + budget);
        budget -= end - p.bodyStart;
        const raw = await this.sel.view.readBuffer(this.rec.uid, p.bodyStart, end);
        const bytes = decodeTransfer(raw, p.encoding) ?? raw;
        parts.push(decodeCharset(bytes, p.params.charset?.toLowerCase()).toLowerCase());
      };
      await walk(root);
      return parts.join('\n');
    })());
  }
}

function dayOf(d: Date): number {
  return Math.floor(d.getTime() / 86_400_000);
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

/** The calendar day of a Date header in its own zone (RFC 3501 §6.4.4 SENT*), or null. */
export function sentDay(raw: string | undefined): number | null {
  if (!raw) return null;
  const m = /(\d{1,2})\s+([A-Za-z]{3})[a-z]*\s+(\d{2,4})/.exec(raw);
  if (!m) return null;
  const month = MONTHS.indexOf(m[2]!.toLowerCase());
  if (month < 0) return null;
  let year = Number(m[3]);
  if (year < 50) year += 2000;
  else if (year < 1000) year += 1900;
  return Math.floor(Date.UTC(year, month, Number(m[1])) / 86_400_000);
}

function compareDay(day: number, op: 'before' | 'on' | 'since', target: number): boolean {
  return op === 'before' ? day < target : op === 'on' ? day === target : day >= target;
}

async function matches(m: Candidate, key: SearchKey): Promise<boolean> {
  switch (key.k) {
    case 'all':
      return true;
    case 'flag':
      return m.rec.flags.some((f) => f.toLowerCase() === key.flag.toLowerCase()) === key.present;
    case 'recent':
      return m.sel.view.recentUids.has(m.rec.uid) === key.present;
    case 'new':
      return m.sel.view.recentUids.has(m.rec.uid) && !m.rec.flags.includes('\\Seen');
    case 'old':
      return !m.sel.view.recentUids.has(m.rec.uid);
    case 'size':
      return key.op === 'larger' ? m.rec.size > key.n : m.rec.size < key.n;
    case 'date': {
      if (key.which === 'internal') return compareDay(dayOf(m.rec.internalDate), key.op, key.day);
      const day = sentDay((await m.summary()).envelope.date);
      return day !== null && compareDay(day, key.op, key.day);
    }
    case 'header': {
      const envField = ENVELOPE_FIELDS[key.field];
      if (envField && key.value !== '') {
        const raw = (await m.summary()).envelope[envField];
        return raw !== undefined && decodeHeaderValue(raw).toLowerCase().includes(key.value.toLowerCase());
      }
      const values = (await m.headers()).get(key.field);
      if (!values) return false;
      const needle = key.value.toLowerCase();
      // RFC 3501: HEADER with an empty string matches every message having the field.
      return values.some((v) => v.includes(needle));
    }
    case 'body':
      return (await m.text()).includes(key.value.toLowerCase());
    case 'text': {
      const needle = key.value.toLowerCase();
      for (const values of (await m.headers()).values()) if (values.some((v) => v.includes(needle))) return true;
      return (await m.text()).includes(needle);
    }
    case 'not':
      return !(await matches(m, key.key));
    case 'or':
      return (await matches(m, key.a)) || (await matches(m, key.b));
    case 'and':
      for (const k of key.keys) if (!(await matches(m, k))) return false;
      return true;
    case 'seq': {
      const n = m.sel.uids.length;
      return selectIndexes(key.set, [m.index + 1], n).length > 0;
    }
    case 'uid': {
      const last = m.sel.uids[m.sel.uids.length - 1] ?? 0;
      return selectIndexes(key.set, [m.rec.uid], last).length > 0;
    }
  }
}
