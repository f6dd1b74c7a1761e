/**
 * `table NAME ldap:/path/ldap.conf`: lookups answered by a directory
 * (OpenSMTPD's table-ldap keys, see ldap-conf.ts), through ldapts.
 *
 * Each lookup kind runs its `KIND_filter` (placeholders RFC 4515-escaped)
 * under `basedn` and reads its `KIND_attributes`:
 *   domain, mailaddr  found when an entry matches
 *   alias             the values of the attributes of every matching entry
 *   mailaddrmap       same, as addresses the user may send as
 *   credentials       one entry: user name attribute, password hash attribute
 *   userinfo          one entry: homeDirectory, or uidNumber,gidNumber,homeDirectory
 * With `auth_bind yes`, passwords are checked by binding as the user (DN from
 * `bind_dn_template`, or the one entry `credentials_filter` finds), so the
 * directory's hashes never need to be readable (Dovecot's auth_bind).
 *
 * Every failure of the directory — unreachable, timed out, refused service
 * bind, an entry that cannot be used — is a temporary failure (4xx, never
 * "user unknown"). Answers are cached (cache_ttl / negative_cache_ttl);
 * failures are not, so a directory that comes back is used at once.
 */
import { readFileSync } from 'node:fs';
import type { Client, Entry } from 'ldapts';
import { ResultCodeError } from 'ldapts';
import { TableOpenError } from './errors.ts';
import { ldapServices, parseLdapConf, type LdapConf, type LdapKind, type LdapQuery } from './ldap-conf.ts';
import { LdapConnector, LdapPool, ServiceBindError, describe, isTransient } from './ldap-pool.ts';
import { expandDn, expandFilter } from './ldap-template.ts';
import { LookupCache } from './lookup-cache.ts';
import { found, notFound, tempfail, type LookupKind, type LookupResult, type LookupValues, type Table, type UserInfo } from './types.ts';

export interface LdapTableOptions {
  /** Clock for the cache (tests). */
  readonly now?: () => number;
  /** Problems worth an operator's attention that are not lookup failures (ambiguous entries). */
  readonly onWarning?: (message: string) => void;
}

/** Most values one alias/mailaddrmap answer may carry (bounded memory per lookup). */
export const MAX_LDAP_VALUES = 1000;
/** Longest key sent to the directory. */
export const MAX_LDAP_KEY = 512;

export class LdapTable implements Table {
  readonly name: string;
  readonly backend = 'ldap' as const;
  readonly conf: LdapConf;
  /** Present only with `auth_bind yes`; otherwise the hash from credentials_* is checked. */
  readonly authenticate?: (username: string, password: string) => Promise<LookupResult<boolean>>;
  private readonly connector: LdapConnector;
  private readonly pool: LdapPool;
  private readonly cache: LookupCache;
  private readonly onWarning: (message: string) => void;

  constructor(name: string, conf: LdapConf, ca: string | undefined, o: LdapTableOptions = {}) {
    this.name = name;
    this.conf = conf;
    this.connector = new LdapConnector({ urls: conf.urls, starttls: conf.starttls, timeoutMs: conf.timeoutMs, ...(ca !== undefined ? { ca } : {}) });
    this.pool = new LdapPool(this.connector, conf.username !== undefined ? { dn: conf.username, password: conf.password! } : undefined, conf.poolSize);
    this.cache = new LookupCache({ ttlMs: conf.cacheTtlMs, negativeTtlMs: conf.negativeCacheTtlMs, maxEntries: conf.cacheSize, ...(o.now ? { now: o.now } : {}) });
    this.onWarning = o.onWarning ?? (() => undefined);
    if (conf.authBind) this.authenticate = (u, p) => this.authBind(u, p);
  }

