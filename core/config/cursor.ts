/**
 * A cursor over one statement's tokens, with the small vocabulary the
 * grammar needs: peek, take a keyword, take a value, fail with a position.
 */
import { didYouMean, type Pos } from './diagnostics.ts';
import type { Statement, Token } from './lexer.ts';

/** Aborts the current statement; the parser records it and moves on. */
export class StatementError extends Error {
  readonly pos: Pos;
  constructor(pos: Pos, message: string) {
    super(message);
    this.pos = pos;
  }
}

export class Cursor {
  private i = 0;
  readonly statement: Statement;
  constructor(statement: Statement) {
    this.statement = statement;
  }

  get tokens(): readonly Token[] {
    return this.statement.tokens;
  }

  atEnd(): boolean {
    return this.i >= this.tokens.length;
  }

  peek(offset = 0): Token | undefined {
    return this.tokens[this.i + offset];
  }

  /** Position of the next token, or just after the last one. */
  here(): Pos {
    const t = this.peek();
    if (t) return t.pos;
    const last = this.tokens[this.tokens.length - 1]!;
    return { file: last.pos.file, line: last.pos.line, col: last.pos.col + Math.max(1, last.value.length) };
  }

  next(): Token {
    const t = this.peek();
    if (!t) throw new StatementError(this.here(), 'unexpected end of line');
    this.i++;
    return t;
  }

  /** True (and consumed) if the next token is the bare word `word`. */
  accept(word: string): boolean {
    const t = this.peek();
    if (t && t.type === 'word' && t.value === word) {
      this.i++;
      return true;
    }
    return false;
  }

  acceptType(type: Token['type']): Token | undefined {
    const t = this.peek();
    if (t && t.type === type) {
      this.i++;
      return t;
    }
    return undefined;
  }

  isWord(word: string, offset = 0): boolean {
    const t = this.peek(offset);
    return t !== undefined && t.type === 'word' && t.value === word;
  }

  /** Takes one of the given keywords, or fails with a "did you mean". */
  keyword<K extends string>(choices: readonly K[], what: string): { value: K; pos: Pos } {
    const t = this.peek();
    if (!t) throw new StatementError(this.here(), `expected ${what} (${listChoices(choices)}) at end of line`);
    if (t.type === 'word' && (choices as readonly string[]).includes(t.value)) {
      this.i++;
      return { value: t.value as K, pos: t.pos };
    }
    const shown = t.type === 'table' ? `<${t.value}>` : t.value;
    throw new StatementError(t.pos, `unknown ${what} "${shown}"${didYouMean(t.value, choices)}`);
  }

  /** A value: a bare word or a quoted string. */
  value(what: string): { value: string; pos: Pos } {
    const t = this.peek();
    if (!t) throw new StatementError(this.here(), `expected ${what} at end of line`);
    if (t.type !== 'word' && t.type !== 'string') {
      throw new StatementError(t.pos, `expected ${what}, found "${t.value}"`);
    }
    this.i++;
    return { value: t.value, pos: t.pos };
  }

  integer(what: string, min: number, max: number): { value: number; pos: Pos } {
    const v = this.value(what);
    if (!/^\d+$/.test(v.value)) throw new StatementError(v.pos, `${what} must be a number, not "${v.value}"`);
    const n = Number(v.value);
    if (n < min || n > max) throw new StatementError(v.pos, `${what} ${v.value} is out of range (${min}-${max})`);
    return { value: n, pos: v.pos };
  }

  /**
   * The items of a `{ … }` block whose `{` was just taken: calls `item` for
   * each, skipping the optional commas, up to and including the `}`.
   */
  braced(open: Token, item: () => void): void {
    for (;;) {
      const t = this.peek();
      if (!t) this.fail("'{' is never closed", open.pos);
      if (t.type === '}') {
        this.next();
        return;
      }
      if (t.type === ',') {
        this.next();
        continue;
      }
      item();
    }
  }

  fail(message: string, pos: Pos = this.here()): never {
    throw new StatementError(pos, message);
  }

  /** Fails if anything is left on the line. */
  end(): void {
    const t = this.peek();
    if (t) throw new StatementError(t.pos, `unexpected "${t.type === 'table' ? `<${t.value}>` : t.value}"`);
  }
}

function listChoices(choices: readonly string[]): string {
  return choices.length > 6 ? `${choices.slice(0, 6).join(', ')}, …` : choices.join(', ');
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** `35M`, `512K`, `1G`, `1000` (bytes) — powers of 1024, as OpenSMTPD's scan_scaled. */
export function parseSize(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$/i.exec(text);
  if (!m) return null;
  const n = Number(m[1]) * SIZE_UNITS[m[2]!.toLowerCase()]!;
  return Number.isFinite(n) ? Math.round(n) : null;
}

const DELAY_UNITS: Record<string, number> = { '': 1000, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `4d`, `30s`, `2h`, `90m`; a bare number is seconds. Result in milliseconds. */
export function parseDelay(text: string): number | null {
  const m = /^(\d+)\s*([smhdw]?)$/i.exec(text);
  if (!m) return null;
  return Number(m[1]) * DELAY_UNITS[m[2]!.toLowerCase()]!;
}

export function formatSize(bytes: number): string {
  for (const [unit, factor] of [['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]] as const) {
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return String(bytes);
}

export function formatDelay(ms: number): string {
  for (const [unit, factor] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= factor && ms % factor === 0) return `${ms / factor}${unit}`;
  }
  return `${Math.round(ms / 1000)}s`;
}
