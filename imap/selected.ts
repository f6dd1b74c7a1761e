/**
 * The selected mailbox as this client knows it (RFC 3501 §2.3.1.2, §5.2,
 * §7.4.1): the sequence number ↔ UID map the client has been told about,
 * and the flags it was last sent. Changes from other sessions, deliveries
 * and other programs reach the client only when announce() is called, at
 * the moments the session allows: EXISTS and FETCH FLAGS after any command,
 * EXPUNGE never during FETCH, STORE or SEARCH (they are held back and the
 * messages keep their sequence numbers until then).
 */
import type { MailboxView, MessageRecord } from '../store/mailbox/types.ts';
import { formatFlags, type Piece } from './protocol/encode.ts';

export class SelectedMailbox {
  readonly view: MailboxView;
  readonly readOnly: boolean;
  /** Sequence number - 1 → UID, as the client knows it. */
  uids: number[];
  private readonly records = new Map<number, MessageRecord>();
  /** UIDs gone from the store but not yet announced (still numbered for the client). */
  private readonly gone = new Set<number>();
  private dirty = false;
  private readonly unsubscribe: () => void;
  private wake: (() => void) | null = null;

  constructor(view: MailboxView) {
    this.view = view;
    this.readOnly = view.readOnly;
    this.uids = view.messages.map((m) => m.uid);
    for (const m of view.messages) this.records.set(m.uid, m);
    this.unsubscribe = view.onChange(() => {
      this.dirty = true;
      this.wake?.();
    });
  }

  get exists(): number {
    return this.uids.length;
  }

  record(uid: number): MessageRecord | undefined {
    return this.records.get(uid);
  }

  isGone(uid: number): boolean {
    return this.gone.has(uid);
  }

  /** Called (once) when something may have changed; used by IDLE. */
  onWake(fn: (() => void) | null): void {
    this.wake = fn;
    if (fn && this.dirty) fn();
  }

  get pending(): boolean {
    return this.dirty;
  }

  /** Records the session's own flag changes (setFlags results). */
  updated(records: readonly MessageRecord[]): void {
    for (const r of records) this.records.set(r.uid, r);
  }

  /**
   * Syncs with the store (when told something changed, or `force`: other
   * programs may have touched the directory) and returns the untagged
   * responses to send now.
   */
  async announce(opts: { readonly allowExpunge: boolean; readonly force?: boolean }): Promise<string[]> {
    const out: string[] = [];
    if (this.dirty || opts.force) {
      this.dirty = false;
      const changes = await this.view.sync();
      for (const uid of changes.expunged) if (this.records.has(uid)) this.gone.add(uid);
      const known = new Set(this.uids);
      let added = 0;
      for (const r of changes.added) {
        this.records.set(r.uid, r);
        if (!known.has(r.uid)) {
          this.uids.push(r.uid);
          added++;
        }
      }
      if (added > 0) {
        this.uids.sort((a, b) => a - b);
        out.push(`* ${this.uids.length} EXISTS`);
        out.push(`* ${this.view.recentUids.size} RECENT`);
      }
      for (const r of changes.flagsChanged) {
        if (this.gone.has(r.uid)) continue;
        const before = this.records.get(r.uid);
        this.records.set(r.uid, r);
        const i = this.indexOf(r.uid);
        if (i >= 0 && (!before || before.flags.join(' ') !== r.flags.join(' '))) {
          out.push(`* ${i + 1} FETCH (UID ${r.uid} FLAGS ${formatFlags(this.flagsOf(r.uid))})`);
        }
      }
    }
    if (opts.allowExpunge && this.gone.size > 0) out.push(...this.expungeLines([...this.gone]));
    return out;
  }

  /** Removes the UIDs from the numbering and returns `* n EXPUNGE` lines (highest first, so numbers stay right). */
  expungeLines(uids: readonly number[]): string[] {
    const idx = uids
      .map((u) => this.indexOf(u))
      .filter((i) => i >= 0)
      .sort((a, b) => b - a);
    const out: string[] = [];
    for (const i of idx) {
      const uid = this.uids[i]!;
      out.push(`* ${i + 1} EXPUNGE`);
      this.records.delete(uid);
      this.gone.delete(uid);
    }
    const remove = new Set(uids);
    this.uids = this.uids.filter((u) => !remove.has(u));
    return out;
  }

  /** The flags to show: stored flags plus \Recent for this session. */
  flagsOf(uid: number): string[] {
    const r = this.records.get(uid);
    const flags = r ? [...r.flags] : [];
    if (this.view.recentUids.has(uid)) flags.push('\\Recent');
    return flags;
  }

  indexOf(uid: number): number {
    let lo = 0;
    let hi = this.uids.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const v = this.uids[mid]!;
      if (v === uid) return mid;
      if (v < uid) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  async close(): Promise<void> {
    this.unsubscribe();
    this.wake = null;
    await this.view.close();
  }
}

export type { Piece };
