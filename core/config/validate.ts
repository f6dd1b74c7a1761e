/**
 * Cross-checks of a built Config, all errors collected (mox's habit): every
 * table, action and pki use resolves; each table use is one the table can
 * serve (OpenSMTPD checks table services per use); listeners are consistent
 * with their TLS mode; no rule is unreachable; and no rule is an open relay.
 */
import { didYouMean, type Diagnostic, type Pos } from './diagnostics.ts';
import type { LookupKind } from '../tables/types.ts';
import { isImplicit } from './parser.ts';
import { tableUses } from './table-uses.ts';
import type { Condition, Config, ListenerDecl, MatchRule, TableDecl } from './types.ts';

export function validateConfig(config: Config): Diagnostic[] {
  const out: Diagnostic[] = [];
  const err = (pos: Pos, message: string) => out.push({ pos, message });
  const warn = (pos: Pos, message: string) => out.push({ pos, message, severity: 'warning' });

  // pki
  for (const p of config.pki.values()) {
    const files = p.cert !== undefined || p.key !== undefined;
    // With acme, cert/key name where the issued certificate is kept (certbot-style paths).
    if (p.acme && files && (p.cert === undefined || p.key === undefined)) err(p.pos, `pki ${p.name}: with acme, give both cert and key paths (where the certificate is stored) or neither`);
    else if (p.acme) {
      // ok
    } else if (p.selfSigned && (files || p.acme)) err(p.pos, `pki ${p.name}: self-signed excludes cert/key and acme`);
    else if (files && p.cert === undefined) err(p.pos, `pki ${p.name}: key without cert`);
    else if (files && p.key === undefined) err(p.pos, `pki ${p.name}: cert without key`);
    else if (!files && !p.acme && !p.selfSigned) err(p.pos, `pki ${p.name}: needs cert and key files, acme, or self-signed`);
    if (p.acme && !config.acme.challenge) {
      err(p.pos, `pki ${p.name} uses acme, but there is no "acme challenge http-01 listen on ADDRESS port N"`);
    }
  }

  // listeners
  const all = [...config.listeners, ...config.imap.listeners];
  const bound = new Map<string, ListenerDecl>();
  for (const l of all) {
    const label = l.protocol === 'imap' ? 'imap listen' : 'listen';
    const key = `${addressKey(l)}|${l.port}`;
    const prior = bound.get(key);
    if (prior && l.port !== 0) err(l.pos, `${label}: ${addressText(l)} port ${l.port} is already used at line ${prior.pos.line}`);
    else bound.set(key, l);
    if (l.pki !== undefined && !config.pki.has(l.pki)) {
      err(l.pkiPos ?? l.pos, `undefined pki "${l.pki}"${didYouMean(l.pki, [...config.pki.keys()])}`);
    }
    if (l.tls !== 'none' && l.pki === undefined) {
      err(l.pos, `${label}: ${l.tls} needs a certificate: add pki NAME`);
    }
    if (l.pki !== undefined && l.tls === 'none') {
      warn(l.pkiPos ?? l.pos, `${label}: pki is given but TLS is not enabled (add tls, tls-require or smtps)`);
    }
    if (l.verify) {
      // OpenSMTPD's `verify` asks every client for a certificate; many howtos (the OpenSMTPD seed among them)
      // use it without meaning that. Said plainly rather than silently ignored.
      warn(l.pos, `${label}: "verify" (client certificates) is not supported: TLS is required, but clients are not asked for a certificate; authentication is by password`);
    }
    if (l.auth && l.tls === 'none' && !isLoopbackListener(l)) {
      err(l.pos, `${label}: auth on a listener without TLS would send passwords in clear; add tls, tls-require or smtps (only loopback listeners may omit it)`);
    }
    if (l.senders && !l.auth) err(l.senders.table.pos, `${label}: senders needs auth (it checks the authenticated user's addresses)`);
    if (l.protocol === 'imap' && !l.auth) err(l.pos, 'imap listen: needs auth <table> (the users who may log in)');
  }

  // actions
  const usedActions = new Set<string>();
  for (const a of config.actions.values()) {
    const m = a.method;
    if (m.type === 'maildir') {
    } else if (m.type === 'forward-only') {
      if (!m.alias && !m.virtual) err(a.pos, `action "${a.name}": forward-only needs alias or virtual <table>`);
    } else {
      if (m.auth && !m.host) err(m.auth.pos, `action "${a.name}": relay auth needs a relay host (host smtp+tls://label@host:port)`);
      if (m.host?.label && !m.auth) err(a.pos, `action "${a.name}": relay host names credentials "${m.host.label}" but there is no auth <table>`);
      if (m.host?.label && m.auth) checkLabel(config.tables.get(m.auth.name), m.host.label, m.auth.pos, err);
      if (m.host && m.host.scheme === 'smtp+notls' && m.tls) err(a.pos, `action "${a.name}": smtp+notls contradicts tls`);
      if (m.pki !== undefined && !config.pki.has(m.pki)) err(a.pos, `undefined pki "${m.pki}"${didYouMean(m.pki, [...config.pki.keys()])}`);
    }
  }

  // rules
  const authTags = authenticatedTags(config);
  const allTags = new Set(config.listeners.flatMap((l) => (l.tag ? [l.tag] : [])));
  let catchAll: MatchRule | undefined;
  const seenConditions = new Map<string, MatchRule>();
  for (const r of config.rules) {
    if (r.decision.type === 'action') {
      const name = r.decision.action;
      if (!config.actions.has(name)) err(r.decision.pos, `undefined action "${name}"${didYouMean(name, [...config.actions.keys()])}`);
      else usedActions.add(name);
    }
    for (const c of r.conditions) {
      if (c.type === 'tag' && !allTags.has(c.tag)) {
        warn(c.pos, `no listener sets tag "${c.tag}"${didYouMean(c.tag, [...allTags])}`);
      }
    }
    const implicitFrom = r.conditions.some((c) => c.type === 'from' && isImplicit(c));
    const remoteTag = r.conditions.some((c) => c.type === 'tag' && !c.negate && config.listeners.some((l) => l.tag === c.tag && !isLoopbackListener(l)));
    if (implicitFrom && !r.legacyText && (remoteTag || r.conditions.some((c) => c.type === 'auth' && !c.negate))) {
      warn(r.pos, 'this rule names no "from", which means "from local": remote clients of the tagged or authenticated sessions will not match; write "from any" if that is meant');
    }
    if (catchAll) {
      err(r.pos, `unreachable rule: the rule at line ${catchAll.pos.line} matches every message first`);
      continue;
    }
    const key = conditionsKey(r.conditions);
    const same = seenConditions.get(key);
    if (same) err(r.pos, `unreachable rule: the rule at line ${same.pos.line} has the same conditions and matches first`);
    else seenConditions.set(key, r);
    if (isCatchAll(r)) catchAll = r;
    if (r.decision.type === 'action' && config.actions.get(r.decision.action)?.method.type === 'relay' && isOpenRelay(r, authTags)) {
      err(r.pos, 'open relay: this rule relays mail for any destination from any client without authentication; restrict it with auth, from local, from src <table> or the tag of an auth listener');
    }
  }
  for (const a of config.actions.values()) {
    if (!usedActions.has(a.name)) warn(a.pos, `action "${a.name}" is not used by any match rule`);
  }
  if (config.rules.length === 0 && config.listeners.length > 0) {
    warn(config.listeners[0]!.pos, 'no match rules: every recipient will be rejected');
  }

  // table uses
  const usedTables = new Set<string>();
  for (const u of tableUses(config)) {
    const t = config.tables.get(u.ref.name);
    usedTables.add(u.ref.name);
    if (!t) {
      const named = [...config.tables.values()].filter((x) => !x.anonymous).map((x) => x.name);
      err(u.ref.pos, `undefined table <${u.ref.name}>${didYouMean(u.ref.name, named)}`);
      continue;
    }
    const problem = servesKind(t, u.kind);
    if (problem) err(u.ref.pos, `${u.what} ${t.anonymous ? 'table' : `<${t.name}>`}: ${problem}`);
  }
  for (const t of config.tables.values()) {
    if (!t.anonymous && !usedTables.has(t.name)) warn(t.pos, `table ${t.name} is not used`);
  }
  return out;
}

