/**
 * The table interface (OpenSMTPD's table services). Every lookup answers one
 * of three things: found, not found, or temporarily unavailable. The third
 * travels all the way to the protocol reply (SMTP 4xx, IMAP NO [UNAVAILABLE]),
 * never becoming "user unknown" — remote backends (LDAP) fail, and mail must
 * not bounce because a directory was restarting.
 */

export const lookupKinds = [
  'domain',
  'alias',
  'credentials',
  'userinfo',
  'mailaddr',
  'mailaddrmap',
  'netaddr',
  'source',
] as const;
export type LookupKind = (typeof lookupKinds)[number];

export interface Credentials {
  readonly username: string;
  /** A password hash in one of the formats of core/auth/passwords. */
  readonly hash: string;
}

export interface UserInfo {
  readonly username: string;
  /** Home/Maildir directory; undefined means the action's default path. */
  readonly directory?: string;
  readonly uid?: number;
  readonly gid?: number;
}

/** What each kind of lookup returns when found. */
export interface LookupValues {
  domain: true;
  alias: readonly string[];
  credentials: Credentials;
  userinfo: UserInfo;
  mailaddr: true;
  mailaddrmap: readonly string[];
  netaddr: true;
  source: readonly string[];
}

export type LookupResult<T> =
  | { readonly kind: 'found'; readonly value: T }
  | { readonly kind: 'none' }
  | { readonly kind: 'tempfail'; readonly error: Error };

export const notFound: LookupResult<never> = Object.freeze({ kind: 'none' });
export function found<T>(value: T): LookupResult<T> {
  return { kind: 'found', value };
}
export function tempfail(error: Error): LookupResult<never> {
  return { kind: 'tempfail', error };
}

export type TableBackend = 'inline' | 'file' | 'db' | 'ldap';

/** A (key, value) pair as stored; sets have an empty value. */
export interface TableEntry {
  readonly key: string;
  readonly value: string;
}

export interface Table {
  readonly name: string;
  readonly backend: TableBackend;
  /** The lookup kinds this table can answer (checked against each use in the config). */
  services(): ReadonlySet<LookupKind>;
  lookup<K extends LookupKind>(kind: K, key: string): Promise<LookupResult<LookupValues[K]>>;
  /**
   * Checks a password for a user. Backends that can only verify by binding
   * (LDAP auth_bind) implement it; others get the generic hash check.
   */
  authenticate?(username: string, password: string): Promise<LookupResult<boolean>>;
  /** Entries for `table list`; remote backends may not enumerate. */
  entries?(): AsyncIterable<TableEntry>;
  /** Writable backends (db) only. */
  put?(key: string, value: string): Promise<void>;
  del?(key: string): Promise<boolean>;
  /**
   * Contacts the source once (LDAP: the service bind). Throws for a
   * configuration the source refuses (a wrong service password); returns the
   * error when the source is only unreachable for now.
   */
  verify?(): Promise<Error | undefined>;
  /** Re-read the source (file tables); no-op for others. */
  reload?(): Promise<void>;
  close?(): Promise<void>;
}
