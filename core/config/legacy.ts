/**
 * The pre-6.4 OpenSMTPD rule grammar, as the seed howtos write it:
 *
 *   accept from any for domain <domains> userbase <hostname> deliver to maildir
 *   accept from any tagged mailout sender { @a.org, @b.org } for any relay
 *   reject from any for any
 *
 * Each line becomes a modern `action` + `match` pair (actions with the same
 * delivery are shared), so the rest of the program knows one grammar only.
 * `appliance check` prints the modern form.
 */
import type { Pos } from './diagnostics.ts';
import { Cursor } from './cursor.ts';
import type { Draft } from './parser.ts';
import { parseMaildirAction, relayUrl, tableArg, withDefaults } from './parser.ts';
import type { ActionMethod, Condition, ConditionBody, MatchRule, TableRef } from './types.ts';

const legacyKeywords = ['tagged', 'from', 'for', 'sender', 'recipient', 'alias', 'virtual', 'userbase', 'forward-only', 'deliver', 'relay'] as const;

export function parseLegacyRule(cur: Cursor, d: Draft, verb: 'accept' | 'reject', pos: Pos): void {
  const conditions: Condition[] = [];
  const seen = new Set<string>();
  let alias: TableRef | undefined;
  let virtual: TableRef | undefined;
  let userbase: TableRef | undefined;
  let method: ActionMethod | undefined;
  let methodPos: Pos = pos;
  const text = cur.tokens.slice(1).reduce<string>((acc, t) => `${acc}${t.type === ',' ? '' : ' '}${show(t)}`, verb);

  while (!cur.atEnd()) {
    const bang = cur.acceptType('!');
    const kw = cur.keyword(legacyKeywords, `${verb} option`);
    if (seen.has(kw.value)) cur.fail(`"${kw.value}" appears twice in this rule`, kw.pos);
    seen.add(kw.value);
    const add = (body: ConditionBody, negate: boolean) => conditions.push({ ...body, negate, pos: bang?.pos ?? kw.pos });
    switch (kw.value) {
      case 'tagged': {
        const neg = cur.acceptType('!') !== undefined || bang !== undefined;
        add({ type: 'tag', tag: cur.value('tag').value }, neg);
        break;
      }
      case 'from': {
        const neg = cur.acceptType('!') !== undefined || bang !== undefined;
        const k = cur.keyword(['any', 'local', 'source', 'src', 'rdns', 'auth'] as const, 'from value');
        if (k.value === 'any' || k.value === 'local') add({ type: 'from', from: { kind: k.value } }, neg);
        else if (k.value === 'auth') add({ type: 'from', from: { kind: 'auth' } }, neg);
        else if (k.value === 'rdns') add({ type: 'from', from: { kind: 'rdns' } }, neg);
        else add({ type: 'from', from: { kind: 'src', table: tableArg(cur, d, 'source table') } }, neg);
        break;
      }
      case 'for': {
        const neg = cur.acceptType('!') !== undefined || bang !== undefined;
        const t = cur.peek();
        if (t && (t.type === 'table' || t.type === '{')) {
          add({ type: 'for', for: { kind: 'domain', table: tableArg(cur, d, 'domain table') } }, neg);
          break;
        }
        const k = cur.keyword(['any', 'local', 'domain'] as const, 'for value');
        if (k.value === 'domain') add({ type: 'for', for: { kind: 'domain', table: tableArg(cur, d, 'domain table') } }, neg);
        else add({ type: 'for', for: { kind: k.value } }, neg);
        break;
      }
      case 'sender':
        add({ type: 'mail-from', table: tableArg(cur, d, 'sender table') }, (cur.acceptType('!') ?? bang) !== undefined);
        break;
      case 'recipient':
        add({ type: 'rcpt-to', table: tableArg(cur, d, 'recipient table') }, (cur.acceptType('!') ?? bang) !== undefined);
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
      case 'forward-only':
        method = { type: 'forward-only' };
        methodPos = kw.pos;
        break;
      case 'deliver': {
        cur.keyword(['to'] as const, '"to"');
        const to = cur.keyword(['maildir', 'mbox', 'lmtp', 'mda'] as const, 'delivery method');
        methodPos = to.pos;
        if (to.value === 'maildir') {
          method = parseMaildirAction(cur, d, legacyKeywords);
        } else if (to.value === 'mbox') {
          d.diagnostics.push({ pos: to.pos, severity: 'warning', message: 'mbox delivery is not supported; translated to Maildir delivery' });
          method = { type: 'maildir', junk: false };
        } else {
          cur.fail(`"deliver to ${to.value}" is not supported: appliance delivers to Maildir`, to.pos);
        }
        break;
      }
      case 'relay':
        method = parseLegacyRelay(cur, d);
        methodPos = kw.pos;
        break;
    }
  }

  if (verb === 'reject') {
    if (method || alias || virtual || userbase) cur.fail('a reject rule takes no delivery method', methodPos);
    d.rules.push({ conditions: withDefaults(conditions, pos), decision: { type: 'reject' }, pos, legacyText: text });
    return;
  }
  if (!method) cur.fail('accept rule without "deliver to …" or "relay"', pos);
  if (method.type === 'maildir') {
    method = { ...method, ...(alias ? { alias } : {}), ...(virtual ? { virtual } : {}), ...(userbase ? { userbase } : {}) };
  } else if (method.type === 'forward-only') {
    method = { ...method, ...(alias ? { alias } : {}), ...(virtual ? { virtual } : {}) };
  } else if (alias || virtual || userbase) {
    cur.fail('alias, virtual and userbase apply to local delivery, not to relay', methodPos);
  }
  const actionName = legacyActionName(d, method, methodPos);
  const rule: MatchRule = {
    conditions: withDefaults(conditions, pos),
    decision: { type: 'action', action: actionName, pos: methodPos },
    pos,
    legacyText: text,
  };
  d.rules.push(rule);
}

