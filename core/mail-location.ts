/**
 * Where a logged-in user's mail is: the Maildir that local delivery writes
 * for that user. Found as delivery finds it (core/recipient.ts): the first
 * `maildir` action of the rules, in rule order, whose userbase knows the
 * user (`userinfo` lookup by the login name, then by its local part; a
 * bare login such as `xomail` also as `xomail@HOSTNAME`, the mailbox
 * address of the LDAP howto's `<username>@$myhostname` scheme), with the
 * action's path template (maildirPath). The three lookup states are kept: a
 * directory that is down is "try later".
 */
import { parseAddress, type MailAddress } from './address.ts';
import type { ActionDecl, Config, MaildirAction } from './config/types.ts';
import { maildirPath } from './recipient.ts';
import type { TableLookup } from './rules.ts';
import type { LookupResult } from './tables/types.ts';

export async function locateMaildir(config: Config, tables: TableLookup, username: string): Promise<LookupResult<string>> {
  const parsed = username.includes('@') ? parseAddress(username) : null;
  const address: MailAddress = parsed?.ok ? parsed.address : { local: username, domain: config.hostname };
  const alternates = parsed?.ok ? [address.local] : [`${username}@${config.hostname}`];
  const keys = [...new Set([username, ...alternates].map((k) => k.toLowerCase()))];
  for (const action of maildirActions(config)) {
    const m = action.method as MaildirAction;
    if (!m.userbase) continue;
    const table = tables.get(m.userbase.name);
    if (!table) return { kind: 'tempfail', error: new Error(`table ${m.userbase.name} is not open`) };
    for (const key of keys) {
      const r = await table.lookup('userinfo', key);
      if (r.kind === 'tempfail') return r;
      if (r.kind === 'found') return { kind: 'found', value: maildirPath(config, m, address, r.value) };
    }
  }
  return { kind: 'none' };
}

/** Maildir actions in the order rules use them, then any unused ones. */
function maildirActions(config: Config): ActionDecl[] {
  const out: ActionDecl[] = [];
  const seen = new Set<string>();
  const add = (a: ActionDecl | undefined) => {
    if (a && a.method.type === 'maildir' && !seen.has(a.name)) {
      seen.add(a.name);
      out.push(a);
    }
  };
  for (const r of config.rules) if (r.decision.type === 'action') add(config.actions.get(r.decision.action));
  for (const a of config.actions.values()) add(a);
  return out;
}
