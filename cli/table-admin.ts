/**
 * `appliance table …` operations over opened tables: the same code answers
 * the control socket in the running appliance and the CLI when it opens the
 * data directory itself, so the user sees no difference.
 *
 * Keys are checked against what the config uses the table for (a domain
 * table takes domains, a credentials table addresses or user names), and
 * credentials are never shown: list and lookup mask them.
 */
import { parseAddress, isValidDomain } from '../core/address.ts';
import { identifyHash, isPasswordHash } from '../core/auth/passwords.ts';
import type { Config } from '../core/config/types.ts';
import { tableUses } from '../core/config/table-uses.ts';
import type { TableSet } from '../core/tables/registry.ts';
import { lookupKinds, type LookupKind, type LookupResult, type Table } from '../core/tables/types.ts';
import { ControlError, type LookupView, type TableEntryView } from './control/protocol.ts';

/** How the config uses each named table (the lookup kinds of its uses). */
export function tableUsesByName(config: Config): Map<string, Set<LookupKind>> {
  const uses = new Map<string, Set<LookupKind>>();
  for (const u of tableUses(config)) {
    let kinds = uses.get(u.ref.name);
    if (!kinds) uses.set(u.ref.name, (kinds = new Set()));
    kinds.add(u.kind);
  }
  return uses;
}

/** A table used as `auth <t>` on a listener: its values are password hashes. */
export function isCredentialsTable(config: Config, name: string): boolean {
  return [...config.listeners, ...config.imap.listeners].some((l) => l.auth?.table.name === name);
}

export function requireTable(config: Config, tables: TableSet, name: string): Table {
  const decl = config.tables.get(name);
  if (!decl || decl.anonymous) {
    const names = [...config.tables.values()].filter((t) => !t.anonymous).map((t) => t.name);
    throw new ControlError('usage', `no table named "${name}" in ${config.path} (tables: ${names.join(', ') || 'none'})`);
  }
  const t = tables.get(name);
  if (!t) throw new ControlError('failed', `table ${name} is not open`);
  return t;
}

export function maskValue(config: Config, table: string, value: string): string {
  if (value === '') return '';
  if (isCredentialsTable(config, table) || isPasswordHash(value)) {
    const scheme = identifyHash(value);
    return scheme ? `******** (${scheme})` : '********';
  }
  return value;
}

export async function listTable(config: Config, tables: TableSet, name: string): Promise<TableEntryView[]> {
  const t = requireTable(config, tables, name);
  if (!t.entries) throw new ControlError('usage', `table ${name} (${t.backend}) cannot be listed`);
  const out: TableEntryView[] = [];
  for await (const e of t.entries()) out.push({ key: e.key, value: maskValue(config, name, e.value) });
  return out;
}

/** Checks a key against the table's uses; throws a usage error that says what is wrong. */
export function checkKey(config: Config, name: string, key: string): void {
  if (key === '' || /[\s\0]/.test(key)) throw new ControlError('usage', `invalid key "${key}": it must not be empty or contain spaces`);
  const uses = tableUsesByName(config).get(name) ?? new Set<LookupKind>();
  if (uses.has('domain') && !isValidDomain(key.startsWith('*.') ? key.slice(2) : key)) {
    throw new ControlError('usage', `"${key}" is not a valid domain (table ${name} is used as a domain table)`);
  }
  const addressLike = uses.has('credentials') || uses.has('userinfo') || uses.has('mailaddrmap') || uses.has('alias') || uses.has('mailaddr');
  if (addressLike && key.includes('@') && !key.startsWith('@')) {
    const parsed = parseAddress(key);
    if (!parsed.ok) throw new ControlError('usage', `"${key}" is not a valid address: ${parsed.reason}`);
  } else if (addressLike && key.startsWith('@') && !isValidDomain(key.slice(1))) {
    throw new ControlError('usage', `"${key}" is not a valid catch-all: @ must be followed by a domain`);
  } else if ((uses.has('credentials') || uses.has('userinfo')) && !/^[A-Za-z0-9._+\-=]+$/.test(key)) {
    throw new ControlError('usage', `"${key}" is not a valid user name or address`);
  }
}

export function checkValue(config: Config, name: string, value: string): void {
  if (isCredentialsTable(config, name) && !isPasswordHash(value)) {
    throw new ControlError('usage', `table ${name} holds credentials: its values must be password hashes`);
  }
  if (value.includes('\0') || value.includes('\n')) throw new ControlError('usage', 'the value must be one line');
}

export async function addEntry(config: Config, tables: TableSet, name: string, key: string, value: string): Promise<{ replaced: boolean }> {
  const t = requireTable(config, tables, name);
  if (!t.put) {
    const decl = config.tables.get(name)!;
    const where = decl.source.type === 'file' ? `edit ${decl.source.path}` : decl.source.type === 'inline' ? `edit ${config.path}` : 'change the directory';
    throw new ControlError('usage', `table ${name} is not a db table (its backend is ${t.backend}): ${where} instead; only db tables are managed with appliance table`);
  }
  checkKey(config, name, key);
  checkValue(config, name, value);
  const existed = (await t.lookup('source', key)).kind === 'found';
  await t.put(key, value);
  return { replaced: existed };
}

export async function delEntry(config: Config, tables: TableSet, name: string, key: string): Promise<{ removed: boolean }> {
  const t = requireTable(config, tables, name);
  if (!t.del) throw new ControlError('usage', `table ${name} is not a db table (its backend is ${t.backend}); only db tables are managed with appliance table`);
  const removed = await t.del(key);
  if (!removed) throw new ControlError('not-found', `table ${name} has no key "${key}"`);
  return { removed };
}

/** The kind used when --kind is not given: what the config uses the table for. */
export function defaultKind(config: Config, name: string): LookupKind {
  const uses = tableUsesByName(config).get(name);
  const order: LookupKind[] = ['credentials', 'alias', 'userinfo', 'domain', 'mailaddrmap', 'mailaddr', 'netaddr'];
  for (const k of order) if (uses?.has(k)) return k;
  return 'alias';
}

export async function lookupEntry(config: Config, tables: TableSet, name: string, key: string, kind?: string): Promise<LookupView> {
  const t = requireTable(config, tables, name);
  const k = (kind ?? defaultKind(config, name)) as LookupKind;
  if (!(lookupKinds as readonly string[]).includes(k)) {
    throw new ControlError('usage', `unknown lookup kind "${kind}" (${lookupKinds.join(', ')})`);
  }
  const r: LookupResult<unknown> = await t.lookup(k, key);
  if (r.kind === 'tempfail') return { kind: k, result: 'tempfail', error: r.error.message };
  if (r.kind === 'none') return { kind: k, result: 'none' };
  return { kind: k, result: 'found', value: showValue(config, name, k, r.value) };
}

function showValue(config: Config, table: string, kind: LookupKind, value: unknown): string {
  switch (kind) {
    case 'credentials': {
      const c = value as { username: string; hash: string };
      return `${c.username} ${maskValue(config, table, c.hash)}`;
    }
    case 'userinfo': {
      const u = value as { username: string; directory?: string; uid?: number; gid?: number };
      const dir = u.directory ?? '(default Maildir)';
      return u.uid !== undefined ? `${u.username} ${u.uid}:${u.gid}:${dir}` : `${u.username} ${dir}`;
    }
    case 'alias':
    case 'mailaddrmap':
    case 'source':
      return (value as string[]).join(', ');
    default:
      return 'found';
  }
}
