/**
 * The typed configuration: what the parser builds from the text, once. Every
 * object keeps its source position so later checks and runtime errors can
 * point at the line that caused them. Durations are milliseconds, sizes bytes.
 */
import type { Pos } from './diagnostics.ts';

/** A use of a table: `<name>`, or an anonymous inline table (`{ a, b }` or one literal). */
export interface TableRef {
  readonly name: string;
  readonly pos: Pos;
}

export type TableSource =
  | { readonly type: 'inline'; readonly form: 'list'; readonly values: readonly string[] }
  | { readonly type: 'inline'; readonly form: 'map'; readonly entries: readonly (readonly [string, string])[] }
  | { readonly type: 'file'; readonly path: string }
  | { readonly type: 'db' }
  | { readonly type: 'ldap'; readonly path: string };

export interface TableDecl {
  readonly name: string;
  readonly source: TableSource;
  /** Generated for `{ … }` or a literal written in place of `<name>`. */
  readonly anonymous: boolean;
  readonly pos: Pos;
}

export interface PkiDecl {
  readonly name: string;
  readonly cert?: string;
  readonly key?: string;
  readonly ca?: string;
  readonly dhe?: string;
  readonly acme?: { readonly altNames: readonly string[] };
  readonly selfSigned: boolean;
  readonly pos: Pos;
}

export type ListenAddress =
  | { readonly kind: 'ip'; readonly value: string }
  | { readonly kind: 'interface'; readonly name: string }
  | { readonly kind: 'egress' }
  | { readonly kind: 'all' }
  | { readonly kind: 'localhost' };

export type TlsMode = 'none' | 'tls' | 'tls-require' | 'smtps';

export interface ListenerDecl {
  readonly protocol: 'smtp' | 'imap';
  readonly address: ListenAddress;
  readonly family?: 'inet4' | 'inet6';
  readonly port: number;
  readonly tls: TlsMode;
  /** `tls-require verify`: OpenSMTPD's client-certificate check; parsed, not enforced (`check` warns). */
  readonly verify: boolean;
  readonly pki?: string;
  readonly auth?: { readonly table: TableRef; readonly optional: boolean };
  readonly senders?: { readonly table: TableRef; readonly masquerade: boolean };
  readonly hostname?: string;
  readonly tag?: string;
  readonly maskSrc: boolean;
  readonly receivedAuth: boolean;
  readonly noDsn: boolean;
  readonly pos: Pos;
  readonly pkiPos?: Pos;
}

export interface MaildirAction {
  readonly type: 'maildir';
  readonly path?: string;
  readonly junk: boolean;
  readonly alias?: TableRef;
  readonly virtual?: TableRef;
  readonly userbase?: TableRef;
}

export type RelayScheme = 'smtp' | 'smtp+tls' | 'smtps' | 'smtp+notls';

export interface RelayHost {
  readonly scheme: RelayScheme;
  readonly label?: string;
  readonly host: string;
  readonly port: number;
}

export interface RelayAction {
  readonly type: 'relay';
  readonly host?: RelayHost;
  readonly auth?: TableRef;
  readonly tls?: { readonly verify: boolean };
  readonly helo?: string;
  readonly backup: boolean;
  readonly backupMx?: string;
  readonly pki?: string;
  readonly mailFrom?: string;
}

export interface ForwardOnlyAction {
  readonly type: 'forward-only';
  readonly alias?: TableRef;
  readonly virtual?: TableRef;
}

export type ActionMethod = MaildirAction | RelayAction | ForwardOnlyAction;

export interface ActionDecl {
  readonly name: string;
  readonly method: ActionMethod;
  readonly pos: Pos;
  /** Made by translating a legacy `accept … deliver to …` line. */
  readonly legacy: boolean;
}

export type FromCondition =
  | { readonly kind: 'any' }
  | { readonly kind: 'local' }
  | { readonly kind: 'socket' }
  | { readonly kind: 'auth'; readonly table?: TableRef }
  | { readonly kind: 'src'; readonly table: TableRef }
  | { readonly kind: 'rdns'; readonly table?: TableRef }
  | { readonly kind: 'mail-from'; readonly table: TableRef };