function parseLegacyRelay(cur: Cursor, d: Draft): ActionMethod {
  let backup = false;
  let backupMx: string | undefined;
  let host: ReturnType<typeof relayUrl> | undefined;
  let auth: TableRef | undefined;
  let tls: { verify: boolean } | undefined;
  let helo: string | undefined;
  let mailFrom: string | undefined;
  while (!cur.atEnd() && !legacyKeywords.some((k) => cur.isWord(k))) {
    const o = cur.keyword(['backup', 'via', 'auth', 'tls', 'as', 'hostname', 'pki', 'source', 'helo'] as const, 'relay option');
    switch (o.value) {
      case 'backup': {
        backup = true;
        const t = cur.peek();
        if (t && t.type === 'word' && !['via', 'auth', 'tls', 'as', 'hostname', 'pki', 'source', 'helo'].includes(t.value) && t.value.includes('.')) {
          backupMx = cur.next().value;
        }
        break;
      }
      case 'via': {
        const v = cur.value('relay URL');
        // Legacy URLs used "tls+auth://" / "tls://"; map the common ones.
        const url = v.value.replace(/^tls\+auth:\/\//, 'smtp+tls://').replace(/^tls:\/\//, 'smtp+tls://').replace(/^ssl\+auth:\/\//, 'smtps://').replace(/^ssl:\/\//, 'smtps://');
        host = relayUrl(cur, url, v.pos);
        break;
      }
      case 'auth':
        auth = tableArg(cur, d, 'credentials table');
        break;
      case 'tls':
        tls = { verify: cur.accept('verify') };
        break;
      case 'as':
        mailFrom = cur.value('sender address').value;
        break;
      case 'hostname':
      case 'helo':
        helo = cur.value('host name').value;
        break;
      case 'pki':
      case 'source':
        cur.fail(`legacy relay option "${o.value}" is not supported`, o.pos);
    }
  }
  return {
    type: 'relay',
    backup,
    ...(backupMx ? { backupMx } : {}),
    ...(host ? { host } : {}),
    ...(auth ? { auth } : {}),
    ...(tls ? { tls } : {}),
    ...(helo ? { helo } : {}),
    ...(mailFrom ? { mailFrom } : {}),
  };
}

/** Reuses an action with the same delivery, else names a new one after its method. */
function legacyActionName(d: Draft, method: ActionMethod, pos: Pos): string {
  // Same delivery = same method and tables, wherever the tables were written.
  const sameDelivery = (m: ActionMethod) => JSON.stringify(m, (k, v: unknown) => (k === 'pos' ? undefined : v));
  const key = sameDelivery(method);
  for (const a of d.actions.values()) {
    if (a.legacy && sameDelivery(a.method) === key) return a.name;
  }
  const base = method.type === 'maildir' ? 'local' : method.type === 'relay' ? 'relay' : 'forward';
  let name = base;
  for (let i = 2; d.actions.has(name); i++) name = `${base}-${i}`;
  d.actions.set(name, { name, method, pos, legacy: true });
  return name;
}

function show(t: { type: string; value: string }): string {
  if (t.type === 'table') return `<${t.value}>`;
  if (t.type === 'string') return JSON.stringify(t.value);
  return t.value;
}
