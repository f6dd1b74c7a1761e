/** APPEND (RFC 3501 §6.3.11) with APPENDUID (RFC 4315 §3); the literal size is bounded by the reader (APPENDLIMIT, RFC 7889). */
import { MailboxNotFoundError } from '../../store/mailbox/errors.ts';
import type { CommandOf } from '../protocol/command.ts';
import { storableFlags } from '../flags.ts';
import { mailboxNameProblem } from '../mailbox-name.ts';
import type { ImapSession, Tagged } from '../session.ts';

export async function appendCommand(s: ImapSession, _tag: string, cmd: CommandOf<'APPEND'>): Promise<Tagged> {
  const problem = mailboxNameProblem(cmd.mailbox);
  if (problem) return { status: 'NO', code: 'CANNOT', text: problem };
  const flags = storableFlags(cmd.flags);
  if (!flags.ok) return { status: 'BAD', text: flags.text };
  if (cmd.content.length === 0) return { status: 'NO', text: 'Empty message' };
  try {
    const r = await s.store!.append(cmd.mailbox, { content: cmd.content, flags: flags.flags, ...(cmd.date ? { internalDate: cmd.date } : {}) });
    return { status: 'OK', code: `APPENDUID ${r.uidValidity} ${r.uid}`, text: 'APPEND completed' };
  } catch (err) {
    if (err instanceof MailboxNotFoundError) return { status: 'NO', code: 'TRYCREATE', text: 'No such mailbox' };
    throw err;
  }
}
