/**
 * The `ldap:/path/ldap.conf` file of an LDAP table, in the key/value format
 * of OpenSMTPD's table-ldap: one `key value` (or `key: value`) per line;
 * `#` starts a comment at the start of a line or after a blank; a value may
 * be double-quoted (then `\"` and `\\` are escapes, and `#` is literal). Parsing collects every error
 * with its line (`PATH:LINE: message`, printed by `appliance check`) and
 * returns a frozen LdapConf; nothing is contacted here.
 *
 * Keys: url (repeatable or several on one line: failover, in order),
 * username/password (the service bind), basedn, scope, starttls, ca_file,
 * timeout, cache_ttl, negative_cache_ttl, cache_size, pool_size, auth_bind,
 * bind_dn_template, and KIND_filter / KIND_attributes for the lookup kinds
 * alias, domain, credentials, userinfo, mailaddr, mailaddrmap.
 */
import { dirname, resolve } from 'node:path';
import { FilterParser } from 'ldapts';
import { editDistance } from '../config/diagnostics.ts';
import { badPlaceholder, expandDn, expandFilter } from './ldap-template.ts';

export const ldapKinds = ['alias', 'domain', 'credentials', 'userinfo', 'mailaddr', 'mailaddrmap'] as const;
export type LdapKind = (typeof ldapKinds)[number];

export interface LdapQuery {
  /** The filter template, placeholders unexpanded. */
  readonly filter: string;
  readonly attributes: readonly string[];
}

export interface LdapConf {
  readonly path: string;
  readonly urls: readonly string[];
  readonly username?: string;
  readonly password?: string;
  readonly basedn: string;
  readonly scope: 'sub' | 'one' | 'base';
  readonly starttls: boolean;
  readonly caFile?: { readonly path: string; readonly line: number };
  readonly timeoutMs: number;
  readonly cacheTtlMs: number;
  readonly negativeCacheTtlMs: number;
  readonly cacheSize: number;
  readonly poolSize: number;
  readonly authBind: boolean;
  readonly bindDnTemplate?: string;
  readonly queries: Readonly<Partial<Record<LdapKind, LdapQuery>>>;
}

export const LDAP_DEFAULTS = Object.freeze({
  timeoutMs: 5_000,
  cacheTtlMs: 60_000,
  negativeCacheTtlMs: 10_000,
  cacheSize: 10_000,
  poolSize: 2,
});

export interface LdapConfProblem {
  readonly line: number;
  readonly message: string;
}

export class LdapConfError extends Error {
  readonly path: string;
  readonly problems: readonly LdapConfProblem[];
  constructor(path: string, problems: readonly LdapConfProblem[]) {
    super(problems.map((p) => `${path}:${p.line}: ${p.message}`).join('\n'));
    this.name = 'LdapConfError';
    this.path = path;
    this.problems = problems;
  }
}

const SIMPLE_KEYS = [
  'url',
  'username',
  'password',
  'basedn',
  'scope',
  'starttls',
  'ca_file',
  'timeout',
  'cache_ttl',
  'negative_cache_ttl',
  'cache_size',
  'pool_size',
  'auth_bind',
  'bind_dn_template',
] as const;
const KEYS: ReadonlySet<string> = new Set([...SIMPLE_KEYS, ...ldapKinds.flatMap((k) => [`${k}_filter`, `${k}_attributes`])]);

/** How many attributes each kind reads, in order (OpenSMTPD table-ldap). */
const ATTRIBUTE_COUNTS: Readonly<Record<LdapKind, { readonly counts: readonly number[]; readonly what: string }>> = {
  alias: { counts: [], what: 'one or more attributes holding the alias targets (e.g. maildrop)' },
  mailaddrmap: { counts: [], what: 'one or more attributes holding the addresses the user may send as' },
  credentials: { counts: [2], what: 'two attributes: the user name and the password hash (e.g. uid,userPassword)' },
  userinfo: { counts: [1, 3], what: 'homeDirectory alone, or uidNumber,gidNumber,homeDirectory' },
  domain: { counts: [], what: 'attributes (not needed: a match is enough)' },
  mailaddr: { counts: [], what: 'attributes (not needed: a match is enough)' },
};

