/**
 * The syntactic level: one framed command → a typed command (RFC 3501 §6,
 * §9; RFC 9051 §6, §9; extensions as cited). Parse, don't validate: every
 * handler receives arguments already shaped — mailbox names decoded from
 * modified UTF-7, sequence sets, fetch items, search keys. Anything
 * malformed is `{ ok: false }` with the text of a BAD; nothing throws.
 */
import { Cursor, MAX_NESTING, ParseError } from './cursor.ts';
import { parseSequenceSet, type SequenceSet } from './sequence.ts';
import { decodeMailboxName } from './utf7.ts';

export interface Section {
  /** Part numbers (`1.2.3` → [1, 2, 3]); empty for the whole message. */
  readonly part: readonly number[];
  readonly text?: 'HEADER' | 'HEADER.FIELDS' | 'HEADER.FIELDS.NOT' | 'TEXT' | 'MIME';
  /** Field names as the client sent them (HEADER.FIELDS). */
  readonly fields?: readonly string[];
}

export interface Partial {
  readonly offset: number;
  readonly length: number;
}

export type SimpleFetchAttribute = 'FLAGS' | 'INTERNALDATE' | 'RFC822.SIZE' | 'ENVELOPE' | 'BODYSTRUCTURE' | 'BODY' | 'UID' | 'RFC822' | 'RFC822.HEADER' | 'RFC822.TEXT';

export type FetchItem =
  | { readonly kind: SimpleFetchAttribute }
  | { readonly kind: 'BODY[]'; readonly peek: boolean; readonly section: Section; readonly partial?: Partial }
  | { readonly kind: 'BINARY[]'; readonly peek: boolean; readonly part: readonly number[]; readonly partial?: Partial }
  | { readonly kind: 'BINARY.SIZE'; readonly part: readonly number[] };

export type SearchKey =
  | { readonly k: 'all' }
  | { readonly k: 'flag'; readonly flag: string; readonly present: boolean }
  | { readonly k: 'new' }
  | { readonly k: 'old' }
  | { readonly k: 'recent'; readonly present: boolean }
  | { readonly k: 'header'; readonly field: string; readonly value: string }
  | { readonly k: 'body'; readonly value: string }
  | { readonly k: 'text'; readonly value: string }
  | { readonly k: 'date'; readonly which: 'internal' | 'sent'; readonly op: 'before' | 'on' | 'since'; readonly day: number }
  | { readonly k: 'size'; readonly op: 'larger' | 'smaller'; readonly n: number }
  | { readonly k: 'not'; readonly key: SearchKey }
  | { readonly k: 'or'; readonly a: SearchKey; readonly b: SearchKey }
  | { readonly k: 'and'; readonly keys: readonly SearchKey[] }
  | { readonly k: 'seq'; readonly set: SequenceSet }
  | { readonly k: 'uid'; readonly set: SequenceSet };

export type StatusItem = 'MESSAGES' | 'RECENT' | 'UIDNEXT' | 'UIDVALIDITY' | 'UNSEEN' | 'SIZE' | 'HIGHESTMODSEQ';

export interface ListOptions {
  readonly extended: boolean;
  readonly selectSubscribed: boolean;
  readonly selectSpecialUse: boolean;
  readonly recursiveMatch: boolean;
  readonly returnSubscribed: boolean;
  readonly returnChildren: boolean;
  readonly returnSpecialUse: boolean;
  readonly returnStatus?: readonly StatusItem[];
}

