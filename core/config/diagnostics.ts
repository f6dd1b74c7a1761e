/**
 * Source positions and the messages that point at them. Config errors are
 * printed as `PATH:LINE:COL: message`, the form editors and humans jump to.
 */

export interface Pos {
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

export interface Diagnostic {
  readonly pos: Pos;
  readonly message: string;
  /** Warnings are printed but do not fail `check`; default: error. */
  readonly severity?: 'error' | 'warning';
}

export function formatDiagnostic(d: Diagnostic): string {
  const prefix = d.severity === 'warning' ? 'warning: ' : '';
  return `${d.pos.file}:${d.pos.line}:${d.pos.col}: ${prefix}${d.message}`;
}

export function comparePos(a: Pos, b: Pos): number {
  if (a.file !== b.file) return 0;
  return a.line - b.line || a.col - b.col;
}

/** Edit distance with adjacent transpositions (optimal string alignment), for keywords. */
export function editDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = d;
    }
  }
  return rows[a.length]![b.length]!;
}

/** `did you mean "x"?` for a near miss among the candidates, or ''. */
export function didYouMean(word: string, candidates: readonly string[]): string {
  let best: string | null = null;
  let bestDistance = Infinity;
  const lower = word.toLowerCase();
  for (const c of candidates) {
    const d = editDistance(lower, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  const limit = Math.max(1, Math.min(3, Math.floor(word.length / 3)));
  return best !== null && bestDistance <= limit ? `; did you mean "${best}"?` : '';
}
