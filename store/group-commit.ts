/**
 * Group commit: many writers, few fsyncs. While one synced batch is being
 * written, later commits wait and are written together in the next batch;
 * each caller's promise settles only when the batch holding its operations
 * has been written (synced, for a synced writer). A batch that fails rejects
 * every caller in it and writes none of their operations (LevelDB batches are
 * atomic). Order is kept: a commit is never written before an earlier one.
 */

export interface GroupCommitStats {
  /** Batches handed to the writer (= synced writes for a synced writer). */
  readonly batches: number;
  /** Commits (callers) written. */
  readonly commits: number;
  /** The largest number of commits that went into one batch. */
  readonly largestGroup: number;
}

interface Waiter<Op> {
  readonly ops: readonly Op[];
  readonly bytes: number;
  readonly resolve: () => void;
  readonly reject: (err: unknown) => void;
}

export class GroupCommit<Op> {
  private readonly write: (ops: Op[]) => Promise<void>;
  private readonly maxBatchBytes: number;
  private waiting: Waiter<Op>[] = [];
  private running: Promise<void> | undefined;
  private batches = 0;
  private commits = 0;
  private largestGroup = 0;

  /**
   * @param write writes one batch atomically (and durably, if it syncs).
   * @param opts.maxBatchBytes a batch stops taking further commits once it holds
   *   this many bytes (as declared by `commit`); one commit is never split.
   */
  constructor(write: (ops: Op[]) => Promise<void>, opts: { maxBatchBytes?: number } = {}) {
    this.write = write;
    this.maxBatchBytes = opts.maxBatchBytes ?? 64 * 1024 * 1024;
  }

  /** Resolves once `ops` are written, together with whatever else was waiting. */
  commit(ops: readonly Op[], bytes = 0): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.waiting.push({ ops, bytes, resolve, reject });
      this.running ??= this.run();
    });
  }

  /** Resolves when nothing is waiting or being written. */
  async drain(): Promise<void> {
    while (this.running) await this.running;
  }

  get stats(): GroupCommitStats {
    return { batches: this.batches, commits: this.commits, largestGroup: this.largestGroup };
  }

  private async run(): Promise<void> {
    try {
      while (this.waiting.length > 0) {
        const group = this.take();
        const ops: Op[] = [];
        for (const w of group) for (const op of w.ops) ops.push(op);
        try {
          await this.write(ops);
        } catch (err) {
          for (const w of group) w.reject(err);
          continue;
        }
        this.batches++;
        this.commits += group.length;
        this.largestGroup = Math.max(this.largestGroup, group.length);
        for (const w of group) w.resolve();
      }
    } finally {
      this.running = undefined;
    }
  }

  /** The next group: every waiting commit, up to maxBatchBytes (at least one). */
  private take(): Waiter<Op>[] {
    let bytes = 0;
    let n = 0;
    while (n < this.waiting.length && (n === 0 || bytes + this.waiting[n]!.bytes <= this.maxBatchBytes)) {
      bytes += this.waiting[n]!.bytes;
      n++;
    }
    return this.waiting.splice(0, n);
  }
}
