/**
 * COPY, MOVE (RFC 6851) and their UID forms, with COPYUID (RFC 4315 §3).
 * A missing target is NO [TRYCREATE]. MOVE sends COPYUID untagged, then the
 * EXPUNGEs of the moved messages, then the tagged OK.
 */
import { MailboxNotFoundError } from '../../store/mailbox/errors.ts';
import type { CommandOf } from '../protocol/command.ts';
import { formatSequence } from '../protocol/sequence.ts';
import { mailboxNameProblem } from '../mailbox-name.ts';
import type { ImapSession, Tagged } from '../session.ts';
import { resolveSet } from './sets.ts';

export async function copyCommand(s: ImapSession, _tag: string, cmd: CommandOf<'COPY' | 'MOVE'>): Promise<Tagged> {
  const sel = s.selected!;
  const move = cmd.name === 'MOVE';
  if (move && sel.readOnly) return { status: 'NO', code: 'READ-ONLY', text: 'Mailbox is read-only' };
  const problem = mailboxNameProblem(cmd.mailbox);
  if (problem) return { status: 'NO', code: 'CANNOT', text: problem };
  const r = resolveSet(sel, cmd.set, cmd.uid);
  if (!r.ok) return { status: 'BAD', text: r.text };
  const uids = r.indexes.map((i) => sel.uids[i]!).filter((u) => !sel.isGone(u));
  if (uids.length === 0) return { status: 'OK', text: `${cmd.name} completed (no messages)` };
  let result;
  try {
    result = await s.store!.copy(sel.view, uids, cmd.mailbox, { move });
  } catch (err) {
    if (err instanceof MailboxNotFoundError) return { status: 'NO', code: 'TRYCREATE', text: 'No such mailbox' };
    throw err;
  }
  const pairs = [...result.pairs].sort((a, b) => a[0] - b[0]);
  const copyuid = pairs.length > 0 ? `COPYUID ${result.uidValidity} ${formatSequence(pairs.map((p) => p[0]))} ${formatSequence(pairs.map((p) => p[1]))}` : undefined;
  if (!move) return { status: 'OK', ...(copyuid ? { code: copyuid } : {}), text: 'COPY completed' };
  if (copyuid) await s.send(`* OK [${copyuid}] Moved`);
  for (const line of sel.expungeLines(pairs.map((p) => p[0]))) await s.send(line);
  return { status: 'OK', text: 'MOVE completed' };
}
