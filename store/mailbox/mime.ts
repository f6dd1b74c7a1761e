/**
 * A streaming MIME structure parser (RFC 2045/2046/2231, RFC 5322 headers)
 * producing the MimePart tree of a message with byte offsets in its CRLF
 * form: bare LF line ends count as CRLF, so a file written with LF by another
 * program gets the offsets and sizes IMAP serves. Memory is bounded whatever
 * the input: a line keeps at most MAX_LINE bytes, a header block at most
 * MAX_HEADER bytes, nesting (multipart and message/rfc822) stops at MAX_DEPTH
 * and the number of parts at MAX_PARTS — beyond that content is body text.
 */
import { isUtf8 } from 'node:buffer';
import type { EnvelopeHeaders, MessageSummary, MimePart } from './types.ts';

const MAX_LINE = 64 * 1024;
const MAX_HEADER = 256 * 1024;
const MAX_DEPTH = 24;
const MAX_PARTS = 4000;

interface Frame {
  readonly headerStart: number;
  state: 'header' | 'body' | 'closed-multipart';
  headerBytes: Buffer[];
  headerSize: number;
  headerTruncated: boolean;
  bodyStart: number;
  /** The content type defaulted by the parent (message/rfc822 within multipart/digest). */
  readonly defaultType: 'text/plain' | 'message/rfc822';
  readonly depth: number;
  readonly isMessageRoot: boolean;
  type: string;
  subtype: string;
  params: Record<string, string>;
  headers: HeaderFields;
  boundary?: string;
  kind: 'leaf' | 'multipart' | 'message';
  children: MimePart[];
  /** For kind 'message': the enclosed root part, once closed. */
  message?: MessageSummary;
  lineCount: number;
  lastLineStart: number;
  /** Set on the enclosed root frame so closing it fills in its parent. */
  envelope?: EnvelopeHeaders;
}

export interface ParseResult {
  readonly summary: MessageSummary;
  /** Size in the CRLF form. */
  readonly size: number;
  /** The file has bare LF line ends (served CRLF-normalised). */
  readonly bareLf: boolean;
}

/** Feed chunks with `write`, then `end()`. */
export class MimeParser {
  private offset = 0;
  private partial: Buffer[] = [];
  private partialLen = 0;
  /** Bytes of the current line beyond MAX_LINE (not kept). */
  private dropped = 0;
  private bareLf = false;
  private parts = 1;
  private readonly stack: Frame[] = [];
  private rootPart: MimePart | undefined;
  private rootEnvelope: EnvelopeHeaders | undefined;

  constructor() {
    this.stack.push(newFrame(0, 'text/plain', 0, true));
  }

