/**
 * A bounded TTL cache of lookup answers for remote tables, so an MX under
 * load does not make one directory query per RCPT. Found and not-found
 * answers are kept for their own TTLs; a temporary failure is never kept
 * (the next lookup tries the directory again). Concurrent lookups of the
 * same key share one query. Oldest entries go first when it is full.
 */
import type { LookupResult } from './types.ts';

export interface LookupCacheOptions {
  readonly ttlMs: number;
  readonly negativeTtlMs: number;
  readonly maxEntries: number;
  readonly now?: () => number;
}

export class LookupCache {
  private readonly entries = new Map<string, { readonly expires: number; readonly result: LookupResult<unknown> }>();
  private readonly inflight = new Map<string, Promise<LookupResult<unknown>>>();
  private readonly o: LookupCacheOptions;
  private readonly now: () => number;
  hits = 0;
  misses = 0;

  constructor(o: LookupCacheOptions) {
    this.o = o;
    this.now = o.now ?? Date.now;
  }

  async get<T>(key: string, load: () => Promise<LookupResult<T>>): Promise<LookupResult<T>> {
    const hit = this.entries.get(key);
    if (hit) {
      if (hit.expires > this.now()) {
        this.hits++;
        return hit.result as LookupResult<T>;
      }
      this.entries.delete(key);
    }
    const pending = this.inflight.get(key);
    if (pending) return pending as Promise<LookupResult<T>>;
    this.misses++;
    const p = load().then((result) => {
      this.store(key, result);
      return result;
    });
    this.inflight.set(key, p);
    try {
      return await p;
    } finally {
      this.inflight.delete(key);
    }
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }

  private store(key: string, result: LookupResult<unknown>): void {
    if (result.kind === 'tempfail') return;
    const ttl = result.kind === 'found' ? this.o.ttlMs : this.o.negativeTtlMs;
    if (ttl <= 0 || this.o.maxEntries <= 0) return;
    this.entries.delete(key);
    while (this.entries.size >= this.o.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
    this.entries.set(key, { expires: this.now() + ttl, result });
  }
}
