/** CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE (RFC 3501 §6.3.3-7; RFC 6154 §3 CREATE-SPECIAL-USE not offered, USE accepted). */
import type { CommandOf } from '../protocol/command.ts';
import { DELIMITER, mailboxNameProblem } from '../mailbox-name.ts';
import type { ImapSession, Tagged } from '../session.ts';
import { deselect } from './select.ts';

function refused(problem: string): Tagged {
  return { status: 'NO', code: 'CANNOT', text: problem };
}

export async function createCommand(s: ImapSession, _tag: string, cmd: CommandOf<'CREATE'>): Promise<Tagged> {
  // RFC 3501 §6.3.3: a trailing delimiter declares the intent to create children; the name is without it.
  const name = cmd.mailbox.endsWith(DELIMITER) ? cmd.mailbox.slice(0, -1) : cmd.mailbox;
  const problem = mailboxNameProblem(name);
  if (problem) return refused(problem);
  if (name.toUpperCase() === 'INBOX') return { status: 'NO', code: 'ALREADYEXISTS', text: 'INBOX always exists' };
  await s.store!.create(name, cmd.specialUse ? { specialUse: cmd.specialUse } : undefined);
  return { status: 'OK', text: 'CREATE completed' };
}

export async function deleteCommand(s: ImapSession, _tag: string, cmd: CommandOf<'DELETE'>): Promise<Tagged> {
  if (cmd.mailbox === 'INBOX') return { status: 'NO', code: 'CANNOT', text: 'INBOX cannot be deleted' };
  const problem = mailboxNameProblem(cmd.mailbox);
  if (problem) return refused(problem);
  // Deleting the selected mailbox deselects it first (its view would point at nothing).
  if (s.selected?.view.name === cmd.mailbox) await deselect(s);
  await s.store!.delete(cmd.mailbox);
  return { status: 'OK', text: 'DELETE completed' };
}

export async function renameCommand(s: ImapSession, _tag: string, cmd: CommandOf<'RENAME'>): Promise<Tagged> {
  const problem = mailboxNameProblem(cmd.from) ?? mailboxNameProblem(cmd.to);
  if (problem) return refused(problem);
  if (cmd.to === 'INBOX') return { status: 'NO', code: 'ALREADYEXISTS', text: 'INBOX always exists' };
  if (s.selected?.view.name === cmd.from && cmd.from !== 'INBOX') await deselect(s);
  await s.store!.rename(cmd.from, cmd.to);
  return { status: 'OK', text: 'RENAME completed' };
}

export async function subscribeCommand(s: ImapSession, _tag: string, cmd: CommandOf<'SUBSCRIBE' | 'UNSUBSCRIBE'>): Promise<Tagged> {
  const problem = mailboxNameProblem(cmd.mailbox);
  if (problem) return refused(problem);
  if (cmd.name === 'SUBSCRIBE') await s.store!.subscribe(cmd.mailbox);
  else await s.store!.unsubscribe(cmd.mailbox);
  return { status: 'OK', text: `${cmd.name} completed` };
}
