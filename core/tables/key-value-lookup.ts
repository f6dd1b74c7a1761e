/**
 * Lookup semantics shared by the backends that store plain key → value
 * entries (inline, file, db): how each lookup kind reads a key and its value.
 * A list entry has the empty value. Keys are compared case-insensitively.
 *
 *   domain       key is the domain; `*.example.org` entries match subdomains
 *   mailaddr     entries `user@domain`, `@domain` or `user` match an address
 *   netaddr      entries are addresses or CIDR ranges
 *   alias        value `a, b, c` → targets (aliases(5))
 *   credentials  value is a password hash
 *   userinfo     value `uid:gid:/home` or `/home`; a list entry or a password
 *                hash means "a user with the default Maildir" (SPEC §tables)
 *   mailaddrmap  value `a@x, @y` → addresses the user may send as; a list
 *                entry or a password hash → the user's own address
 *   source       value split as a list
 */
import { ipInCidr, isIpAddress } from '../address.ts';
import { isPasswordHash } from '../auth/passwords.ts';
import {
  found,
  notFound,
  tempfail,
  type LookupKind,
  type LookupResult,
  type LookupValues,
  type UserInfo,
} from './types.ts';

/** Raw access to the stored entries; the kind semantics are applied on top. */
export interface EntrySource {
  /** The entry stored under a normalised key, with its key as written. */
  get(key: string): Promise<{ readonly key: string; readonly value: string } | undefined>;
  /** All entries; used only for kinds that cannot be answered by key (netaddr, wildcards). */
  all(): AsyncIterable<readonly [string, string]>;
}

export function normalizeKey(key: string): string {
  return key.trim().toLowerCase();
}

export async function lookupEntries<K extends LookupKind>(
  source: EntrySource,
  kind: K,
  rawKey: string,
): Promise<LookupResult<LookupValues[K]>> {
  try {
    return (await lookupKind(source, kind, normalizeKey(rawKey))) as LookupResult<LookupValues[K]>;
  } catch (err) {
    return tempfail(err instanceof Error ? err : new Error(String(err)));
  }
}

async function lookupKind(source: EntrySource, kind: LookupKind, key: string): Promise<LookupResult<unknown>> {
  switch (kind) {
    case 'domain': {
      const d = key.replace(/\.$/, '');
      if ((await source.get(d)) !== undefined) return found(true);
      // Wildcards: *.example.org matches a.example.org and a.b.example.org.
      const labels = d.split('.');
      for (let i = 1; i < labels.length; i++) {
        if ((await source.get(`*.${labels.slice(i).join('.')}`)) !== undefined) return found(true);
      }
      return notFound;
    }
    case 'mailaddr': {
      if ((await source.get(key)) !== undefined) return found(true);
      const at = key.lastIndexOf('@');
      if (at === -1) return notFound;
      if ((await source.get(key.slice(at))) !== undefined) return found(true);
      const user = key.slice(0, at);
      if (user !== '' && (await source.get(user)) !== undefined) return found(true);
      return notFound;
    }
    case 'netaddr': {
      if (isIpAddress(key) === 0) return notFound;
      for await (const [entry] of source.all()) {
        if (ipInCidr(key, entry)) return found(true);
      }
      return notFound;
    }
    case 'alias': {
      const v = (await source.get(key))?.value;
      if (v === undefined) return notFound;
      const targets = splitList(v);
      return targets.length > 0 ? found(targets) : notFound;
    }
    case 'credentials': {
      const e = await source.get(key);
      if (e === undefined || e.value === '') return notFound;
      return found({ username: e.key, hash: e.value });
    }
    case 'userinfo': {
      const e = await source.get(key);
      if (e === undefined) return notFound;
      return found(parseUserInfo(e.key, e.value));
    }
    case 'mailaddrmap': {
      const v = (await source.get(key))?.value;
      if (v === undefined) return notFound;
      if (v === '' || isPasswordHash(v)) return found([key]);
      return found(splitList(v).map((s) => s.toLowerCase()));
    }
    case 'source': {
      const v = (await source.get(key))?.value;
      if (v === undefined) return notFound;
      return found(splitList(v));
    }
  }
}

export function splitList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** `uid:gid:/home/dir` (OpenSMTPD userinfo), `/home/dir`, or anything else → default Maildir. */
export function parseUserInfo(username: string, value: string): UserInfo {
  const m = /^(\d+):(\d+):(\/.*)$/.exec(value.trim());
  if (m) return { username, uid: Number(m[1]), gid: Number(m[2]), directory: m[3]! };
  if (value.startsWith('/')) return { username, directory: value.trim() };
  return { username };
}

/** The kinds a plain key → value table can serve, from the form of its entries. */
export function servicesOf(form: 'list' | 'map'): ReadonlySet<LookupKind> {
  return form === 'list'
    ? new Set<LookupKind>(['domain', 'mailaddr', 'netaddr', 'userinfo', 'mailaddrmap'])
    : new Set<LookupKind>(['domain', 'mailaddr', 'alias', 'credentials', 'userinfo', 'mailaddrmap', 'source']);
}

/** An in-memory entry source (inline and file tables). */
export class MapEntries implements EntrySource {
  private readonly map: ReadonlyMap<string, { readonly key: string; readonly value: string }>;
  constructor(entries: Iterable<readonly [string, string]>) {
    const map = new Map<string, { key: string; value: string }>();
    for (const [key, value] of entries) map.set(normalizeKey(key), { key, value });
    this.map = map;
  }
  get size(): number {
    return this.map.size;
  }
  async get(key: string): Promise<{ readonly key: string; readonly value: string } | undefined> {
    return this.map.get(key);
  }
  async *all(): AsyncIterable<readonly [string, string]> {
    for (const [k, e] of this.map) yield [k, e.value] as const;
  }
}
