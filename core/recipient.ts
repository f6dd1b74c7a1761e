/**
 * The decision for one RCPT: rules, then for local actions alias/virtual
 * expansion down to final mailboxes checked against the userbase — so an
 * unknown user is refused at RCPT time (550 5.1.1), never bounced later.
 *
 * Expansion follows OpenSMTPD: `virtual` keys are full addresses then the
 * `@domain` catch-all; `alias` keys also match the bare local part; the
 * `+detail` is tried with and without. An address target goes through the
 * rules again as mail from the machine itself (`from local`), so a forward
 * to an outside address needs a rule like `match from local for any action
 * "out"`. A bare name target is looked up as an alias again (aliases(5):
 * `postmaster: root`, `root: alice`) and otherwise is a user of the
 * action's userbase. Depth is
 * bounded and loops are detected; each distinct final mailbox gets one copy.
 */
import { addressKey, parseAddress, stripSubaddress, type MailAddress } from './address.ts';
import type { ActionDecl, Config, MaildirAction, MatchRule } from './config/types.ts';
import { AppError } from './errors.ts';
import { matchRules, isLocalDomain, type Envelope, type SessionFacts, type TableLookup } from './rules.ts';
import type { LookupResult, UserInfo } from './tables/types.ts';

export const MAX_EXPANSION_DEPTH = 10;
export const MAX_DESTINATIONS = 1000;

export type Destination =
  | {
      readonly kind: 'mailbox';
      readonly action: ActionDecl;
      readonly user: UserInfo;
      /** The final address (sub-address removed) whose mailbox this is. */
      readonly address: MailAddress;
      /** The Maildir directory, from the action's path template. */
      readonly path: string;
    }
  | { readonly kind: 'relay'; readonly action: ActionDecl; readonly address: MailAddress };

export type RecipientDecision =
  | { readonly kind: 'accept'; readonly destinations: readonly Destination[]; readonly rule: MatchRule }
  | { readonly kind: 'reject'; readonly error: AppError; readonly rule: MatchRule | null }
  | { readonly kind: 'tempfail'; readonly error: AppError };

class Tempfail extends Error {}

interface State {
  readonly config: Config;
  readonly tables: TableLookup;
  readonly mailFrom: MailAddress | null;
  readonly visited: Set<string>;
  readonly destinations: Map<string, Destination>;
  readonly errors: AppError[];
}

/** The session used for addresses produced by expansion: mail from the machine itself. */
const INTERNAL: SessionFacts = Object.freeze({ local: true, remoteAddress: '', tls: false });

export async function resolveRecipient(
  config: Config,
  tables: TableLookup,
  session: SessionFacts,
  envelope: Envelope,
): Promise<RecipientDecision> {
  const state: State = { config, tables, mailFrom: envelope.mailFrom, visited: new Set(), destinations: new Map(), errors: [] };
  try {
    const outcome = await matchRules(config, tables, session, envelope);
    if (outcome.kind === 'tempfail') throw new Tempfail(outcome.error.message, { cause: outcome.error });
    if (outcome.kind === 'reject') {
      return { kind: 'reject', error: await rejectionFor(config, tables, envelope.rcptTo), rule: outcome.rule };
    }
    await deliverWith(state, outcome.action, envelope.rcptTo, 0);
    if (state.destinations.size > 0) {
      return { kind: 'accept', destinations: [...state.destinations.values()], rule: outcome.rule };
    }
    // A temporary failure of any branch (an `error:4xx` alias target) must not become a 5xx.
    const error = state.errors.find((e) => e.temporary) ?? state.errors[0] ?? new AppError('USER_UNKNOWN');
    if (error.temporary) return { kind: 'tempfail', error };
    return { kind: 'reject', error, rule: outcome.rule };
  } catch (err) {
    if (err instanceof Tempfail) {
      return { kind: 'tempfail', error: new AppError('TABLE_TEMPFAIL', err.message, { cause: err.cause }) };
    }
    return { kind: 'tempfail', error: new AppError('INTERNAL', (err as Error).message, { cause: err }) };
  }
}

/** 554 5.7.1 for a destination we do not serve; 550 5.7.1 when a rule refuses one we do. */
async function rejectionFor(config: Config, tables: TableLookup, rcpt: MailAddress): Promise<AppError> {
  if (isLocalDomain(config, rcpt.domain)) return new AppError('REJECTED_BY_RULE');
  for (const r of config.rules) {
    if (r.decision.type !== 'action') continue;
    if (config.actions.get(r.decision.action)?.method.type === 'relay') continue;
    for (const c of r.conditions) {
      if (c.type !== 'for' || c.negate || c.for.kind !== 'domain') continue;
      const res = await tables.get(c.for.table.name)?.lookup('domain', rcpt.domain);
      if (res?.kind === 'found') return new AppError('REJECTED_BY_RULE');
    }
  }
  return new AppError('RELAY_DENIED');
}

