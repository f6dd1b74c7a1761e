/** EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1). */
import type { CommandOf } from '../protocol/command.ts';
import type { ImapSession, Tagged } from '../session.ts';
import { resolveSet } from './sets.ts';

export async function expungeCommand(s: ImapSession): Promise<Tagged> {
  const sel = s.selected!;
  if (sel.readOnly) return { status: 'NO', code: 'READ-ONLY', text: 'Mailbox is read-only' };
  const removed = await sel.view.expunge();
  for (const line of sel.expungeLines(removed)) await s.send(line);
  return { status: 'OK', text: 'EXPUNGE completed' };
}

export async function uidExpungeCommand(s: ImapSession, _tag: string, cmd: CommandOf<'UID EXPUNGE'>): Promise<Tagged> {
  const sel = s.selected!;
  if (sel.readOnly) return { status: 'NO', code: 'READ-ONLY', text: 'Mailbox is read-only' };
  const r = resolveSet(sel, cmd.set, true);
  if (!r.ok) return { status: 'BAD', text: r.text };
  const uids = r.indexes.map((i) => sel.uids[i]!);
  if (uids.length > 0) {
    const removed = await sel.view.expunge(uids);
    for (const line of sel.expungeLines(removed)) await s.send(line);
  }
  return { status: 'OK', text: 'UID EXPUNGE completed' };
}
