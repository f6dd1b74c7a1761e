/**
 * Response encoding (RFC 3501 §4, §9): any byte string becomes an atom, a
 * quoted string or a literal, whichever is correct for its bytes. A response
 * is built as a list of pieces (text and buffers) so literals of message
 * bytes are never copied into strings.
 */

export type Piece = string | Buffer;

/** A response under construction: text is latin1-safe ASCII, bodies are Buffers. */
export class ResponseBuilder {
  readonly pieces: Piece[] = [];

  text(s: string): this {
    this.pieces.push(s);
    return this;
  }

  /** A string value: quoted when it can be, else a literal. */
  string(v: string | Buffer): this {
    return this.add(encodeString(v));
  }

  nstring(v: string | Buffer | null | undefined): this {
    return v === null || v === undefined ? this.text('NIL') : this.string(v);
  }

  literal(b: Buffer): this {
    this.pieces.push(`{${b.length}}\r\n`, b);
    return this;
  }

  add(p: readonly Piece[]): this {
    for (const x of p) this.pieces.push(x);
    return this;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.pieces.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
  }
}

const QUOTABLE_MAX = 1024;
const PRINTABLE = /^[\x20-\x7e]*$/;

/** True if the bytes can go inside a quoted string: no CR, LF, NUL or 8-bit. */
function quotable(b: Buffer): boolean {
  if (b.length > QUOTABLE_MAX) return false;
  for (const c of b) if (c === 0 || c === 0x0d || c === 0x0a || c > 0x7f) return false;
  return true;
}

/** Quoted (with `\` escapes) or literal, for a string value. */
export function encodeString(v: string | Buffer): Piece[] {
  // Printable ASCII text (the common case) is quoted without a round trip through a Buffer.
  if (typeof v === 'string' && v.length <= QUOTABLE_MAX && PRINTABLE.test(v)) return [`"${v.includes('"') || v.includes('\\') ? v.replace(/[\\"]/g, (m) => `\\${m}`) : v}"`];
  const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
  if (quotable(b)) return [`"${b.toString('latin1').replace(/[\\"]/g, (m) => `\\${m}`)}"`];
  return [`{${b.length}}\r\n`, b];
}

/** RFC 3501 ATOM-CHAR only (no specials): may be sent bare. */
export function isAtom(s: string): boolean {
  return /^[\x21\x23\x24\x26\x27\x2b-\x5b\x5e-\x7a\x7c-\x7e]+$/.test(s) && s.toUpperCase() !== 'NIL';
}

/** An astring: bare atom when it is one, else quoted/literal. */
export function encodeAstring(v: string): Piece[] {
  return isAtom(v) ? [v] : encodeString(v);
}

/** The text of pieces known to be ASCII only (no literal), for tests and logs. */
export function piecesText(p: readonly Piece[]): string {
  return p.map((x) => (typeof x === 'string' ? x : x.toString('latin1'))).join('');
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 3501 date-time, in UTC: "dd-Mon-yyyy hh:mm:ss +0000". */
export function formatInternalDate(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `"${pad(d.getUTCDate())}-${MONTHS[d.getUTCMonth()]}-${d.getUTCFullYear()} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000"`;
}

/** A flag list `(\Seen $Junk)`. */
export function formatFlags(flags: readonly string[]): string {
  return `(${flags.join(' ')})`;
}
