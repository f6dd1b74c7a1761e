/** Sequence sets against the selected mailbox as the client knows it (RFC 3501 §6.4.8, §9 seq-number). */
import type { SequenceSet } from '../protocol/sequence.ts';
import { selectIndexes } from '../protocol/sequence.ts';
import type { SelectedMailbox } from '../selected.ts';

export type Resolved = { readonly ok: true; readonly indexes: number[] } | { readonly ok: false; readonly text: string };

/** Indexes into `sel.uids`. Sequence numbers beyond EXISTS are an error (BAD); unknown UIDs are ignored (RFC 3501 §6.4.8). */
export function resolveSet(sel: SelectedMailbox, set: SequenceSet, uid: boolean): Resolved {
  const n = sel.uids.length;
  if (uid) {
    const largest = n > 0 ? sel.uids[n - 1]! : 0;
    return { ok: true, indexes: selectIndexes(set, sel.uids, largest) };
  }
  // An empty mailbox answers nothing; a range with * is clamped (5:* with 3 messages is 3:5, RFC 3501 §6.4.8).
  if (n === 0) return { ok: true, indexes: [] };
  for (const r of set) {
    if (r.to !== Infinity && r.to > n) return { ok: false, text: 'Invalid sequence number' };
  }
  const seqs = sequenceNumbers(n);
  return { ok: true, indexes: selectIndexes(set, seqs, n) };
}

let cache: number[] = [];
/** [1..n], shared: SEARCH and FETCH on a large mailbox would otherwise build it every time. */
function sequenceNumbers(n: number): number[] {
  if (cache.length < n) cache = Array.from({ length: Math.max(n, cache.length * 2) }, (_, i) => i + 1);
  return cache.length === n ? cache : cache.slice(0, n);
}