function checkLabel(t: TableDecl | undefined, label: string, pos: Pos, err: (p: Pos, m: string) => void): void {
  if (t && t.source.type === 'inline' && t.source.form === 'map' && !t.source.entries.some(([k]) => k === label)) {
    err(pos, `relay credentials "${label}" are not in table ${t.name}`);
  }
}

/** Only inline tables are known before opening; lists cannot answer key→value lookups. */
function servesKind(t: TableDecl, kind: LookupKind): string | null {
  if (t.source.type !== 'inline') return null;
  if (t.source.form === 'list' && (kind === 'alias' || kind === 'credentials')) {
    return `a list cannot answer ${kind} lookups; write key = value entries, as in { postmaster = alice@example.org }`;
  }
  if (t.source.form === 'map' && kind === 'netaddr') return 'a key = value table cannot list network addresses; write { 192.0.2.0/24, ::1 }';
  return null;
}

function addressKey(l: ListenerDecl): string {
  const a = l.address;
  return `${l.protocol}:${a.kind === 'ip' ? a.value : a.kind === 'interface' ? `if:${a.name}` : a.kind}`;
}

function addressText(l: ListenerDecl): string {
  const a = l.address;
  return a.kind === 'ip' ? a.value : a.kind === 'interface' ? a.name : a.kind;
}

