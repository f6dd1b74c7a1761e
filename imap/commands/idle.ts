/**
 * IDLE (RFC 2177): changes of the selected mailbox are pushed as they
 * happen — the store's change event (a delivery in this process, another
 * session) wakes the session at once; the directory is also re-read every
 * minute for changes by other programs. Ends with DONE.
 */
import type { ImapSession, Tagged } from '../session.ts';

const RESCAN_MS = 60_000;

export async function idleCommand(s: ImapSession): Promise<Tagged> {
  const sel = s.selected;
  await s.send('+ idling');
  let chain = Promise.resolve();
  const flush = (force: boolean) => {
    chain = chain
      .then(async () => {
        if (!sel || s.selected !== sel) return;
        for (const line of await sel.announce({ allowExpunge: true, force })) await s.send(line);
      })
      .catch((err: Error) => s.log.warn({ err: err.message }, 'idle update failed'));
  };
  sel?.onWake(() => flush(false));
  const timer = sel ? setInterval(() => flush(true), RESCAN_MS) : undefined;
  let line: Buffer | null;
  try {
    line = await s.nextLine();
  } finally {
    sel?.onWake(null);
    if (timer) clearInterval(timer);
  }
  await chain;
  if (line === null) return { status: 'BAD', text: 'Connection closed', sent: true };
  if (line.toString('latin1').trim().toUpperCase() !== 'DONE') return { status: 'BAD', text: 'Expected DONE' };
  return { status: 'OK', text: 'IDLE terminated' };
}
