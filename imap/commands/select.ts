/**
 * SELECT and EXAMINE (RFC 3501 §6.3.1-2), CHECK, CLOSE (§6.4.1-2),
 * UNSELECT (RFC 3691). Selecting first drops any selected mailbox; a failed
 * SELECT leaves none selected.
 */
import type { CommandOf } from '../protocol/command.ts';
import { formatFlags } from '../protocol/encode.ts';
import { SelectedMailbox } from '../selected.ts';
import type { ImapSession, Tagged } from '../session.ts';

const SYSTEM_FLAGS = ['\\Answered', '\\Flagged', '\\Deleted', '\\Seen', '\\Draft'];
const COMMON_KEYWORDS = ['$Forwarded', '$Junk', '$NotJunk'];

export async function deselect(s: ImapSession): Promise<void> {
  const sel = s.selected;
  s.selected = null;
  if (s.state === 'selected') s.state = 'authenticated';
  if (sel) await sel.close();
}

export async function selectCommand(s: ImapSession, _tag: string, cmd: CommandOf<'SELECT' | 'EXAMINE'>): Promise<Tagged> {
  await deselect(s);
  const view = await s.store!.open(cmd.mailbox, { readOnly: cmd.name === 'EXAMINE' });
  const sel = new SelectedMailbox(view);
  s.selected = sel;
  s.state = 'selected';
  const keywords = new Set(COMMON_KEYWORDS);
  let firstUnseen = 0;
  view.messages.forEach((m, i) => {
    for (const f of m.flags) if (!f.startsWith('\\')) keywords.add(f);
    if (firstUnseen === 0 && !m.flags.includes('\\Seen')) firstUnseen = i + 1;
  });
  const flags = [...SYSTEM_FLAGS, ...keywords];
  await s.send(`* FLAGS ${formatFlags(flags)}`);
  await s.send(view.readOnly ? '* OK [PERMANENTFLAGS ()] Read-only mailbox' : `* OK [PERMANENTFLAGS ${formatFlags([...flags, '\\*'])}] Flags permitted`);
  await s.send(`* ${sel.exists} EXISTS`);
  await s.send(`* ${view.recentUids.size} RECENT`);
  if (firstUnseen > 0) await s.send(`* OK [UNSEEN ${firstUnseen}] First unseen`);
  await s.send(`* OK [UIDVALIDITY ${view.uidValidity}] UIDs valid`);
  await s.send(`* OK [UIDNEXT ${view.uidNext}] Predicted next UID`);
  s.log.debug({ mailbox: view.name, exists: sel.exists }, cmd.name === 'EXAMINE' ? 'examine' : 'select');
  return { status: 'OK', code: view.readOnly ? 'READ-ONLY' : 'READ-WRITE', text: `${cmd.name} completed` };
}

/** The directory is re-read by the registry's announce step (forced for CHECK). */
export async function checkCommand(): Promise<Tagged> {
  return { status: 'OK', text: 'CHECK completed' };
}

/** CLOSE expunges silently (no EXPUNGE responses) unless the mailbox is read-only. */
export async function closeCommand(s: ImapSession): Promise<Tagged> {
  const sel = s.selected!;
  if (!sel.readOnly) await sel.view.expunge();
  await deselect(s);
  return { status: 'OK', text: 'CLOSE completed' };
}

export async function unselectCommand(s: ImapSession): Promise<Tagged> {
  await deselect(s);
  return { status: 'OK', text: 'UNSELECT completed' };
}
