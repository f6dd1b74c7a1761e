/**
 * The mailbox store's contract: what the IMAP server (and the CLI) may ask of
 * a user's Maildir++ tree. IMAP-specific views (sequence numbers, when to
 * announce EXISTS/EXPUNGE, response formatting) are the IMAP layer's; this
 * layer owns files, UIDs, flags, the index cache and change notification.
 *
 * Names are IMAP names in UTF-8 with `/` as the hierarchy delimiter and the
 * literal `INBOX` (any case) for the Maildir root. Modified UTF-7 and the
 * Maildir++ `.A.B` form exist only on disk.
 *
 * Bytes: every offset and size is of the message as IMAP serves it, i.e. with
 * CRLF line endings (a file stored with bare LF, written by another program,
 * is served CRLF-normalised, and its sizes count the CRs).
 */
import type { Readable } from 'node:stream';

/** `\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft` or a keyword (`$Junk`, `work`). `\Recent` is never stored. */
export type Flag = string;

export interface MessageRecord {
  readonly uid: number;
  /** Sorted, no duplicates; system flags with their backslash. */
  readonly flags: readonly Flag[];
  readonly internalDate: Date;
  /** RFC822.SIZE: octets with CRLF line endings. */
  readonly size: number;
  /** Increases with every change of this message (CONDSTORE-ready); >= 1. */
  readonly modseq: number;
}

export interface MailboxInfo {
  readonly name: string;
  /** `\Drafts`, `\Sent`, `\Junk`, `\Trash`, `\Archive`, … from the config or the creator. */
  readonly specialUse?: string;
  readonly subscribed: boolean;
  readonly hasChildren: boolean;
  /** A level that exists only because a child does (`A` of `A/B` with no `.A`). */
  readonly noSelect: boolean;
}

export interface MailboxStatus {
  readonly messages: number;
  /** Messages delivered into `new/` not yet seen by any session (RFC 3501 \Recent, best effort). */
  readonly recent: number;
  readonly unseen: number;
  readonly uidNext: number;
  readonly uidValidity: number;
  /** Sum of RFC822.SIZE. */
  readonly size: number;
  readonly highestModseq: number;
}

/** One MIME part, located in the CRLF form of the message. */
export interface MimePart {
  /** Byte offsets: header block [headerStart, bodyStart) includes the blank line; body [bodyStart, bodyEnd). */
  readonly headerStart: number;
  readonly bodyStart: number;
  readonly bodyEnd: number;
  /** Lowercased type/subtype; defaults applied (text/plain; charset=us-ascii, or message/rfc822 in multipart/digest). */
  readonly type: string;
  readonly subtype: string;
  /** Parameter names lowercased, values decoded (RFC 2231) as UTF-8 strings. */
  readonly params: Readonly<Record<string, string>>;
  readonly id?: string;
  readonly description?: string;
  /** Lowercased Content-Transfer-Encoding, default `7bit`. */
  readonly encoding: string;
  readonly md5?: string;
  readonly disposition?: { readonly type: string; readonly params: Readonly<Record<string, string>> };
  readonly language?: readonly string[];
  readonly location?: string;
  /** Body octets (bodyEnd - bodyStart). */
  readonly size: number;
  /** Body lines, for text/* and message/rfc822. */
  readonly lines: number;
  /** multipart/*: its parts (at least one for a well-formed message; a part with none is served as an empty text/plain). */
  readonly children?: readonly MimePart[];
  /** message/rfc822 (and global): the enclosed message. */
  readonly message?: MessageSummary;
}

/** The raw (undecoded, unfolded) values of the headers ENVELOPE needs, first occurrence each. */
export interface EnvelopeHeaders {
  readonly date?: string;
  readonly subject?: string;
  readonly from?: string;
  readonly sender?: string;
  readonly replyTo?: string;
  readonly to?: string;
  readonly cc?: string;
  readonly bcc?: string;
  readonly inReplyTo?: string;
  readonly messageId?: string;
}

/** Parsed once (at delivery or first access) and cached in the index. */
export interface MessageSummary {
  readonly envelope: EnvelopeHeaders;
  readonly root: MimePart;
}

/** What changed in a mailbox since the caller's last `sync()`, in UID terms. */
export interface MailboxChanges {
  /** New messages, ascending UID. */
  readonly added: readonly MessageRecord[];
  /** UIDs gone (expunged by a session, or files removed by another program). */
  readonly expunged: readonly number[];
  /** Messages whose flags changed (the new record). */
  readonly flagsChanged: readonly MessageRecord[];
}

export type FlagOperation = 'add' | 'remove' | 'replace';

/**
 * A mailbox opened by one session. Several sessions (and deliveries) share the
 * underlying mailbox; each view sees changes only through `sync()`, so the
 * IMAP layer decides when to announce them.
 */
