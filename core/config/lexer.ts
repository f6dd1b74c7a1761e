/**
 * Lexer for the config language (smtpd.conf(5) style): turns files into
 * statements of positioned tokens. It owns comments, quoting, `\`
 * continuations, multi-line `{ … }` blocks, macros (`name = "value"`, `$name`)
 * and `include "file"`, so the parser only ever sees expanded statements.
 *
 * A `$` starts a macro reference only at the start of a token and before a
 * letter or `_` (as OpenSMTPD), and not when the name runs into another `$`,
 * so password hashes like `$2b$08$…`, `$6$…` and `$argon2id$v=19$…` stay
 * literal.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Diagnostic, Pos } from './diagnostics.ts';

export type TokenType = 'word' | 'string' | 'table' | '{' | '}' | ',' | '=' | '!';

export interface Token {
  readonly type: TokenType;
  /** Bare word text, string contents (unquoted), or table name for `<name>`. */
  readonly value: string;
  readonly pos: Pos;
}

export interface Statement {
  readonly tokens: readonly Token[];
  readonly pos: Pos;
}

interface RawToken extends Token {
  /** `$name` reference, expanded after the statement is complete. */
  readonly macro?: boolean;
}

const MAX_INCLUDE_DEPTH = 8;
const MACRO_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** A bare word that may be the key of `key=value` (the `=` then splits). */
const KEY_LIKE = /^[A-Za-z_][A-Za-z0-9_.@+\-]*$/;

export interface LexResult {
  readonly statements: Statement[];
  readonly diagnostics: Diagnostic[];
  /** Every file read, the main one first (for reload-on-change). */
  readonly files: string[];
}

export interface LexOptions {
  /** Reads a file; injectable for tests. Defaults to readFileSync utf8. */
  readonly readFile?: (path: string) => string;
}

/** Lexes a config file and everything it includes. */
export function lexConfigFile(path: string, options: LexOptions = {}): LexResult {
  const readFile = options.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const ctx: LexContext = { macros: new Map(), diagnostics: [], statements: [], files: [], readFile, stack: [] };
  includeFile(ctx, resolve(path), undefined);
  return { statements: ctx.statements, diagnostics: ctx.diagnostics, files: ctx.files };
}

/** Lexes config text given directly (tests, `include` of in-memory text). */
export function lexConfigText(text: string, file = '<config>', options: LexOptions = {}): LexResult {
  const readFile = options.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const ctx: LexContext = { macros: new Map(), diagnostics: [], statements: [], files: [file], readFile, stack: [file] };
  lexText(ctx, text, file);
  return { statements: ctx.statements, diagnostics: ctx.diagnostics, files: ctx.files };
}

interface LexContext {
  macros: Map<string, { value: string; pos: Pos }>;
  diagnostics: Diagnostic[];
  statements: Statement[];
  files: string[];
  readFile: (path: string) => string;
  stack: string[];
}

function includeFile(ctx: LexContext, path: string, from: Pos | undefined): void {
  if (ctx.stack.includes(path)) {
    ctx.diagnostics.push({ pos: from ?? startOf(path), message: `include loop: ${path} includes itself` });
    return;
  }
  if (ctx.stack.length >= MAX_INCLUDE_DEPTH) {
    ctx.diagnostics.push({ pos: from ?? startOf(path), message: `includes nested deeper than ${MAX_INCLUDE_DEPTH}` });
    return;
  }
  let text: string;
  try {
    text = ctx.readFile(path);
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message;
    ctx.diagnostics.push({ pos: from ?? startOf(path), message: `cannot read ${path}: ${reason}` });
    return;
  }
  ctx.files.push(path);
  ctx.stack.push(path);
  lexText(ctx, text, path);
  ctx.stack.pop();
}

function startOf(file: string): Pos {
  return { file, line: 1, col: 1 };
}

/** Splits text into raw statements, then expands macros and includes in order. */
function lexText(ctx: LexContext, text: string, file: string): void {
  for (const raw of scan(text, file, ctx.diagnostics)) {
    handleStatement(ctx, raw);
  }
}