  write(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length) {
      const lf = chunk.indexOf(0x0a, pos);
      if (lf < 0) {
        this.keep(chunk.subarray(pos));
        return;
      }
      if (this.partialLen === 0 && this.dropped === 0) {
        // The whole line is in this chunk: no copy (line() copies what it keeps).
        let end = lf;
        if (end > pos && chunk[end - 1] === 0x0d) end--;
        else this.bareLf = true;
        const len = end - pos;
        this.line(chunk.subarray(pos, len > MAX_LINE ? pos + MAX_LINE : end), len, true);
        pos = lf + 1;
        continue;
      }
      this.keep(chunk.subarray(pos, lf));
      pos = lf + 1;
      let line = this.partialLen === 0 ? Buffer.alloc(0) : this.partial.length === 1 ? this.partial[0]! : Buffer.concat(this.partial, this.partialLen);
      let len = this.partialLen + this.dropped;
      const hadCr = len > 0 && (this.dropped > 0 ? this.lastCr : line[line.length - 1] === 0x0d);
      if (hadCr) {
        len -= 1;
        if (this.dropped === 0) line = line.subarray(0, line.length - 1);
      } else {
        this.bareLf = true;
      }
      this.partial = [];
      this.partialLen = 0;
      this.dropped = 0;
      this.line(line, len, true);
    }
  }

  private lastCr = false;

  private keep(b: Buffer): void {
    if (b.length === 0) return;
    const room = MAX_LINE - this.partialLen;
    if (room > 0) {
      const k = b.length <= room ? b : b.subarray(0, room);
      // Copied: the caller's chunk may be reused.
      this.partial.push(Buffer.from(k));
      this.partialLen += k.length;
    }
    if (b.length > room) this.dropped += b.length - Math.max(room, 0);
    this.lastCr = b[b.length - 1] === 0x0d;
  }

  end(): ParseResult {
    if (this.partialLen + this.dropped > 0) {
      const line = this.partial.length === 1 ? this.partial[0]! : Buffer.concat(this.partial, this.partialLen);
      this.line(line, this.partialLen + this.dropped, false);
      this.partial = [];
      this.partialLen = 0;
      this.dropped = 0;
    }
    const end = this.offset;
    while (this.stack.length > 0) this.close(end);
    return { summary: { envelope: this.rootEnvelope ?? {}, root: this.rootPart! }, size: end, bareLf: this.bareLf };
  }

  /** One line: `content` (possibly truncated) of `len` bytes, then a CRLF if `terminated`. */
  private line(content: Buffer, len: number, terminated: boolean): void {
    const start = this.offset;
    const next = start + len + (terminated ? 2 : 0);
    this.offset = next;

    // A boundary closes whatever is open inside its multipart (RFC 2046 §5.1.1).
    if (content.length >= 3 && content[0] === 0x2d && content[1] === 0x2d) {
      for (let i = this.stack.length - 1; i >= 0; i--) {
        const f = this.stack[i]!;
        if (f.kind !== 'multipart' || f.state !== 'body' || f.boundary === undefined) continue;
        const m = matchBoundary(content, f.boundary);
        if (m === 'none') continue;
        while (this.stack.length - 1 > i) this.close(Math.max(start - 2, this.top().bodyStart, this.top().headerStart));
        if (m === 'close') {
          f.state = 'closed-multipart';
        } else if (this.parts < MAX_PARTS && f.depth + 1 < MAX_DEPTH) {
          this.parts++;
          this.stack.push(newFrame(next, f.subtype === 'digest' ? 'message/rfc822' : 'text/plain', f.depth + 1, false));
        } else {
          // Too many parts: the rest of this multipart is opaque.
          f.state = 'closed-multipart';
        }
        this.countLine(start);
        return;
      }
    }

    const top = this.top();
    if (top.state === 'header') {
      if (len === 0) this.endHeader(top, next);
      else if (top.headerSize + content.length + 2 <= MAX_HEADER) {
        top.headerBytes.push(Buffer.from(content));
        top.headerSize += content.length + 2;
      } else {
        top.headerTruncated = true;
      }
    }
    this.countLine(start);
  }

  private countLine(start: number): void {
    for (const f of this.stack) {
      if (f.state === 'header' || start < f.bodyStart) continue;
      f.lineCount++;
      f.lastLineStart = start;
    }
  }

  private top(): Frame {
    return this.stack[this.stack.length - 1]!;
  }

  private endHeader(f: Frame, bodyStart: number, open = true): void {
    f.state = 'body';
    f.bodyStart = bodyStart;
    f.headers = parseHeaderBlock(f.headerBytes);
    f.headerBytes = [];
    applyContentType(f);
    if (f.isMessageRoot) f.envelope = envelopeOf(f.headers);
    if (f.kind === 'message') {
      if (open && this.parts < MAX_PARTS && f.depth + 1 < MAX_DEPTH) {
        this.parts++;
        this.stack.push(newFrame(bodyStart, 'text/plain', f.depth + 1, true));
      } else {
        f.kind = 'leaf';
      }
    }
  }

  /** Closes the top frame with its body ending at `end`. */
  private close(end: number): void {
    const f = this.stack.pop()!;
    if (f.state === 'header') this.endHeader(f, Math.max(end, f.headerStart), false); // no blank line: all header
    const bodyEnd = Math.max(end, f.bodyStart);
    const lines = f.lineCount - (f.lineCount > 0 && f.lastLineStart >= bodyEnd ? 1 : 0);
    let part: MimePart = {
      headerStart: f.headerStart,
      bodyStart: f.bodyStart,
      bodyEnd,
      type: f.type,
      subtype: f.subtype,
      params: f.params,
      encoding: (f.headers.get('content-transfer-encoding') ?? '7bit').trim().toLowerCase() || '7bit',
      size: bodyEnd - f.bodyStart,
      lines: f.type === 'text' || f.kind === 'message' || (f.type === 'message' && f.subtype === 'rfc822') ? lines : 0,
    };
    const extra: Record<string, unknown> = {};
    const id = f.headers.get('content-id');
    if (id !== undefined) extra.id = id.trim();
    const desc = f.headers.get('content-description');
    if (desc !== undefined) extra.description = desc.trim();
    const md5 = f.headers.get('content-md5');
    if (md5 !== undefined) extra.md5 = md5.trim();
    const disp = f.headers.get('content-disposition');
    if (disp !== undefined) {
      const d = parseStructuredValue(disp);
      if (d.value !== '') extra.disposition = { type: d.value.toLowerCase(), params: d.params };
    }
    const lang = f.headers.get('content-language');
    if (lang !== undefined) {
      const langs = lang.split(',').map((s) => stripComments(s).trim()).filter((s) => s !== '');
      if (langs.length > 0) extra.language = langs;
    }
    const loc = f.headers.get('content-location');
    if (loc !== undefined) extra.location = loc.replace(/\s+/g, '');
    if (f.kind === 'multipart') extra.children = f.children;
    if (f.kind === 'message') extra.message = f.message ?? emptyMessage(bodyEnd);
    part = { ...part, ...extra } as MimePart;

    const parent = this.stack[this.stack.length - 1];
    if (f.isMessageRoot) {
      const summary: MessageSummary = { envelope: f.envelope ?? {}, root: part };
      if (parent) parent.message = summary;
      else {
        this.rootPart = part;
        this.rootEnvelope = f.envelope ?? {};
      }
    } else if (parent) {
      parent.children.push(part);
    }
  }
}

