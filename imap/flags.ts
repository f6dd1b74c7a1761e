/**
 * Flags a client may store (RFC 3501 §2.3.2): the five system flags (any
 * case, returned canonical) and keywords (atoms). `\Recent` is the server's
 * alone; other backslash flags are refused.
 */
const SYSTEM = new Map(['\\Seen', '\\Answered', '\\Flagged', '\\Deleted', '\\Draft'].map((f) => [f.toLowerCase(), f]));
const MAX_KEYWORD = 128;

export type FlagsResult = { readonly ok: true; readonly flags: string[] } | { readonly ok: false; readonly text: string };

export function storableFlags(input: readonly string[]): FlagsResult {
  const out = new Set<string>();
  for (const f of input) {
    if (f.startsWith('\\')) {
      const canonical = SYSTEM.get(f.toLowerCase());
      if (canonical) out.add(canonical);
      else if (f.toLowerCase() !== '\\recent') return { ok: false, text: `Invalid flag ${f.slice(0, 30)}` };
      continue;
    }
    if (f.length > MAX_KEYWORD) return { ok: false, text: 'Keyword too long' };
    out.add(f);
  }
  return { ok: true, flags: [...out] };
}
