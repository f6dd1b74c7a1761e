/**
 * `appliance table list|add|del|lookup`: through the control socket when the
 * appliance runs, else by opening the data directory directly — same code,
 * same output. Passwords for credentials tables are hashed here, so a clear
 * password never leaves this process.
 */
import { hashPassword } from '../../core/auth/passwords.ts';
import type { Config } from '../../core/config/types.ts';
import { openTables, TableSet } from '../../core/tables/registry.ts';
import { Store } from '../../store/db.ts';
import { connectControl, type ControlClient } from '../control/client.ts';
import { ControlError, type ControlMethods, type LookupView, type TableEntryView } from '../control/protocol.ts';
import { loadConfigOrThrow } from '../load.ts';
import { passwordFromStdin, passwordFromTerminal } from '../password-input.ts';
import { addEntry, checkKey, checkValue, delEntry, isCredentialsTable, listTable, lookupEntry, requireTable } from '../table-admin.ts';
import { CommandError, UsageError, configPath, parse } from '../usage.ts';
import { lookupKinds } from '../../core/tables/types.ts';

export const tableHelp = `usage: appliance table list <table>
       appliance table add <table> <key> [value] [--password-stdin]
       appliance table del <table> <key>
       appliance table lookup <table> <key> [--kind KIND]
       (all take -c CONFIG; list and lookup take --json)

Manages "db" tables and queries any table (like postmap -q / smtpctl show table).
On a credentials table (one used as "auth <table>"), add asks for the password
twice, or reads one line with --password-stdin, and stores only its hash.
Lookup kinds: ${lookupKinds.join(', ')}; default: what the config uses the table for.
Works with the appliance running (over its control socket) or stopped.`;

export async function tableCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    'password-stdin': { type: 'boolean' },
    kind: { type: 'string' },
  });
  if (values.help || positionals.length === 0) {
    process.stdout.write(`${tableHelp}\n`);
    return values.help ? 0 : 2;
  }
  const [verb, table, key, value, ...extra] = positionals;
  const want = (n: number, usage: string) => {
    if (positionals.length !== n) throw new UsageError(`usage: appliance table ${usage}`);
  };
  const config = loadConfigOrThrow(configPath(values), { warnings: false });
  switch (verb) {
    case 'list': {
      want(2, 'list <table>');
      const { entries } = await withTables(config, table!, (c) => c.request('table.list', { table: table! }), async (ts) => ({ entries: await listTable(config, ts, table!) }));
      printEntries(entries, values.json === true);
      return 0;
    }
    case 'add': {
      if (positionals.length < 3 || positionals.length > 4 || extra.length > 0) throw new UsageError('usage: appliance table add <table> <key> [value]');
      // Check everything before asking for a password: bad input changes nothing.
      requireDeclared(config, table!);
      checkKey(config, table!, key!);
      let stored = value ?? '';
      if (isCredentialsTable(config, table!)) {
        if (value !== undefined) throw new UsageError(`table ${table} holds credentials: give the password on the prompt or with --password-stdin, not on the command line`);
        const password = values['password-stdin'] ? await passwordFromStdin() : await passwordFromTerminal();
        stored = await hashPassword(password);
      } else if (values['password-stdin']) {
        throw new UsageError(`table ${table} is not a credentials table (no listener uses it as auth <${table}>)`);
      }
      checkValue(config, table!, stored);
      const r = await withTables(config, table!, (c) => c.request('table.add', { table: table!, key: key!, value: stored }), (ts) => addEntry(config, ts, table!, key!, stored));
      process.stdout.write(`${key} ${r.replaced ? 'replaced in' : 'added to'} ${table}\n`);
      return 0;
    }
    case 'del': {
      want(3, 'del <table> <key>');
      await withTables(config, table!, (c) => c.request('table.del', { table: table!, key: key! }), (ts) => delEntry(config, ts, table!, key!));
      process.stdout.write(`${key} removed from ${table}\n`);
      return 0;
    }
    case 'lookup': {
      want(3, 'lookup <table> <key> [--kind KIND]');
      const params: ControlMethods['table.lookup']['params'] = { table: table!, key: key!, ...(values.kind ? { kind: values.kind } : {}) };
      const r = await withTables(config, table!, (c) => c.request('table.lookup', params), (ts) => lookupEntry(config, ts, table!, key!, values.kind));
      return printLookup(r, values.json === true);
    }
    default:
      throw new UsageError(`unknown table command "${verb}" (list, add, del, lookup)`);
  }
}

function requireDeclared(config: Config, name: string): void {
  const decl = config.tables.get(name);
  if (!decl || decl.anonymous) {
    const names = [...config.tables.values()].filter((t) => !t.anonymous).map((t) => t.name);
    throw new UsageError(`no table named "${name}" in ${config.path} (tables: ${names.join(', ') || 'none'})`);
  }
}

/**
 * Runs an operation in the running appliance if there is one, else here on
 * the tables opened from the data directory (the database only for db tables).
 */
async function withTables<R>(config: Config, table: string, remote: (c: ControlClient) => Promise<R>, local: (tables: TableSet) => Promise<R>): Promise<R> {
  requireDeclared(config, table);
  try {
    const client = await connectControl(config.control.socket);
    if (client) {
      try {
        return await remote(client);
      } finally {
        client.close();
      }
    }
    const decl = config.tables.get(table)!;
    const store = decl.source.type === 'db' ? await Store.open(config.dataDir) : null;
    try {
      const only = { ...config, tables: new Map([[table, decl]]) } as Config;
      const tables = openTables(only, { file: { watch: false }, ...(store ? { kv: (n: string) => store.tableStore(n) } : {}) });
      try {
        requireTable(config, tables, table);
        return await local(tables);
      } finally {
        await tables.close();
      }
    } finally {
      await store?.close();
    }
  } catch (err) {
    if (err instanceof ControlError) throw err.code === 'usage' ? new UsageError(err.message) : new CommandError(err.message);
    throw err;
  }
}

function printEntries(entries: readonly TableEntryView[], json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
    return;
  }
  for (const e of entries) process.stdout.write(e.value === '' ? `${e.key}\n` : `${e.key}\t${e.value}\n`);
}

function printLookup(r: LookupView, json: boolean): number {
  if (json) process.stdout.write(`${JSON.stringify(r)}\n`);
  if (r.result === 'tempfail') {
    process.stderr.write(`lookup failed temporarily: ${r.error}\n`);
    return 1;
  }
  if (r.result === 'none') {
    if (!json) process.stderr.write(`not found (${r.kind})\n`);
    return 1;
  }
  if (!json) process.stdout.write(`${r.value}\n`);
  return 0;
}