export function isLoopbackListener(l: ListenerDecl): boolean {
  const a = l.address;
  if (a.kind === 'localhost') return true;
  if (a.kind === 'interface') return a.name === 'lo' || a.name === 'lo0';
  if (a.kind === 'ip') return a.value === '::1' || /^127\./.test(a.value);
  return false;
}

/** Tags that only listeners with (non-optional) auth set: sessions so tagged are authenticated. */
export function authenticatedTags(config: Config): Set<string> {
  const byTag = new Map<string, boolean>();
  for (const l of config.listeners) {
    if (!l.tag) continue;
    const authed = l.auth !== undefined && !l.auth.optional;
    byTag.set(l.tag, (byTag.get(l.tag) ?? true) && authed);
  }
  return new Set([...byTag].filter(([, authed]) => authed).map(([tag]) => tag));
}

function isCatchAll(r: MatchRule): boolean {
  return r.conditions.every(
    (c) => !c.negate && ((c.type === 'from' && c.from.kind === 'any') || (c.type === 'for' && c.for.kind === 'any')),
  );
}

/**
 * A rule relays "for any" unless its destination is restricted (a positive
 * `for domain`/`for rcpt-to`/`for local`); it is open unless its client is
 * restricted: authenticated (`from auth`, `auth`, or a tag only auth
 * listeners set) or `from local`/`from socket`/`from src`.
 */
export function isOpenRelay(r: MatchRule, authTags: ReadonlySet<string>): boolean {
  const forC = r.conditions.find((c) => c.type === 'for');
  const anyDestination = !forC || forC.negate || (forC.type === 'for' && forC.for.kind === 'any');
  if (!anyDestination) return false;
  for (const c of r.conditions) {
    if (c.negate) continue;
    if (c.type === 'from' && ['auth', 'local', 'socket', 'src'].includes(c.from.kind)) return false;
    if (c.type === 'auth') return false;
    if (c.type === 'tag' && authTags.has(c.tag)) return false;
  }
  return true;
}

function conditionsKey(conditions: readonly Condition[]): string {
  return conditions
    .map(({ pos: _pos, ...rest }) => JSON.stringify(rest, (k, v) => (k === 'pos' ? undefined : v)))
    .sort()
    .join('&');
}
