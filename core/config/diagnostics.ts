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

/** Levenshtein distance, small strings only (keywords). */
export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
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
