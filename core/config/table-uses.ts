/**
 * Every use of a table in a config, with the lookup kind that use needs
 * (OpenSMTPD checks each use against what the table can serve). One list,
 * read by validation and by `appliance table` (key checks, default kind).
 */
import type { LookupKind } from '../tables/types.ts';
import type { Condition, Config, TableRef } from './types.ts';

export interface TableUse {
  readonly ref: TableRef;
  readonly kind: LookupKind;
  /** The config words of the use, for messages. */
  readonly what: string;
}

export function tableUses(config: Config): TableUse[] {
  const out: TableUse[] = [];
  const use = (ref: TableRef | undefined, kind: LookupKind, what: string) => {
    if (ref) out.push({ ref, kind, what });
  };
  for (const l of [...config.listeners, ...config.imap.listeners]) {
    use(l.auth?.table, 'credentials', 'auth');
    use(l.senders?.table, 'mailaddrmap', 'senders');
  }
  for (const a of config.actions.values()) {
    const m = a.method;
    if (m.type === 'maildir' || m.type === 'forward-only') {
      use(m.alias, 'alias', 'alias');
      use(m.virtual, 'alias', 'virtual');
    }
    if (m.type === 'maildir') use(m.userbase, 'userinfo', 'userbase');
    if (m.type === 'relay') use(m.auth, 'credentials', 'relay auth');
  }
  for (const r of config.rules) for (const c of r.conditions) conditionUse(c, use);
  for (const k of config.dkim) use(k.domains, 'domain', 'dkim sign domain');
  return out;
}

function conditionUse(c: Condition, use: (ref: TableRef | undefined, kind: LookupKind, what: string) => void): void {
  switch (c.type) {
    case 'from':
      if (c.from.kind === 'src') use(c.from.table, 'netaddr', 'from src');
      else if (c.from.kind === 'auth') use(c.from.table, 'mailaddr', 'from auth');
      else if (c.from.kind === 'rdns') use(c.from.table, 'domain', 'from rdns');
      else if (c.from.kind === 'mail-from') use(c.from.table, 'mailaddr', 'from mail-from');
      return;
    case 'for':
      if (c.for.kind === 'domain') use(c.for.table, 'domain', 'for domain');
      else if (c.for.kind === 'rcpt-to') use(c.for.table, 'mailaddr', 'for rcpt-to');
      return;
    case 'auth':
      use(c.table, 'mailaddr', 'auth');
      return;
    case 'helo':
      use(c.table, 'domain', 'helo');
      return;
    case 'mail-from':
    case 'rcpt-to':
      use(c.table, 'mailaddr', c.type);
      return;
    case 'tag':
    case 'tls':
      return;
  }
}
