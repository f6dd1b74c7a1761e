/**
 * `dovecot-keywords`: one `<index> <name>` line per keyword; index 0..25 is
 * the info letter a..z of the Maildir file names. Written whole into the
 * dotlock file and renamed over the target (Dovecot's file_dotlock_replace).
 */
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { withDotlock } from './dotlock.ts';

export const KEYWORDS_FILE = 'dovecot-keywords';
export const MAX_KEYWORDS = 26;

/** Index → name (sparse indexes are holes). */
export function parseKeywords(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+) (\S.*)$/.exec(line);
    if (!m) continue;
    const idx = Number(m[1]);
    if (idx < MAX_KEYWORDS) out[idx] = m[2]!;
  }
  return out;
}

export function formatKeywords(keywords: readonly (string | undefined)[]): string {
  let s = '';
  keywords.forEach((k, i) => {
    if (k !== undefined) s += `${i} ${k}\n`;
  });
  return s;
}

export async function readKeywords(dir: string): Promise<string[]> {
  try {
    return parseKeywords(await fsp.readFile(join(dir, KEYWORDS_FILE), 'utf8'));
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return [];
    throw err;
  }
}

/**
 * Gives each of `wanted` an index (re-reading the file under its lock, so
 * another writer's additions are kept); returns the resulting table.
 * Keywords beyond 26 get none.
 */
export async function addKeywords(dir: string, wanted: readonly string[]): Promise<string[]> {
  const target = join(dir, KEYWORDS_FILE);
  return withDotlock(target, async (lock) => {
    const table = await readKeywords(dir);
    let changed = false;
    for (const kw of wanted) {
      if (table.some((k) => k !== undefined && k.toLowerCase() === kw.toLowerCase())) continue;
      let idx = 0;
      while (idx < MAX_KEYWORDS && table[idx] !== undefined) idx++;
      if (idx >= MAX_KEYWORDS) continue;
      table[idx] = kw;
      changed = true;
    }
    if (changed) {
      const fh = await fsp.open(lock.path, 'w');
      try {
        await fh.writeFile(formatKeywords(table));
        await fh.datasync();
      } finally {
        await fh.close();
      }
      await lock.replace();
    }
    return table;
  }, { staleMs: 30_000 });
}
