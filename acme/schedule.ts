/**
 * When to renew and when to look again — pure functions of the certificate,
 * the CA's renewal window, the failure count and a random number, so the
 * policy is tested without clocks.
 *
 * - Renew when a third of the lifetime is left (Let's Encrypt's 90 days →
 *   day 60), or earlier at a random instant of the CA's suggested window
 *   (RFC 9773 §4.2: a uniformly random time spreads the load).
 * - Look again every few hours anyway (the CA may move the window).
 * - After a failure: 5 min, 10, 20, … capped at 6 h, ±20 % jitter so many
 *   appliances behind one CA do not retry in step; never before the CA's
 *   Retry-After.
 */
import type { RenewalWindow } from './ari.ts';

export const CHECK_INTERVAL_MS = 6 * 3600_000;
export const BACKOFF_BASE_MS = 5 * 60_000;
export const BACKOFF_MAX_MS = 6 * 3600_000;

export interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** Two thirds into the validity period. */
export function lifetimeRenewalTime(v: Validity): Date {
  const life = v.notAfter.getTime() - v.notBefore.getTime();
  return new Date(v.notAfter.getTime() - life / 3);
}

/** A uniformly random instant of the window. */
export function pickInWindow(w: Pick<RenewalWindow, 'start' | 'end'>, random: number): Date {
  return new Date(w.start.getTime() + random * (w.end.getTime() - w.start.getTime()));
}

/** The renewal time: the lifetime rule, or the CA's pick when it is earlier. */
export function renewalTime(v: Validity, ariPick: Date | undefined): Date {
  const byLife = lifetimeRenewalTime(v);
  return ariPick && ariPick < byLife ? ariPick : byLife;
}

/** Delay after the n-th consecutive failure (n ≥ 1), jittered by `random` ∈ [0, 1). */
export function backoffDelay(failures: number, random: number): number {
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, Math.min(failures - 1, 20)));
  return Math.round(base * (0.8 + 0.4 * random));
}

/** The next attempt after a failure: the backoff, but never before the CA's Retry-After. */
export function retryTime(now: Date, failures: number, random: number, retryAfter: Date | undefined): Date {
  const t = new Date(now.getTime() + backoffDelay(failures, random));
  return retryAfter && retryAfter > t ? retryAfter : t;
}

/** The next check when nothing is due: at the renewal time, at the latest after the check interval. */
export function nextCheckTime(now: Date, renewAt: Date, pollAfter?: Date): Date {
  let t = Math.min(renewAt.getTime(), now.getTime() + CHECK_INTERVAL_MS);
  if (pollAfter && pollAfter.getTime() > now.getTime()) t = Math.min(t, Math.max(pollAfter.getTime(), now.getTime() + 60_000));
  return new Date(Math.max(t, now.getTime()));
}