function emptyMessage(at: number): MessageSummary {
  return {
    envelope: {},
    root: { headerStart: at, bodyStart: at, bodyEnd: at, type: 'text', subtype: 'plain', params: { charset: 'us-ascii' }, encoding: '7bit', size: 0, lines: 0 },
  };
}

function newFrame(headerStart: number, defaultType: 'text/plain' | 'message/rfc822', depth: number, isMessageRoot: boolean): Frame {
  return {
    headerStart,
    state: 'header',
    headerBytes: [],
    headerSize: 0,
    headerTruncated: false,
    bodyStart: headerStart,
    defaultType,
    depth,
    isMessageRoot,
    type: 'text',
    subtype: 'plain',
    params: {},
    headers: new Map(),
    kind: 'leaf',
    children: [],
    lineCount: 0,
    lastLineStart: -1,
  };
}

function matchBoundary(line: Buffer, boundary: string): 'none' | 'part' | 'close' {
  const b = boundary.length;
  if (line.length < 2 + b) return 'none';
  if (line.toString('latin1', 2, 2 + b) !== boundary) return 'none';
  let rest = line.subarray(2 + b);
  let close = false;
  if (rest.length >= 2 && rest[0] === 0x2d && rest[1] === 0x2d) {
    close = true;
    rest = rest.subarray(2);
  }
  for (const c of rest) if (c !== 0x20 && c !== 0x09) return 'none';
  return close ? 'close' : 'part';
}

function applyContentType(f: Frame): void {
  const raw = f.headers.get('content-type');
  let type = f.defaultType.split('/')[0]!;
  let subtype = f.defaultType.split('/')[1]!;
  let params: Record<string, string> = f.defaultType === 'text/plain' ? { charset: 'us-ascii' } : {};
  if (raw !== undefined) {
    const v = parseStructuredValue(raw);
    const m = /^([^\s/]+)\/([^\s/]+)$/.exec(v.value);
    if (m) {
      type = m[1]!.toLowerCase();
      subtype = m[2]!.toLowerCase();
      params = v.params;
    } else {
      // Unparsable: RFC 2045 §5.2 says text/plain; charset=us-ascii.
      type = 'text';
      subtype = 'plain';
      params = { charset: 'us-ascii' };
    }
  }
  f.type = type;
  f.subtype = subtype;
  f.params = params;
  if (type === 'multipart') {
    const boundary = params.boundary;
    if (boundary !== undefined && boundary !== '' && boundary.length <= 200) {
      f.kind = 'multipart';
      f.boundary = boundary;
    }
  } else if (type === 'message' && (subtype === 'rfc822' || subtype === 'global')) {
    f.kind = 'message';
  }
}

/** Header fields: lowercased name → unfolded raw value of the first occurrence. */
type HeaderFields = Map<string, string>;

function decodeHeaderBytes(b: Buffer): string {
  return isUtf8(b) ? b.toString('utf8') : b.toString('latin1');
}

/** Parses a header block (lines without their CRLF). */
export function parseHeaderBlock(lines: readonly Buffer[]): HeaderFields {
  const fields: HeaderFields = new Map();
  let name: string | undefined;
  let value = '';
  const flush = (): void => {
    if (name !== undefined && !fields.has(name)) fields.set(name, value);
    name = undefined;
  };
  for (const raw of lines) {
    const line = decodeHeaderBytes(raw);
    if ((line.startsWith(' ') || line.startsWith('\t')) && name !== undefined) {
      value += line;
      continue;
    }
    flush();
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const n = line.slice(0, colon).trim();
    if (n === '' || /\s/.test(n)) continue;
    name = n.toLowerCase();
    value = line.slice(colon + 1).replace(/^[ \t]+/, '');
  }
  flush();
  return fields;
}

