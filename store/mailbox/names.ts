/**
 * IMAP mailbox names ↔ Maildir++ directories (SPEC §store). IMAP names are
 * UTF-8 with `/` as the delimiter and `INBOX` (any case) for the root; on disk
 * a folder `A/B` is `ROOT/.A.B` with each level in modified UTF-7 (RFC 3501
 * §5.1.3), as Dovecot's `LAYOUT=maildir++` lays it out. Every name is parsed
 * here before it reaches the file system, so no name can escape the root.
 */
import { join } from 'node:path';
import { encodeMailboxName } from '../maildir.ts';
import { InvalidMailboxNameError } from './errors.ts';

export const DELIMITER = '/';
/** Longest IMAP name we accept (characters) and longest directory name on disk (bytes, NAME_MAX). */
const MAX_NAME_CHARS = 1000;
const MAX_DIR_BYTES = 255;

/** A parsed mailbox name: `INBOX` or a folder path of one or more levels. */
export interface MailboxName {
  /** The canonical IMAP name (`INBOX` upper-cased as the first level). */
  readonly name: string;
  /** Levels of a folder; empty for INBOX itself. */
  readonly levels: readonly string[];
  readonly isInbox: boolean;
}

export function parseMailboxName(raw: string): MailboxName {
  if (raw.length === 0) throw new InvalidMailboxNameError(raw, 'empty name');
  if (raw.length > MAX_NAME_CHARS) throw new InvalidMailboxNameError(raw, 'name too long');
  const levels = raw.split(DELIMITER);
  if (levels[0]!.toUpperCase() === 'INBOX') levels[0] = 'INBOX';
  if (levels.length === 1 && levels[0] === 'INBOX') return { name: 'INBOX', levels: [], isInbox: true };
  for (const level of levels) {
    if (level === '') throw new InvalidMailboxNameError(raw, 'empty hierarchy level');
    if (level.includes('.')) throw new InvalidMailboxNameError(raw, '"." is the on-disk separator of Maildir++');
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(level)) throw new InvalidMailboxNameError(raw, 'control character');
    if (/[*%]/.test(level)) throw new InvalidMailboxNameError(raw, 'wildcard character');
    if (!isWellFormed(level)) throw new InvalidMailboxNameError(raw, 'invalid Unicode');
  }
  const dir = folderDirName(levels);
  if (Buffer.byteLength(dir) > MAX_DIR_BYTES) throw new InvalidMailboxNameError(raw, 'name too long for the file system');
  return { name: levels.join(DELIMITER), levels, isInbox: false };
}

function isWellFormed(s: string): boolean {
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);
}

/** `.A.B` for levels [A, B]. */
export function folderDirName(levels: readonly string[]): string {
  return `.${levels.map(encodeMailboxName).join('.')}`;
}

/** The directory of a parsed name under `root` (the root itself for INBOX). */
export function mailboxDir(root: string, name: MailboxName): string {
  return name.isInbox ? root : join(root, folderDirName(name.levels));
}

/**
 * The IMAP name of a Maildir++ directory entry (`.A.B` → `A/B`), or undefined
 * for an entry that is not a folder we can name (`..x`, invalid UTF-7, …).
 */
export function nameOfFolderDir(entry: string): string | undefined {
  if (!entry.startsWith('.') || entry.length < 2) return undefined;
  const parts = entry.slice(1).split('.');
  const levels: string[] = [];
  for (const p of parts) {
    if (p === '') return undefined;
    const level = decodeModifiedUtf7(p);
    if (level === undefined || level === '' || level.includes('/')) return undefined;
    levels.push(level);
  }
  if (levels[0]!.toUpperCase() === 'INBOX') levels[0] = 'INBOX';
  return levels.join(DELIMITER);
}

/** Decodes modified UTF-7 (RFC 3501 §5.1.3); undefined if it is not valid (non-canonical forms included). */
export function decodeModifiedUtf7(s: string): string | undefined {
  let out = '';
  for (let i = 0; i < s.length; ) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c > 0x7e) return undefined;
    if (c !== 0x26) {
      out += s[i];
      i++;
      continue;
    }
    const end = s.indexOf('-', i + 1);
    if (end < 0) return undefined;
    const b64 = s.slice(i + 1, end);
    i = end + 1;
    if (b64 === '') {
      out += '&';
      continue;
    }
    if (!/^[A-Za-z0-9+,]+$/.test(b64)) return undefined;
    const bytes = Buffer.from(b64.replace(/,/g, '/'), 'base64');
    if (bytes.length < 2 || bytes.length % 2 !== 0) return undefined;
    let run = '';
    for (let j = 0; j < bytes.length; j += 2) run += String.fromCharCode(bytes.readUInt16BE(j));
    if (!isWellFormed(run)) return undefined;
    // Printable ASCII must not be encoded (canonical form), so the encoding round-trips.
    if (/[\u0020-\u007e]/.test(run)) return undefined;
    out += run;
  }
  return out;
}

/** Encodes a UTF-8 name into modified UTF-7 (for the IMAP layer's wire form). */
export function encodeModifiedUtf7(name: string): string {
  return encodeMailboxName(name);
}
