/**
 * ENVELOPE, BODY and BODYSTRUCTURE (RFC 3501 §7.4.2) from the store's
 * MessageSummary. Header values are served raw (encoded words undecoded), as
 * RFC 3501 and Dovecot do; address headers are split into RFC 5322
 * mailboxes and groups here.
 */
import type { EnvelopeHeaders, MessageSummary, MimePart } from '../../store/mailbox/types.ts';
import { encodeString, type Piece } from './encode.ts';

export interface ParsedAddress {
  readonly name: string | null;
  readonly mailbox: string | null;
  readonly host: string | null;
}

type Token = { readonly t: 'q' | 'c' | 'a'; readonly v: string } | { readonly t: 's'; readonly v: '<' | '>' | '@' | ',' | ':' | ';' };

function tokenize(s: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < s.length) {
    const ch = s[i]!;
    if (ch === ' ' || ch === '\t' || ch === '\r' || ch === '\n') {
      i++;
    } else if (ch === '"') {
      let v = '';
      i++;
      while (i < s.length && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < s.length) i++;
        v += s[i++];
      }
      i++;
      out.push({ t: 'q', v });
    } else if (ch === '(') {
      let depth = 0;
      let v = '';
      while (i < s.length) {
        const c = s[i]!;
        if (c === '\\' && i + 1 < s.length) {
          v += s[i + 1];
          i += 2;
          continue;
        }
        if (c === '(') depth++;
        else if (c === ')') depth--;
        if (depth === 0) {
          i++;
          break;
        }
        if (!(c === '(' && depth === 1)) v += c;
        i++;
      }
      out.push({ t: 'c', v });
    } else if ('<>@,:;'.includes(ch)) {
      out.push({ t: 's', v: ch as '<' });
      i++;
    } else {
      let v = '';
      while (i < s.length && !' \t\r\n"(<>@,:;'.includes(s[i]!)) v += s[i++];
      out.push({ t: 'a', v });
    }
  }
  return out;
}

function words(tokens: readonly Token[]): string {
  let out = '';
  for (const t of tokens) {
    if (t.t === 'c') continue;
    if (t.t === 's' && t.v === '@') {
      out += '@';
      continue;
    }
    // Spaces between words are kept (display names); addr-specs have theirs removed by the caller.
    out += (out && !out.endsWith('@') ? ' ' : '') + t.v;
  }
  return out;
}

function mailboxOf(tokens: readonly Token[]): ParsedAddress | null {
  if (tokens.length === 0) return null;
  const lt = tokens.findIndex((t) => t.t === 's' && t.v === '<');
  let spec: Token[];
  let name: string | null;
  if (lt !== -1) {
    const gt = tokens.findIndex((t, i) => i > lt && t.t === 's' && t.v === '>');
    spec = tokens.slice(lt + 1, gt === -1 ? tokens.length : gt);
    // A route (@a,@b:) before the address is dropped.
    const colon = spec.findIndex((t) => t.t === 's' && t.v === ':');
    if (colon !== -1) spec = spec.slice(colon + 1);
    const n = words(tokens.slice(0, lt));
    name = n === '' ? null : n;
  } else {
    spec = tokens.filter((t) => t.t !== 'c');
    const comment = [...tokens].reverse().find((t) => t.t === 'c');
    name = comment && comment.v.trim() !== '' ? comment.v.trim() : null;
  }
  const at = spec.map((t) => t.t === 's' && t.v === '@').lastIndexOf(true);
  const local = words(at === -1 ? spec : spec.slice(0, at)).replace(/ /g, '');
  const host = at === -1 ? '' : words(spec.slice(at + 1)).replace(/ /g, '');
  if (local === '' && host === '' && name === null) return null;
  return { name, mailbox: local, host };
}

/** RFC 5322 address-list into IMAP address structures; groups as start/end markers (RFC 3501 §7.4.2). */
export function parseAddressList(raw: string): ParsedAddress[] {
  // Most headers have no quoting, comments or groups: split on commas directly (a warm ENVELOPE FETCH spends its time here).
  if (simpleEnough(raw)) return simpleAddressList(raw);
  const tokens = tokenize(raw);
  const out: ParsedAddress[] = [];
  let current: Token[] = [];
  let inGroup = false;
  for (const t of tokens) {
    if (t.t === 's' && t.v === ':' && !inGroup && !current.some((x) => x.t === 's' && x.v === '<')) {
      out.push({ name: null, mailbox: words(current) || null, host: null });
      inGroup = true;
      current = [];
      continue;
    }
    if (t.t === 's' && (t.v === ',' || t.v === ';')) {
      const m = mailboxOf(current);
      if (m) out.push(m);
      current = [];
      if (t.v === ';' && inGroup) {
        out.push({ name: null, mailbox: null, host: null });
        inGroup = false;
      }
      continue;
    }
    current.push(t);
  }
  const m = mailboxOf(current);
  if (m) out.push(m);
  if (inGroup) out.push({ name: null, mailbox: null, host: null });
  return out.slice(0, 1000);
}

const ANGLE = /^(.*?)<([^<>]*)>\s*$/s;

