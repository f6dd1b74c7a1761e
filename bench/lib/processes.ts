/**
 * The processes and servers a benchmark started, stopped on every exit path:
 * children by pid (SIGTERM, then SIGKILL after a grace period), servers by
 * their own stop function (`postfix -c DIR stop`…), in reverse order.
 */
import type { ChildProcess } from 'node:child_process';

export class Started {
  private readonly live = new Set<ChildProcess>();
  private readonly stops: (() => Promise<void>)[] = [];
  private cleaning: Promise<void> | null = null;
  private readonly note: (message: string) => void;
  private readonly atEnd: () => void;

  /** `atEnd` runs after everything was stopped (e.g. removing the temp directory). */
  constructor(note: (message: string) => void, atEnd: () => void = () => {}) {
    this.note = note;
    this.atEnd = atEnd;
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      process.once(sig, () => {
        note(`${sig}: stopping what was started`);
        void this.cleanup().finally(() => process.exit(130));
      });
    }
  }

  track(c: ChildProcess): ChildProcess {
    this.live.add(c);
    c.once('exit', () => this.live.delete(c));
    return c;
  }

  onStop(stop: () => Promise<void>): void {
    this.stops.push(stop);
  }

  cleanup(): Promise<void> {
    this.cleaning ??= (async () => {
      for (const c of this.live) {
        try {
          c.kill('SIGKILL');
        } catch {
          /* gone */
        }
      }
      this.live.clear();
      for (const stop of this.stops.splice(0).reverse()) {
        try {
          await stop();
        } catch (err) {
          this.note(`stopping a server: ${(err as Error).message}`);
        }
      }
      this.atEnd();
    })();
    return this.cleaning;
  }
}

export function exited(c: ChildProcess): Promise<void> {
  return c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', () => r()));
}

/** SIGTERM, then SIGKILL after `graceMs`; by pid only. */
export async function stopChild(c: ChildProcess, graceMs = 15_000): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
  await exited(c);
  clearTimeout(t);
}