function handleStatement(ctx: LexContext, raw: RawToken[]): void {
  const first = raw[0]!;
  // Macro definition: NAME = value
  if (raw.length >= 2 && first.type === 'word' && !first.macro && raw[1]!.type === '=' && MACRO_NAME.test(first.value)) {
    if (raw.length !== 3 || (raw[2]!.type !== 'string' && raw[2]!.type !== 'word')) {
      ctx.diagnostics.push({ pos: raw[1]!.pos, message: `macro ${first.value}: expected one value, as in ${first.value} = "value"` });
      return;
    }
    const valueToken = raw[2]!;
    let value = valueToken.value;
    if (valueToken.macro) {
      const m = ctx.macros.get(valueToken.value);
      if (!m) {
        ctx.diagnostics.push({ pos: valueToken.pos, message: `undefined macro $${valueToken.value}` });
        return;
      }
      value = m.value;
    }
    ctx.macros.set(first.value, { value, pos: first.pos });
    return;
  }
  const tokens = expandMacros(ctx, raw);
  if (tokens === null || tokens.length === 0) return;
  const head = tokens[0]!;
  if (head.type === 'word' && head.value === 'include') {
    if (tokens.length !== 2 || (tokens[1]!.type !== 'string' && tokens[1]!.type !== 'word')) {
      ctx.diagnostics.push({ pos: head.pos, message: 'include: expected one file name, as in include "/etc/appliance/tables.conf"' });
      return;
    }
    const target = resolve(dirname(head.pos.file), tokens[1]!.value);
    includeFile(ctx, target, tokens[1]!.pos);
    return;
  }
  ctx.statements.push({ tokens, pos: head.pos });
}

function expandMacros(ctx: LexContext, raw: RawToken[]): Token[] | null {
  const out: Token[] = [];
  let ok = true;
  for (const tok of raw) {
    if (!tok.macro) {
      out.push({ type: tok.type, value: tok.value, pos: tok.pos });
      continue;
    }
    const m = ctx.macros.get(tok.value);
    if (!m) {
      ctx.diagnostics.push({ pos: tok.pos, message: `undefined macro $${tok.value}` });
      ok = false;
      continue;
    }
    // The value is re-lexed so a macro can hold several words ("0.0.0.0 port 25"),
    // every token keeping the position of the reference.
    const inner: Diagnostic[] = [];
    const statements = scan(m.value, tok.pos.file, inner);
    if (inner.length > 0 || statements.length > 1) {
      ctx.diagnostics.push({ pos: tok.pos, message: `macro $${tok.value} does not expand to valid tokens` });
      ok = false;
      continue;
    }
    for (const t of statements[0] ?? []) {
      if (t.macro) {
        ctx.diagnostics.push({ pos: tok.pos, message: `macro $${tok.value} refers to another macro; define it with its final value` });
        ok = false;
        continue;
      }
      out.push({ type: t.type, value: t.value, pos: tok.pos });
    }
  }
  return ok ? out : null;
}

