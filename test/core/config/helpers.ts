/**
 * Shared helpers of the config tests (not a test file itself: tap runs
 * test/**\/*.test.ts only).
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatDiagnostic, parseConfigText, type Diagnostic, type LoadResult } from '../../../core/config/index.ts';
import type { Config, TableRef } from '../../../core/config/types.ts';

export const CONF = '/etc/appliance/appliance.conf';
export const FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), '../../fixtures/config');

export function fixture(name: string): string {
  return readFileSync(join(FIXTURES, name), 'utf8');
}

export function parse(text: string, readFiles: Record<string, string> = {}): LoadResult {
  const readFile = (p: string): string => {
    const body = readFiles[p];
    if (body === undefined) throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
    return body;
  };
  return parseConfigText(text, CONF, { readFile });
}

/** The config of a text that must parse; throws with every error otherwise. */
export function parseOk(text: string, readFiles: Record<string, string> = {}): { config: Config; warnings: readonly Diagnostic[] } {
  const r = parse(text, readFiles);
  if (!r.ok) throw new Error(`expected a valid config, got:\n${r.errors.map(formatDiagnostic).join('\n')}`);
  return { config: r.config, warnings: r.warnings };
}

/** The errors of a text that must fail. */
export function parseErrors(text: string, readFiles: Record<string, string> = {}): readonly Diagnostic[] {
  const r = parse(text, readFiles);
  if (r.ok) throw new Error('expected errors, the config is valid');
  return r.errors;
}

/** `LINE:COL: message` of each diagnostic (the file is always the same in these tests). */
export function brief(list: readonly Diagnostic[]): string[] {
  return list.map((d) => `${d.pos.line}:${d.pos.col}: ${d.message}`);
}

/** 1-based line of the first line of `text` containing `needle`. */
export function lineOf(text: string, needle: string): number {
  const idx = text.split('\n').findIndex((l) => l.includes(needle));
  if (idx < 0) throw new Error(`no line contains ${JSON.stringify(needle)}`);
  return idx + 1;
}

/** Drops source positions, recursively (for deep comparisons). */
export function strip<T>(value: T): T {
  return JSON.parse(JSON.stringify(value, (k, v) => (k === 'pos' || k === 'pkiPos' ? undefined : v))) as T;
}

/**
 * A comparable form of a config: no positions, no legacy markers, and every
 * reference to an anonymous inline table replaced by that table's content
 * (their generated names depend on the order they were met in).
 */
export function canonical(config: Config): unknown {
  const anon = new Map([...config.tables.values()].filter((t) => t.anonymous).map((t) => [t.name, t.source]));
  const rank = (c: { type: string }) => (c.type === 'from' ? 0 : c.type === 'for' ? 1 : 2);
  const walk = (v: unknown): unknown => {
    if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, walk(x)]));
    if (Array.isArray(v)) return v.map(walk);

    if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (typeof o.name === 'string' && 'pos' in o && Object.keys(o).length === 2 && anon.has(o.name)) {
        return { inline: anon.get((o as unknown as TableRef).name) };
      }
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(o)) {
        if (k === 'pos' || k === 'pkiPos' || k === 'legacy' || k === 'legacyText') continue;
        // Conditions are ANDed; the printer writes from and for first.
        out[k] = walk(k === 'conditions' && Array.isArray(x) ? [...(x as { type: string }[])].sort((a, b) => rank(a) - rank(b)) : x);
      }
      return out;
    }
    return v;
  };
  const tables = Object.fromEntries([...config.tables.values()].filter((t) => !t.anonymous).map((t) => [t.name, walk(t)]));
  return { ...(walk(config) as object), tables };
}
