/**
 * The mailbox store's failures, each mapping to one IMAP response code
 * (RFC 5530) in the IMAP layer: NONEXISTENT, ALREADYEXISTS, CANNOT,
 * NOPERM, EXPUNGEISSUED, LIMIT, SERVERBUG/UNAVAILABLE for the rest.
 */
export class MailboxNotFoundError extends Error {
  readonly mailbox: string;
  constructor(mailbox: string) {
    super(`no such mailbox: ${mailbox}`);
    this.mailbox = mailbox;
    this.name = 'MailboxNotFoundError';
  }
}

export class MailboxExistsError extends Error {
  readonly mailbox: string;
  constructor(mailbox: string) {
    super(`mailbox already exists: ${mailbox}`);
    this.mailbox = mailbox;
    this.name = 'MailboxExistsError';
  }
}

/** A name the store cannot hold: empty level, `.`, `..`, NUL, control characters, too long. */
export class InvalidMailboxNameError extends Error {
  readonly mailbox: string;
  constructor(mailbox: string, reason: string) {
    super(`invalid mailbox name ${JSON.stringify(mailbox)}: ${reason}`);
    this.mailbox = mailbox;
    this.name = 'InvalidMailboxNameError';
  }
}

/** An operation the store refuses by rule (DELETE INBOX, writing a read-only view). */
export class NoPermissionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NoPermissionError';
  }
}

/** The message was expunged (or its file removed by another program) since the view last synced. */
export class MessageGoneError extends Error {
  readonly uid: number;
  constructor(uid: number) {
    super(`message UID ${uid} is gone`);
    this.uid = uid;
    this.name = 'MessageGoneError';
  }
}

/**
 * A keyword the mailbox cannot store: Maildir file names hold at most 26
 * keywords per mailbox (letters a..z, Dovecot's `dovecot-keywords`). Refused
 * rather than dropped, so a client never believes a flag was kept.
 */
export class KeywordLimitError extends Error {
  readonly keywords: readonly string[];
  constructor(keywords: readonly string[], max: number) {
    super(`this mailbox already has ${max} keywords, the most it can store; cannot add ${keywords.join(' ')}`);
    this.keywords = keywords;
    this.name = 'KeywordLimitError';
  }
}
