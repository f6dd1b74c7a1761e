/**
 * Config → normalised config text (`appliance check`, like `smtpd -n` or
 * `doveconf -n`): macros expanded, includes inlined, defaults made explicit,
 * legacy rules in their modern form, paths absolute. Parsing the output gives
 * the same Config back (tested).
 */
import { formatDelay, formatSize } from './cursor.ts';
import type {
  ActionDecl,
  Condition,
  Config,
  ListenerDecl,
  MatchRule,
  PkiDecl,
  RelayHost,
  TableDecl,
  TableRef,
} from './types.ts';

const BARE = /^[A-Za-z0-9_.\-/@:+%*\[\]]+$/;

/** Quotes a value unless it is a plain word that lexes back unchanged. */
export function quote(value: string): string {
  if (value !== '' && BARE.test(value) && !/^[#$!]/.test(value)) return value;
  // The lexer treats only \" and \\ as escapes, so other backslashes print as they are.
  return `"${value.replace(/\\(?=["\\]|$)/g, '\\\\').replace(/"/g, '\\"')}"`;
}

export function printConfig(config: Config): string {
  const out: string[] = [];
  const section = (title: string, lines: string[]) => {
    if (lines.length === 0) return;
    out.push(`# ${title}`, ...lines, '');
  };
  section('identity and storage', [
    `hostname ${config.hostname}`,
    `data-dir ${quote(config.dataDir)}`,
    `user ${quote(config.user)}`,
  ]);
  section('certificates', [...config.pki.values()].flatMap(printPki));
  section(
    'tables',
    [...config.tables.values()].filter((t) => !t.anonymous).map((t) => `table ${t.name} ${printTableSource(t)}`),
  );
  const ref = (r: TableRef) => printRef(config, r);
  section('SMTP listeners', config.listeners.map((l) => printListener(l, ref)));
  section('actions', [...config.actions.values()].map((a) => printAction(a, ref)));
  section(
    'rules',
    config.rules.flatMap((r) => [...(r.legacyText ? [`# was: ${r.legacyText}`] : []), printRule(r, ref)]),
  );
  const imap = config.imap;
  section('IMAP', [
    ...imap.listeners.map((l) => printListener(l, ref)),
    ...imap.mailboxes.map(
      (m) => `imap mailbox ${quote(m.name)}${m.specialUse ? ` special-use ${quote(m.specialUse)}` : ''}${m.auto !== 'no' ? ` auto ${m.auto}` : ''}`,
    ),
    `imap limit connections-per-user-ip ${imap.limits.connectionsPerUserIp}`,
    `imap limit literal-size ${formatSize(imap.limits.maxLiteralSize)}`,
    `imap limit idle-timeout ${formatDelay(imap.limits.idleTimeout)}`,
  ]);
  const acme = config.acme;
  section('ACME', [
    ...(acme.contact ? [`acme contact ${quote(acme.contact)}`] : []),
    `acme directory ${quote(acme.directory)}`,
    ...(acme.challenge ? [`acme challenge http-01 listen on ${printHost(acme.challenge.host)} port ${acme.challenge.port}`] : []),
    ...(acme.ca ? [`acme ca ${quote(acme.ca)}`] : []),
  ]);
  const lim = config.smtp.limits;
  section('outbound and limits', [
    ...(config.resolver ? [`resolver ${printHostPort(config.resolver.host, config.resolver.port)}`] : []),
    `queue ttl ${formatDelay(config.queue.ttl)}`,
    `queue concurrency ${config.queue.concurrency}`,
    `queue destination-concurrency ${config.queue.destinationConcurrency}`,
    `bounce warn-interval ${config.bounce.warnIntervals.map(formatDelay).join(', ')}`,
    `smtp max-message-size ${formatSize(lim.maxMessageSize)}`,
    `smtp sub-addr-delim ${quote(config.smtp.subAddrDelim)}`,
    `smtp authentication-results ${config.smtp.authenticationResults ? 'yes' : 'no'}`,
    `smtp limit max-rcpt ${lim.maxRcpt} max-mails ${lim.maxMails} connections-per-ip ${lim.connectionsPerIp} idle-timeout ${formatDelay(lim.idleTimeout)}`,
    ...config.dkim.map(
      (k) => `dkim sign domain ${ref(k.domains)} selector ${k.selector}${k.keyPath ? ` key ${quote(k.keyPath)}` : ''} algorithm ${k.algorithm}`,
    ),
  ]);
  section('operations', [
    `control socket ${quote(config.control.socket)}`,
    ...(config.metrics ? [`metrics listen on ${printHost(config.metrics.host)} port ${config.metrics.port}`] : []),
    `log level ${config.log.level}`,
    `auth failure-delay ${formatDelay(config.auth.failureDelay)}`,
    `auth max-failures ${config.auth.maxFailures}`,
  ]);
  return out.join('\n');
}

function printPki(p: PkiDecl): string[] {
  const lines: string[] = [];
  const name = quote(p.name);
  if (p.cert !== undefined) lines.push(`pki ${name} cert ${quote(p.cert)}`);
  if (p.key !== undefined) lines.push(`pki ${name} key ${quote(p.key)}`);
  if (p.ca !== undefined) lines.push(`pki ${name} ca ${quote(p.ca)}`);
  if (p.dhe !== undefined) lines.push(`pki ${name} dhe ${p.dhe}`);
  if (p.acme) lines.push(`pki ${name} acme${p.acme.altNames.length ? ` alt-names { ${p.acme.altNames.join(', ')} }` : ''}`);
  if (p.selfSigned) lines.push(`pki ${name} self-signed`);
  return lines;
}

export function printTableSource(t: TableDecl): string {
  const s = t.source;
  switch (s.type) {
    case 'inline':
      return s.form === 'list'
        ? `{ ${s.values.map(quote).join(', ')} }`
        : `{ ${s.entries.map(([k, v]) => `${quote(k)} = ${quote(v)}`).join(', ')} }`;
    case 'file':
      return quote(`file:${s.path}`);
    case 'db':
      return 'db';
    case 'ldap':
      return quote(`ldap:${s.path}`);
  }
}

function printRef(config: Config, r: TableRef): string {
  const t = config.tables.get(r.name);
  if (t && t.anonymous) {
    const s = t.source;
    if (s.type === 'inline' && s.form === 'list' && s.values.length === 1) return quote(s.values[0]!);
    return printTableSource(t);
  }
  return `<${r.name}>`;
}

function printHost(host: string): string {
  return host;
}

/** Action names are printed quoted, as smtpd -n does. */
function actionName(name: string): string {
  return `"${name.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function printHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export function printListener(l: ListenerDecl, ref: (r: TableRef) => string): string {
  const a = l.address;
  const addr = a.kind === 'ip' ? a.value : a.kind === 'interface' ? a.name : a.kind;
  const parts = [l.protocol === 'imap' ? 'imap listen on' : 'listen on', addr];
  if (l.family) parts.push('family', l.family);
  parts.push('port', String(l.port));
  if (l.tls !== 'none') parts.push(l.tls === 'tls-require' && l.verify ? 'tls-require verify' : l.tls);
  if (l.pki !== undefined) parts.push('pki', quote(l.pki));
  if (l.hostname) parts.push('hostname', l.hostname);
  if (l.auth) parts.push(l.auth.optional ? 'auth-optional' : 'auth', ref(l.auth.table));
  if (l.senders) parts.push('senders', ref(l.senders.table), ...(l.senders.masquerade ? ['masquerade'] : []));
  if (l.tag) parts.push('tag', l.tag);
  if (l.maskSrc) parts.push('mask-src');
  if (l.receivedAuth) parts.push('received-auth');
  if (l.noDsn) parts.push('no-dsn');
  return parts.join(' ');
}

export function printRelayHost(h: RelayHost): string {
  const host = h.host.includes(':') ? `[${h.host}]` : h.host;
  return `${h.scheme}://${h.label ? `${h.label}@` : ''}${host}:${h.port}`;
}

export function printAction(a: ActionDecl, ref: (r: TableRef) => string): string {
  const m = a.method;
  const parts = ['action', actionName(a.name)];
  switch (m.type) {
    case 'maildir':
      parts.push('maildir');
      if (m.path !== undefined) parts.push(quote(m.path));
      if (m.junk) parts.push('junk');
      if (m.alias) parts.push('alias', ref(m.alias));
      if (m.virtual) parts.push('virtual', ref(m.virtual));
      if (m.userbase) parts.push('userbase', ref(m.userbase));
      break;
    case 'forward-only':
      parts.push('forward-only');
      if (m.alias) parts.push('alias', ref(m.alias));
      if (m.virtual) parts.push('virtual', ref(m.virtual));
      break;
    case 'relay':
      parts.push('relay');
      if (m.host) parts.push('host', printRelayHost(m.host));
      if (m.auth) parts.push('auth', ref(m.auth));
      if (m.tls) parts.push('tls', ...(m.tls.verify ? [] : ['no-verify']));
      if (m.helo) parts.push('helo', m.helo);
      if (m.backup) parts.push('backup', ...(m.backupMx ? ['mx', m.backupMx] : []));
      if (m.pki) parts.push('pki', quote(m.pki));
      if (m.mailFrom) parts.push('mail-from', quote(m.mailFrom));
      break;
  }
  return parts.join(' ');
}

export function printCondition(c: Condition, ref: (r: TableRef) => string): string {
  const neg = c.negate ? '!' : '';
  switch (c.type) {
    case 'from': {
      const f = c.from;
      const table = 'table' in f && f.table ? ` ${ref(f.table)}` : '';
      return `${neg}from ${f.kind}${table}`;
    }
    case 'for': {
      const f = c.for;
      const table = 'table' in f ? ` ${ref(f.table)}` : '';
      return `${neg}for ${f.kind}${table}`;
    }
    case 'tag':
      return `${neg}tag ${c.tag}`;
    case 'auth':
      return `${neg}auth${c.table ? ` ${ref(c.table)}` : ''}`;
    case 'tls':
      return `${neg}tls`;
    case 'helo':
    case 'mail-from':
    case 'rcpt-to':
      return `${neg}${c.type} ${ref(c.table)}`;
  }
}

export function printRule(r: MatchRule, ref: (r: TableRef) => string): string {
  const rank = (c: Condition) => (c.type === 'from' ? 0 : c.type === 'for' ? 1 : 2);
  const ordered = [...r.conditions].sort((a, b) => rank(a) - rank(b));
  const conds = ordered.map((c) => printCondition(c, ref)).join(' ');
  const decision = r.decision.type === 'reject' ? 'reject' : `action ${actionName(r.decision.action)}`;
  return `match ${conds} ${decision}`;
}

/** A rule as config text, for logs ("which rule matched"). */
export function describeRule(config: Config, r: MatchRule): string {
  return printRule(r, (t) => printRef(config, t));
}