/** No comments, groups or escapes, and no comma inside a quoted display name. */
function simpleEnough(raw: string): boolean {
  if (/[():;\\]/.test(raw)) return false;
  if (!raw.includes('"')) return true;
  const parts = raw.split('"');
  if (parts.length % 2 === 0) return false;
  for (let i = 1; i < parts.length; i += 2) if (parts[i]!.includes(',') || parts[i]!.includes('<') || parts[i]!.includes('@')) return false;
  return true;
}

function simpleAddressList(raw: string): ParsedAddress[] {
  const out: ParsedAddress[] = [];
  for (const part of raw.split(',')) {
    const m = ANGLE.exec(part);
    const spec = (m ? m[2]! : part).replace(/\s+/g, '');
    if (spec.includes('"')) return parseAddressList(`${raw} ()`);
    const name = m ? m[1]!.replace(/"/g, ' ').trim().replace(/\s+/g, ' ') : '';
    if (spec === '' && name === '') continue;
    const at = spec.lastIndexOf('@');
    out.push({ name: name === '' ? null : name, mailbox: at === -1 ? spec : spec.slice(0, at), host: at === -1 ? '' : spec.slice(at + 1) });
    if (out.length >= 1000) break;
  }
  return out;
}

function nstring(v: string | null | undefined): Piece[] {
  return v === null || v === undefined ? ['NIL'] : encodeString(v);
}

function addressList(raw: string | undefined): Piece[] {
  if (raw === undefined) return ['NIL'];
  const list = parseAddressList(raw);
  if (list.length === 0) return ['NIL'];
  const out: Piece[] = ['('];
  for (const a of list) out.push('(', ...nstring(a.name), ' NIL ', ...nstring(a.mailbox), ' ', ...nstring(a.host), ')');
  out.push(')');
  return out;
}

export function formatEnvelope(e: EnvelopeHeaders): Piece[] {
  const from = e.from;
  return [
    '(',
    ...nstring(e.date),
    ' ',
    ...nstring(e.subject),
    ' ',
    ...addressList(from),
    ' ',
    // RFC 3501 §7.4.2: sender and reply-to default to from.
    ...addressList(e.sender ?? from),
    ' ',
    ...addressList(e.replyTo ?? from),
    ' ',
    ...addressList(e.to),
    ' ',
    ...addressList(e.cc),
    ' ',
    ...addressList(e.bcc),
    ' ',
    ...nstring(e.inReplyTo),
    ' ',
    ...nstring(e.messageId),
    ')',
  ];
}

function params(p: Readonly<Record<string, string>>): Piece[] {
  const keys = Object.keys(p);
  if (keys.length === 0) return ['NIL'];
  const out: Piece[] = ['('];
  keys.forEach((k, i) => out.push(i ? ' ' : '', ...encodeString(k), ' ', ...encodeString(p[k]!)));
  out.push(')');
  return out;
}

function extension(part: MimePart): Piece[] {
  const out: Piece[] = [' '];
  if (part.disposition) out.push('(', ...encodeString(part.disposition.type), ' ', ...params(part.disposition.params), ')');
  else out.push('NIL');
  out.push(' ');
  if (part.language && part.language.length > 0) {
    out.push('(');
    part.language.forEach((l, i) => out.push(i ? ' ' : '', ...encodeString(l)));
    out.push(')');
  } else out.push('NIL');
  out.push(' ', ...nstring(part.location));
  return out;
}

/** BODYSTRUCTURE (`extended`) or BODY of a part. */
export function formatBodyStructure(part: MimePart, extended: boolean): Piece[] {
  if (part.type === 'multipart') {
    const out: Piece[] = ['('];
    const children = part.children ?? [];
    if (children.length === 0) {
      // A multipart without parts is served as one empty text/plain (RFC 3501 requires at least one).
      out.push('("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)');
    }
    for (const c of children) out.push(...formatBodyStructure(c, extended));
    out.push(' ', ...encodeString(part.subtype));
    if (extended) out.push(' ', ...params(part.params), ...extension(part));
    out.push(')');
    return out;
  }
  const out: Piece[] = ['(', ...encodeString(part.type), ' ', ...encodeString(part.subtype), ' ', ...params(part.params), ' ', ...nstring(part.id), ' ', ...nstring(part.description), ' ', ...encodeString(part.encoding), ' ', String(part.size)];
  if (part.type === 'message' && (part.subtype === 'rfc822' || part.subtype === 'global') && part.message) {
    out.push(' ', ...formatEnvelope(part.message.envelope), ' ', ...formatBodyStructure(part.message.root, extended), ' ', String(part.lines));
  } else if (part.type === 'text') {
    out.push(' ', String(part.lines));
  }
  if (extended) out.push(' ', ...nstring(part.md5), ...extension(part));
  out.push(')');
  return out;
}

/** The MIME part a section's part numbers name (RFC 3501 §6.4.5), or null. */
export function resolvePart(summary: MessageSummary, numbers: readonly number[]): MimePart | null {
  let message: MimePart = summary.root;
  let part: MimePart | null = null;
  for (const n of numbers) {
    if (part !== null) {
      if (part.message) message = part.message.root;
      else if (part.children) message = part;
      else return null;
    }
    if (message.children) {
      const child = message.children[n - 1];
      if (!child) return null;
      part = child;
    } else if (n === 1) part = message;
    else return null;
  }
  return part;
}
