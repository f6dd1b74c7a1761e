/**
 * Loading a config: lex (with includes and macros) → parse → build with
 * defaults → validate. Returns the frozen Config with its warnings, or every
 * error found, sorted by position.
 */
import { resolve } from 'node:path';
import { buildConfig } from './build.ts';
import { type Diagnostic } from './diagnostics.ts';
import { lexConfigFile, lexConfigText, type LexOptions, type LexResult } from './lexer.ts';
import { emptyDraft, parseStatements } from './parser.ts';
import type { Config } from './types.ts';
import { validateConfig } from './validate.ts';

export type LoadResult =
  | { readonly ok: true; readonly config: Config; readonly warnings: readonly Diagnostic[] }
  | { readonly ok: false; readonly errors: readonly Diagnostic[]; readonly warnings: readonly Diagnostic[] };

export function loadConfig(path: string, options: LexOptions = {}): LoadResult {
  const abs = resolve(path);
  return finish(abs, lexConfigFile(abs, options));
}

/** Parses config text as if it were the file `path` (tests, stdin). */
export function parseConfigText(text: string, path = '/etc/appliance/appliance.conf', options: LexOptions = {}): LoadResult {
  const abs = resolve(path);
  return finish(abs, lexConfigText(text, abs, options));
}

function finish(path: string, lexed: LexResult): LoadResult {
  const draft = parseStatements(lexed.statements, emptyDraft(path));
  const built = buildConfig(draft, lexed.files);
  const all = [...lexed.diagnostics, ...draft.diagnostics, ...built.diagnostics, ...validateConfig(built.config)];
  const sorted = dedupe(all).sort(byPosition);
  const errors = sorted.filter((d) => d.severity !== 'warning');
  const warnings = sorted.filter((d) => d.severity === 'warning');
  return errors.length > 0 ? { ok: false, errors, warnings } : { ok: true, config: built.config, warnings };
}

function byPosition(a: Diagnostic, b: Diagnostic): number {
  if (a.pos.file !== b.pos.file) return a.pos.file < b.pos.file ? -1 : 1;
  return a.pos.line - b.pos.line || a.pos.col - b.pos.col;
}

function dedupe(list: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  return list.filter((d) => {
    const k = `${d.pos.file}:${d.pos.line}:${d.pos.col}:${d.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export { formatDiagnostic, type Diagnostic, type Pos } from './diagnostics.ts';
export type * from './types.ts';
