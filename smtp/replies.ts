/**
 * Errors → SMTP replies, in one place. smtp-server sends `responseCode` and
 * the message; with ENHANCEDSTATUSCODES the enhanced code leads the text.
 * Clients get the catalogue's generic text; details stay in the log.
 */
import { AppError, isTemporary } from '../core/errors.ts';

export interface SmtpReplyError extends Error {
  responseCode: number;
}

export function reply(code: number, enhanced: string, text: string): SmtpReplyError {
  const err = new Error(`${enhanced} ${text}`) as SmtpReplyError;
  err.responseCode = code;
  return err;
}

/** The reply for a failure: catalogued errors by their spec, anything else 451 4.3.0. */
export function replyFor(err: unknown): SmtpReplyError {
  if (err instanceof AppError) return reply(err.spec.smtp, err.spec.enhanced, err.spec.text);
  return isTemporary(err) ? reply(451, '4.3.0', 'Temporary failure, try again later') : reply(554, '5.3.0', 'Transaction failed');
}

export const replies = {
  tooManyConnections: () => reply(421, '4.7.0', 'Too many connections from your address, try again later'),
  tlsRequired: () => reply(530, '5.7.0', 'Must issue a STARTTLS command first'),
  authRequired: () => reply(530, '5.7.0', 'Authentication required'),
  authInvalid: () => reply(535, '5.7.8', 'Authentication credentials invalid'),
  authTempfail: () => reply(454, '4.7.0', 'Temporary authentication failure, try again later'),
  authLockedOut: () => reply(454, '4.7.0', 'Too many authentication failures, try again later'),
  encryptionRequired: () => reply(538, '5.7.11', 'Encryption required for requested authentication mechanism'),
  badSender: (why: string) => reply(501, '5.1.7', `Bad sender address syntax: ${why}`),
  badRecipient: (why: string) => reply(501, '5.1.3', `Bad recipient address syntax: ${why}`),
  senderNotOwned: () => reply(553, '5.7.1', 'Sender address not owned by authenticated user'),
  tooManyRecipients: () => reply(452, '4.5.3', 'Too many recipients'),
  tooManyMessages: () => reply(421, '4.7.0', 'Too many messages in this session, reconnect'),
  messageTooBig: (limit: number) => reply(552, '5.3.4', `Message size exceeds fixed limit of ${limit} bytes`),
  shuttingDown: () => reply(421, '4.3.2', 'Service shutting down, try again later'),
  storageTempfail: () => reply(451, '4.3.0', 'Temporary storage failure, try again later'),
} as const;