export type ForCondition =
  | { readonly kind: 'any' }
  | { readonly kind: 'local' }
  | { readonly kind: 'domain'; readonly table: TableRef }
  | { readonly kind: 'rcpt-to'; readonly table: TableRef };

export type ConditionBody =
  | { readonly type: 'from'; readonly from: FromCondition }
  | { readonly type: 'for'; readonly for: ForCondition }
  | { readonly type: 'tag'; readonly tag: string }
  | { readonly type: 'auth'; readonly table?: TableRef }
  | { readonly type: 'tls' }
  | { readonly type: 'helo'; readonly table: TableRef }
  | { readonly type: 'mail-from'; readonly table: TableRef }
  | { readonly type: 'rcpt-to'; readonly table: TableRef };

export type Condition = ConditionBody & { readonly negate: boolean; readonly pos: Pos };

export type RuleDecision =
  | { readonly type: 'action'; readonly action: string; readonly pos: Pos }
  | { readonly type: 'reject' };

export interface MatchRule {
  /** `from` and `for` are always present (defaults: `from local`, `for local`). */
  readonly conditions: readonly Condition[];
  readonly decision: RuleDecision;
  readonly pos: Pos;
  /** The legacy line this rule was translated from, if any. */
  readonly legacyText?: string;
}

export interface ImapMailbox {
  readonly name: string;
  readonly specialUse?: string;
  readonly auto: 'no' | 'create' | 'subscribe';
  readonly pos: Pos;
}

export interface DkimSign {
  readonly domains: TableRef;
  readonly selector: string;
  readonly keyPath?: string;
  readonly algorithm: 'rsa-sha256' | 'ed25519-sha256';
  readonly pos: Pos;
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
  readonly pos: Pos;
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export interface SmtpLimits {
  readonly maxMessageSize: number;
  readonly maxRcpt: number;
  readonly maxMails: number;
  readonly connectionsPerIp: number;
  readonly idleTimeout: number;
}

export interface ImapLimits {
  readonly connectionsPerUserIp: number;
  readonly maxLiteralSize: number;
  readonly idleTimeout: number;
}

export interface Config {
  /** The main config file (absolute). */
  readonly path: string;
  /** Every file read: the main one and its includes. */
  readonly files: readonly string[];
  readonly hostname: string;
  readonly dataDir: string;
  readonly user: string;
  readonly pki: ReadonlyMap<string, PkiDecl>;
  readonly tables: ReadonlyMap<string, TableDecl>;
  readonly listeners: readonly ListenerDecl[];
  readonly actions: ReadonlyMap<string, ActionDecl>;
  readonly rules: readonly MatchRule[];
  readonly imap: {
    readonly listeners: readonly ListenerDecl[];
    readonly mailboxes: readonly ImapMailbox[];
    readonly limits: ImapLimits;
  };
  readonly acme: {
    readonly contact?: string;
    readonly directory: string;
    readonly challenge?: HostPort;
    readonly ca?: string;
  };
  readonly queue: {
    readonly ttl: number;
    /** Outbound SMTP connections open at once, in all. */
    readonly concurrency: number;
    /** … to one destination (a domain's MX hosts, or a relay host). */
    readonly destinationConcurrency: number;
  };
  readonly bounce: { readonly warnIntervals: readonly number[] };
  readonly smtp: {
    readonly subAddrDelim: string;
    readonly limits: SmtpLimits;
    /** Verify SPF/DKIM/DMARC of unauthenticated mail and prepend Authentication-Results (default yes). */
    readonly authenticationResults: boolean;
  };
  readonly dkim: readonly DkimSign[];
  readonly resolver?: HostPort;
  readonly control: { readonly socket: string };
  readonly metrics?: HostPort;
  readonly log: { readonly level: LogLevel };
  readonly auth: { readonly failureDelay: number; readonly maxFailures: number };
}

export const LETS_ENCRYPT_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';
