/**
 * Which mailbox names a client may use (RFC 3501 §5.1): levels separated by
 * `/`, none empty, `.` or `..`, no control characters (NUL included) and no
 * LIST wildcards. The store checks again; refusing here gives the client a
 * precise NO [CANNOT] before anything touches the disk.
 */

export const DELIMITER = '/';
const MAX_NAME_CHARS = 512;
const MAX_LEVELS = 32;

export function mailboxNameProblem(name: string): string | null {
  if (name === '') return 'empty mailbox name';
  if (name.length > MAX_NAME_CHARS) return 'mailbox name too long';
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name)) return 'control characters in mailbox name';
  if (/[*%]/.test(name)) return 'wildcards in mailbox name';
  const levels = name.split(DELIMITER);
  if (levels.length > MAX_LEVELS) return 'mailbox hierarchy too deep';
  for (const l of levels) {
    if (l === '') return 'empty level in mailbox name';
    if (l === '.' || l === '..') return 'relative level in mailbox name';
    if (l.startsWith('.')) return 'level starting with a dot';
  }
  return null;
}
