/**
 * Per-address authentication failure accounting, shared by SMTP and IMAP: a
 * failed attempt is answered only after `auth failure-delay` (Dovecot's
 * auth_failure_delay), and an address with `auth max-failures` failures in
 * the window is refused further attempts until the window passes. Memory is
 * bounded: the table holds at most `maxTracked` addresses (oldest dropped).
 */

export interface FailureLimiterOptions {
  readonly maxFailures: number;
  readonly windowMs: number;
  readonly maxTracked?: number;
  readonly now?: () => number;
}

export class AuthFailureLimiter {
  private readonly failures = new Map<string, { count: number; first: number }>();
  private readonly opts: Required<FailureLimiterOptions>;

  constructor(opts: FailureLimiterOptions) {
    this.opts = { maxTracked: 10_000, now: Date.now, ...opts };
  }

  /** True if this address may try again now. */
  allowed(address: string): boolean {
    const f = this.current(address);
    return !f || f.count < this.opts.maxFailures;
  }

  recordFailure(address: string): number {
    const now = this.opts.now();
    let f = this.current(address);
    if (!f) {
      if (this.failures.size >= this.opts.maxTracked) {
        const oldest = this.failures.keys().next().value;
        if (oldest !== undefined) this.failures.delete(oldest);
      }
      f = { count: 0, first: now };
      this.failures.set(address, f);
    }
    f.count++;
    return f.count;
  }

  recordSuccess(address: string): void {
    this.failures.delete(address);
  }

  private current(address: string): { count: number; first: number } | undefined {
    const f = this.failures.get(address);
    if (f && this.opts.now() - f.first > this.opts.windowMs) {
      this.failures.delete(address);
      return undefined;
    }
    return f;
  }
}