/** The character scanner: text → raw token statements. */
function scan(text: string, file: string, diagnostics: Diagnostic[]): RawToken[][] {
  const statements: RawToken[][] = [];
  let current: RawToken[] = [];
  let braceDepth = 0;
  let braceOpen: Pos | null = null;
  let line = 1;
  let lineStart = 0;
  let i = 0;
  const n = text.length;
  const posAt = (idx: number): Pos => ({ file, line, col: idx - lineStart + 1 });
  // A statement with a lexical error is dropped whole: its one error is
  // reported here, not again by the parser as a truncated statement.
  let broken = false;
  const lexError = (pos: Pos, message: string) => {
    diagnostics.push({ pos, message });
    broken = true;
  };
  const endStatement = () => {
    if (current.length > 0 && !broken) statements.push(current);
    current = [];
    broken = false;
  };
  const newline = (idx: number) => {
    line++;
    lineStart = idx + 1;
  };

  while (i < n) {
    const c = text[i]!;
    if (c === '\n') {
      newline(i);
      i++;
      if (braceDepth === 0) endStatement();
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\r' || c === '\f' || c === '\v') {
      i++;
      continue;
    }
    if (c === '\\' && (text[i + 1] === '\n' || (text[i + 1] === '\r' && text[i + 2] === '\n'))) {
      i += text[i + 1] === '\n' ? 1 : 2;
      newline(i);
      i++;
      continue;
    }
    if (c === '#') {
      while (i < n && text[i] !== '\n') i++;
      continue;
    }
    const pos = posAt(i);
    if (c === '{' || c === '}' || c === ',' || c === '=' || c === '!') {
      if (c === '{') {
        if (braceDepth === 0) braceOpen = pos;
        braceDepth++;
      } else if (c === '}') {
        if (braceDepth === 0) {
          diagnostics.push({ pos, message: "unexpected '}'" });
          i++;
          continue;
        }
        braceDepth--;
      }
      current.push({ type: c, value: c, pos });
      i++;
      continue;
    }
    if (c === '"' || c === "'") {
      const quote = c;
      let value = '';
      i++;
      let closed = false;
      while (i < n) {
        const d = text[i]!;
        if (d === '\\' && i + 1 < n && (text[i + 1] === quote || text[i + 1] === '\\')) {
          value += text[i + 1];
          i += 2;
          continue;
        }
        if (d === '\n') break;
        if (d === quote) {
          closed = true;
          i++;
          break;
        }
        value += d;
        i++;
      }
      if (!closed) {
        lexError(pos, 'unterminated quoted string');
        continue;
      }
      current.push({ type: 'string', value, pos });
      continue;
    }
    if (c === '<') {
      const close = text.indexOf('>', i + 1);
      const nl = text.indexOf('\n', i + 1);
      if (close === -1 || (nl !== -1 && nl < close)) {
        lexError(pos, "'<' without closing '>': table references are written <name>");
        i = nl === -1 ? n : nl;
        continue;
      }
      const name = text.slice(i + 1, close).trim();
      if (!/^[A-Za-z0-9_.\-]+$/.test(name)) {
        lexError(pos, `invalid table name <${name}>`);
      } else {
        current.push({ type: 'table', value: name, pos });
      }
      i = close + 1;
      continue;
    }
    // A bare word: runs to whitespace or a delimiter.
    const start = i;
    if (c === '$' && /[A-Za-z_]/.test(text[i + 1] ?? '')) {
      let end = i + 1;
      while (end < n && /[A-Za-z0-9_]/.test(text[end]!)) end++;
      // `$argon2id$v=19$…` is a password hash, not the macro `$argon2id`.
      if (text[end] !== '$') {
        current.push({ type: 'word', value: text.slice(start + 1, end), pos, macro: true });
        i = end;
        continue;
      }
    }
    while (i < n) {
      const d = text[i]!;
      if (d === ' ' || d === '\t' || d === '\n' || d === '\r' || d === '{' || d === '}' || d === '"' || d === "'") break;
      if (d === '<' || d === '>') break;
      if (d === '\\' && text[i + 1] === '\n') break;
      if (d === ',') {
        // Commas separate list items, except inside a password hash such as
        // $argon2id$v=19$m=19456,t=2,p=1$… (a word starting with '$').
        const next = text[i + 1] ?? '\n';
        if (text[start] !== '$' || /[\s}]/.test(next)) break;
      }
      if (d === '=' && KEY_LIKE.test(text.slice(start, i))) break;
      i++;
    }
    if (i === start) {
      lexError(pos, `unexpected character '${c}'`);
      i++;
      continue;
    }
    current.push({ type: 'word', value: text.slice(start, i), pos });
  }
  if (braceDepth > 0 && braceOpen) {
    diagnostics.push({ pos: braceOpen, message: "'{' is never closed" });
    current = [];
  }
  endStatement();
  return statements;
}
