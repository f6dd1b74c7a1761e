/**
 * Rule evaluation (smtpd.conf(5) `match`): the first rule whose every
 * condition holds decides, no match means reject. Evaluated per recipient, at
 * RCPT time, as a pure function of the session facts, the envelope and table
 * lookups. A lookup that fails temporarily makes the whole decision
 * temporary: we cannot know whether that rule or a later one applies, so the
 * client must retry (4xx), never get a 5xx.
 */
import { addressKey, formatAddress, normalizeDomain, type MailAddress } from './address.ts';
import type { ActionDecl, Condition, Config, MatchRule, TableRef } from './config/types.ts';
import type { LookupKind, LookupResult, Table } from './tables/types.ts';

/** What the listener and the session know about the client. */
export interface SessionFacts {
  /** Connected over loopback (or a local socket). */
  readonly local: boolean;
  readonly remoteAddress: string;
  /** Reverse DNS name, null when it has none, undefined when not looked up. */
  readonly rdns?: string | null;
  /** The tag of the listener that took the session. */
  readonly tag?: string;
  /** The authenticated user, if any. */
  readonly authUser?: string;
  readonly tls: boolean;
  readonly helo?: string;
}

export interface Envelope {
  /** null: the null reverse-path `<>`. */
  readonly mailFrom: MailAddress | null;
  readonly rcptTo: MailAddress;
}

export interface TableLookup {
  get(name: string): Table | undefined;
}

export type RuleOutcome =
  | { readonly kind: 'action'; readonly action: ActionDecl; readonly rule: MatchRule }
  | { readonly kind: 'reject'; readonly rule: MatchRule | null }
  | { readonly kind: 'tempfail'; readonly error: Error; readonly rule: MatchRule };

type Truth = boolean | { readonly tempfail: Error };

export async function matchRules(
  config: Config,
  tables: TableLookup,
  session: SessionFacts,
  envelope: Envelope,
): Promise<RuleOutcome> {
  for (const rule of config.rules) {
    const t = await ruleHolds(config, tables, rule, session, envelope);
    if (t === false) continue;
    if (t !== true) return { kind: 'tempfail', error: t.tempfail, rule };
    if (rule.decision.type === 'reject') return { kind: 'reject', rule };
    const action = config.actions.get(rule.decision.action);
    // validateConfig guarantees the action exists; a missing one is a bug, and a bug is temporary.
    if (!action) return { kind: 'tempfail', error: new Error(`undefined action ${rule.decision.action}`), rule };
    return { kind: 'action', action, rule };
  }
  return { kind: 'reject', rule: null };
}

/**
 * A rule holds when all its conditions do. A condition that cannot be decided
 * (tempfail) decides the rule only if no other condition is false: a rule
 * with a false condition cannot match whatever the table would have said.
 */
async function ruleHolds(config: Config, tables: TableLookup, rule: MatchRule, s: SessionFacts, e: Envelope): Promise<Truth> {
  let undecided: Truth = true;
  for (const c of rule.conditions) {
    const t = await conditionHolds(config, tables, c, s, e);
    if (t === false) return false;
    if (t !== true && undecided === true) undecided = t;
  }
  return undecided;
}

async function conditionHolds(config: Config, tables: TableLookup, c: Condition, s: SessionFacts, e: Envelope): Promise<Truth> {
  const t = await positive(config, tables, c, s, e);
  if (typeof t !== 'boolean') return t;
  return c.negate ? !t : t;
}

async function positive(config: Config, tables: TableLookup, c: Condition, s: SessionFacts, e: Envelope): Promise<Truth> {
  const sender = e.mailFrom ? addressKey(e.mailFrom) : null;
  switch (c.type) {
    case 'from': {
      const f = c.from;
      switch (f.kind) {
        case 'any':
          return true;
        case 'local':
          return s.local;
        case 'socket':
          return s.local && s.remoteAddress === '';
        case 'auth':
          if (s.authUser === undefined) return false;
          return f.table ? inTable(tables, f.table, 'mailaddr', s.authUser.toLowerCase()) : true;
        case 'src':
          return inTable(tables, f.table, 'netaddr', s.remoteAddress);
        case 'rdns':
          if (!s.rdns) return false;
          return f.table ? inTable(tables, f.table, 'domain', normalizeDomain(s.rdns)) : true;
        case 'mail-from':
          return sender === null ? false : inTable(tables, f.table, 'mailaddr', sender);
      }
    }
    // falls through (unreachable)
    case 'for': {
      const f = c.for;
      switch (f.kind) {
        case 'any':
          return true;
        case 'local':
          return isLocalDomain(config, e.rcptTo.domain);
        case 'domain':
          return inTable(tables, f.table, 'domain', e.rcptTo.domain);
        case 'rcpt-to':
          return inTable(tables, f.table, 'mailaddr', addressKey(e.rcptTo));
      }
    }
    // falls through (unreachable)
    case 'tag':
      return s.tag === c.tag;
    case 'auth':
      if (s.authUser === undefined) return false;
      return c.table ? inTable(tables, c.table, 'mailaddr', s.authUser.toLowerCase()) : true;
    case 'tls':
      return s.tls;
    case 'helo':
      return s.helo ? inTable(tables, c.table, 'domain', normalizeDomain(s.helo)) : false;
    case 'mail-from':
      return sender === null ? false : inTable(tables, c.table, 'mailaddr', sender);
    case 'rcpt-to':
      return inTable(tables, c.table, 'mailaddr', addressKey(e.rcptTo));
  }
}

async function inTable(tables: TableLookup, ref: TableRef, kind: LookupKind, key: string): Promise<Truth> {
  const table = tables.get(ref.name);
  if (!table) return { tempfail: new Error(`table ${ref.name} is not open`) };
  const r: LookupResult<unknown> = await table.lookup(kind, key);
  if (r.kind === 'tempfail') return { tempfail: r.error };
  return r.kind === 'found';
}

/** `for local`: the machine's own names (OpenSMTPD: localhost and the hostname). */
export function isLocalDomain(config: Config, domain: string): boolean {
  const d = normalizeDomain(domain);
  if (d === 'localhost' || d === 'localhost.localdomain' || d === config.hostname) return true;
  return config.listeners.some((l) => l.hostname === d);
}

/** For logs: the envelope as text. */
export function describeEnvelope(e: Envelope): string {
  return `from=<${e.mailFrom ? formatAddress(e.mailFrom) : ''}> to=<${formatAddress(e.rcptTo)}>`;
}
