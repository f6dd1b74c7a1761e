/**
 * The mailbox store (SPEC §store, issue "Read mail"): one MailStoreService per
 * process, shared by IMAP sessions and local delivery. See types.ts for the
 * contract; the pieces:
 *
 *  - names.ts          IMAP names ↔ Maildir++ directories, modified UTF-7
 *  - filename.ts       `BASE:2,INFO` file names ↔ flags
 *  - uidlist.ts        dovecot-uidlist (v3), append-only, dotlocked
 *  - keywords.ts       dovecot-keywords (keyword ↔ letter a..z)
 *  - subscriptions.ts  Dovecot's subscriptions file
 *  - dotlock.ts        Dovecot's dotlock discipline
 *  - mime.ts           streaming MIME structure parser (bounded)
 *  - index-cache.ts    the LevelDB index (a rebuildable cache)
 *  - mailbox-state.ts  one mailbox directory, shared by its views
 *  - view.ts           a session's view (snapshots, sync diffs, reads)
 *  - user-store.ts     one user's tree (folder operations, APPEND, COPY/MOVE)
 */
import { isAbsolute } from 'node:path';
import type { Logger } from '../../core/log.ts';
import type { Store } from '../db.ts';
import { IndexCache, levelCacheKv, memoryCacheKv, type CacheKv } from './index-cache.ts';
import { MailboxState, type StateContext } from './mailbox-state.ts';
import { mailboxDir, parseMailboxName } from './names.ts';
import type { MailStoreService, UserMailStore } from './types.ts';
import { MaildirUserStore, type StoreHost } from './user-store.ts';

export * from './types.ts';
export * from './errors.ts';
export { decodeModifiedUtf7, encodeModifiedUtf7, parseMailboxName } from './names.ts';
export { LockTimeoutError } from './dotlock.ts';

/** How many mailboxes nobody has open stay loaded, and how many messages they may hold together (≈ 600 bytes each). */
const IDLE_STATES = 8;
const IDLE_MESSAGES = 200_000;

export interface MailStoreOptions {
  /** The appliance's LevelDB; without it the index lives in memory (tests, one-off CLI use). */
  readonly store?: Store;
  /** Or any key-value backend for the index. */
  readonly cacheKv?: CacheKv;
  readonly log: Logger;
  /** The host part of new Maildir file names. */
  readonly hostname: string;
  /** The clock for housekeeping such as sweeping tmp/ (tests); default Date.now. */
  readonly now?: () => number;
}

export interface MailStoreServiceImpl extends MailStoreService {
  /** Reads of message files made to learn sizes and structure (not to serve them): for tests and benchmarks. */
  readonly counters: { readonly bodyReads: number };
}

export function openMailStoreService(opts: MailStoreOptions): MailStoreServiceImpl {
  const kv = opts.cacheKv ?? (opts.store ? levelCacheKv(opts.store.level) : memoryCacheKv());
  const counters = { bodyReads: 0 };
  const ctx: StateContext = { cache: new IndexCache(kv), log: opts.log, counters, ...(opts.now ? { now: opts.now } : {}) };
  const states = new Map<string, MailboxState>();
  /** Unreferenced states kept for reuse, oldest first (bounded). */
  const idle = new Map<string, MailboxState>();
  const stores = new Map<string, MaildirUserStore>();

  const host: StoreHost = {
    ctx,
    hostname: opts.hostname,
    acquire(dir) {
      let s = states.get(dir);
      if (!s) {
        s = new MailboxState(dir, ctx);
        states.set(dir, s);
      }
      idle.delete(dir);
      s.refs++;
      return s;
    },
    release(state) {
      state.refs--;
      if (state.refs > 0 || states.get(state.dir) !== state) return;
      // Kept a while (STATUS/LIST-STATUS, APPEND/COPY targets, re-SELECT) — every use re-syncs it first.
      idle.delete(state.dir);
      idle.set(state.dir, state);
      let kept = 0;
      for (const s of idle.values()) kept += s.entries.size;
      for (const [dir, s] of idle) {
        if (idle.size <= IDLE_STATES && kept <= IDLE_MESSAGES) break;
        idle.delete(dir);
        kept -= s.entries.size;
        if (s.refs <= 0 && states.get(dir) === s) states.delete(dir);
      }
    },
    loaded(dir) {
      return states.get(dir);
    },
    forget(dir) {
      states.delete(dir);
      idle.delete(dir);
    },
    moved(fromDir, toDir) {
      const s = states.get(fromDir);
      if (!s) return;
      states.delete(fromDir);
      idle.delete(fromDir);
      s.dir = toDir;
      states.set(toDir, s);
      if (s.refs <= 0) idle.set(toDir, s);
    },
  };

  return {
    counters,
    forRoot(root: string): UserMailStore {
      if (!isAbsolute(root) || root.includes('\0')) throw new TypeError(`mail root must be an absolute path: ${JSON.stringify(root)}`);
      let s = stores.get(root);
      if (!s) {
        s = new MaildirUserStore(root, host);
        stores.set(root, s);
      }
      return s;
    },
    delivered(root: string, folder?: string): void {
      let dir: string;
      try {
        dir = mailboxDir(root, parseMailboxName(folder ?? 'INBOX'));
      } catch {
        return;
      }
      const state = states.get(dir);
      if (!state) return;
      state.notify();
      // Kept loaded with nobody looking: index the new message now, while its file is in the page cache.
      if (state.refs <= 0) {
        state.refresh().catch((err: unknown) => opts.log.warn({ err, dir }, 'indexing a delivered message failed; the next session will'));
      }
    },
    async close(): Promise<void> {
      // Wait for writes in flight; views hold no OS resources between calls.
      await Promise.all([...states.values()].map((s) => s.mutex.run(async () => undefined)));
    },
  };
}
