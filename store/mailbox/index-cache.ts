/**
 * The per-mailbox index: a rebuildable cache in LevelDB (sublevel `mailbox`),
 * keyed by the mailbox GUID of `dovecot-uidlist` (so it follows a RENAME).
 * Per UID it keeps what costs a read or a stat to learn — the base name it
 * belongs to, the CRLF size, whether the file has bare LFs, the internal date,
 * the modseq — and, separately, the parsed MessageSummary. Deleting it loses
 * nothing: UIDs come from dovecot-uidlist, flags from the file names.
 * Writes are not synced: a lost write is recomputed.
 */
import type { Level } from 'level';
import type { MessageSummary } from './types.ts';

export interface CachedMessage {
  readonly base: string;
  readonly vsize: number;
  readonly bareLf: boolean;
  readonly mtimeMs: number;
  readonly modseq: number;
}

export interface CacheMeta {
  readonly uidValidity: number;
  readonly highestModseq: number;
}

/** The little key-value surface the cache needs (LevelDB, or a Map in tests). */
export interface CacheKv {
  get(key: string): Promise<string | undefined>;
  getMany(keys: readonly string[]): Promise<(string | undefined)[]>;
  batch(ops: readonly ({ type: 'put'; key: string; value: string } | { type: 'del'; key: string })[]): Promise<void>;
  range(prefix: string): AsyncIterable<readonly [string, string]>;
}

export function levelCacheKv(level: Level<string, string>): CacheKv {
  const sub = level.sublevel<string, string>('mailbox', { valueEncoding: 'utf8' });
  return {
    async get(key) {
      return (await sub.get(key)) ?? undefined;
    },
    async getMany(keys) {
      return (await sub.getMany([...keys])).map((v) => v ?? undefined);
    },
    async batch(ops) {
      if (ops.length > 0) await sub.batch(ops.map((o) => ({ ...o })));
    },
    async *range(prefix) {
      for await (const [k, v] of sub.iterator({ gte: prefix, lt: `${prefix}\uffff` })) yield [k, v] as const;
    },
  };
}

export function memoryCacheKv(): CacheKv & { readonly map: Map<string, string> } {
  const map = new Map<string, string>();
  return {
    map,
    async get(key) {
      return map.get(key);
    },
    async getMany(keys) {
      return keys.map((k) => map.get(k));
    },
    async batch(ops) {
      for (const o of ops) {
        if (o.type === 'put') map.set(o.key, o.value);
        else map.delete(o.key);
      }
    },
    async *range(prefix) {
      const keys = [...map.keys()].filter((k) => k.startsWith(prefix)).sort();
      for (const k of keys) yield [k, map.get(k)!] as const;
    },
  };
}

const uidKey = (uid: number): string => uid.toString(16).padStart(8, '0');

export class IndexCache {
  private readonly kv: CacheKv;
  constructor(kv: CacheKv) {
    this.kv = kv;
  }

  /** The cached entries of a mailbox, if the cache belongs to this UIDVALIDITY. */
  async load(guid: string, uidValidity: number): Promise<{ meta: CacheMeta | undefined; entries: Map<number, CachedMessage> }> {
    const entries = new Map<number, CachedMessage>();
    const metaRaw = await this.kv.get(`${guid}!m`);
    let meta: CacheMeta | undefined;
    try {
      meta = metaRaw ? (JSON.parse(metaRaw) as CacheMeta) : undefined;
    } catch {
      meta = undefined;
    }
    if (!meta || meta.uidValidity !== uidValidity) {
      if (meta) await this.drop(guid);
      return { meta: undefined, entries };
    }
    for await (const [k, v] of this.kv.range(`${guid}!r!`)) {
      try {
        // VSIZE/BARELF/MTIME/MODSEQ/BASE, slash-separated (a base has no slash): cheaper than JSON for 100,000 entries.
        const f = v.split('/', 4);
        const base = v.slice(f.join('/').length + 1);
        const [vsize, mtimeMs, modseq] = [Number(f[0]), Number(f[2]), Number(f[3])];
        if (f.length !== 4 || base === '' || !Number.isFinite(vsize) || !Number.isFinite(mtimeMs) || !Number.isFinite(modseq)) continue;
        entries.set(parseInt(k.slice(guid.length + 3), 16), { base, vsize, bareLf: f[1] === '1', mtimeMs, modseq });
      } catch {
        // A broken entry is recomputed.
      }
    }
    return { meta, entries };
  }

  async write(guid: string, meta: CacheMeta, put: ReadonlyMap<number, CachedMessage>, del: readonly number[]): Promise<void> {
    const ops: ({ type: 'put'; key: string; value: string } | { type: 'del'; key: string })[] = [];
    ops.push({ type: 'put', key: `${guid}!m`, value: JSON.stringify(meta) });
    for (const [uid, e] of put) ops.push({ type: 'put', key: `${guid}!r!${uidKey(uid)}`, value: `${e.vsize}/${e.bareLf ? 1 : 0}/${e.mtimeMs}/${e.modseq}/${e.base}` });
    for (const uid of del) {
      ops.push({ type: 'del', key: `${guid}!r!${uidKey(uid)}` });
      ops.push({ type: 'del', key: `${guid}!s!${uidKey(uid)}` });
    }
    await this.kv.batch(ops);
  }

  async getSummary(guid: string, uid: number, base: string): Promise<MessageSummary | undefined> {
    return (await this.getSummaries(guid, [{ uid, base }]))[0];
  }

  /** Several at once (one LevelDB round trip): a FETCH of many messages reads ahead. */
  async getSummaries(guid: string, wanted: readonly { uid: number; base: string }[]): Promise<(MessageSummary | undefined)[]> {
    const raws = await this.kv.getMany(wanted.map((w) => `${guid}!s!${uidKey(w.uid)}`));
    return raws.map((raw, i) => {
      if (!raw) return undefined;
      try {
        const v = JSON.parse(raw) as { b: string; s: MessageSummary };
        return v.b === wanted[i]!.base ? v.s : undefined;
      } catch {
        return undefined;
      }
    });
  }

  async putSummary(guid: string, uid: number, base: string, summary: MessageSummary): Promise<void> {
    await this.kv.batch([{ type: 'put', key: `${guid}!s!${uidKey(uid)}`, value: JSON.stringify({ b: base, s: summary }) }]);
  }

  async drop(guid: string): Promise<void> {
    const ops: { type: 'del'; key: string }[] = [];
    for await (const [k] of this.kv.range(`${guid}!`)) ops.push({ type: 'del', key: k });
    await this.kv.batch(ops);
  }
}
