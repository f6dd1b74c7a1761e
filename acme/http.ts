/**
 * The HTTP side of talking to the CA. acme-client sends everything through
 * one shared axios instance; here it gets the trust (system roots plus
 * `acme ca`), a timeout, and no retries of its own: a failed request must
 * come back to the renewal scheduler, which owns backoff and Retry-After
 * (acme-client would otherwise sleep through a rate limit inside a call).
 *
 * The CA's answers that explain a failure (RFC 7807 problem documents, an
 * invalid authorization's challenge error) and their Retry-After are
 * captured so the error the operator sees carries them. acme-client's
 * instance is process-wide, so ACME work is serialized (one operation at a
 * time, see `AcmeSerial`) and the capture belongs to that one operation.
 */
import { Agent } from 'node:https';
import { rootCertificates } from 'node:tls';
import { axios as acmeAxios } from 'acme-client';

/** The CA's explanation of a failure (RFC 8555 §6.7). */
export interface AcmeProblem {
  readonly type?: string;
  readonly detail?: string;
  readonly status?: number;
  readonly subproblems?: readonly unknown[];
}

/** A failed ACME operation: what went wrong, the CA's problem document, and how long the CA asked us to wait. */
export class AcmeError extends Error {
  readonly problem: AcmeProblem | undefined;
  /** Absolute time before which the CA asked not to retry (Retry-After on the failing answer). */
  readonly retryAfter: Date | undefined;
  constructor(message: string, opts: { problem?: AcmeProblem | undefined; retryAfter?: Date | undefined; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AcmeError';
    this.problem = opts.problem;
    this.retryAfter = opts.retryAfter;
  }
}

const REQUEST_TIMEOUT_MS = 30_000;
/** acme-client retries these itself; they explain nothing. */
const BAD_NONCE = 'urn:ietf:params:acme:error:badNonce';

interface Capture {
  problem?: AcmeProblem;
  retryAfter?: Date;
}

let current: Capture | null = null;
let configuredCa: string | undefined | null = null;

/** Sets trust and timeouts once per process (and again only if `acme ca` changes). */
export function configureAcmeHttp(extraCa: string | undefined): void {
  if (configuredCa === extraCa) return;
  const first = configuredCa === null;
  configuredCa = extraCa;
  acmeAxios.defaults.httpsAgent = new Agent({ ca: extraCa ? [...rootCertificates, extraCa] : [...rootCertificates] });
  acmeAxios.defaults.timeout = REQUEST_TIMEOUT_MS;
  acmeAxios.defaults.proxy = false;
  const settings = (acmeAxios.defaults as unknown as { acmeSettings: { retryMaxAttempts: number } }).acmeSettings;
  settings.retryMaxAttempts = 0;
  if (!first) return;
  // A request that got no answer (refused, reset, timed out) must not reach acme-client's retry
  // handler: with retries exhausted it dereferences the missing response (a TypeError that hides
  // the cause). Ours runs first (axios documents `handlers` as public) and turns it into an AcmeError.
  const manager = acmeAxios.interceptors.response as unknown as { handlers: unknown[] | null };
  const noAnswer = {
    fulfilled: null,
    rejected: (err: unknown) => {
      if (typeof err === 'object' && err !== null && 'config' in err && !(err as { response?: unknown }).response) {
        const url = (err as { config?: { url?: string } }).config?.url;
        throw new AcmeError(`${describeError(err)}${url ? ` (${url})` : ''}`, { cause: err });
      }
      throw err;
    },
    synchronous: false,
    runWhen: null,
  };
  manager.handlers = [noAnswer, ...(manager.handlers ?? [])];
  acmeAxios.interceptors.response.use((resp) => {
    if (current && resp.status >= 400 && !(isRecord(resp.data) && resp.data.type === BAD_NONCE)) {
      const problem = asProblem(resp.data);
      if (problem) current.problem = problem;
      else current.problem = { status: resp.status, detail: `HTTP ${resp.status} from ${String(resp.config.url)}` };
      const ra = parseRetryAfter(resp.headers['retry-after'], new Date());
      if (ra) current.retryAfter = ra;
    } else if (current && isRecord(resp.data) && resp.data.status === 'invalid') {
      // An invalid order or authorization: the challenge's error says why (e.g. the CA could not fetch the token).
      const challenges = Array.isArray(resp.data.challenges) ? resp.data.challenges : [];
      const failed = challenges.map((c: unknown) => (isRecord(c) ? asProblem(c.error) : undefined)).find((p) => p !== undefined);
      const problem = failed ?? asProblem(resp.data.error);
      if (problem) current.problem = problem;
    }
    return resp;
  });
}

/** Runs one ACME operation with failure capture; errors come out as AcmeError with the CA's problem attached. */
export async function withProblemCapture<T>(fn: () => Promise<T>): Promise<T> {
  const capture: Capture = {};
  current = capture;
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AcmeError) throw err;
    const message = describeError(err);
    throw new AcmeError(capture.problem?.detail && !message.includes(capture.problem.detail) ? `${message}: ${capture.problem.detail}` : message, {
      problem: capture.problem,
      retryAfter: capture.retryAfter,
      cause: err,
    });
  } finally {
    if (current === capture) current = null;
  }
}

/** One line for a network or library error (axios errors carry a code, not a useful message). */
export function describeError(err: unknown): string {
  const e = err as { code?: string; message?: string; errors?: { message?: string }[] };
  if (e?.code && ['ECONNREFUSED', 'ENOTFOUND', 'ETIMEDOUT', 'ECONNRESET', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'].includes(e.code)) {
    return `cannot reach the CA (${e.code})`;
  }
  if (e?.code === 'ECONNABORTED') return `the CA did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`;
  if (e?.code && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(e.code)) return `the CA's HTTPS certificate is not trusted (${e.code}; set "acme ca" for a private CA)`;
  if (!e?.message && Array.isArray(e?.errors)) return e.errors.map((x) => x.message).join('; ');
  return e?.message ?? String(err);
}

/** Retry-After: delta-seconds or an HTTP date (RFC 9110 §10.2.3). */
export function parseRetryAfter(value: unknown, now: Date): Date | undefined {
  if (typeof value !== 'string' || value.trim() === '') return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return new Date(now.getTime() + Number(v) * 1000);
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : new Date(t);
}

function asProblem(data: unknown): AcmeProblem | undefined {
  let d = data;
  if (Buffer.isBuffer(d)) d = d.toString('utf8');
  if (typeof d === 'string') {
    try {
      d = JSON.parse(d);
    } catch {
      return undefined;
    }
  }
  if (!isRecord(d) || (typeof d.type !== 'string' && typeof d.detail !== 'string')) return undefined;
  return {
    ...(typeof d.type === 'string' ? { type: d.type } : {}),
    ...(typeof d.detail === 'string' ? { detail: d.detail.slice(0, 2000) } : {}),
    ...(typeof d.status === 'number' ? { status: d.status } : {}),
    ...(Array.isArray(d.subproblems) ? { subproblems: d.subproblems.slice(0, 20) } : {}),
  };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The axios instance, for the few requests made outside acme-client (the directory check, renewal information). */
export { acmeAxios };
