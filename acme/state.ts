/**
 * What the renewal scheduler remembers per pki, in DATA-DIR/acme/NAME.state.json
 * (written atomically after every check): the last attempt and its outcome,
 * the CA's last problem, the failure count, the next check, the CA's
 * Retry-After and renewal window. A file rather than the database, so
 * `appliance cert status` reads it while the appliance runs or not; losing it
 * loses nothing but history (the next check recomputes everything).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeAtomic } from '../core/tls.ts';
import { acmeDir } from './account.ts';
import type { AcmeProblem } from './http.ts';

export interface RenewalState {
  readonly lastAttempt?: string;
  readonly lastOutcome?: 'issued' | 'failed';
  readonly lastError?: string;
  readonly lastProblem?: AcmeProblem;
  /** Consecutive failures since the last success. */
  readonly failures: number;
  readonly nextCheck?: string;
  /** The time the certificate is due for renewal (lifetime rule or the CA's window). */
  readonly renewAt?: string;
  /** The CA asked not to retry before this. */
  readonly retryAfter?: string;
  readonly renewalWindow?: { readonly start: string; readonly end: string };
  readonly accountUrl?: string;
  /** The directory the last failure was against (a changed `acme directory` starts afresh). */
  readonly directory?: string;
}

export const EMPTY_STATE: RenewalState = { failures: 0 };

export function statePath(dataDir: string, name: string): string {
  return join(acmeDir(dataDir), `${name.replace(/[^A-Za-z0-9_.-]/g, '_')}.state.json`);
}

export function readState(dataDir: string, name: string): RenewalState {
  try {
    const parsed: unknown = JSON.parse(readFileSync(statePath(dataDir, name), 'utf8'));
    if (typeof parsed === 'object' && parsed !== null && typeof (parsed as RenewalState).failures === 'number') return parsed as RenewalState;
  } catch {
    // missing or unreadable: start from nothing (history only)
  }
  return EMPTY_STATE;
}

export function writeState(dataDir: string, name: string, state: RenewalState): void {
  writeAtomic(statePath(dataDir, name), `${JSON.stringify(state, null, 2)}\n`, 0o600);
}