  /** Reads and parses the conf and its ca_file; throws LdapConfError or TableOpenError. */
  static open(name: string, path: string, o: LdapTableOptions = {}): LdapTable {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new TableOpenError(`table ${name}: cannot read ${path}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
    }
    const conf = parseLdapConf(text, path);
    let ca: string | undefined;
    if (conf.caFile) {
      try {
        ca = readFileSync(conf.caFile.path, 'utf8');
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw new TableOpenError(`${path}:${conf.caFile.line}: ca_file ${conf.caFile.path}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
      }
      if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new TableOpenError(`${path}:${conf.caFile.line}: ca_file ${conf.caFile.path} holds no PEM certificate`);
    }
    return new LdapTable(name, conf, ca, o);
  }

  services(): ReadonlySet<LookupKind> {
    return new Set(ldapServices(this.conf));
  }

  /**
   * Connects and binds as the service account once. A refused bind (wrong
   * password) throws ServiceBindError: start-up and reload refuse it. An
   * unreachable directory is returned, not thrown: lookups answer 4xx until
   * it is back.
   */
  async verify(): Promise<Error | undefined> {
    try {
      await withDeadline(this.conf.timeoutMs, 'connecting', () => this.pool.warm());
      return undefined;
    } catch (err) {
      if (err instanceof ServiceBindError) throw new ServiceBindError(`table ${this.name}: ${err.message}; check username and password in ${this.conf.path}`);
      return new Error(`table ${this.name}: ${describe(err)}`);
    }
  }

  async lookup<K extends LookupKind>(kind: K, rawKey: string): Promise<LookupResult<LookupValues[K]>> {
    const query = this.conf.queries[kind as LdapKind];
    if (!query) return tempfail(new Error(`table ${this.name}: ${this.conf.path} has no ${kind}_filter`));
    let key = rawKey.trim().toLowerCase();
    if (kind === 'domain') key = key.replace(/\.$/, '');
    if (key === '' || key.length > MAX_LDAP_KEY) return notFound;
    const r = await this.cache.get(`${kind}\0${key}`, () => this.query(kind as LdapKind, query, key));
    return r as LookupResult<LookupValues[K]>;
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  /** Cache counters, for the benchmark and `table lookup --json`. */
  cacheStats(): { hits: number; misses: number; size: number } {
    return { hits: this.cache.hits, misses: this.cache.misses, size: this.cache.size };
  }

  private async query(kind: LdapKind, q: LdapQuery, key: string): Promise<LookupResult<unknown>> {
    let entries: Entry[];
    try {
      entries = await this.search(q, key, kind);
    } catch (err) {
      return tempfail(new Error(`table ${this.name}: ${kind} lookup of "${key}" failed: ${describe(err)}`));
    }
    switch (kind) {
      case 'domain':
      case 'mailaddr':
        return entries.length > 0 ? found(true) : notFound;
      case 'alias':
      case 'mailaddrmap': {
        const out = new Map<string, string>();
        let dropped = 0;
        for (const e of entries) {
          for (const a of q.attributes) {
            for (const v of attributeValues(e, a)) {
              const t = v.trim();
              if (t === '') continue;
              if (out.size < MAX_LDAP_VALUES || out.has(t.toLowerCase())) out.set(t.toLowerCase(), kind === 'mailaddrmap' ? t.toLowerCase() : t);
              else dropped++;
            }
          }
        }
        if (dropped > 0) this.onWarning(`table ${this.name}: ${kind} lookup of "${key}" has more than ${MAX_LDAP_VALUES} values; ${dropped} were left out`);
        return out.size > 0 ? found([...out.values()]) : notFound;
      }
      case 'credentials': {
        if (entries.length === 0) return notFound;
        if (entries.length > 1) {
          this.onWarning(`table ${this.name}: several entries match credentials_filter for "${key}"; refusing the login`);
          return notFound;
        }
        const [userAttr, hashAttr] = q.attributes as [string, string];
        const hash = attributeValues(entries[0]!, hashAttr)[0];
        if (hash === undefined) return notFound;
        return found({ username: attributeValues(entries[0]!, userAttr)[0] ?? key, hash });
      }
      case 'userinfo': {
        if (entries.length === 0) return notFound;
        if (entries.length > 1) return tempfail(new Error(`table ${this.name}: several entries match userinfo_filter for "${key}" (${entries.map((e) => e.dn).join('; ')})`));
        return userInfo(this.name, entries[0]!, q.attributes, key);
      }
    }
  }

  private async search(q: LdapQuery, key: string, kind: LdapKind | 'dn'): Promise<Entry[]> {
    const existence = kind === 'domain' || kind === 'mailaddr' || kind === 'dn';
    const sizeLimit = kind === 'domain' || kind === 'mailaddr' ? 1 : kind === 'alias' || kind === 'mailaddrmap' ? MAX_LDAP_VALUES : 2;
    const filter = expandFilter(q.filter, key);
    const { searchEntries } = await withDeadline(this.conf.timeoutMs, 'search', () =>
      this.pool.run((c: Client) =>
        c.search(this.conf.basedn, {
          scope: this.conf.scope,
          filter,
          attributes: existence ? ['1.1'] : [...q.attributes],
          sizeLimit,
          timeLimit: Math.max(1, Math.ceil(this.conf.timeoutMs / 1000)),
        }),
      ),
    );
    return searchEntries;
  }

  /** auth_bind: the password is right when the directory accepts a bind as the user. */
  private async authBind(username: string, password: string): Promise<LookupResult<boolean>> {
    // An empty password would be an "unauthenticated bind" that succeeds (RFC 4513 §5.1.2).
    if (password === '' || username === '' || username.length > MAX_LDAP_KEY || /[\u0000-\u001f\u007f]/.test(username) || password.includes('\0')) {
      return found(false);
    }
    try {
      return await withDeadline(this.conf.timeoutMs, 'authentication', async () => {
        let dn: string;
        if (this.conf.bindDnTemplate !== undefined) {
          dn = expandDn(this.conf.bindDnTemplate, username);
        } else {
          const entries = await this.search(this.conf.queries.credentials!, username, 'dn');
          if (entries.length !== 1) {
            if (entries.length > 1) this.onWarning(`table ${this.name}: several entries match credentials_filter for "${username}"; refusing the login`);
            return found(false);
          }
          dn = entries[0]!.dn;
        }
        const { client } = await this.connector.open();
        try {
          await client.bind(dn, password);
          return found(true);
        } catch (err) {
          if (err instanceof ResultCodeError && !isTransient(err)) return found(false);
          throw err;
        } finally {
          void client.unbind().catch(() => undefined);
        }
      });
    } catch (err) {
      return tempfail(new Error(`table ${this.name}: authentication of "${username}" could not be checked: ${describe(err)}`));
    }
  }
}

