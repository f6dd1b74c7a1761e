/**
 * Parser: lexed statements → a draft of typed declarations, one grammar
 * function per top-level keyword, following smtpd.conf(5) (6.4+) and its
 * extensions for IMAP, ACME, DKIM and operations (SPEC §config). Each bad
 * statement yields one positioned error and parsing goes on, so a config with
 * twenty mistakes gets twenty messages. Cross-references (undefined tables,
 * open relays, …) are checked afterwards in validate.ts.
 *
 * The pre-6.4 `accept`/`reject` lines are translated here into the modern
 * action + match pair (legacy.ts); the printer then shows their modern form.
 */
import { hostname as osHostname } from 'node:os';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { Diagnostic, Pos } from './diagnostics.ts';
import { Cursor, StatementError, parseDelay, parseSize } from './cursor.ts';
import type { Statement } from './lexer.ts';
import { parseLegacyRule } from './legacy.ts';
import type {
  ActionDecl,
  ActionMethod,
  Condition,
  ConditionBody,
  DkimSign,
  HostPort,
  ImapMailbox,
  ListenAddress,
  ListenerDecl,
  LogLevel,
  MatchRule,
  RelayHost,
  RelayScheme,
  TableDecl,
  TableRef,
  TableSource,
  TlsMode,
} from './types.ts';

export const topLevelKeywords = [
  'hostname', 'data-dir', 'user', 'pki', 'table', 'listen', 'action', 'match', 'imap', 'acme', 'queue',
  'bounce', 'smtp', 'dkim', 'resolver', 'control', 'metrics', 'log', 'auth', 'include',
  'accept', 'reject', 'expire', 'max-message-size',
] as const;

/** Everything the statements said, before defaults and cross-checks. */
export interface Draft {
  readonly configPath: string;
  hostname?: { value: string; pos: Pos };
  dataDir?: { value: string; pos: Pos };
  user?: { value: string; pos: Pos };
  pki: Map<string, MutablePki>;
  tables: Map<string, TableDecl>;
  listeners: ListenerDecl[];
  actions: Map<string, ActionDecl>;
  rules: MatchRule[];
  imapListeners: ListenerDecl[];
  imapMailboxes: ImapMailbox[];
  imapLimits: { connectionsPerUserIp?: number; maxLiteralSize?: number; idleTimeout?: number };
  acme: { contact?: string; directory?: string; challenge?: HostPort; ca?: string };
  queueTtl?: number;
  queueConcurrency?: number;
  queueDestinationConcurrency?: number;
  warnIntervals?: number[];
  smtp: {
    maxMessageSize?: number;
    subAddrDelim?: string;
    maxRcpt?: number;
    maxMails?: number;
    connectionsPerIp?: number;
    idleTimeout?: number;
    authenticationResults?: boolean;
  };
  dkim: DkimSign[];
  resolver?: HostPort;
  controlSocket?: string;
  metrics?: HostPort;
  logLevel?: LogLevel;
  authFailureDelay?: number;
  authMaxFailures?: number;
  /** Names of tables created for inline `{ … }` uses, by printed content. */
  anonymousByContent: Map<string, string>;
  diagnostics: Diagnostic[];
}

export interface MutablePki {
  name: string;
  cert?: string;
  key?: string;
  ca?: string;
  dhe?: string;
  acme?: { altNames: string[] };
  selfSigned: boolean;
  pos: Pos;
}

export function emptyDraft(configPath: string): Draft {
  return {
    configPath,
    pki: new Map(),
    tables: new Map(),
    listeners: [],
    actions: new Map(),
    rules: [],
    imapListeners: [],
    imapMailboxes: [],
    imapLimits: {},
    acme: {},
    smtp: {},
    dkim: [],
    anonymousByContent: new Map(),
    diagnostics: [],
  };
}

export function parseStatements(statements: readonly Statement[], draft: Draft): Draft {
  for (const statement of statements) {
    const cur = new Cursor(statement);
    try {
      parseStatement(cur, draft);
    } catch (err) {
      if (err instanceof StatementError) draft.diagnostics.push({ pos: err.pos, message: err.message });
      else throw err;
    }
  }
  return draft;
}

