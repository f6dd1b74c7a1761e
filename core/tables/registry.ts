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
import { LdapTable, type LdapTableOptions } from './ldap.ts';
import { LdapConfError, ldapServices, parseLdapConf } from './ldap-conf.ts';
import { tableUses } from '../config/table-uses.ts';
import type { Table } from './types.ts';
import { TableOpenError } from './errors.ts';

export { TableOpenError };

export interface TableDeps {
  /** Storage for `db` tables; absent when no data directory is open (e.g. `check`). */
  readonly kv?: (tableName: string) => KeyValueStore;
  readonly file?: FileTableOptions;
  readonly ldap?: LdapTableOptions;
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
      try {
        return LdapTable.open(decl.name, s.path, deps.ldap);
      } catch (err) {
        if (err instanceof LdapConfError) throw new TableOpenError(`table ${decl.name}: ${err.message}`);
        throw err;
      }
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

/**
 * Reads every LDAP table's ldap.conf as `check` does (nothing is contacted):
 * each bad line is an error at PATH:LINE, and so is a use of the table for
 * a lookup its conf has no filter for.
 */
export function checkLdapTables(config: Config): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const decl of config.tables.values()) {
    if (decl.source.type !== 'ldap') continue;
    const path = decl.source.path;
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      out.push({ pos: decl.pos, message: `table ${decl.name}: cannot read ${path}: ${e.code === 'ENOENT' ? 'no such file' : e.message}` });
      continue;
    }
    try {
      const conf = parseLdapConf(text, path);
      if (conf.caFile) {
        try {
          readFileSync(conf.caFile.path);
        } catch (err) {
          const e = err as NodeJS.ErrnoException;
          out.push({ pos: { file: path, line: conf.caFile.line, col: 1 }, message: `ca_file ${conf.caFile.path}: ${e.code === 'ENOENT' ? 'no such file' : e.message}` });
        }
      }
      const served = new Set<string>(ldapServices(conf));
      for (const use of tableUses(config)) {
        if (use.ref.name !== decl.name || served.has(use.kind)) continue;
        const hint = use.kind === 'credentials' ? 'credentials_filter/credentials_attributes or auth_bind yes' : `${use.kind}_filter`;
        out.push({ pos: use.ref.pos, message: `table ${decl.name} is used for ${use.what} (${use.kind} lookups) but ${path} has no ${hint}` });
      }
    } catch (err) {
      if (!(err instanceof LdapConfError)) throw err;
      for (const p of err.problems) out.push({ pos: { file: path, line: p.line, col: 1 }, message: p.message });
    }
  }
  return out;
}

/**
 * Checks the tables that talk to a server (LDAP service bind) once, at start
 * or reload. A refused service bind throws TableOpenError — a wrong password
 * must stop the start, not turn every user into "unknown". An unreachable
 * server is returned as a warning: its lookups answer 4xx until it is back.
 */
export async function verifyTables(tables: TableSet): Promise<Error[]> {
  const warnings: Error[] = [];
  for (const t of tables.all()) {
    if (!t.verify) continue;
    try {
      const problem = await t.verify();
      if (problem) warnings.push(problem);
    } catch (err) {
      throw new TableOpenError((err as Error).message);
    }
  }
  return warnings;
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