/** Parses ldap.conf text; throws LdapConfError with every problem found. */
export function parseLdapConf(text: string, path: string): LdapConf {
  const problems: LdapConfProblem[] = [];
  const fail = (line: number, message: string) => problems.push({ line, message });
  const values = new Map<string, { value: string; line: number }>();
  const urls: { value: string; line: number }[] = [];
  const rows = text.split(/\r?\n/);
  for (let i = 0; i < rows.length; i++) {
    const line = i + 1;
    const content = rows[i]!.replace(/^\s+/, '');
    if (content === '' || content.startsWith('#')) continue;
    const m = /^([A-Za-z_]+)(?::|(?=\s)|$)\s*(.*?)\s*$/.exec(content);
    if (!m) {
      fail(line, `cannot parse "${content.slice(0, 60)}": expected "key value"`);
      continue;
    }
    const key = m[1]!.toLowerCase();
    let value = m[2]!;
    if (value.startsWith('"')) {
      const q = /^"((?:[^"\\]|\\.)*)"\s*(#.*)?$/.exec(value);
      if (!q) {
        fail(line, `${key}: unterminated quoted value`);
        continue;
      }
      value = q[1]!.replace(/\\(.)/g, '$1');
    } else {
      value = value.replace(/\s+#.*$/, '');
    }
    if (!KEYS.has(key)) {
      fail(line, `unknown key "${m[1]}"${suggest(key)}`);
      continue;
    }
    if (value === '') {
      fail(line, `${key} needs a value`);
      continue;
    }
    if (key === 'url') {
      for (const u of value.split(/[\s,]+/).filter((s) => s !== '')) urls.push({ value: u, line });
      continue;
    }
    const prev = values.get(key);
    if (prev) {
      fail(line, `${key} is already set on line ${prev.line}`);
      continue;
    }
    values.set(key, { value, line });
  }
  const lastLine = Math.max(1, rows.length - (rows[rows.length - 1] === '' ? 1 : 0));
  const get = (key: string) => values.get(key);

  // --- connection
  if (urls.length === 0) fail(lastLine, 'no url: give at least one "url ldap://HOST[:PORT]" (several lines or values = failover)');
  for (const u of urls) {
    const problem = checkUrl(u.value);
    if (problem) fail(u.line, problem);
  }
  const basedn = get('basedn');
  if (!basedn) fail(lastLine, 'no basedn: give the search base, e.g. "basedn ou=mail,dc=example,dc=org"');
  const username = get('username');
  const password = get('password');
  if (password && !username) fail(password.line, 'password without username: the service bind needs both (or neither, for anonymous reads)');
  if (username && !password) fail(username.line, `username without password: give the password of ${username.value}`);
  const scope = get('scope');
  if (scope && !['sub', 'one', 'base'].includes(scope.value.toLowerCase())) fail(scope.line, `scope must be sub, one or base, not "${scope.value}"`);
  const starttls = yesNo(get('starttls'), fail);
  if (starttls && urls.some((u) => u.value.toLowerCase().startsWith('ldaps://'))) {
    fail(get('starttls')!.line, 'starttls is for ldap:// urls; an ldaps:// url is already TLS');
  }
  const caFile = get('ca_file');
  const timeoutMs = duration(get('timeout'), LDAP_DEFAULTS.timeoutMs, fail, { min: 1 });
  const cacheTtlMs = duration(get('cache_ttl'), LDAP_DEFAULTS.cacheTtlMs, fail, { min: 0 });
  const negativeCacheTtlMs = duration(get('negative_cache_ttl'), Math.min(LDAP_DEFAULTS.negativeCacheTtlMs, cacheTtlMs), fail, { min: 0 });
  const cacheSize = count(get('cache_size'), LDAP_DEFAULTS.cacheSize, fail, 0, 10_000_000);
  const poolSize = count(get('pool_size'), LDAP_DEFAULTS.poolSize, fail, 1, 64);

  // --- lookups
  const queries: Partial<Record<LdapKind, LdapQuery>> = {};
  for (const kind of ldapKinds) {
    const filter = get(`${kind}_filter`);
    const attrs = get(`${kind}_attributes`);
    if (!filter) {
      if (attrs) fail(attrs.line, `${kind}_attributes without ${kind}_filter`);
      continue;
    }
    const filterProblem = checkFilter(filter.value);
    if (filterProblem) fail(filter.line, `${kind}_filter: ${filterProblem}`);
    const attributes = attrs ? attrs.value.split(/[\s,]+/).filter((s) => s !== '') : [];
    const want = ATTRIBUTE_COUNTS[kind];
    const needsAttributes = kind === 'alias' || kind === 'mailaddrmap' || kind === 'credentials' || kind === 'userinfo';
    if (needsAttributes && attributes.length === 0) {
      fail(filter.line, `${kind}_filter needs ${kind}_attributes: ${want.what}`);
    } else if (want.counts.length > 0 && !want.counts.includes(attributes.length)) {
      fail(attrs!.line, `${kind}_attributes: expected ${want.what}, got ${attributes.length}`);
    }
    for (const a of attributes) {
      if (!/^[A-Za-z][A-Za-z0-9-]*(;[A-Za-z0-9-]+)*$|^\d+(\.\d+)+$/.test(a)) fail(attrs!.line, `${kind}_attributes: "${a}" is not an attribute name`);
    }
    queries[kind] = Object.freeze({ filter: filter.value, attributes: Object.freeze(attributes) });
  }

  // --- authentication
  const authBind = yesNo(get('auth_bind'), fail);
  const template = get('bind_dn_template');
  if (template) {
    const bad = badPlaceholder(template.value);
    if (bad) fail(template.line, `bind_dn_template: unknown placeholder "${bad}" (use %u, %n, %d or %%)`);
    else if (!/%[sund]/.test(template.value)) fail(template.line, 'bind_dn_template must contain the user (%u, %n or %d), e.g. uid=%u,ou=mail,dc=example,dc=org');
    else if (!/^[A-Za-z0-9.-]+=.+/.test(expandDn(template.value, 'user@example.org'))) fail(template.line, 'bind_dn_template is not a DN (attr=value,…)');
    if (!authBind) fail(template.line, 'bind_dn_template is only used with "auth_bind yes"');
  }
  if (authBind && !template && !queries.credentials) {
    fail(get('auth_bind')!.line, 'auth_bind needs bind_dn_template, or credentials_filter to search for the user\'s DN');
  }

  if (problems.length > 0) throw new LdapConfError(path, problems.sort((a, b) => a.line - b.line));
  return Object.freeze({
    path,
    urls: Object.freeze(urls.map((u) => u.value)),
    ...(username ? { username: username.value, password: password!.value } : {}),
    basedn: basedn!.value,
    scope: (scope?.value.toLowerCase() ?? 'sub') as LdapConf['scope'],
    starttls,
    ...(caFile ? { caFile: Object.freeze({ path: resolve(dirname(path), caFile.value), line: caFile.line }) } : {}),
    timeoutMs,
    cacheTtlMs,
    negativeCacheTtlMs,
    cacheSize,
    poolSize,
    authBind,
    ...(template ? { bindDnTemplate: template.value } : {}),
    queries: Object.freeze(queries),
  });
}