function parseStatement(cur: Cursor, d: Draft): void {
  const kw = cur.keyword(topLevelKeywords, 'keyword');
  switch (kw.value) {
    case 'hostname':
      d.hostname = once(d.hostname, hostnameValue(cur), 'hostname', kw.pos);
      cur.end();
      return;
    case 'data-dir':
      d.dataDir = once(d.dataDir, pathValue(cur, d, 'data directory'), 'data-dir', kw.pos);
      cur.end();
      return;
    case 'user':
      d.user = once(d.user, cur.value('user name'), 'user', kw.pos);
      cur.end();
      return;
    case 'pki':
      return parsePki(cur, d);
    case 'table':
      return parseTable(cur, d);
    case 'listen':
      d.listeners.push(parseListen(cur, d, 'smtp', kw.pos));
      return;
    case 'action':
      return parseAction(cur, d, kw.pos);
    case 'match':
      d.rules.push(parseMatch(cur, d, kw.pos));
      return;
    case 'accept':
    case 'reject':
      return parseLegacyRule(cur, d, kw.value, kw.pos);
    case 'imap':
      return parseImap(cur, d);
    case 'acme':
      return parseAcme(cur, d);
    case 'queue': {
      const o = cur.keyword(['ttl', 'concurrency', 'destination-concurrency'] as const, 'queue option');
      if (o.value === 'ttl') d.queueTtl = delayValue(cur, 'queue ttl');
      else if (o.value === 'concurrency') d.queueConcurrency = cur.integer('concurrency', 1, 10_000).value;
      else d.queueDestinationConcurrency = cur.integer('destination-concurrency', 1, 10_000).value;
      cur.end();
      return;
    }
    case 'expire': // legacy spelling of `queue ttl`
      d.queueTtl = delayValue(cur, 'expire');
      cur.end();
      return;
    case 'bounce': {
      cur.keyword(['warn-interval'] as const, 'bounce option');
      const intervals = [delayValue(cur, 'warn-interval')];
      while (cur.acceptType(',')) intervals.push(delayValue(cur, 'warn-interval'));
      d.warnIntervals = intervals;
      cur.end();
      return;
    }
    case 'smtp':
      return parseSmtp(cur, d);
    case 'max-message-size': // legacy global form
      d.smtp.maxMessageSize = sizeValue(cur, 'max-message-size');
      cur.end();
      return;
    case 'dkim':
      return parseDkim(cur, d, kw.pos);
    case 'resolver':
      d.resolver = hostPortValue(cur, 'resolver address', 53);
      cur.end();
      return;
    case 'control':
      cur.keyword(['socket'] as const, 'control option');
      d.controlSocket = pathValue(cur, d, 'control socket path').value;
      cur.end();
      return;
    case 'metrics': {
      cur.keyword(['listen'] as const, 'metrics option');
      cur.keyword(['on'] as const, '"on"');
      const host = cur.value('metrics address');
      let port = 9154;
      if (cur.accept('port')) port = portValue(cur, d);
      d.metrics = { host: stripBrackets(host.value), port, pos: host.pos };
      cur.end();
      return;
    }
    case 'log': {
      cur.keyword(['level'] as const, 'log option');
      d.logLevel = cur.keyword(['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const, 'log level').value;
      cur.end();
      return;
    }
    case 'auth': {
      const opt = cur.keyword(['failure-delay', 'max-failures'] as const, 'auth option');
      if (opt.value === 'failure-delay') d.authFailureDelay = delayValue(cur, 'failure-delay');
      else d.authMaxFailures = cur.integer('max-failures', 1, 1_000_000).value;
      cur.end();
      return;
    }
    case 'include':
      // Handled by the lexer; reaching here means a malformed include.
      cur.fail('include: expected one file name');
  }
}

function once<T>(existing: T | undefined, value: T, what: string, pos: Pos): T {
  if (existing !== undefined) throw new StatementError(pos, `${what} is set twice`);
  return value;
}

function hostnameValue(cur: Cursor): { value: string; pos: Pos } {
  const v = cur.value('host name');
  if (!/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(v.value)) {
    cur.fail(`invalid host name "${v.value}"`, v.pos);
  }
  return { value: v.value.toLowerCase().replace(/\.$/, ''), pos: v.pos };
}

/** Paths are resolved against the directory of the main config file. */
export function resolvePath(d: Draft, p: string): string {
  return isAbsolute(p) ? p : resolve(dirname(d.configPath), p);
}

function pathValue(cur: Cursor, d: Draft, what: string): { value: string; pos: Pos } {
  const v = cur.value(what);
  if (v.value === '') cur.fail(`${what} is empty`, v.pos);
  return { value: resolvePath(d, v.value), pos: v.pos };
}

export function delayValue(cur: Cursor, what: string): number {
  const v = cur.value(what);
  const ms = parseDelay(v.value);
  if (ms === null) cur.fail(`${what}: invalid delay "${v.value}" (use s, m, h or d, as in 4h)`, v.pos);
  return ms;
}

function sizeValue(cur: Cursor, what: string): number {
  const v = cur.value(what);
  const bytes = parseSize(v.value);
  if (bytes === null) cur.fail(`${what}: invalid size "${v.value}" (use K, M or G, as in 35M)`, v.pos);
  return bytes;
}

export const servicePorts: Record<string, number> = {
  smtp: 25,
  submission: 587,
  submissions: 465,
  smtps: 465,
  imap: 143,
  imap2: 143,
  imaps: 993,
  http: 80,
  https: 443,
};

/** A port number or service name. Out-of-range ports are recorded, not fatal. */
function portValue(cur: Cursor, d: Draft): number {
  const v = cur.value('port');
  if (/^\d+$/.test(v.value)) {
    const n = Number(v.value);
    if (n < 1 || n > 65535) {
      d.diagnostics.push({ pos: v.pos, message: `port ${v.value} is out of range (1-65535)` });
      return 0;
    }
    return n;
  }
  const named = servicePorts[v.value];
  if (named === undefined) cur.fail(`unknown port or service "${v.value}" (use a number or smtp, submission, submissions, imap, imaps)`, v.pos);
  return named;
}

function stripBrackets(s: string): string {
  return s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s;
}

/** `127.0.0.1:5353`, `[::1]:5353`, `::1`, `127.0.0.1 port 5353`. */
function hostPortValue(cur: Cursor, what: string, defaultPort: number): HostPort {
  const v = cur.value(what);
  let host = v.value;
  let port = defaultPort;
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(host);
  if (bracketed) {
    host = bracketed[1]!;
    if (bracketed[2]) port = Number(bracketed[2]);
  } else if (/^[^:]+:\d+$/.test(host)) {
    const idx = host.lastIndexOf(':');
    port = Number(host.slice(idx + 1));
    host = host.slice(0, idx);
  }
  if (cur.accept('port')) port = cur.integer('port', 1, 65535).value;
  if (port < 1 || port > 65535) cur.fail(`port ${port} is out of range (1-65535)`, v.pos);
  return { host, port, pos: v.pos };
}

// ---------------------------------------------------------------- tables

/**
 * A table argument: `<name>`, an inline `{ … }`, or one literal value. The
 * last two become anonymous tables so every use is a reference.
 */
export function tableArg(cur: Cursor, d: Draft, what: string): TableRef {
  const t = cur.peek();
  if (!t) cur.fail(`expected ${what} (a <table>) at end of line`);
  if (t.type === 'table') {
    cur.next();
    return { name: t.value, pos: t.pos };
  }
  if (t.type === '{') {
    const source = inlineTable(cur);
    return anonymousTable(d, source, t.pos);
  }
  if (t.type === 'word' || t.type === 'string') {
    cur.next();
    return anonymousTable(d, { type: 'inline', form: 'list', values: [t.value] }, t.pos);
  }
  cur.fail(`expected ${what} (a <table>), found "${t.value}"`, t.pos);
}

function anonymousTable(d: Draft, source: TableSource, pos: Pos): TableRef {
  const content = JSON.stringify(source);
  let name = d.anonymousByContent.get(content);
  if (!name) {
    name = `__inline_${d.anonymousByContent.size + 1}`;
    d.anonymousByContent.set(content, name);
    d.tables.set(name, { name, source, anonymous: true, pos });
  }
  return { name, pos };
}

/** `{ a, b }` (list) or `{ k = v, k2 = v2 }` (map); commas optional between lines. */
function inlineTable(cur: Cursor): TableSource {
  const open = cur.next();
  const values: string[] = [];
  const entries: [string, string][] = [];
  cur.braced(open, () => {
    const key = cur.value('table entry');
    if (cur.acceptType('=')) {
      const value = cur.value(`value for ${key.value}`);
      entries.push([key.value, value.value]);
    } else {
      values.push(key.value);
    }
  });
  if (values.length > 0 && entries.length > 0) {
    cur.fail('a table is either a list { a, b } or a map { k = v }, not both', open.pos);
  }
  return entries.length > 0 ? { type: 'inline', form: 'map', entries } : { type: 'inline', form: 'list', values };
}

function parseTable(cur: Cursor, d: Draft): void {
  const name = cur.value('table name');
  if (!/^[A-Za-z0-9_.\-]+$/.test(name.value)) cur.fail(`invalid table name "${name.value}"`, name.pos);
  if (d.tables.has(name.value)) cur.fail(`table ${name.value} is defined twice (first at line ${d.tables.get(name.value)!.pos.line})`, name.pos);
  const t = cur.peek();
  let source: TableSource;
  if (!t) cur.fail(`table ${name.value}: expected { … }, file:PATH, db or ldap:PATH`);
  if (t.type === '{') {
    source = inlineTable(cur);
  } else {
    const v = cur.value('table source');
    source = tableSource(cur, d, v.value, v.pos);
  }
  cur.end();
  d.tables.set(name.value, { name: name.value, source, anonymous: false, pos: name.pos });
}

function tableSource(cur: Cursor, d: Draft, text: string, pos: Pos): TableSource {
  if (text === 'db') return { type: 'db' };
  const colon = text.indexOf(':');
  const scheme = colon > 0 ? text.slice(0, colon) : '';
  const rest = colon > 0 ? text.slice(colon + 1) : text;
  switch (scheme) {
    case 'file':
      return { type: 'file', path: resolvePath(d, rest) };
    case 'ldap':
      return { type: 'ldap', path: resolvePath(d, rest) };
    case 'db':
      // OpenSMTPD's makemap databases: we read the text file makemap was run on.
      d.diagnostics.push({
        pos,
        severity: 'warning',
        message: `db:${rest}: makemap databases are not read; using the source file ${rest.replace(/\.db$/, '')} as file:${rest.replace(/\.db$/, '')} (or use "db" for the embedded database)`,
      });
      return { type: 'file', path: resolvePath(d, rest.replace(/\.db$/, '')) };
    case 'sqlite':
    case 'postgres':
    case 'mysql':
    case 'redis':
    case 'socketmap':
      cur.fail(`${scheme} tables are not supported; use db (embedded), file: or ldap:`, pos);
    case '':
      if (isAbsolute(text)) return { type: 'file', path: text };
      cur.fail(`table source "${text}": expected { … }, file:PATH, db or ldap:PATH`, pos);
    default:
      cur.fail(`unknown table backend "${scheme}:"; use file:, db or ldap:`, pos);
  }
}

// ---------------------------------------------------------------- pki

function parsePki(cur: Cursor, d: Draft): void {
  const name = cur.value('pki name');
  let pki = d.pki.get(name.value);
  if (!pki) {
    pki = { name: name.value, selfSigned: false, pos: name.pos };
    d.pki.set(name.value, pki);
  }
  const opt = cur.keyword(['cert', 'certificate', 'key', 'ca', 'dhe', 'acme', 'self-signed'] as const, 'pki option');
  const set = (field: 'cert' | 'key' | 'ca', label: string) => {
    const v = pathValue(cur, d, `${label} path`);
    if (pki[field] !== undefined) cur.fail(`pki ${name.value}: ${label} is given twice`, opt.pos);
    pki[field] = v.value;
  };
  switch (opt.value) {
    case 'cert':
    case 'certificate':
      set('cert', 'cert');
      break;
    case 'key':
      set('key', 'key');
      break;
    case 'ca':
      set('ca', 'ca');
      break;
    case 'dhe':
      pki.dhe = cur.keyword(['auto', 'none', 'legacy'] as const, 'dhe parameter').value;
      break;
    case 'self-signed':
      pki.selfSigned = true;
      break;
    case 'acme': {
      const altNames: string[] = [];
      if (cur.accept('alt-names')) {
        const open = cur.acceptType('{');
        if (open) {
          cur.braced(open, () => altNames.push(hostnameValue(cur).value));
        } else {
          altNames.push(hostnameValue(cur).value);
        }
      }
      if (pki.acme) cur.fail(`pki ${name.value}: acme is given twice`, opt.pos);
      pki.acme = { altNames };
      break;
    }
  }
  cur.end();
}

// ---------------------------------------------------------------- listeners

const listenOptions = [
  'family', 'port', 'smtps', 'imaps', 'tls', 'tls-require', 'pki', 'ca', 'auth', 'auth-optional', 'senders',
  'hostname', 'hostnames', 'tag', 'mask-src', 'received-auth', 'no-dsn', 'proxy-v2', 'filter',
] as const;

export function parseListen(cur: Cursor, d: Draft, protocol: 'smtp' | 'imap', pos: Pos): ListenerDecl {
  cur.keyword(['on'] as const, '"on"');
  const addr = cur.value('address or interface');
  const address = listenAddress(addr.value);
  let family: 'inet4' | 'inet6' | undefined;
  let port: number | undefined;
  let tls: TlsMode = 'none';
  let tlsPos: Pos | undefined;
  let verify = false;
  let pki: string | undefined;
  let pkiPos: Pos | undefined;
  let auth: ListenerDecl['auth'];
  let senders: ListenerDecl['senders'];
  let hostname: string | undefined;
  let tag: string | undefined;
  let maskSrc = false;
  let receivedAuth = false;
  let noDsn = false;
  const seen = new Set<string>();
  const allowed = protocol === 'smtp' ? listenOptions : (['family', 'port', 'smtps', 'imaps', 'tls', 'tls-require', 'pki', 'auth', 'tag', 'hostname'] as const);
  while (!cur.atEnd()) {
    const opt = cur.keyword(allowed, `listen option`);
    const key = opt.value === 'imaps' || opt.value === 'tls' || opt.value === 'tls-require' ? 'smtps' : opt.value === 'auth-optional' ? 'auth' : opt.value;
    if (seen.has(key)) cur.fail(`listen option "${opt.value}" given twice`, opt.pos);
    seen.add(key);
    switch (opt.value) {
      case 'family':
        family = cur.keyword(['inet4', 'inet6'] as const, 'address family').value;
        break;
      case 'port':
        port = portValue(cur, d);
        break;
      case 'smtps':
      case 'imaps':
        tls = 'smtps';
        tlsPos = opt.pos;
        break;
      case 'tls':
        tls = 'tls';
        tlsPos = opt.pos;
        break;
      case 'tls-require':
        tls = 'tls-require';
        tlsPos = opt.pos;
        if (cur.accept('verify')) verify = true;
        break;
      case 'pki':
        pkiPos = cur.peek()?.pos;
        pki = cur.value('pki name').value;
        break;
      case 'ca':
        cur.fail('client certificate verification ("ca" on listen) is not supported', opt.pos);
      case 'auth':
      case 'auth-optional': {
        const t = cur.peek();
        if (!t || (t.type !== 'table' && t.type !== '{')) {
          cur.fail(`${opt.value} needs a credentials table, as in ${opt.value} <users>`, opt.pos);
        }
        auth = { table: tableArg(cur, d, 'credentials table'), optional: opt.value === 'auth-optional' };
        break;
      }
      case 'senders':
        senders = { table: tableArg(cur, d, 'senders table'), masquerade: cur.accept('masquerade') };
        break;
      case 'hostname':
        hostname = hostnameValue(cur).value;
        break;
      case 'hostnames':
        cur.fail('"hostnames <table>" is not supported; use "hostname NAME"', opt.pos);
      case 'tag': {
        const v = cur.value('tag');
        if (!/^[A-Za-z0-9_.\-]+$/.test(v.value)) cur.fail(`invalid tag "${v.value}"`, v.pos);
        tag = v.value;
        break;
      }
      case 'mask-src':
        maskSrc = true;
        break;
      case 'received-auth':
        receivedAuth = true;
        break;
      case 'no-dsn':
        noDsn = true;
        break;
      case 'proxy-v2':
        cur.fail('proxy-v2 is not supported', opt.pos);
      case 'filter':
        cur.fail('filters are not supported', opt.pos);
    }
  }
  void tlsPos;
  const defaultPort = protocol === 'smtp' ? (tls === 'smtps' ? 465 : 25) : tls === 'smtps' ? 993 : 143;
  const decl: ListenerDecl = {
    protocol,
    address,
    port: port ?? defaultPort,
    tls,
    verify,
    maskSrc,
    receivedAuth,
    noDsn,
    pos,
    ...(family ? { family } : {}),
    ...(pki !== undefined ? { pki } : {}),
    ...(pkiPos ? { pkiPos } : {}),
    ...(auth ? { auth } : {}),
    ...(senders ? { senders } : {}),
    ...(hostname ? { hostname } : {}),
    ...(tag ? { tag } : {}),
  };
  return decl;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function listenAddress(text: string): ListenAddress {
  const v = stripBrackets(text);
  if (v === 'egress') return { kind: 'egress' };
  if (v === 'all') return { kind: 'all' };
  if (v === 'localhost') return { kind: 'localhost' };
  if (IPV4.test(v) || v.includes(':')) return { kind: 'ip', value: v.toLowerCase() };
  return { kind: 'interface', name: v };
}

// ---------------------------------------------------------------- actions

const maildirOptions = ['junk', 'alias', 'virtual', 'userbase', 'user', 'ttl'] as const;
const relayOptions = ['host', 'auth', 'tls', 'helo', 'backup', 'pki', 'mail-from', 'srs', 'src', 'domain', 'helo-src', 'ttl'] as const;

function parseAction(cur: Cursor, d: Draft, pos: Pos): void {
  const name = cur.value('action name');
  const method = cur.keyword(['maildir', 'relay', 'forward-only', 'mbox', 'lmtp', 'mda', 'expand-only'] as const, 'delivery method');
  let m: ActionMethod;
  switch (method.value) {
    case 'maildir':
      m = parseMaildirAction(cur, d);
      break;
    case 'relay':
      m = parseRelayAction(cur, d);
      break;
    case 'forward-only': {
      let alias: TableRef | undefined;
      let virtual: TableRef | undefined;
      while (!cur.atEnd()) {
        const o = cur.keyword(['alias', 'virtual'] as const, 'forward-only option');
        if (o.value === 'alias') alias = tableArg(cur, d, 'alias table');
        else virtual = tableArg(cur, d, 'virtual table');
      }
      m = { type: 'forward-only', ...(alias ? { alias } : {}), ...(virtual ? { virtual } : {}) };
      break;
    }
    default:
      cur.fail(`delivery method "${method.value}" is not supported: appliance delivers to Maildir (maildir), relays (relay) or forwards (forward-only)`, method.pos);
  }
  const existing = d.actions.get(name.value);
  if (existing?.legacy) {
    renameLegacyAction(d, existing.name);
  } else if (existing) {
    cur.fail(`action "${name.value}" is defined twice (first at line ${existing.pos.line})`, name.pos);
  }
  d.actions.set(name.value, { name: name.value, method: m, pos: name.pos, legacy: false });
  void pos;
}

/** A legacy line took a name the user gives an action later: the legacy one moves aside. */
function renameLegacyAction(d: Draft, name: string): void {
  const action = d.actions.get(name)!;
  let fresh = `${name}-legacy`;
  for (let i = 2; d.actions.has(fresh); i++) fresh = `${name}-legacy-${i}`;
  d.actions.delete(name);
  d.actions.set(fresh, { ...action, name: fresh });
  d.rules = d.rules.map((r) =>
    r.legacyText !== undefined && r.decision.type === 'action' && r.decision.action === name
      ? { ...r, decision: { ...r.decision, action: fresh } }
      : r,
  );
}

export function parseMaildirAction(cur: Cursor, d: Draft, stopWords: readonly string[] = []): ActionMethod {
  let path: string | undefined;
  const t = cur.peek();
  if (t && (t.type === 'string' || (t.type === 'word' && !(maildirOptions as readonly string[]).includes(t.value) && !stopWords.includes(t.value)))) {
    cur.next();
    path = t.value.startsWith('%') || t.value.startsWith('~') ? t.value : resolvePath(d, t.value);
  }
  let junk = false;
  let alias: TableRef | undefined;
  let virtual: TableRef | undefined;
  let userbase: TableRef | undefined;
  while (!cur.atEnd() && !stopWords.some((w) => cur.isWord(w))) {
    const o = cur.keyword(maildirOptions, 'maildir option');
    switch (o.value) {
      case 'junk':
        junk = true;
        break;
      case 'alias':
        alias = tableArg(cur, d, 'alias table');
        break;
      case 'virtual':
        virtual = tableArg(cur, d, 'virtual table');
        break;
      case 'userbase':
        userbase = tableArg(cur, d, 'userbase table');
        break;
      case 'user':
        cur.fail('"user" on an action is not supported: all mail is stored by the appliance user', o.pos);
      case 'ttl':
        cur.fail('"ttl" on an action is not supported; use "queue ttl"', o.pos);
    }
  }
  return {
    type: 'maildir',
    junk,
    ...(path !== undefined ? { path } : {}),
    ...(alias ? { alias } : {}),
    ...(virtual ? { virtual } : {}),
    ...(userbase ? { userbase } : {}),
  };
}

export function parseRelayAction(cur: Cursor, d: Draft): ActionMethod {
  let host: RelayHost | undefined;
  let auth: TableRef | undefined;
  let tls: { verify: boolean } | undefined;
  let helo: string | undefined;
  let backup = false;
  let backupMx: string | undefined;
  let pki: string | undefined;
  let mailFrom: string | undefined;
  while (!cur.atEnd()) {
    const o = cur.keyword(relayOptions, 'relay option');
    switch (o.value) {
      case 'host': {
        const v = cur.value('relay URL');
        host = relayUrl(cur, v.value, v.pos);
        break;
      }
      case 'auth':
        auth = tableArg(cur, d, 'credentials table');
        break;
      case 'tls':
        tls = { verify: !cur.accept('no-verify') };
        break;
      case 'helo':
        helo = hostnameValue(cur).value;
        break;
      case 'backup':
        backup = true;
        if (cur.accept('mx')) backupMx = hostnameValue(cur).value;
        break;
      case 'pki':
        pki = cur.value('pki name').value;
        break;
      case 'mail-from':
        mailFrom = cur.value('sender address').value;
        break;
      case 'srs':
        cur.fail('srs is not supported yet', o.pos);
      case 'src':
      case 'helo-src':
      case 'domain':
        cur.fail(`relay option "${o.value}" is not supported`, o.pos);
      case 'ttl':
        cur.fail('"ttl" on an action is not supported; use "queue ttl"', o.pos);
    }
  }
  return {
    type: 'relay',
    backup,
    ...(host ? { host } : {}),
    ...(auth ? { auth } : {}),
    ...(tls ? { tls } : {}),
    ...(helo ? { helo } : {}),
    ...(backupMx ? { backupMx } : {}),
    ...(pki ? { pki } : {}),
    ...(mailFrom ? { mailFrom } : {}),
  };
}

const relaySchemes: Record<string, { scheme: RelayScheme; port: number }> = {
  smtp: { scheme: 'smtp', port: 25 },
  'smtp+tls': { scheme: 'smtp+tls', port: 587 },
  smtps: { scheme: 'smtps', port: 465 },
  'smtp+notls': { scheme: 'smtp+notls', port: 25 },
};

/** `smtp+tls://label@host:port` (OpenSMTPD's relay URL). */
export function relayUrl(cur: Cursor, text: string, pos: Pos): RelayHost {
  const m = /^([a-z+]+):\/\/(?:([^@/]+)@)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/?$/i.exec(text);
  if (!m) cur.fail(`invalid relay URL "${text}" (expected smtp+tls://[label@]host[:port])`, pos);
  const scheme = relaySchemes[m[1]!.toLowerCase()];
  if (!scheme) cur.fail(`unknown relay scheme "${m[1]}://" (use smtp, smtp+tls, smtps or smtp+notls)`, pos);
  const port = m[4] ? Number(m[4]) : scheme.port;
  if (port < 1 || port > 65535) cur.fail(`port ${port} is out of range (1-65535)`, pos);
  return {
    scheme: scheme.scheme,
    host: stripBrackets(m[3]!).toLowerCase(),
    port,
    ...(m[2] ? { label: m[2] } : {}),
  };
}

// ---------------------------------------------------------------- match

const matchKeywords = ['from', 'for', 'tag', 'auth', 'tls', 'helo', 'mail-from', 'rcpt-to', 'action', 'reject'] as const;

function parseMatch(cur: Cursor, d: Draft, pos: Pos): MatchRule {
  const conditions: Condition[] = [];
  const seen = new Map<string, Pos>();
  for (;;) {
    const bang = cur.acceptType('!');
    const kw = cur.keyword(matchKeywords, 'match option');
    if (kw.value === 'action' || kw.value === 'reject') {
      if (bang) cur.fail(`"!" cannot negate "${kw.value}"`, bang.pos);
      let decision: MatchRule['decision'];
      if (kw.value === 'action') {
        const name = cur.value('action name');
        decision = { type: 'action', action: name.value, pos: name.pos };
      } else {
        decision = { type: 'reject' };
      }
      cur.end();
      return { conditions: withDefaults(conditions, kw.pos), decision, pos };
    }
    const first = seen.get(kw.value);
    if (first) cur.fail(`"${kw.value}" appears twice in this rule`, kw.pos);
    seen.set(kw.value, kw.pos);
    const body = parseCondition(cur, d, kw.value);
    conditions.push({ ...body, negate: bang !== undefined, pos: bang?.pos ?? kw.pos });
  }
}

const implicitConditions = new WeakSet<Condition>();

function implicit(c: Condition): Condition {
  implicitConditions.add(c);
  return c;
}

/** True for a `from local`/`for local` the rule did not write (a default). */
export function isImplicit(c: Condition): boolean {
  return implicitConditions.has(c);
}

/** OpenSMTPD's defaults: a rule without `from` is `from local`, without `for` is `for local`. */
export function withDefaults(conditions: Condition[], pos: Pos): Condition[] {
  const out = [...conditions];
  if (!out.some((c) => c.type === 'from')) out.unshift(implicit({ type: 'from', from: { kind: 'local' }, negate: false, pos }));
  if (!out.some((c) => c.type === 'for')) {
    const idx = out.findIndex((c) => c.type === 'from');
    out.splice(idx + 1, 0, implicit({ type: 'for', for: { kind: 'local' }, negate: false, pos }));
  }
  return out;
}

function optionalTable(cur: Cursor, d: Draft, what: string): TableRef | undefined {
  const t = cur.peek();
  if (t && (t.type === 'table' || t.type === '{')) return tableArg(cur, d, what);
  return undefined;
}

function parseCondition(cur: Cursor, d: Draft, kw: Exclude<(typeof matchKeywords)[number], 'action' | 'reject'>): ConditionBody {
  switch (kw) {
    case 'from': {
      const k = cur.keyword(['any', 'local', 'socket', 'auth', 'src', 'rdns', 'mail-from'] as const, 'from value');
      switch (k.value) {
        case 'any':
        case 'local':
        case 'socket':
          return { type: 'from', from: { kind: k.value } };
        case 'auth': {
          const table = optionalTable(cur, d, 'user table');
          return { type: 'from', from: table ? { kind: 'auth', table } : { kind: 'auth' } };
        }
        case 'rdns': {
          const table = optionalTable(cur, d, 'rdns table');
          return { type: 'from', from: table ? { kind: 'rdns', table } : { kind: 'rdns' } };
        }
        case 'src':
          return { type: 'from', from: { kind: 'src', table: tableArg(cur, d, 'source address table') } };
        case 'mail-from':
          return { type: 'from', from: { kind: 'mail-from', table: tableArg(cur, d, 'sender table') } };
      }
    }
    // falls through (unreachable: every case above returns)
    case 'for': {
      const k = cur.keyword(['any', 'local', 'domain', 'rcpt-to'] as const, 'for value');
      switch (k.value) {
        case 'any':
        case 'local':
          return { type: 'for', for: { kind: k.value } };
        case 'domain':
          if (cur.isWord('regex')) cur.fail('"for domain regex" is not supported');
          return { type: 'for', for: { kind: 'domain', table: tableArg(cur, d, 'domain table') } };
        case 'rcpt-to':
          return { type: 'for', for: { kind: 'rcpt-to', table: tableArg(cur, d, 'recipient table') } };
      }
    }
    // falls through (unreachable)
    case 'tag': {
      const v = cur.value('tag');
      return { type: 'tag', tag: v.value };
    }
    case 'auth': {
      const table = optionalTable(cur, d, 'user table');
      return table ? { type: 'auth', table } : { type: 'auth' };
    }
    case 'tls':
      return { type: 'tls' };
    case 'helo':
      return { type: 'helo', table: tableArg(cur, d, 'helo table') };
    case 'mail-from':
      return { type: 'mail-from', table: tableArg(cur, d, 'sender table') };
    case 'rcpt-to':
      return { type: 'rcpt-to', table: tableArg(cur, d, 'recipient table') };
  }
}

// ---------------------------------------------------------------- imap, acme, smtp, dkim

function parseImap(cur: Cursor, d: Draft): void {
  const kw = cur.keyword(['listen', 'mailbox', 'limit'] as const, 'imap option');
  switch (kw.value) {
    case 'listen':
      d.imapListeners.push(parseListen(cur, d, 'imap', kw.pos));
      return;
    case 'mailbox': {
      const name = cur.value('mailbox name');
      let specialUse: string | undefined;
      let auto: ImapMailbox['auto'] = 'no';
      while (!cur.atEnd()) {
        const o = cur.keyword(['special-use', 'auto'] as const, 'mailbox option');
        if (o.value === 'special-use') {
          const v = cur.value('special-use flag');
          const flag = v.value.startsWith('\\') ? v.value : `\\${v.value}`;
          const known = ['\\All', '\\Archive', '\\Drafts', '\\Flagged', '\\Junk', '\\Sent', '\\Trash', '\\Important'];
          const canonical = known.find((k) => k.toLowerCase() === flag.toLowerCase());
          if (!canonical) cur.fail(`unknown special-use flag "${v.value}" (RFC 6154: ${known.join(' ')})`, v.pos);
          specialUse = canonical;
        } else {
          auto = cur.keyword(['no', 'create', 'subscribe'] as const, 'auto value').value;
        }
      }
      if (d.imapMailboxes.some((m) => m.name === name.value)) cur.fail(`imap mailbox "${name.value}" is defined twice`, name.pos);
      d.imapMailboxes.push({ name: name.value, auto, pos: name.pos, ...(specialUse ? { specialUse } : {}) });
      return;
    }
    case 'limit': {
      const o = cur.keyword(['connections-per-user-ip', 'literal-size', 'idle-timeout'] as const, 'imap limit');
      if (o.value === 'connections-per-user-ip') d.imapLimits.connectionsPerUserIp = cur.integer('connections-per-user-ip', 1, 100_000).value;
      else if (o.value === 'literal-size') d.imapLimits.maxLiteralSize = sizeValue(cur, 'literal-size');
      else d.imapLimits.idleTimeout = delayValue(cur, 'idle-timeout');
      cur.end();
      return;
    }
  }
}

function parseAcme(cur: Cursor, d: Draft): void {
  const kw = cur.keyword(['contact', 'directory', 'challenge', 'ca'] as const, 'acme option');
  switch (kw.value) {
    case 'contact': {
      const v = cur.value('contact');
      if (!/^mailto:[^@\s]+@[^@\s]+$/.test(v.value)) cur.fail(`acme contact must be a mailto: URL, as in "mailto:admin@example.org"`, v.pos);
      d.acme.contact = v.value;
      break;
    }
    case 'directory': {
      const v = cur.value('directory URL');
      if (!/^https?:\/\/\S+$/.test(v.value)) cur.fail(`acme directory must be an https:// URL`, v.pos);
      d.acme.directory = v.value;
      break;
    }
    case 'challenge': {
      cur.keyword(['http-01'] as const, 'challenge type');
      cur.keyword(['listen'] as const, '"listen"');
      cur.keyword(['on'] as const, '"on"');
      const addr = cur.value('address');
      let port = 80;
      if (cur.accept('port')) port = portValue(cur, d);
      d.acme.challenge = { host: stripBrackets(addr.value), port, pos: addr.pos };
      break;
    }
    case 'ca':
      d.acme.ca = pathValue(cur, d, 'CA file').value;
      break;
  }
  cur.end();
}

function parseSmtp(cur: Cursor, d: Draft): void {
  const kw = cur.keyword(['max-message-size', 'sub-addr-delim', 'limit', 'authentication-results'] as const, 'smtp option');
  switch (kw.value) {
    case 'authentication-results':
      d.smtp.authenticationResults = cur.keyword(['yes', 'no'] as const, 'authentication-results value (yes or no)').value === 'yes';
      break;
    case 'max-message-size':
      d.smtp.maxMessageSize = sizeValue(cur, 'max-message-size');
      break;
    case 'sub-addr-delim': {
      const v = cur.value('delimiter');
      if (v.value.length !== 1 || /[\s@"<>]/.test(v.value)) cur.fail('sub-addr-delim must be one character, as in +', v.pos);
      d.smtp.subAddrDelim = v.value;
      break;
    }
    case 'limit': {
      while (!cur.atEnd()) {
        const o = cur.keyword(['max-rcpt', 'max-mails', 'connections-per-ip', 'idle-timeout'] as const, 'smtp limit');
        if (o.value === 'max-rcpt') d.smtp.maxRcpt = cur.integer('max-rcpt', 1, 100_000).value;
        else if (o.value === 'max-mails') d.smtp.maxMails = cur.integer('max-mails', 1, 1_000_000).value;
        else if (o.value === 'connections-per-ip') d.smtp.connectionsPerIp = cur.integer('connections-per-ip', 1, 100_000).value;
        else d.smtp.idleTimeout = delayValue(cur, 'idle-timeout');
      }
      break;
    }
  }
  cur.end();
}

function parseDkim(cur: Cursor, d: Draft, pos: Pos): void {
  cur.keyword(['sign'] as const, 'dkim option');
  cur.keyword(['domain'] as const, '"domain"');
  const domains = tableArg(cur, d, 'domain table');
  cur.keyword(['selector'] as const, '"selector"');
  const selector = cur.value('selector');
  if (!/^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?$/.test(selector.value)) cur.fail(`invalid DKIM selector "${selector.value}"`, selector.pos);
  let keyPath: string | undefined;
  let algorithm: DkimSign['algorithm'] = 'rsa-sha256';
  while (!cur.atEnd()) {
    const o = cur.keyword(['key', 'algorithm'] as const, 'dkim option');
    if (o.value === 'key') {
      const v = cur.value('key path');
      keyPath = v.value.includes('%{') && !isAbsolute(v.value) ? v.value : resolvePath(d, v.value);
    } else {
      const a = cur.keyword(['rsa', 'rsa-sha256', 'ed25519', 'ed25519-sha256'] as const, 'DKIM algorithm');
      algorithm = a.value.startsWith('rsa') ? 'rsa-sha256' : 'ed25519-sha256';
    }
  }
  d.dkim.push({ domains, selector: selector.value, algorithm, pos, ...(keyPath ? { keyPath } : {}) });
}

export function defaultHostname(): string {
  return osHostname().toLowerCase();
}
