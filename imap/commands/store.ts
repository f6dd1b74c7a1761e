/** STORE and UID STORE (RFC 3501 §6.4.6): FLAGS, +FLAGS, -FLAGS, .SILENT. */
import type { CommandOf } from '../protocol/command.ts';
import { formatFlags } from '../protocol/encode.ts';
import { storableFlags } from '../flags.ts';
import type { ImapSession, Tagged } from '../session.ts';
import { resolveSet } from './sets.ts';

export async function storeCommand(s: ImapSession, _tag: string, cmd: CommandOf<'STORE'>): Promise<Tagged> {
  const sel = s.selected!;
  if (sel.readOnly) return { status: 'NO', code: 'READ-ONLY', text: 'Mailbox is read-only' };
  const r = resolveSet(sel, cmd.set, cmd.uid);
  if (!r.ok) return { status: 'BAD', text: r.text };
  const flags = storableFlags(cmd.flags);
  if (!flags.ok) return { status: 'BAD', text: flags.text };
  const uids = r.indexes.map((i) => sel.uids[i]!).filter((u) => !sel.isGone(u));
  if (uids.length === 0) return { status: 'OK', text: 'STORE completed' };
  const records = await sel.view.setFlags(uids, cmd.op, flags.flags);
  sel.updated(records);
  if (!cmd.silent) {
    for (const rec of records) {
      const i = sel.indexOf(rec.uid);
      if (i < 0) continue;
      await s.send(`* ${i + 1} FETCH (FLAGS ${formatFlags(sel.flagsOf(rec.uid))}${cmd.uid ? ` UID ${rec.uid}` : ''})`);
    }
  }
  return { status: 'OK', text: 'STORE completed' };
}
