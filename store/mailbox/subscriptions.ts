/**
 * The `subscriptions` file in Dovecot's v2 format: a `V\t2\n\n` header, then
 * one name per line with its hierarchy levels separated by TAB and each level
 * in modified UTF-7 (Dovecot's storage name) and tab-escaped (\001 → \0011,
 * TAB → \001t, CR → \001r, LF → \001n). Version 1
 * files (plain names, one a line) are read too. Written whole into
 * `subscriptions.lock` and renamed over the file (Dovecot's dotlock replace).
 */
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { encodeMailboxName } from '../maildir.ts';
import { withDotlock } from './dotlock.ts';
import { decodeModifiedUtf7 } from './names.ts';

export const SUBSCRIPTIONS = 'subscriptions';
const V2 = 'V\t2\n\n';

const escapeLevel = (s: string): string => s.replace(/[\u0001\t\r\n]/g, (c) => ({ '\u0001': '\u00011', '\t': '\u0001t', '\r': '\u0001r', '\n': '\u0001n' })[c]!);
const unescapeLevel = (s: string): string => s.replace(/\u0001([1trn])/g, (_m, c: string) => ({ '1': '\u0001', t: '\t', r: '\r', n: '\n' })[c]!);

/** A level as stored (modified UTF-7); kept as it is if it does not decode. */
const fromStorage = (level: string): string => decodeModifiedUtf7(level) ?? level;

export function parseSubscriptions(text: string): string[] {
  if (text.startsWith(V2)) {
    return text.slice(V2.length).split('\n').filter((l) => l !== '').map((l) => l.split('\t').map((x) => fromStorage(unescapeLevel(x))).join('/'));
  }
  return text.split('\n').filter((l) => l !== '').map((l) => l.split('/').map(fromStorage).join('/'));
}

export function formatSubscriptions(names: readonly string[]): string {
  return V2 + names.map((n) => `${n.split('/').map((x) => escapeLevel(encodeMailboxName(x))).join('\t')}\n`).join('');
}

export async function readSubscriptions(root: string): Promise<string[]> {
  try {
    return parseSubscriptions(await fsp.readFile(join(root, SUBSCRIPTIONS), 'utf8'));
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return [];
    throw err;
  }
}

/** Applies `change` to the list under the lock; writes only if it changed. */
export async function updateSubscriptions(root: string, change: (names: string[]) => string[]): Promise<void> {
  const target = join(root, SUBSCRIPTIONS);
  await withDotlock(target, async (lock) => {
    const before = await readSubscriptions(root);
    const after = change([...before]);
    if (after.join('\n') === before.join('\n')) return;
    const fh = await fsp.open(lock.path, 'w');
    try {
      await fh.writeFile(formatSubscriptions(after));
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await lock.replace();
  }, { staleMs: 30_000 });
}
