/**
 * Opens the tables a Config declares, one backend per source type (one
 * static list, fastify-style), and checks each table against the lookups its
 * uses need once its contents are known (file tables).
 */
import type { Config, TableDecl } from '../config/types.ts';
import type { KeyValueStore } from './db.ts';
import { DbTable } from './db.ts';
import { readFileSync } from 'node:fs';
import type { Diagnostic } from '../config/diagnostics.ts';
import { FileTable, TableFileError, parseTableFile, type FileTableOptions } from './file.ts';
import { InlineTable } from './inline.ts';
import { UnavailableLdapTable } from './ldap.ts';
import type { Table } from './types.ts';
import { TableOpenError } from './errors.ts';

export { TableOpenError };

export interface TableDeps {
  /** Storage for `db` tables; absent when no data directory is open (e.g. `check`). */
  readonly kv?: (tableName: string) => KeyValueStore;
  readonly file?: FileTableOptions;
}

export class TableSet {
  private readonly tables: ReadonlyMap<string, Table>;
  constructor(tables: ReadonlyMap<string, Table>) {
    this.tables = tables;
  }
  get(name: string): Table | undefined {
    return this.tables.get(name);
  }
  /** Every table, anonymous ones included. */
  all(): Iterable<Table> {
    return this.tables.values();
  }
  async reload(): Promise<void> {
    for (const t of this.tables.values()) await t.reload?.();
  }
  async close(): Promise<void> {
    for (const t of this.tables.values()) await t.close?.();
  }
}


export function openTable(decl: TableDecl, deps: TableDeps): Table {
  const s = decl.source;
  switch (s.type) {
    case 'inline':
      return new InlineTable(decl);
    case 'file':
      try {
        return new FileTable(decl.name, s.path, deps.file);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        const reason = e.code === 'ENOENT' ? 'no such file' : e.message;
        throw new TableOpenError(e.name === 'TableFileError' ? `table ${decl.name}: ${e.message}` : `table ${decl.name}: cannot read ${s.path}: ${reason}`);
      }
    case 'db':
      if (!deps.kv) throw new TableOpenError(`table ${decl.name}: the database is not open`);
      return new DbTable(decl.name, deps.kv(decl.name));
    case 'ldap':
      return new UnavailableLdapTable(decl.name, s.path);
  }
}

/**
 * Reads every file table once, as `check` does: a missing file or a malformed
 * line is an error (the line is named), before anything is started.
 */
export function checkFileTables(config: Config): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const decl of config.tables.values()) {
    if (decl.source.type !== 'file') continue;
    try {
      parseTableFile(readFileSync(decl.source.path, 'utf8'), decl.source.path);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e instanceof TableFileError) {
        out.push({ pos: { file: e.path, line: e.line, col: 1 }, message: e.message.slice(e.message.indexOf(': ', e.path.length) + 2) });
      } else {
        const reason = e.code === 'ENOENT' ? 'no such file' : e.message;
        out.push({ pos: decl.pos, message: `table ${decl.name}: cannot read ${decl.source.path}: ${reason}` });
      }
    }
  }
  return out;
}

/** Opens every table of the config; all-or-nothing (closes what it opened on failure). */
export function openTables(config: Config, deps: TableDeps): TableSet {
  const opened = new Map<string, Table>();
  try {
    for (const decl of config.tables.values()) opened.set(decl.name, openTable(decl, deps));
  } catch (err) {
    for (const t of opened.values()) void t.close?.();
    throw err;
  }
  return new TableSet(opened);
}
