/**
 * The one place where failures become IMAP responses (RFC 5530 codes):
 * the store's typed errors map to NONEXISTENT, ALREADYEXISTS, CANNOT, NOPERM,
 * EXPUNGEISSUED, LIMIT; anything else is logged once and answered as temporary
 * (UNAVAILABLE), never with its internal text.
 */
import type { Logger } from '../core/log.ts';
import { InvalidMailboxNameError, KeywordLimitError, MailboxExistsError, MailboxNotFoundError, MessageGoneError, NoPermissionError } from '../store/mailbox/errors.ts';
import type { Tagged } from './session.ts';

export function taggedForError(err: unknown, log: Logger): Tagged {
  if (err instanceof MailboxNotFoundError) return { status: 'NO', code: 'NONEXISTENT', text: 'No such mailbox' };
  if (err instanceof MailboxExistsError) return { status: 'NO', code: 'ALREADYEXISTS', text: 'Mailbox already exists' };
  if (err instanceof InvalidMailboxNameError) return { status: 'NO', code: 'CANNOT', text: 'Invalid mailbox name' };
  if (err instanceof NoPermissionError) return { status: 'NO', code: 'NOPERM', text: err.message };
  if (err instanceof MessageGoneError) return { status: 'NO', code: 'EXPUNGEISSUED', text: 'Some messages were expunged' };
  if (err instanceof KeywordLimitError) return { status: 'NO', code: 'LIMIT', text: 'Too many keywords in this mailbox (26 at most); nothing was changed' };
  log.error({ err: err instanceof Error ? err.message : String(err), stack: err instanceof Error ? err.stack : undefined }, 'imap command failed');
  return { status: 'NO', code: 'UNAVAILABLE', text: 'Temporary server failure, try again later' };
}
