/**
 * The one LevelDB of the data directory (`DATA-DIR/db`). LevelDB allows one
 * process: while `appliance start` runs it owns the database and the other
 * commands go through the control socket. Sublevels keep concerns apart:
 * `tables` → NAME for db tables (and later `queue`, `acme`, `index`).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import type { KeyValueStore } from '../core/tables/db.ts';
import { DatabaseLockedError } from './errors.ts';

export { DatabaseLockedError };

/** classic-level's `sync` (fsync before the write returns); sublevels pass it to the root but do not type it. */
const SYNC = { sync: true } as object;



export class Store {
  readonly path: string;
  private readonly db: Level<string, string>;

  private constructor(path: string, db: Level<string, string>) {
    this.path = path;
    this.db = db;
  }

  /** Opens (creating) DATA-DIR/db; throws DatabaseLockedError if another process has it. */
  static async open(dataDir: string): Promise<Store> {
    const path = join(dataDir, 'db');
    mkdirSync(path, { recursive: true, mode: 0o700 });
    const db = new Level<string, string>(path, { valueEncoding: 'utf8', keyEncoding: 'utf8' });
    try {
      await db.open();
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      if ((err as { code?: string }).code === 'LEVEL_LOCKED' || cause?.code === 'LEVEL_LOCKED') throw new DatabaseLockedError(path);
      throw err;
    }
    return new Store(path, db);
  }

  /** The key-value storage of a `db` table. Writes are synced: a table change survives a crash. */
  tableStore(name: string): KeyValueStore {
    const sub = this.db.sublevel<string, string>('tables', { valueEncoding: 'utf8' }).sublevel<string, string>(name, { valueEncoding: 'utf8' });
    return {
      async get(key) {
        return (await sub.get(key)) ?? undefined;
      },
      async put(key, value) {
        await sub.put(key, value, SYNC);
      },
      async del(key) {
        await sub.del(key, SYNC);
      },
      async *entries() {
        for await (const [k, v] of sub.iterator()) yield [k, v] as const;
      },
    };
  }

  /** The raw database, for the store modules that own a sublevel (queue, index). */
  get level(): Level<string, string> {
    return this.db;
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}