/** The string values of an attribute, its name compared case-insensitively (servers answer in their own case). */
export function attributeValues(entry: Entry, name: string): string[] {
  const want = name.toLowerCase();
  for (const [k, v] of Object.entries(entry)) {
    if (k.toLowerCase() !== want || k === 'dn') continue;
    const list = Array.isArray(v) ? v : [v];
    return list.map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : String(x)));
  }
  return [];
}

function userInfo(table: string, e: Entry, attrs: readonly string[], key: string): LookupResult<UserInfo> {
  const dirAttr = attrs[attrs.length - 1]!;
  const directory = attributeValues(e, dirAttr)[0];
  if (directory === undefined) return found({ username: key });
  if (!directory.startsWith('/') || directory.includes('\0') || /(^|\/)\.\.(\/|$)/.test(directory)) {
    return tempfail(new Error(`table ${table}: ${dirAttr} of ${e.dn} is not an absolute path: "${directory}"`));
  }
  if (attrs.length === 3) {
    const uid = Number(attributeValues(e, attrs[0]!)[0]);
    const gid = Number(attributeValues(e, attrs[1]!)[0]);
    if (Number.isInteger(uid) && Number.isInteger(gid) && uid >= 0 && gid >= 0) return found({ username: key, uid, gid, directory });
  }
  return found({ username: key, directory });
}

function withDeadline<T>(ms: number, what: string, run: () => Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer from the directory within ${ms} ms`)), ms);
    run().then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
