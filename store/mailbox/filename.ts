/**
 * Maildir file names as Dovecot reads them: `BASE[:2,INFO]` where BASE may
 * carry `,S=<size>` (physical) and `,W=<vsize>` (CRLF size) and INFO is the
 * sorted flag letters: D F P R S T for the system flags (P, "passed", has no
 * IMAP flag and is kept as it is) and a..z for the keywords of
 * `dovecot-keywords`. The base is the message's identity in `dovecot-uidlist`.
 */
import type { Flag } from './types.ts';

export interface ParsedFileName {
  /** Everything before `:` (the identity in dovecot-uidlist). */
  readonly base: string;
  /** The letters after `:2,` ('' when there is no info). */
  readonly info: string;
  readonly size?: number;
  readonly vsize?: number;
}

export function parseFileName(name: string): ParsedFileName {
  const colon = name.indexOf(':');
  const base = colon < 0 ? name : name.slice(0, colon);
  const info = colon >= 0 && name.startsWith(':2,', colon) ? name.slice(colon + 3) : '';
  let size: number | undefined;
  let vsize: number | undefined;
  for (const field of base.split(',').slice(1)) {
    const m = /^([SW])=(\d{1,15})$/.exec(field);
    if (!m) continue;
    if (m[1] === 'S') size = Number(m[2]);
    else vsize = Number(m[2]);
  }
  return { base, info, ...(size !== undefined ? { size } : {}), ...(vsize !== undefined ? { vsize } : {}) };
}

const SYSTEM_BY_LETTER: Readonly<Record<string, Flag>> = { D: '\\Draft', F: '\\Flagged', R: '\\Answered', S: '\\Seen', T: '\\Deleted' };
const LETTER_BY_SYSTEM: ReadonlyMap<string, string> = new Map(Object.entries(SYSTEM_BY_LETTER).map(([l, f]) => [f.toLowerCase(), l]));

/** IMAP flags of an info string; keyword letters without a name in `keywords` are dropped. */
export function flagsOfInfo(info: string, keywords: readonly string[]): Flag[] {
  const flags = new Set<Flag>();
  for (const ch of info) {
    const sys = SYSTEM_BY_LETTER[ch];
    if (sys) flags.add(sys);
    else if (ch >= 'a' && ch <= 'z') {
      const kw = keywords[ch.charCodeAt(0) - 97];
      if (kw !== undefined) flags.add(kw);
    }
  }
  return [...flags].sort();
}

/** The canonical system flag (`\seen` → `\Seen`), or undefined for a keyword / unknown system flag. */
export function canonicalSystemFlag(flag: Flag): Flag | undefined {
  const l = LETTER_BY_SYSTEM.get(flag.toLowerCase());
  return l === undefined ? undefined : SYSTEM_BY_LETTER[l];
}

/**
 * The info string for `flags`, keeping the letters of `oldInfo` that have no
 * IMAP meaning (P, unknown keyword letters). `keywordIndex` maps a keyword to
 * its letter index; keywords without one are not representable and skipped.
 */
export function infoOfFlags(flags: readonly Flag[], keywordIndex: (kw: string) => number | undefined, oldInfo = ''): string {
  const letters = new Set<string>();
  for (const ch of oldInfo) {
    if (ch === 'P' || (ch >= 'A' && ch <= 'Z' && !(ch in SYSTEM_BY_LETTER))) letters.add(ch);
  }
  for (const f of flags) {
    const l = LETTER_BY_SYSTEM.get(f.toLowerCase());
    if (l !== undefined) {
      letters.add(l);
      continue;
    }
    if (f.startsWith('\\')) continue;
    const idx = keywordIndex(f);
    if (idx !== undefined && idx < 26) letters.add(String.fromCharCode(97 + idx));
  }
  return [...letters].sort().join('');
}

/** `BASE:2,INFO` for cur/. */
export function curName(base: string, info: string): string {
  return `${base}:2,${info}`;
}