/** The lookup kinds a conf can answer: those with a filter, credentials also by auth_bind. */
export function ldapServices(conf: LdapConf): LdapKind[] {
  return ldapKinds.filter((k) => conf.queries[k] !== undefined || (k === 'credentials' && conf.authBind));
}

function checkUrl(url: string): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `url "${url}" is not a URL (ldap://HOST[:PORT] or ldaps://HOST[:PORT])`;
  }
  if (u.protocol !== 'ldap:' && u.protocol !== 'ldaps:') return `url "${url}": only ldap:// and ldaps:// are supported`;
  if (u.hostname === '') return `url "${url}" has no host`;
  if ((u.pathname !== '' && u.pathname !== '/') || u.search !== '' || u.username !== '') {
    return `url "${url}": give only the scheme, host and port (the base is "basedn", the bind "username")`;
  }
  return undefined;
}

/** A filter template: known placeholders only, and it must parse once a key is substituted. */
function checkFilter(filter: string): string | undefined {
  const bad = badPlaceholder(filter);
  if (bad) return `unknown placeholder "${bad}" (use %s, %u, %n, %d or %%)`;
  if (!filter.startsWith('(') || !filter.endsWith(')')) return `"${filter}" must be in parentheses, e.g. (mailacceptinggeneralid=%s)`;
  let depth = 0;
  for (const c of filter) {
    if (c === '(') depth++;
    else if (c === ')' && --depth < 0) break;
  }
  if (depth !== 0) return `unbalanced parentheses in "${filter}"`;
  try {
    FilterParser.parseString(expandFilter(filter, 'user@example.org'));
  } catch (err) {
    return `"${filter}" is not a valid LDAP filter (RFC 4515): ${(err as Error).message}`;
  }
  return undefined;
}

function yesNo(v: { value: string; line: number } | undefined, fail: (line: number, message: string) => void): boolean {
  if (!v) return false;
  const s = v.value.toLowerCase();
  if (s === 'yes' || s === 'true' || s === 'on') return true;
  if (s === 'no' || s === 'false' || s === 'off') return false;
  fail(v.line, `expected yes or no, not "${v.value}"`);
  return false;
}

/** Seconds by default; `ms`, `s`, `m`, `h` suffixes accepted. */
function duration(v: { value: string; line: number } | undefined, dflt: number, fail: (line: number, message: string) => void, o: { min: number }): number {
  if (!v) return dflt;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/i.exec(v.value);
  if (!m) {
    fail(v.line, `"${v.value}" is not a duration (seconds, or with ms/s/m/h)`);
    return dflt;
  }
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's').toLowerCase() as 'ms' | 's' | 'm' | 'h'];
  const ms = Math.round(Number(m[1]) * unit);
  if (ms < o.min || ms > 24 * 3_600_000) {
    fail(v.line, `"${v.value}" is out of range`);
    return dflt;
  }
  return ms;
}

function count(v: { value: string; line: number } | undefined, dflt: number, fail: (line: number, message: string) => void, min: number, max: number): number {
  if (!v) return dflt;
  if (!/^\d+$/.test(v.value) || Number(v.value) < min || Number(v.value) > max) {
    fail(v.line, `expected a whole number from ${min} to ${max}, not "${v.value}"`);
    return dflt;
  }
  return Number(v.value);
}

function suggest(key: string): string {
  let best: string | undefined;
  let bestScore = 3;
  for (const k of KEYS) {
    const d = editDistance(key, k);
    if (d < bestScore) {
      bestScore = d;
      best = k;
    }
  }
  return best ? ` (did you mean "${best}"?)` : '';
}