export type Command =
  | { readonly name: 'CAPABILITY' | 'NOOP' | 'LOGOUT' | 'STARTTLS' | 'CHECK' | 'CLOSE' | 'UNSELECT' | 'EXPUNGE' | 'IDLE' | 'NAMESPACE' }
  | { readonly name: 'ID'; readonly params: readonly (readonly [string, string | null])[] | null }
  | { readonly name: 'ENABLE'; readonly capabilities: readonly string[] }
  | { readonly name: 'LOGIN'; readonly username: string; readonly password: string }
  | { readonly name: 'AUTHENTICATE'; readonly mechanism: string; readonly initial?: string }
  | { readonly name: 'SELECT' | 'EXAMINE'; readonly mailbox: string }
  | { readonly name: 'CREATE'; readonly mailbox: string; readonly specialUse?: string }
  | { readonly name: 'DELETE' | 'SUBSCRIBE' | 'UNSUBSCRIBE'; readonly mailbox: string }
  | { readonly name: 'RENAME'; readonly from: string; readonly to: string }
  | { readonly name: 'LIST'; readonly reference: string; readonly patterns: readonly string[]; readonly options: ListOptions }
  | { readonly name: 'LSUB'; readonly reference: string; readonly pattern: string }
  | { readonly name: 'STATUS'; readonly mailbox: string; readonly items: readonly StatusItem[] }
  | { readonly name: 'APPEND'; readonly mailbox: string; readonly flags: readonly string[]; readonly date?: Date; readonly content: Buffer }
  | { readonly name: 'SEARCH'; readonly uid: boolean; readonly charset?: string; readonly key: SearchKey }
  | { readonly name: 'FETCH'; readonly uid: boolean; readonly set: SequenceSet; readonly items: readonly FetchItem[] }
  | { readonly name: 'STORE'; readonly uid: boolean; readonly set: SequenceSet; readonly op: 'add' | 'remove' | 'replace'; readonly silent: boolean; readonly flags: readonly string[] }
  | { readonly name: 'COPY' | 'MOVE'; readonly uid: boolean; readonly set: SequenceSet; readonly mailbox: string }
  | { readonly name: 'UID EXPUNGE'; readonly set: SequenceSet };

export type CommandName = Command['name'];

/** The command type(s) of the given name(s). */
export type CommandOf<N extends CommandName> = Command extends infer C ? (C extends { readonly name: infer K } ? (N extends K ? C : never) : never) : never;

export type ParseResult =
  | { readonly ok: true; readonly tag: string; readonly command: Command }
  | { readonly ok: false; readonly tag: string | null; readonly message: string };

const TAG = /^[\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c-\x7e]+$/;

export function parseCommand(bytes: Buffer): ParseResult {
  const c = new Cursor(bytes);
  let tag: string | null = null;
  try {
    const sp = bytes.indexOf(0x20);
    const rawTag = bytes.toString('latin1', 0, sp === -1 ? bytes.length : sp);
    if (!TAG.test(rawTag)) return { ok: false, tag: null, message: 'invalid tag' };
    tag = rawTag;
    c.pos = rawTag.length;
    c.sp();
    const name = c.atom().toUpperCase();
    const command = name === 'UID' ? (c.sp(), uidCommand(c, c.atom().toUpperCase())) : plainCommand(c, name);
    c.end();
    return { ok: true, tag, command };
  } catch (err) {
    if (err instanceof ParseError) return { ok: false, tag, message: err.message };
    if (err instanceof RangeError) return { ok: false, tag, message: 'argument too complex' };
    return { ok: false, tag, message: 'malformed command' };
  }
}

function uidCommand(c: Cursor, name: string): Command {
  switch (name) {
    case 'FETCH':
    case 'STORE':
    case 'COPY':
    case 'MOVE':
    case 'SEARCH':
      return plainCommand(c, name, true);
    case 'EXPUNGE':
      c.sp();
      return { name: 'UID EXPUNGE', set: parseSequenceSet(c) };
    default:
      c.fail(`unknown command UID ${name.slice(0, 20)}`);
  }
}

