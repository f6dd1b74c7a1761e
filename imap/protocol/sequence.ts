/**
 * Sequence sets (RFC 3501 §9 `sequence-set`, RFC 9051 §9): ranges of
 * sequence numbers or UIDs, `*` meaning the largest in use. Resolving merges
 * the ranges first, so `1:*,1:*,…` costs what one `1:*` does.
 */
import { Cursor } from './cursor.ts';

/** `*` is represented as Infinity until resolved. */
export interface SeqRange {
  readonly from: number;
  readonly to: number;
}

export type SequenceSet = readonly SeqRange[];

export const STAR = Infinity;

function seqNumber(c: Cursor): number {
  if (c.take('*')) return STAR;
  return c.nzNumber();
}

export function parseSequenceSet(c: Cursor): SequenceSet {
  const out: SeqRange[] = [];
  do {
    const a = seqNumber(c);
    const b = c.take(':') ? seqNumber(c) : a;
    out.push({ from: Math.min(a, b), to: Math.max(a, b) });
  } while (c.take(','));
  return out;
}

/**
 * The indexes (0-based, ascending, unique) into `values` (ascending) that the
 * set selects, `*` being `largest`. For sequence numbers `values[i] = i + 1`.
 */
export function selectIndexes(set: SequenceSet, values: readonly number[], largest: number): number[] {
  if (values.length === 0) return [];
  // RFC 3501 §6.4.8: a range with * where * is below the range still covers the largest value.
  const ranges = set
    .map((r) => {
      const from = r.from === STAR ? largest : r.from;
      const to = r.to === STAR ? largest : r.to;
      return { from: Math.min(from, to), to: Math.max(from, to) };
    })
    .sort((x, y) => x.from - y.from);
  const merged: { from: number; to: number }[] = [];
  for (const r of ranges) {
    const last = merged[merged.length - 1];
    if (last && r.from <= last.to + 1) last.to = Math.max(last.to, r.to);
    else merged.push({ ...r });
  }
  const out: number[] = [];
  let i = 0;
  for (const r of merged) {
    i = lowerBound(values, r.from, i);
    while (i < values.length && values[i]! <= r.to) out.push(i++);
  }
  return out;
}

function lowerBound(values: readonly number[], x: number, from: number): number {
  let lo = from;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The compact text of a list of numbers (`1:3,7`), for COPYUID/APPENDUID and SEARCH-style answers. */
export function formatSequence(nums: readonly number[]): string {
  const parts: string[] = [];
  let i = 0;
  while (i < nums.length) {
    let j = i;
    while (j + 1 < nums.length && nums[j + 1] === nums[j]! + 1) j++;
    parts.push(j === i ? String(nums[i]) : `${nums[i]}:${nums[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}
