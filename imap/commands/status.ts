/** STATUS (RFC 3501 §6.3.10; SIZE from RFC 8438), also used by LIST-STATUS. */
import type { CommandOf, StatusItem } from '../protocol/command.ts';
import { encodeString, type Piece } from '../protocol/encode.ts';
import { encodeMailboxName } from '../protocol/utf7.ts';
import { mailboxNameProblem } from '../mailbox-name.ts';
import type { ImapSession, Tagged } from '../session.ts';

export async function statusLine(s: ImapSession, mailbox: string, items: readonly StatusItem[]): Promise<Piece[]> {
  const st = await s.store!.status(mailbox);
  const values: Record<StatusItem, number> = {
    MESSAGES: st.messages,
    RECENT: st.recent,
    UIDNEXT: st.uidNext,
    UIDVALIDITY: st.uidValidity,
    UNSEEN: st.unseen,
    SIZE: st.size,
    HIGHESTMODSEQ: st.highestModseq,
  };
  return ['* STATUS ', ...encodeString(encodeMailboxName(mailbox)), ` (${items.map((i) => `${i} ${values[i]}`).join(' ')})`];
}

export async function statusCommand(s: ImapSession, _tag: string, cmd: CommandOf<'STATUS'>): Promise<Tagged> {
  const problem = mailboxNameProblem(cmd.mailbox);
  if (problem) return { status: 'NO', code: 'CANNOT', text: problem };
  await s.send(await statusLine(s, cmd.mailbox, cmd.items));
  return { status: 'OK', text: 'STATUS completed' };
}
