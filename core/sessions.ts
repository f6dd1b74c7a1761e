/**
 * The logged-in sessions of the process, IMAP and submission: `appliance
 * who` lists them, `appliance kick` closes them, and the IMAP per user+IP
 * connection limit (`imap limit connections-per-user-ip`, Dovecot's
 * mail_max_userip_connections) is counted here. Protocols register their
 * sessions; they meet only in this interface.
 */
import { ipInCidr } from './address.ts';

export interface SessionInfo {
  readonly protocol: 'imap' | 'submission';
  readonly user: string;
  readonly address: string;
  readonly since: Date;
  readonly mailbox: string | null;
}

export interface TrackedSession {
  readonly protocol: 'imap' | 'submission';
  readonly remoteAddress: string;
  readonly since: Date;
  readonly user: string | null;
  mailboxName(): string | null;
  kick(reason: string): void;
}

export class SessionRegistry {
  private readonly sessions = new Set<TrackedSession>();

  add(s: TrackedSession): () => void {
    this.sessions.add(s);
    return () => this.sessions.delete(s);
  }

  /** Logged-in sessions of this user from this address, of one protocol. */
  countUserIp(user: string, ip: string, protocol: TrackedSession['protocol'] = 'imap'): number {
    let n = 0;
    const u = user.toLowerCase();
    for (const s of this.sessions) if (s.protocol === protocol && s.user?.toLowerCase() === u && s.remoteAddress === ip) n++;
    return n;
  }

  list(): SessionInfo[] {
    return [...this.sessions]
      .filter((s) => s.user !== null)
      .map((s) => ({ protocol: s.protocol, user: s.user!, address: s.remoteAddress, since: s.since, mailbox: s.mailboxName() }));
  }

  /** Closes the user's sessions (from addresses in `cidr` if given); the number closed. */
  kick(user: string, cidr?: string): number {
    const u = user.toLowerCase();
    let n = 0;
    for (const s of this.sessions) {
      if (s.user?.toLowerCase() !== u) continue;
      if (cidr !== undefined && !ipInCidr(s.remoteAddress, cidr.includes('/') ? cidr : s.remoteAddress.includes(':') ? `${cidr}/128` : `${cidr}/32`)) continue;
      s.kick('Disconnected by the administrator');
      n++;
    }
    return n;
  }

  closeAll(reason: string, protocol: TrackedSession['protocol'] = 'imap'): void {
    for (const s of this.sessions) if (s.protocol === protocol) s.kick(reason);
  }

  /** Sessions of one protocol (any state). */
  count(protocol: TrackedSession['protocol'] = 'imap'): number {
    let n = 0;
    for (const s of this.sessions) if (s.protocol === protocol) n++;
    return n;
  }
}