function envelopeOf(h: HeaderFields): EnvelopeHeaders {
  const e: Record<string, string> = {};
  const map: ReadonlyArray<readonly [keyof EnvelopeHeaders, string]> = [
    ['date', 'date'], ['subject', 'subject'], ['from', 'from'], ['sender', 'sender'], ['replyTo', 'reply-to'],
    ['to', 'to'], ['cc', 'cc'], ['bcc', 'bcc'], ['inReplyTo', 'in-reply-to'], ['messageId', 'message-id'],
  ];
  for (const [k, n] of map) {
    const v = h.get(n);
    if (v !== undefined) e[k] = v;
  }
  return e;
}

function stripComments(s: string): string {
  let out = '';
  let depth = 0;
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted) {
      out += c;
      if (c === '\\' && i + 1 < s.length) out += s[++i];
      else if (c === '"') quoted = false;
    } else if (depth > 0) {
      if (c === '\\') i++;
      else if (c === '(') depth++;
      else if (c === ')') depth--;
    } else if (c === '(') depth++;
    else {
      if (c === '"') quoted = true;
      out += c;
    }
  }
  return out;
}

/**
 * `value; a=b; c="d"; e*=utf-8''%C3%A9; f*0=x; f*1=y` → the value and the
 * parameters, names lowercased, RFC 2231 continuations joined and
 * percent-decoded in their charset.
 */
export function parseStructuredValue(raw: string): { value: string; params: Record<string, string> } {
  const s = stripComments(raw);
  const pieces: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (quoted) {
      if (c === '\\' && i + 1 < s.length) {
        cur += s[++i];
        continue;
      }
      if (c === '"') quoted = false;
      cur += c === '"' ? '\u0000' : c; // mark quote ends so values keep inner ';'
      continue;
    }
    if (c === '"') {
      quoted = true;
      cur += '\u0000';
      continue;
    }
    if (c === ';') {
      pieces.push(cur);
      cur = '';
      continue;
    }
    cur += c;
  }
  pieces.push(cur);
  const value = (pieces[0] ?? '').replace(/\u0000/g, '').trim();
  const simple: Record<string, string> = {};
  const continued = new Map<string, { parts: Map<number, { v: string; enc: boolean }>; }>();
  for (const p of pieces.slice(1)) {
    const eq = p.indexOf('=');
    if (eq <= 0) continue;
    const name = p.slice(0, eq).replace(/\u0000/g, '').trim().toLowerCase();
    const wasQuoted = p.slice(eq + 1).trim().startsWith('\u0000');
    const v = wasQuoted ? p.slice(eq + 1).trim().replace(/^\u0000/, '').replace(/\u0000$/, '').replace(/\u0000/g, '') : p.slice(eq + 1).trim().replace(/\u0000/g, '');
    if (name === '') continue;
    const m = /^([^*]+)\*(?:(\d+)\*?|)$/.exec(name);
    const star = /\*$/.test(name);
    if (!m) {
      if (!(name in simple)) simple[name] = v;
      continue;
    }
    const base = m[1]!;
    const idx = m[2] === undefined ? 0 : Number(m[2]);
    let c = continued.get(base);
    if (!c) continued.set(base, (c = { parts: new Map() }));
    if (idx <= 1000 && !c.parts.has(idx)) c.parts.set(idx, { v, enc: star && !wasQuoted });
  }
  const params: Record<string, string> = { ...simple };
  for (const [base, c] of continued) {
    let charset = 'us-ascii';
    let out = '';
    for (let i = 0; c.parts.has(i); i++) {
      const part = c.parts.get(i)!;
      let v = part.v;
      if (part.enc) {
        if (i === 0) {
          const q = /^([^']*)'[^']*'(.*)$/.exec(v);
          if (q) {
            charset = q[1] || 'us-ascii';
            v = q[2]!;
          }
        }
        out += percentDecode(v, charset);
      } else {
        out += v;
      }
    }
    params[base] = out;
  }
  return { value, params };
}

function percentDecode(v: string, charset: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < v.length; i++) {
    const c = v[i]!;
    if (c === '%' && /^[0-9a-fA-F]{2}$/.test(v.slice(i + 1, i + 3))) {
      bytes.push(parseInt(v.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      for (const b of Buffer.from(c, 'utf8')) bytes.push(b);
    }
  }
  const buf = Buffer.from(bytes);
  try {
    const cs = charset.toLowerCase() === 'us-ascii' ? 'utf-8' : charset;
    return new TextDecoder(cs).decode(buf);
  } catch {
    return buf.toString('latin1');
  }
}

/** Parses a whole message held in memory (tests, small appends). */
export function parseMessage(message: Buffer): ParseResult {
  const p = new MimeParser();
  p.write(message);
  return p.end();
}