function plainCommand(c: Cursor, name: string, uid = false): Command {
  switch (name) {
    case 'CAPABILITY':
    case 'NOOP':
    case 'LOGOUT':
    case 'STARTTLS':
    case 'CHECK':
    case 'CLOSE':
    case 'UNSELECT':
    case 'EXPUNGE':
    case 'IDLE':
    case 'NAMESPACE':
      return { name };
    case 'ID':
      return { name, params: idParams(c) };
    case 'ENABLE': {
      const capabilities: string[] = [];
      do {
        c.sp();
        capabilities.push(c.atom().toUpperCase());
      } while (!c.done);
      return { name, capabilities };
    }
    case 'LOGIN': {
      c.sp();
      const username = c.astring().toString('utf8');
      c.sp();
      const password = c.astring().toString('utf8');
      return { name, username, password };
    }
    case 'AUTHENTICATE': {
      c.sp();
      const mechanism = c.atom().toUpperCase();
      if (c.done) return { name, mechanism };
      c.sp();
      return { name, mechanism, initial: c.atom() };
    }
    case 'SELECT':
    case 'EXAMINE': {
      c.sp();
      const mailbox = mailboxName(c);
      // RFC 4466 select parameters: only CONDSTORE exists, and we ignore it (not advertised).
      if (!c.done) {
        c.sp();
        c.list(() => c.atom());
      }
      return { name, mailbox };
    }
    case 'CREATE': {
      c.sp();
      const mailbox = mailboxName(c);
      if (c.done) return { name, mailbox };
      // RFC 6154 §3: CREATE name (USE (\Drafts))
      c.sp();
      let specialUse: string | undefined;
      c.list(() => {
        const opt = c.atom().toUpperCase();
        if (opt !== 'USE') c.fail('unknown CREATE parameter');
        c.sp();
        const uses = c.list(() => c.flag());
        if (uses.length > 1) c.fail('one special-use per mailbox');
        specialUse = uses[0];
      });
      return specialUse ? { name, mailbox, specialUse } : { name, mailbox };
    }
    case 'DELETE':
    case 'SUBSCRIBE':
    case 'UNSUBSCRIBE': {
      c.sp();
      return { name, mailbox: mailboxName(c) };
    }
    case 'RENAME': {
      c.sp();
      const from = mailboxName(c);
      c.sp();
      return { name, from, to: mailboxName(c) };
    }
    case 'LIST':
      return listCommand(c);
    case 'LSUB': {
      c.sp();
      const reference = mailboxPattern(c.astring());
      c.sp();
      return { name, reference, pattern: mailboxPattern(c.listMailbox()) };
    }
    case 'STATUS': {
      c.sp();
      const mailbox = mailboxName(c);
      c.sp();
      return { name, mailbox, items: statusItems(c) };
    }
    case 'APPEND':
      return appendCommand(c);
    case 'SEARCH':
      return searchCommand(c, uid);
    case 'FETCH': {
      c.sp();
      const set = parseSequenceSet(c);
      c.sp();
      return { name, uid, set, items: fetchItems(c) };
    }
    case 'STORE':
      return storeCommand(c, uid);
    case 'COPY':
    case 'MOVE': {
      c.sp();
      const set = parseSequenceSet(c);
      c.sp();
      return { name, uid, set, mailbox: mailboxName(c) };
    }
    default:
      c.fail(`unknown command ${name.slice(0, 20)}`);
  }
}

/** A mailbox name: modified UTF-7 decoded, INBOX in any case made `INBOX`. */
function mailboxName(c: Cursor): string {
  const raw = c.astring();
  const name = decodeMailboxName(raw);
  if (name === null) throw new ParseError('mailbox name is not valid modified UTF-7');
  return name.toUpperCase() === 'INBOX' ? 'INBOX' : name;
}

function mailboxPattern(raw: Buffer): string {
  const name = decodeMailboxName(raw);
  if (name === null) throw new ParseError('mailbox name is not valid modified UTF-7');
  return name;
}

function idParams(c: Cursor): (readonly [string, string | null])[] | null {
  c.sp();
  if (c.peek() !== 0x28) {
    c.nstring(); // NIL
    return null;
  }
  const items = c.list(() => c.nstring());
  if (items.length % 2 !== 0 || items.length > 60) c.fail('ID takes up to 30 field/value pairs');
  const out: [string, string | null][] = [];
  for (let i = 0; i < items.length; i += 2) {
    const k = items[i];
    if (!k) c.fail('ID field names are strings');
    out.push([k.toString('utf8').slice(0, 30), items[i + 1]?.toString('utf8').slice(0, 1024) ?? null]);
  }
  return out;
}

const STATUS_ITEMS: readonly StatusItem[] = ['MESSAGES', 'RECENT', 'UIDNEXT', 'UIDVALIDITY', 'UNSEEN', 'SIZE', 'HIGHESTMODSEQ'];

function statusItems(c: Cursor): StatusItem[] {
  return c.list(() => {
    const a = c.atom().toUpperCase() as StatusItem;
    if (!STATUS_ITEMS.includes(a)) c.fail(`unknown status item ${a.slice(0, 20)}`);
    return a;
  }, false);
}

/** RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE, RFC 5819 LIST-STATUS. */
function listCommand(c: Cursor): Command {
  let extended = false;
  let selectSubscribed = false;
  let selectSpecialUse = false;
  let recursiveMatch = false;
  let returnSubscribed = false;
  let returnChildren = false;
  let returnSpecialUse = false;
  let returnStatus: StatusItem[] | undefined;
  c.sp();
  if (c.peek() === 0x28) {
    extended = true;
    c.list(() => {
      const o = c.atom().toUpperCase();
      if (o === 'SUBSCRIBED') selectSubscribed = true;
      else if (o === 'SPECIAL-USE') selectSpecialUse = true;
      else if (o === 'RECURSIVEMATCH') recursiveMatch = true;
      else if (o !== 'REMOTE') c.fail(`unknown LIST selection option ${o.slice(0, 20)}`);
    });
    // RFC 5258 §3.1: RECURSIVEMATCH alone is an error.
    if (recursiveMatch && !selectSubscribed && !selectSpecialUse) c.fail('RECURSIVEMATCH needs another selection option');
    c.sp();
  }
  const reference = mailboxPattern(c.astring());
  c.sp();
  let patterns: string[];
  if (c.peek() === 0x28) {
    extended = true;
    patterns = c.list(() => mailboxPattern(c.listMailbox()), false);
  } else patterns = [mailboxPattern(c.listMailbox())];
  if (!c.done) {
    c.sp();
    const ret = c.atom().toUpperCase();
    if (ret !== 'RETURN') c.fail('expected RETURN');
    extended = true;
    c.sp();
    c.list(() => {
      const o = c.atom().toUpperCase();
      if (o === 'SUBSCRIBED') returnSubscribed = true;
      else if (o === 'CHILDREN') returnChildren = true;
      else if (o === 'SPECIAL-USE') returnSpecialUse = true;
      else if (o === 'STATUS') {
        c.sp();
        returnStatus = statusItems(c);
      } else c.fail(`unknown LIST return option ${o.slice(0, 20)}`);
    });
  }
  return {
    name: 'LIST',
    reference,
    patterns,
    options: { extended, selectSubscribed, selectSpecialUse, recursiveMatch, returnSubscribed, returnChildren, returnSpecialUse, ...(returnStatus ? { returnStatus } : {}) },
  };
}

const MONTHS = ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'];

