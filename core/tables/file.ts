/**
 * File tables (`table aliases file:/etc/appliance/aliases`): one entry per
 * line, `key value[, value…]` or the aliases(5) form `key: value, value`,
 * a key alone for lists, `#` comments, continuation lines starting with
 * whitespace (aliases(5)). The file is re-read on reload and when it changes
 * on disk; a malformed new version is refused (logged with its line) and the
 * previous contents stay in service.
 */
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs';
import { isIpAddress } from '../address.ts';
import { MapEntries, lookupEntries, servicesOf } from './key-value-lookup.ts';
import type { LookupKind, LookupResult, LookupValues, Table, TableEntry } from './types.ts';

export class TableFileError extends Error {
  readonly path: string;
  readonly line: number;
  constructor(path: string, line: number, message: string) {
    super(`${path}:${line}: ${message}`);
    this.name = 'TableFileError';
    this.path = path;
    this.line = line;
  }
}

export interface ParsedTableFile {
  readonly form: 'list' | 'map';
  readonly entries: readonly (readonly [string, string])[];
}

/** Parses table file text; throws TableFileError naming the first bad line. */
export function parseTableFile(text: string, path: string): ParsedTableFile {
  const entries: [string, string][] = [];
  const lines: number[] = [];
  const seen = new Map<string, number>();
  let listLines = 0;
  let mapLines = 0;
  // A `key:` line whose values may all come on continuation lines (aliases(5) logical lines).
  let awaiting: { readonly key: string; readonly line: number } | undefined;
  const rows = text.split(/\r?\n/);
  for (let i = 0; i < rows.length; i++) {
    const lineNo = i + 1;
    const raw = rows[i]!;
    const content = stripComment(raw);
    if (content.trim() === '') continue;
    if (/^[ \t]/.test(content)) {
      // aliases(5) continuation of the previous entry's value list.
      const last = entries[entries.length - 1];
      if (!last || (last[1] === '' && !awaiting)) throw new TableFileError(path, lineNo, 'continuation line without an entry to continue');
      const more = content.trim().replace(/^,\s*/, '').replace(/,\s*$/, '');
      last[1] = (last[1] === '' ? more : `${last[1]}, ${more}`).replace(/,\s*,/g, ',');
      awaiting = undefined;
      continue;
    }
    if (awaiting) throw new TableFileError(path, awaiting.line, `"${awaiting.key}:" has no value`);
    const m = /^("(?:[^"\\]|\\.)*":?|\S+)\s*(.*)$/.exec(content.trimEnd());
    if (!m) throw new TableFileError(path, lineNo, `cannot parse "${raw.trim()}"`);
    let key = m[1]!;
    // aliases(5) form "key: value"; a word ending in ':' that is an IPv6 range stays a key.
    const colonForm = key.endsWith(':') && !isNetworkAddress(key);
    if (colonForm) key = key.slice(0, -1);
    if (key.startsWith('"')) key = key.slice(1, -1).replace(/\\(.)/g, '$1');
    const value = m[2]!.trim().replace(/,\s*$/, '');
    if (colonForm && value === '') awaiting = { key, line: lineNo };
    if (key.includes('\0') || value.includes('\0')) throw new TableFileError(path, lineNo, 'NUL byte');
    const norm = key.toLowerCase();
    const first = seen.get(norm);
    if (first !== undefined) throw new TableFileError(path, lineNo, `duplicate key "${key}" (first at line ${first})`);
    seen.set(norm, lineNo);
    if (value === '' && !colonForm) listLines++;
    else mapLines++;
    if (listLines > 0 && mapLines > 0) {
      throw new TableFileError(path, lineNo, `mixes list entries (a key alone) with key-value entries (first such line: ${lines[0] ?? lineNo})`);
    }
    entries.push([key, value]);
    lines.push(lineNo);
  }
  if (awaiting) throw new TableFileError(path, awaiting.line, `"${awaiting.key}:" has no value`);
  return { form: mapLines > 0 ? 'map' : 'list', entries };
}

function isNetworkAddress(word: string): boolean {
  const [ip, bits] = word.split('/');
  return isIpAddress(ip!) !== 0 && (bits === undefined || /^\d+$/.test(bits));
}

function stripComment(line: string): string {
  // A # starts a comment at the start of a line or after whitespace (hashes inside values stay).
  const m = /(^|\s)#/.exec(line);
  return m ? line.slice(0, m.index) : line;
}

export interface FileTableOptions {
  /** Reload when the file changes on disk (stat polling; default true). */
  readonly watch?: boolean;
  readonly watchIntervalMs?: number;
  /** Told about a refused reload (malformed file): the old contents stay. */
  readonly onReloadError?: (err: Error) => void;
  readonly onReload?: (entries: number) => void;
}

export class FileTable implements Table {
  readonly name: string;
  readonly backend = 'file' as const;
  readonly path: string;
  private parsed: ParsedTableFile;
  private source: MapEntries;
  private readonly options: FileTableOptions;
  private watching = false;

  /** Reads the file now; throws (TableFileError or an fs error) if it cannot. */
  constructor(name: string, path: string, options: FileTableOptions = {}) {
    this.name = name;
    this.path = path;
    this.options = options;
    this.parsed = parseTableFile(readFileSync(path, 'utf8'), path);
    this.source = new MapEntries(this.parsed.entries);
    if (options.watch ?? true) this.startWatching();
  }

  services(): ReadonlySet<LookupKind> {
    return servicesOf(this.parsed.form);
  }

  lookup<K extends LookupKind>(kind: K, key: string): Promise<LookupResult<LookupValues[K]>> {
    return lookupEntries(this.source, kind, key);
  }

  async *entries(): AsyncIterable<TableEntry> {
    for (const [key, value] of this.parsed.entries) yield { key, value };
  }

  /** Re-reads the file; on error the previous contents stay and the error is thrown. */
  async reload(): Promise<void> {
    const parsed = parseTableFile(readFileSync(this.path, 'utf8'), this.path);
    this.parsed = parsed;
    this.source = new MapEntries(parsed.entries);
    this.options.onReload?.(parsed.entries.length);
  }

  private startWatching(): void {
    this.watching = true;
    watchFile(this.path, { persistent: false, interval: this.options.watchIntervalMs ?? 2000 }, this.onChange);
  }

  private readonly onChange = (curr: Stats, prev: Stats): void => {
    if (curr.mtimeMs === prev.mtimeMs && curr.size === prev.size && curr.ino === prev.ino) return;
    if (curr.nlink === 0 && curr.size === 0) return; // removed; keep serving until it comes back
    this.reload().catch((err: unknown) => this.options.onReloadError?.(err instanceof Error ? err : new Error(String(err))));
  };

  async close(): Promise<void> {
    if (this.watching) unwatchFile(this.path, this.onChange);
    this.watching = false;
  }
}
