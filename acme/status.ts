/**
 * `appliance cert status` per pki (SPEC §ops): the certificate in service and
 * the renewal state. `seconds_left` is the number to alert on (the metrics
 * endpoint exports it as a gauge).
 */
import { secondsLeft, type CertificateInfo } from '../core/tls.ts';
import type { PkiDecl } from '../core/config/types.ts';
import type { RenewalState } from './state.ts';

export interface CertStatusView {
  readonly name: string;
  readonly source: 'acme' | 'files' | 'self-signed' | 'none';
  /** Configured for ACME (the source is self-signed until the first issuance). */
  readonly acme: boolean;
  readonly subject: string | null;
  readonly alt_names: readonly string[];
  readonly issuer: string | null;
  readonly serial: string | null;
  readonly not_after: string | null;
  readonly days_left: number | null;
  readonly seconds_left: number | null;
  readonly renew_at: string | null;
  readonly last_attempt: string | null;
  readonly last_outcome: 'issued' | 'failed' | null;
  readonly last_error: string | null;
  readonly last_problem: RenewalState['lastProblem'] | null;
  readonly retry_after: string | null;
  readonly next_check: string | null;
}

export function certStatusView(pki: PkiDecl, info: CertificateInfo | undefined, state: RenewalState | undefined, now = Date.now()): CertStatusView {
  const left = info ? secondsLeft(info, now) : null;
  const acme = pki.acme !== undefined;
  return {
    name: pki.name,
    source: info?.source ?? 'none',
    acme,
    subject: info?.subject ?? null,
    alt_names: info?.altNames ?? [],
    issuer: info?.issuer ?? null,
    serial: info?.serialNumber ?? null,
    not_after: info?.notAfter.toISOString() ?? null,
    days_left: left === null ? null : Math.floor(left / 86400),
    seconds_left: left,
    renew_at: acme ? (state?.renewAt ?? null) : null,
    last_attempt: state?.lastAttempt ?? null,
    last_outcome: state?.lastOutcome ?? null,
    last_error: state?.lastError ?? null,
    last_problem: state?.lastProblem ?? null,
    retry_after: state?.retryAfter ?? null,
    next_check: acme ? (state?.nextCheck ?? null) : null,
  };
}
