/**
 * `table NAME db`: entries kept in the data directory's LevelDB (one
 * sublevel per table), managed with `appliance table add/del`. The storage
 * itself is injected (store/ owns LevelDB): core only sees this interface.
 */
import { lookupEntries, normalizeKey, servicesOf } from './key-value-lookup.ts';
import type { LookupKind, LookupResult, LookupValues, Table, TableEntry } from './types.ts';

export interface KeyValueStore {
  get(key: string): Promise<string | undefined>;
  put(key: string, value: string): Promise<void>;
  del(key: string): Promise<void>;
  entries(): AsyncIterable<readonly [string, string]>;
}

export class DbTable implements Table {
  readonly name: string;
  readonly backend = 'db' as const;
  private readonly kv: KeyValueStore;

  constructor(name: string, kv: KeyValueStore) {
    this.name = name;
    this.kv = kv;
  }

  /** Contents change at run time, so every kind is allowed; lookups answer by what is stored. */
  services(): ReadonlySet<LookupKind> {
    return new Set([...servicesOf('map'), ...servicesOf('list')]);
  }

  lookup<K extends LookupKind>(kind: K, key: string): Promise<LookupResult<LookupValues[K]>> {
    const kv = this.kv;
    return lookupEntries(
      {
        get: async (k) => {
          const v = await kv.get(k);
          return v === undefined ? undefined : (JSON.parse(v) as StoredEntry);
        },
        all: async function* () {
          for await (const [k, v] of kv.entries()) yield [k, (JSON.parse(v) as StoredEntry).value] as const;
        },
      },
      kind,
      key,
    );
  }

  async *entries(): AsyncIterable<TableEntry> {
    for await (const [, v] of this.kv.entries()) {
      const e = JSON.parse(v) as StoredEntry;
      yield { key: e.key, value: e.value };
    }
  }

  async put(key: string, value: string): Promise<void> {
    const entry: StoredEntry = { key, value };
    await this.kv.put(normalizeKey(key), JSON.stringify(entry));
  }

  async del(key: string): Promise<boolean> {
    const k = normalizeKey(key);
    if ((await this.kv.get(k)) === undefined) return false;
    await this.kv.del(k);
    return true;
  }
}

/** Stored under the normalised key, keeping the key as the user wrote it. */
interface StoredEntry {
  readonly key: string;
  readonly value: string;
}
