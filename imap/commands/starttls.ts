/** STARTTLS (RFC 3501 §6.2.1): the tagged OK goes out in plaintext, then the handshake. */
import type { ImapSession, Tagged } from '../session.ts';

export async function starttlsCommand(s: ImapSession, tag: string): Promise<Tagged> {
  if (!s.canStartTls) return { status: s.secure ? 'BAD' : 'NO', text: s.secure ? 'TLS is already active' : 'TLS is not available on this listener' };
  await s.send(`${tag} OK Begin TLS negotiation now`);
  s.startTls();
  return { status: 'OK', text: '', sent: true };
}
