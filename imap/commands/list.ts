/**
 * LIST (RFC 3501 §6.3.8, RFC 5258 LIST-EXTENDED, RFC 6154 SPECIAL-USE,
 * RFC 5819 LIST-STATUS), LSUB (§6.3.9) and NAMESPACE (RFC 2342). One
 * personal namespace, "" with delimiter "/". Child attributes and
 * special-use attributes are always sent (as Dovecot does), since clients
 * look for them in plain LIST.
 */
import type { MailboxInfo } from '../../store/mailbox/types.ts';
import type { CommandOf } from '../protocol/command.ts';
import { encodeString, type Piece } from '../protocol/encode.ts';
import { encodeMailboxName } from '../protocol/utf7.ts';
import type { ImapSession, Tagged } from '../session.ts';
import { statusLine } from './status.ts';

/** A LIST pattern as a RegExp: `*` anything, `%` anything but the delimiter; INBOX case-insensitive. */
export function patternRegExp(pattern: string): RegExp {
  let src = '';
  for (const ch of pattern) {
    if (ch === '*') src += '.*';
    else if (ch === '%') src += '[^/]*';
    else src += ch.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  }
  // RFC 3501 §5.1: INBOX is case-insensitive, so is a pattern starting with it.
  const m = /^INBOX(?=$|\/)/i.exec(pattern);
  if (m) src = `INBOX${src.slice(5)}`;
  return new RegExp(`^${src}$`, 's');
}

function withInbox(list: readonly MailboxInfo[]): MailboxInfo[] {
  if (list.some((m) => m.name === 'INBOX')) return [...list];
  return [{ name: 'INBOX', subscribed: false, hasChildren: false, noSelect: false }, ...list];
}

export async function listCommand(s: ImapSession, _tag: string, cmd: CommandOf<'LIST'>): Promise<Tagged> {
  const o = cmd.options;
  if (!o.extended && cmd.patterns.length === 1 && cmd.patterns[0] === '') {
    // RFC 3501 §6.3.8: the hierarchy delimiter and root.
    await s.send('* LIST (\\Noselect) "/" ""');
    return { status: 'OK', text: 'LIST completed' };
  }
  const all = withInbox(await s.store!.list());
  const res = cmd.patterns.filter((p) => p !== '').map((p) => patternRegExp(cmd.reference + p));
  const matches = (name: string) => res.some((r) => r.test(name));
  for (const m of all) {
    const attrs: string[] = [];
    let childInfo = false;
    if (!matches(m.name)) continue;
    if (o.selectSubscribed && !m.subscribed) {
      // RFC 5258 §3.5: RECURSIVEMATCH reports parents of subscribed mailboxes.
      if (!(o.recursiveMatch && all.some((c) => c.subscribed && c.name.startsWith(`${m.name}/`)))) continue;
      childInfo = true;
    }
    if (o.selectSpecialUse && !m.specialUse) continue;
    if (m.noSelect) attrs.push('\\Noselect');
    attrs.push(m.hasChildren ? '\\HasChildren' : '\\HasNoChildren');
    if (m.subscribed && (o.selectSubscribed || o.returnSubscribed)) attrs.push('\\Subscribed');
    if (m.specialUse) attrs.push(m.specialUse);
    const line: Piece[] = [`* LIST (${attrs.join(' ')}) "/" `, ...encodeString(encodeMailboxName(m.name))];
    if (childInfo) line.push(' ("CHILDINFO" ("SUBSCRIBED"))');
    await s.send(line);
    if (o.returnStatus && !m.noSelect) {
      try {
        await s.send(await statusLine(s, m.name, o.returnStatus));
      } catch (err) {
        s.log.debug({ mailbox: m.name, err: (err as Error).message }, 'LIST-STATUS skipped a mailbox');
      }
    }
  }
  if (o.selectSubscribed) {
    // RFC 5258 §3.1: subscribed names that do not exist are \NonExistent.
    const names = new Set(all.map((m) => m.name));
    for (const name of await s.store!.subscriptions()) {
      if (names.has(name) || !matches(name)) continue;
      await s.send(['* LIST (\\NonExistent \\Subscribed) "/" ', ...encodeString(encodeMailboxName(name))]);
    }
  }
  return { status: 'OK', text: 'LIST completed' };
}

export async function lsubCommand(s: ImapSession, _tag: string, cmd: CommandOf<'LSUB'>): Promise<Tagged> {
  if (cmd.pattern === '') {
    await s.send('* LSUB (\\Noselect) "/" ""');
    return { status: 'OK', text: 'LSUB completed' };
  }
  const re = patternRegExp(cmd.reference + cmd.pattern);
  const existing = new Map((await s.store!.list()).map((m) => [m.name, m]));
  // RFC 3501 §6.3.9: subscribed names are listed whether they exist or not.
  for (const name of await s.store!.subscriptions()) {
    if (!re.test(name)) continue;
    await s.send([`* LSUB (${existing.get(name)?.noSelect ? '\\Noselect' : ''}) "/" `, ...encodeString(encodeMailboxName(name))]);
  }
  return { status: 'OK', text: 'LSUB completed' };
}

export async function namespaceCommand(s: ImapSession): Promise<Tagged> {
  await s.send('* NAMESPACE (("" "/")) NIL NIL');
  return { status: 'OK', text: 'NAMESPACE completed' };
}