export interface MailboxView {
  readonly name: string;
  readonly uidValidity: number;
  readonly readOnly: boolean;
  /** The messages as of this view's last sync, ascending UID (sequence number = index + 1). */
  readonly messages: readonly MessageRecord[];
  /** UIDs that were \Recent for this view when it was opened or synced (RFC 3501: one session gets them). */
  readonly recentUids: ReadonlySet<number>;
  readonly uidNext: number;
  readonly highestModseq: number;
  /** Re-reads the directory (other programs) and collects changes from other views; updates `messages`. */
  sync(): Promise<MailboxChanges>;
  /** Called (no arguments, coalesced) whenever something may have changed: a delivery in this process, another view's write. */
  onChange(listener: () => void): () => void;
  /**
   * Applies to the given UIDs that still exist; returns their new records (the caller's own change is not echoed by sync).
   * Refused on a read-only view (NoPermissionError). `\Recent` and unknown system flags are ignored; keywords must be
   * IMAP atoms (others are ignored) and at most 26 distinct keywords per mailbox can be stored (Maildir letters a..z):
   * a change that would need more is refused whole with KeywordLimitError.
   */
  setFlags(uids: readonly number[], op: FlagOperation, flags: readonly Flag[]): Promise<readonly MessageRecord[]>;
  /** Removes the given UIDs if they carry \Deleted (all \Deleted ones this view knows without `uids`); returns the UIDs removed, ascending; they leave `messages` at once and are not reported by sync. */
  expunge(uids?: readonly number[]): Promise<readonly number[]>;
  /** The message bytes (CRLF), the whole or [start, end). Rejects with MessageGoneError if the file vanished. */
  read(uid: number, start?: number, end?: number): Promise<Readable>;
  /** The same as a Buffer, for small ranges (headers, a part); bounded by the message size. */
  readBuffer(uid: number, start?: number, end?: number): Promise<Buffer>;
  summary(uid: number): Promise<MessageSummary>;
  close(): Promise<void>;
}

export interface AppendInput {
  /** The message as the client sent it (CRLF expected; stored as is). */
  readonly content: Buffer;
  readonly flags?: readonly Flag[];
  readonly internalDate?: Date;
}

/** One user's mail: the Maildir++ tree at one root. */
export interface UserMailStore {
  readonly root: string;
  list(): Promise<readonly MailboxInfo[]>;
  /** The subscribed names, whether they exist or not (LSUB, LIST (SUBSCRIBED)). */
  subscriptions(): Promise<readonly string[]>;
  /** Creates the mailbox (and missing parents); MailboxExistsError if it exists. */
  create(name: string, opts?: { readonly specialUse?: string }): Promise<void>;
  /** MailboxNotFoundError; NoPermissionError for INBOX; children are kept (RFC 3501: the name stays as \Noselect). */
  delete(name: string): Promise<void>;
  /** Renames with its children; renaming INBOX moves its messages into the new mailbox and leaves INBOX empty (RFC 3501 §6.3.5). */
  rename(from: string, to: string): Promise<void>;
  subscribe(name: string): Promise<void>;
  unsubscribe(name: string): Promise<void>;
  status(name: string): Promise<MailboxStatus>;
  /** MailboxNotFoundError if it does not exist (or is \Noselect). */
  open(name: string, opts: { readonly readOnly: boolean }): Promise<MailboxView>;
  append(name: string, message: AppendInput): Promise<{ readonly uidValidity: number; readonly uid: number }>;
  /**
   * Copies (COPY) or moves (MOVE: copy then expunge from the source) existing UIDs of `from`; pairs are [source UID, new UID].
   * On MOVE the moved UIDs leave `from.messages` at once, as with `from.expunge()`, and `from.sync()` does not report them
   * again: the caller announces EXPUNGE for the pairs' source UIDs. UIDs `from` does not know (or already gone) are skipped.
   */
  copy(from: MailboxView, uids: readonly number[], to: string, opts?: { readonly move?: boolean }): Promise<{ readonly uidValidity: number; readonly pairs: readonly (readonly [number, number])[] }>;
  /** Creates the configured special mailboxes missing so far (first login), subscribing when asked. */
  ensureSpecialMailboxes(mailboxes: readonly { readonly name: string; readonly specialUse?: string; readonly auto: 'no' | 'create' | 'subscribe' }[]): Promise<void>;
}

/** The process-wide entry point: one per appliance, shared by sessions and deliveries. */
export interface MailStoreService {
  /** The store of the Maildir at `root` (absolute path; created on first use). */
  forRoot(root: string): UserMailStore;
  /** Tells open views that mail was just delivered into `root` (folder: IMAP name, default INBOX). In-process, no polling. */
  delivered(root: string, folder?: string): void;
  close(): Promise<void>;
}
