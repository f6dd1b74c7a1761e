/**
 * The lexical level of the IMAP grammar (RFC 3501 §9, RFC 9051 §9) over the
 * raw bytes of one framed command: atoms, quoted strings, literals, astrings,
 * nstrings, numbers. Every failure is a ParseError with a message fit for a
 * BAD response; nothing else is thrown. Literals arrive already framed
 * (reader.ts), as `{n}\r\n` followed by exactly n bytes.
 */

export class ParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ParseError';
  }
}

/** Deepest parenthesised nesting accepted (search keys, lists); deeper input is BAD. */
export const MAX_NESTING = 64;

const SP = 0x20;

/** ATOM-CHAR: any CHAR except atom-specials ( ) { SP CTL % * " \ ]. */
function isAtomChar(c: number): boolean {
  return c > 0x20 && c < 0x7f && c !== 0x28 && c !== 0x29 && c !== 0x7b && c !== 0x25 && c !== 0x2a && c !== 0x22 && c !== 0x5c && c !== 0x5d;
}

export class Cursor {
  readonly buf: Buffer;
  pos = 0;

  constructor(buf: Buffer) {
    this.buf = buf;
  }

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  peek(): number {
    return this.pos < this.buf.length ? this.buf[this.pos]! : -1;
  }

  fail(what: string): never {
    const near = this.buf.subarray(this.pos, this.pos + 20).toString('latin1').replace(/[^\x20-\x7e]/g, '?');
    throw new ParseError(`${what}${this.done ? ' at end of command' : ` near "${near}"`}`);
  }

  sp(): void {
    if (this.peek() !== SP) this.fail('expected a space');
    this.pos++;
  }

  /** Consumes `ch` if it is next. */
  take(ch: string): boolean {
    if (this.peek() === ch.charCodeAt(0)) {
      this.pos++;
      return true;
    }
    return false;
  }

  expect(ch: string): void {
    if (!this.take(ch)) this.fail(`expected "${ch}"`);
  }

  end(): void {
    if (!this.done) this.fail('unexpected text');
  }

  /** A run of characters satisfying `ok`, at least one. */
  private run(ok: (c: number) => boolean, what: string): string {
    const start = this.pos;
    while (this.pos < this.buf.length && ok(this.buf[this.pos]!)) this.pos++;
    if (this.pos === start) this.fail(`expected ${what}`);
    return this.buf.toString('latin1', start, this.pos);
  }

  atom(): string {
    return this.run(isAtomChar, 'an atom');
  }

  /** An atom that may contain `]` (ASTRING-CHAR), or `[`…`]` inside, as flags and section names do not. */
  astringAtom(): string {
    return this.run((c) => isAtomChar(c) || c === 0x5d, 'an astring');
  }

  /** A flag: `\Seen`, `\*`, or an atom keyword. */
  flag(): string {
    if (this.take('\\')) {
      if (this.take('*')) return '\\*';
      return `\\${this.atom()}`;
    }
    return this.atom();
  }

  number(): number {
    const s = this.run((c) => c >= 0x30 && c <= 0x39, 'a number');
    if (s.length > 10) this.fail('number too large');
    const n = Number(s);
    if (n > 0xffffffff) this.fail('number too large');
    return n;
  }

  nzNumber(): number {
    const n = this.number();
    if (n === 0) this.fail('zero where a non-zero number is required');
    return n;
  }

  /** Up to 63 bits, for RFC 7162 mod-sequences and sizes. */
  number64(): number {
    const s = this.run((c) => c >= 0x30 && c <= 0x39, 'a number');
    if (s.length > 15) this.fail('number too large');
    return Number(s);
  }

  quoted(): Buffer {
    this.expect('"');
    const out: number[] = [];
    for (;;) {
      const c = this.peek();
      if (c === -1 || c === 0x0d || c === 0x0a || c === 0) this.fail('unterminated quoted string');
      this.pos++;
      if (c === 0x22) return Buffer.from(out);
      if (c === 0x5c) {
        const e = this.peek();
        if (e !== 0x22 && e !== 0x5c) this.fail('bad escape in quoted string');
        this.pos++;
        out.push(e);
        continue;
      }
      out.push(c);
    }
  }

  literal(): Buffer {
    this.take('~'); // literal8 (RFC 3516): the same bytes, binary allowed
    this.expect('{');
    const n = this.number();
    this.take('+');
    this.expect('}');
    if (this.peek() === 0x0d) this.pos++;
    this.expect('\n');
    if (this.pos + n > this.buf.length) this.fail('literal shorter than announced');
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  isLiteralNext(): boolean {
    const c = this.peek();
    return c === 0x7b || (c === 0x7e && this.buf[this.pos + 1] === 0x7b);
  }

  string(): Buffer {
    if (this.peek() === 0x22) return this.quoted();
    if (this.isLiteralNext()) return this.literal();
    this.fail('expected a string');
  }

  astring(): Buffer {
    if (this.peek() === 0x22 || this.isLiteralNext()) return this.string();
    return Buffer.from(this.astringAtom(), 'latin1');
  }

  /** NIL or a string; null for NIL. */
  nstring(): Buffer | null {
    if (this.peek() === 0x22 || this.isLiteralNext()) return this.string();
    const a = this.atom();
    if (a.toUpperCase() !== 'NIL') this.fail('expected a string or NIL');
    return null;
  }

  /** A LIST pattern (`list-mailbox`): atom characters plus `%`, `*`, `]`, or a string. */
  listMailbox(): Buffer {
    if (this.peek() === 0x22 || this.isLiteralNext()) return this.string();
    return Buffer.from(this.run((c) => isAtomChar(c) || c === 0x25 || c === 0x2a || c === 0x5d, 'a mailbox pattern'), 'latin1');
  }

  /** `( item *(SP item) )`, possibly empty when `allowEmpty`. */
  list<T>(item: () => T, allowEmpty = true): T[] {
    this.expect('(');
    const out: T[] = [];
    if (this.take(')')) {
      if (!allowEmpty) this.fail('empty list');
      return out;
    }
    for (;;) {
      out.push(item());
      if (this.take(')')) return out;
      this.sp();
    }
  }
}