async function deliverWith(state: State, action: ActionDecl, address: MailAddress, depth: number, catchAll = true): Promise<void> {
  if (state.destinations.size >= MAX_DESTINATIONS) {
    state.errors.push(new AppError('ALIAS_LOOP', `more than ${MAX_DESTINATIONS} destinations`));
    return;
  }
  const m = action.method;
  if (m.type === 'relay') {
    state.destinations.set(`relay:${action.name}:${addressKey(address)}`, { kind: 'relay', action, address });
    return;
  }
  const visitKey = `${action.name}:${addressKey(address)}`;
  if (state.visited.has(visitKey)) {
    state.errors.push(new AppError('ALIAS_LOOP', `alias loop through ${addressKey(address)}`));
    return;
  }
  state.visited.add(visitKey);
  const delim = state.config.smtp.subAddrDelim;
  const base = stripSubaddress(address, delim).base;
  const targets = await lookupAliases(state, m, address, base, catchAll);
  if (targets === null) {
    if (m.type === 'forward-only') {
      state.errors.push(new AppError('USER_UNKNOWN'));
      return;
    }
    await deliverToUser(state, action, m, base, userKeys(base));
    return;
  }
  for (const raw of targets) {
    const target = raw.trim();
    if (/^error:/i.test(target)) {
      state.errors.push(aliasError(target));
      continue;
    }
    if (target.startsWith('|') || target.startsWith('/') || target.startsWith(':include:')) {
      state.errors.push(new AppError('USER_UNKNOWN', `alias target "${target}" (pipes, files and includes) is not supported`));
      continue;
    }
    if (target.includes('@')) {
      const parsed = parseAddress(target.replace(/^<(.*)>$/, '$1'));
      if (!parsed.ok) {
        state.errors.push(new AppError('USER_UNKNOWN', `bad alias target "${target}": ${parsed.reason}`));
        continue;
      }
      const t = parsed.address;
      if (addressKey(t) === addressKey(base) || addressKey(t) === addressKey(address)) {
        // user@x: user@x — the address is its own mailbox.
        if (m.type === 'maildir') await deliverToUser(state, action, m, base, userKeys(base));
        else state.errors.push(new AppError('USER_UNKNOWN'));
        continue;
      }
      if (depth + 1 > MAX_EXPANSION_DEPTH) {
        state.errors.push(new AppError('ALIAS_LOOP', `alias expansion deeper than ${MAX_EXPANSION_DEPTH}`));
        continue;
      }
      await route(state, t, depth + 1);
      continue;
    }
    // A bare name: a user of this action's userbase, in the recipient's domain.
    if (m.type !== 'maildir') {
      state.errors.push(new AppError('USER_UNKNOWN', `forward-only alias target "${target}" is not an address`));
      continue;
    }
    const user: MailAddress = { local: target, domain: base.domain };
    if (target.toLowerCase() === base.local.toLowerCase()) {
      // alice: alice — the name is its own mailbox.
      await deliverToUser(state, action, m, user, [addressKey(user), target.toLowerCase()]);
      continue;
    }
    if (state.visited.has(`${action.name}:${addressKey(user)}`)) {
      // Reached before: a diamond (harmless, its mailbox is already a destination) or a loop.
      state.errors.push(new AppError('ALIAS_LOOP', `alias loop through ${target}`));
      continue;
    }
    // aliases(5): a name may itself be an alias (postmaster: root, root: alice); never the catch-all.
    // Names stay within this table, so the visited set bounds them; depth counts address hops.
    await deliverWith(state, action, user, depth, false);
  }
}

/** An address from expansion goes through the rules again, as local mail. */
async function route(state: State, address: MailAddress, depth: number): Promise<void> {
  const envelope: Envelope = { mailFrom: state.mailFrom, rcptTo: address };
  const outcome = await matchRules(state.config, state.tables, INTERNAL, envelope);
  if (outcome.kind === 'tempfail') throw new Tempfail(outcome.error.message, { cause: outcome.error });
  if (outcome.kind === 'reject') {
    state.errors.push(new AppError('USER_UNKNOWN', `forwarding to ${addressKey(address)} is not permitted by the rules (add a "from local" rule)`));
    return;
  }
  await deliverWith(state, outcome.action, address, depth);
}

