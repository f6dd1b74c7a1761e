/**
 * Dovecot's dotlock discipline for the control files (`dovecot-uidlist.lock`,
 * `dovecot-keywords.lock`, `subscriptions.lock`): the lock is a file created
 * exclusively beside its target, holding `PID:HOST`. A lock is stale, and
 * removed, when its owner is a dead process of this host or when it has not
 * changed for `staleMs` (Dovecot: 2 minutes for the uidlist). Waiting is
 * bounded by `timeoutMs`. Within this process an async mutex per path comes
 * first, so our own sessions queue rather than poll.
 */
import * as fsp from 'node:fs/promises';
import { hostname } from 'node:os';

export class LockTimeoutError extends Error {
  readonly path: string;
  constructor(path: string) {
    super(`timed out waiting for the lock ${path}`);
    this.name = 'LockTimeoutError';
    this.path = path;
  }
}

export interface DotlockOptions {
  readonly staleMs?: number;
  readonly timeoutMs?: number;
}

const HOST = hostname();
const inProcess = new Map<string, Promise<void>>();

/** The lock held: its path, and `replace()` to rename it (with the new content written into it) over the target. */
export interface HeldLock {
  readonly path: string;
  replace(): Promise<void>;
}

/** Runs `fn` holding `<target>.lock`. */
export async function withDotlock<T>(target: string, fn: (lock: HeldLock) => Promise<T>, opts: DotlockOptions = {}): Promise<T> {
  const lockPath = `${target}.lock`;
  const prev = inProcess.get(lockPath) ?? Promise.resolve();
  let release!: () => void;
  const mine = new Promise<void>((r) => (release = r));
  const chain = prev.then(() => mine);
  inProcess.set(lockPath, chain);
  await prev;
  try {
    const ino = await acquire(lockPath, opts.staleMs ?? 120_000, opts.timeoutMs ?? 122_000);
    let consumed = false;
    const held: HeldLock = {
      path: lockPath,
      async replace() {
        await fsp.rename(lockPath, target);
        consumed = true;
      },
    };
    try {
      return await fn(held);
    } finally {
      // Only our own lock: after a replace, or if ours was overridden as stale, the file there is someone else's.
      if (!consumed) {
        const st = await fsp.stat(lockPath).catch(() => undefined);
        if (st && st.ino === ino) await fsp.unlink(lockPath).catch(() => undefined);
      }
    }
  } finally {
    release();
    if (inProcess.get(lockPath) === chain) inProcess.delete(lockPath);
  }
}

/** Creates the lock; returns its inode. */
async function acquire(lockPath: string, staleMs: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (let delay = 5; ; delay = Math.min(delay * 2, 200)) {
    try {
      const fh = await fsp.open(lockPath, 'wx', 0o600);
      try {
        await fh.writeFile(`${process.pid}:${HOST}`);
        return (await fh.stat()).ino;
      } finally {
        await fh.close();
      }
    } catch (err) {
      if ((err as { code?: string }).code !== 'EEXIST') throw err;
    }
    if (await isStale(lockPath, staleMs)) {
      await fsp.unlink(lockPath).catch(() => undefined);
      continue;
    }
    if (Date.now() >= deadline) throw new LockTimeoutError(lockPath);
    await new Promise((r) => setTimeout(r, delay));
  }
}

async function isStale(lockPath: string, staleMs: number): Promise<boolean> {
  let st;
  let content: string;
  try {
    st = await fsp.stat(lockPath);
    content = (await fsp.readFile(lockPath, 'utf8')).slice(0, 300);
  } catch {
    return false; // vanished: retry at once
  }
  const m = /^(\d+):(.*)$/.exec(content.trim());
  if (m && m[2] === HOST) {
    const pid = Number(m[1]);
    if (pid !== process.pid && !processAlive(pid)) return true;
  }
  return Date.now() - st.mtimeMs > staleMs;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code !== 'ESRCH';
  }
}