/** RFC 3501 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz". */
export function parseDateTime(s: string): Date | null {
  const m = /^([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$/.exec(s);
  if (!m) return null;
  const month = MONTHS.indexOf(m[2]!.toUpperCase());
  if (month < 0) return null;
  const offset = (m[7] === '-' ? -1 : 1) * (Number(m[8]) * 60 + Number(m[9]));
  const t = Date.UTC(Number(m[3]), month, Number(m[1]!.trim()), Number(m[4]), Number(m[5]), Number(m[6])) - offset * 60_000;
  const d = new Date(t);
  return Number.isNaN(t) ? null : d;
}

function appendCommand(c: Cursor): Command {
  c.sp();
  const mailbox = mailboxName(c);
  c.sp();
  let flags: string[] = [];
  let date: Date | undefined;
  if (c.peek() === 0x28) {
    flags = c.list(() => c.flag());
    c.sp();
  }
  if (c.peek() === 0x22) {
    const s = c.quoted().toString('latin1');
    const d = parseDateTime(s);
    if (!d) c.fail('bad date-time');
    date = d;
    c.sp();
  }
  const content = c.literal();
  return { name: 'APPEND', mailbox, flags, content, ...(date ? { date } : {}) };
}

function storeCommand(c: Cursor, uid: boolean): Command {
  c.sp();
  const set = parseSequenceSet(c);
  c.sp();
  if (c.peek() === 0x28) {
    // RFC 7162 UNCHANGEDSINCE: not offered (CONDSTORE not advertised).
    c.fail('STORE modifiers are not supported');
  }
  const what = c.atom().toUpperCase();
  const m = /^([+-]?)FLAGS(\.SILENT)?$/.exec(what);
  if (!m) c.fail('expected FLAGS, +FLAGS or -FLAGS');
  c.sp();
  let flags: string[];
  if (c.peek() === 0x28) flags = c.list(() => c.flag());
  else {
    flags = [c.flag()];
    while (!c.done) {
      c.sp();
      flags.push(c.flag());
    }
  }
  const op = m[1] === '+' ? 'add' : m[1] === '-' ? 'remove' : 'replace';
  return { name: 'STORE', uid, set, op, silent: m[2] !== undefined, flags };
}

// ------------------------------------------------------------------ FETCH

const MACROS: Record<string, readonly SimpleFetchAttribute[]> = {
  ALL: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE'],
  FAST: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE'],
  FULL: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODY'],
};

const SIMPLE: readonly string[] = ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODYSTRUCTURE', 'BODY', 'UID', 'RFC822', 'RFC822.HEADER', 'RFC822.TEXT'];

function fetchItems(c: Cursor): FetchItem[] {
  if (c.peek() === 0x28) return c.list(() => fetchItem(c), false);
  const save = c.pos;
  const word = c.atom().toUpperCase();
  const macro = MACROS[word];
  if (macro) return macro.map((kind) => ({ kind }));
  c.pos = save;
  return [fetchItem(c)];
}

function fetchItem(c: Cursor): FetchItem {
  const start = c.pos;
  // Read up to "[" or a delimiter: BODY.PEEK[...] is one item with a bracket.
  while (!c.done) {
    const ch = c.peek();
    if (ch === 0x5b || ch === 0x20 || ch === 0x29 || ch === 0x28) break;
    c.pos++;
  }
  const word = c.buf.toString('latin1', start, c.pos).toUpperCase();
  if (word === '') c.fail('expected a fetch attribute');
  if (c.peek() !== 0x5b) {
    if (SIMPLE.includes(word)) return { kind: word as SimpleFetchAttribute };
    if (word === 'MODSEQ') c.fail('MODSEQ needs CONDSTORE, which is not offered');
    c.fail(`unknown fetch attribute ${word.slice(0, 20)}`);
  }
  c.pos++; // [
  if (word === 'BODY' || word === 'BODY.PEEK') {
    const section = sectionSpec(c);
    const partial = partialSpec(c);
    return { kind: 'BODY[]', peek: word === 'BODY.PEEK', section, ...(partial ? { partial } : {}) };
  }
  if (word === 'BINARY' || word === 'BINARY.PEEK' || word === 'BINARY.SIZE') {
    const part = sectionPart(c);
    c.expect(']');
    if (word === 'BINARY.SIZE') return { kind: 'BINARY.SIZE', part };
    const partial = partialSpec(c);
    return { kind: 'BINARY[]', peek: word === 'BINARY.PEEK', part, ...(partial ? { partial } : {}) };
  }
  c.fail(`unknown fetch attribute ${word.slice(0, 20)}`);
}

function sectionPart(c: Cursor): number[] {
  const part: number[] = [];
  while (c.peek() >= 0x30 && c.peek() <= 0x39) {
    part.push(c.nzNumber());
    if (part.length > 32) c.fail('section too deep');
    if (!c.take('.')) break;
    if (!(c.peek() >= 0x30 && c.peek() <= 0x39)) {
      c.pos--; // the dot belongs to the text part
      break;
    }
  }
  return part;
}

function sectionSpec(c: Cursor): Section {
  const part = sectionPart(c);
  if (c.take(']')) return { part };
  if (part.length > 0) c.expect('.');
  const start = c.pos;
  while (!c.done && c.peek() !== 0x5d && c.peek() !== 0x20) c.pos++;
  const text = c.buf.toString('latin1', start, c.pos).toUpperCase();
  if (text === 'HEADER' || text === 'TEXT' || (text === 'MIME' && part.length > 0)) {
    c.expect(']');
    return { part, text };
  }
  if (text === 'HEADER.FIELDS' || text === 'HEADER.FIELDS.NOT') {
    c.sp();
    const fields = c.list(() => c.astring().toString('latin1'), false);
    if (fields.some((f) => !/^[\x21-\x39\x3b-\x7e]+$/.test(f))) c.fail('bad header field name');
    c.expect(']');
    return { part, text, fields };
  }
  c.fail('bad section');
}

function partialSpec(c: Cursor): Partial | undefined {
  if (!c.take('<')) return undefined;
  const offset = c.number();
  c.expect('.');
  const length = c.nzNumber();
  c.expect('>');
  return { offset, length };
}

// ------------------------------------------------------------------ SEARCH

function searchCommand(c: Cursor, uid: boolean): Command {
  c.sp();
  let charset: string | undefined;
  if (/^charset /i.test(c.buf.toString('latin1', c.pos, c.pos + 8))) {
    c.atom();
    c.sp();
    charset = c.astring().toString('latin1').toUpperCase();
    c.sp();
  }
  const keys: SearchKey[] = [searchKey(c, 0)];
  while (!c.done) {
    c.sp();
    keys.push(searchKey(c, 0));
  }
  const key: SearchKey = keys.length === 1 ? keys[0]! : { k: 'and', keys };
  return { name: 'SEARCH', uid, key, ...(charset ? { charset } : {}) };
}

const FLAG_KEYS: Record<string, [string, boolean]> = {
  ANSWERED: ['\\Answered', true],
  DELETED: ['\\Deleted', true],
  DRAFT: ['\\Draft', true],
  FLAGGED: ['\\Flagged', true],
  SEEN: ['\\Seen', true],
  UNANSWERED: ['\\Answered', false],
  UNDELETED: ['\\Deleted', false],
  UNDRAFT: ['\\Draft', false],
  UNFLAGGED: ['\\Flagged', false],
  UNSEEN: ['\\Seen', false],
};

const HEADER_KEYS: Record<string, string> = { BCC: 'bcc', CC: 'cc', FROM: 'from', SUBJECT: 'subject', TO: 'to' };

const DATE_KEYS: Record<string, ['internal' | 'sent', 'before' | 'on' | 'since']> = {
  BEFORE: ['internal', 'before'],
  ON: ['internal', 'on'],
  SINCE: ['internal', 'since'],
  SENTBEFORE: ['sent', 'before'],
  SENTON: ['sent', 'on'],
  SENTSINCE: ['sent', 'since'],
};

function searchString(c: Cursor): string {
  return c.astring().toString('utf8');
}

/** RFC 3501 `date`: d-Mon-yyyy, optionally quoted; the UTC day number. */
function searchDate(c: Cursor): number {
  const s = c.peek() === 0x22 ? c.quoted().toString('latin1') : c.atom();
  const m = /^(\d{1,2})-([A-Za-z]{3})-(\d{4})$/.exec(s);
  const month = m ? MONTHS.indexOf(m[2]!.toUpperCase()) : -1;
  if (!m || month < 0) c.fail('bad date');
  return Math.floor(Date.UTC(Number(m[3]), month, Number(m[1])) / 86_400_000);
}

function searchKey(c: Cursor, depth: number): SearchKey {
  if (depth > MAX_NESTING) c.fail('search key nested too deeply');
  if (c.peek() === 0x28) {
    const keys = c.list(() => searchKey(c, depth + 1), false);
    return keys.length === 1 ? keys[0]! : { k: 'and', keys };
  }
  const ch = c.peek();
  if ((ch >= 0x30 && ch <= 0x39) || ch === 0x2a) return { k: 'seq', set: parseSequenceSet(c) };
  const word = c.atom().toUpperCase();
  const flag = FLAG_KEYS[word];
  if (flag) return { k: 'flag', flag: flag[0], present: flag[1] };
  const header = HEADER_KEYS[word];
  if (header) {
    c.sp();
    return { k: 'header', field: header, value: searchString(c) };
  }
  const date = DATE_KEYS[word];
  if (date) {
    c.sp();
    return { k: 'date', which: date[0], op: date[1], day: searchDate(c) };
  }
  switch (word) {
    case 'ALL':
      return { k: 'all' };
    case 'NEW':
      return { k: 'new' };
    case 'OLD':
      return { k: 'old' };
    case 'RECENT':
      return { k: 'recent', present: true };
    case 'KEYWORD':
    case 'UNKEYWORD':
      c.sp();
      return { k: 'flag', flag: c.atom(), present: word === 'KEYWORD' };
    case 'HEADER': {
      c.sp();
      const field = c.astring().toString('latin1').toLowerCase();
      c.sp();
      return { k: 'header', field, value: searchString(c) };
    }
    case 'BODY':
    case 'TEXT':
      c.sp();
      return { k: word === 'BODY' ? 'body' : 'text', value: searchString(c) };
    case 'LARGER':
    case 'SMALLER':
      c.sp();
      return { k: 'size', op: word === 'LARGER' ? 'larger' : 'smaller', n: c.number64() };
    case 'NOT':
      c.sp();
      return { k: 'not', key: searchKey(c, depth + 1) };
    case 'OR': {
      c.sp();
      const a = searchKey(c, depth + 1);
      c.sp();
      return { k: 'or', a, b: searchKey(c, depth + 1) };
    }
    case 'UID':
      c.sp();
      return { k: 'uid', set: parseSequenceSet(c) };
    default:
      c.fail(`unknown search key ${word.slice(0, 20)}`);
  }
}