async function lookupAliases(
  state: State,
  m: MaildirAction | { readonly type: 'forward-only'; readonly alias?: MaildirAction['alias']; readonly virtual?: MaildirAction['virtual'] },
  address: MailAddress,
  base: MailAddress,
  withCatchAll = true,
): Promise<readonly string[] | null> {
  const full = addressKey(address);
  const baseKey = addressKey(base);
  const local = address.local.toLowerCase();
  const baseLocal = base.local.toLowerCase();
  const catchAll = withCatchAll ? [`@${address.domain}`] : [];
  const tries: [MaildirAction['alias'], string[]][] = [];
  if (m.virtual) tries.push([m.virtual, unique([full, baseKey, ...catchAll])]);
  // A local part holding an '@' (`"bob@other.org"@ours`) is never tried alone: it would read as another address.
  const bare = [local, baseLocal].filter((k) => !k.includes('@'));
  if (m.alias) tries.push([m.alias, unique([full, baseKey, ...bare, ...catchAll])]);
  for (const [ref, keys] of tries) {
    const table = state.tables.get(ref!.name);
    if (!table) throw new Tempfail(`table ${ref!.name} is not open`);
    for (const key of keys) {
      const r = await table.lookup('alias', key);
      if (r.kind === 'tempfail') throw new Tempfail(r.error.message, { cause: r.error });
      if (r.kind === 'found') return r.value;
    }
  }
  return null;
}

async function deliverToUser(state: State, action: ActionDecl, m: MaildirAction, address: MailAddress, keys: string[]): Promise<void> {
  const ref = m.userbase;
  if (!ref) {
    state.errors.push(new AppError('USER_UNKNOWN', `action ${action.name} has no userbase`));
    return;
  }
  const table = state.tables.get(ref.name);
  if (!table) throw new Tempfail(`table ${ref.name} is not open`);
  let r: LookupResult<UserInfo> = { kind: 'none' };
  for (const key of unique(keys)) {
    r = await table.lookup('userinfo', key);
    if (r.kind === 'tempfail') throw new Tempfail(r.error.message, { cause: r.error });
    if (r.kind === 'found') break;
  }
  if (r.kind !== 'found') {
    state.errors.push(new AppError('USER_UNKNOWN'));
    return;
  }
  const path = maildirPath(state.config, m, address, r.value);
  state.visited.add(`${action.name}:${addressKey(address)}`);
  if (!state.destinations.has(`mailbox:${path}`)) {
    state.destinations.set(`mailbox:${path}`, { kind: 'mailbox', action, user: r.value, address, path });
  }
}

function aliasError(target: string): AppError {
  const m = /^error:\s*([45])\d\d(?:[\s-]+([45]\.\d{1,3}\.\d{1,3}))?\s*(.*)$/i.exec(target);
  const text = m?.[3]?.trim();
  return m?.[1] === '4'
    ? new AppError('TABLE_TEMPFAIL', text || 'temporary failure from alias')
    : new AppError('USER_UNKNOWN', text || 'rejected by alias');
}

/** The userbase keys of an address: the full address, then the bare local part unless it holds an '@'. */
function userKeys(base: MailAddress): string[] {
  const local = base.local.toLowerCase();
  return local.includes('@') ? [addressKey(base)] : [addressKey(base), local];
}

function unique(keys: string[]): string[] {
  return [...new Set(keys)];
}

export const DEFAULT_MAILDIR_TEMPLATE = '%{dest.domain}/%{dest.user}';

/**
 * The Maildir directory of a final recipient. Values from the address are made
 * safe as one path component (no `/`, no leading `.`): a local part is chosen
 * by the sender, a directory in the userbase by the administrator.
 */
export function maildirPath(config: Config, m: MaildirAction, dest: MailAddress, user: UserInfo): string {
  const template = m.path ?? `${config.dataDir}/mail/${DEFAULT_MAILDIR_TEMPLATE}`;
  return template.replace(/%\{([a-z.]+)\}/g, (whole, name: string) => {
    switch (name) {
      case 'dest.user':
        return pathComponent(dest.local.toLowerCase());
      case 'dest.domain':
        return pathComponent(dest.domain);
      case 'user.username':
        return pathComponent(user.username.toLowerCase());
      case 'user.directory':
        return user.directory ?? `${config.dataDir}/mail/${pathComponent(dest.domain)}/${pathComponent(dest.local.toLowerCase())}`;
      default:
        return whole;
    }
  });
}

export function pathComponent(s: string): string {
  const cleaned = s.replace(/[/\\\0]/g, '_').replace(/^\./, '_');
  return cleaned === '' ? '_' : cleaned;
}
