/**
 * The ACME side of the running appliance: owns the account key, the HTTP-01
 * responder and one renewal timer per `pki NAME acme`.
 *
 * `open` does everything that can fail locally (account key, `acme ca`
 * file, binding the challenge port) so those are errors at start; `start`
 * only schedules — the appliance never waits for the CA. A check issues when
 * the pki still serves its self-signed certificate, or when the stored
 * certificate is due (schedule.ts); otherwise it sleeps until the renewal
 * time or the next periodic check. A new certificate is stored atomically
 * then installed into the TlsRegistry, which every listener of that pki
 * reads on each new handshake: open connections keep their session.
 * Failures keep the current certificate, are logged once with the CA's
 * problem document, and are retried with backoff (never before Retry-After).
 * ACME operations run one at a time (acme-client's HTTP client is shared).
 */
import { X509Certificate } from 'node:crypto';
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import type { Config, PkiDecl } from '../core/config/types.ts';
import type { Logger } from '../core/log.ts';
import { acmeCertificatePaths, secondsLeft, type TlsRegistry } from '../core/tls.ts';
import { acmeDir, loadOrCreateAccountKey, readAccountUrl, writeAccountUrl } from './account.ts';
import { ariCertId, fetchRenewalWindow } from './ari.ts';
import { AcmeError, configureAcmeHttp, describeError, withProblemCapture } from './http.ts';
import { issueCertificate, readDirectory } from './issue.ts';
import { ChallengeResponder } from './responder.ts';
import { nextCheckTime, pickInWindow, renewalTime, retryTime } from './schedule.ts';
import { readState, writeState, type RenewalState } from './state.ts';
import { certStatusView, type CertStatusView } from './status.ts';

export interface RenewResult {
  readonly name: string;
  readonly ok: boolean;
  readonly notAfter?: string;
  readonly error?: string;
}

export interface AcmeManagerOptions {
  readonly config: () => Config;
  readonly registry: TlsRegistry;
  readonly log: Logger;
  readonly random?: () => number;
}

export class AcmeManager {
  private readonly opts: AcmeManagerOptions;
  private readonly responder: ChallengeResponder;
  private readonly accountKey: string;
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly states = new Map<string, RenewalState>();
  /** Serializes ACME work across pkis. */
  private chain: Promise<unknown> = Promise.resolve();
  private stopped = false;
  /** The pkis whose checks are running (start, or adopted at a reload). */
  private readonly begun = new Set<string>();

  private constructor(opts: AcmeManagerOptions, responder: ChallengeResponder, accountKey: string) {
    this.opts = opts;
    this.responder = responder;
    this.accountKey = accountKey;
  }

  /** Local preparation; throws (start fails) on a corrupt account key, an unreadable `acme ca`, or a challenge port in use. */
  static async open(opts: AcmeManagerOptions): Promise<AcmeManager> {
    const config = opts.config();
    const challenge = config.acme.challenge;
    if (!challenge) throw new Error('acme: no "acme challenge http-01 listen on ADDRESS port N"');
    let ca: string | undefined;
    if (config.acme.ca) {
      try {
        ca = readFileSync(config.acme.ca, 'utf8');
      } catch (err) {
        throw new Error(`acme ca ${config.acme.ca}: ${(err as Error).message}`);
      }
      if (!/-----BEGIN CERTIFICATE-----/.test(ca)) throw new Error(`acme ca ${config.acme.ca}: no PEM certificate in the file`);
    }
    configureAcmeHttp(ca);
    mkdirSync(acmeDir(config.dataDir), { recursive: true, mode: 0o700 });
    const key = loadOrCreateAccountKey(config.dataDir);
    if (key.created) opts.log.info({ path: key.path }, 'ACME account key created');
    const responder = await ChallengeResponder.listen(challenge.host, challenge.port);
    opts.log.info({ listen: `${challenge.host}:${responder.port}` }, 'ACME http-01 responder listening');
    return new AcmeManager(opts, responder, key.pem);
  }

  get challengePort(): number {
    return this.responder.port;
  }

  private acmePkis(): PkiDecl[] {
    return [...this.opts.config().pki.values()].filter((p) => p.acme);
  }

  /** Schedules a first check of every ACME pki now (in the background). */
  start(): void {
    for (const pki of this.acmePkis()) this.begin(pki);
  }

  /** After a reload: ACME pkis new to the config get their first check now; the names. */
  adopt(): string[] {
    const added = this.acmePkis().filter((p) => !this.begun.has(p.name));
    for (const pki of added) this.begin(pki);
    return added.map((p) => p.name);
  }

  private begin(pki: PkiDecl): void {
    this.begun.add(pki.name);
    const directory = this.opts.config().acme.directory;
    const info = this.opts.registry.info(pki.name);
    const state = this.state(pki.name);
    // A restart (or a crash loop) does not reset the backoff against the same CA.
    const backoff = state.lastOutcome === 'failed' && state.directory === directory && state.nextCheck && new Date(state.nextCheck) > new Date() ? new Date(state.nextCheck) : undefined;
    if (info?.source !== 'acme') {
      this.opts.log.warn(
        { pki: pki.name, directory, ...(backoff ? { nextAttempt: backoff.toISOString(), lastError: state.lastError } : {}) },
        backoff
          ? `no ACME certificate for ${pki.name} yet; the last attempt failed, the next is at ${backoff.toISOString()} ("appliance cert renew" tries now); the self-signed certificate is served until then`
          : `no ACME certificate for ${pki.name} yet: requesting one; the self-signed certificate is served until it is issued`,
      );
    }
    this.schedule(pki.name, info?.source !== 'acme' && backoff ? backoff : new Date());
  }

  status(now = Date.now()): CertStatusView[] {
    const config = this.opts.config();
    return [...config.pki.values()].map((p) => certStatusView(p, this.opts.registry.info(p.name), p.acme ? this.state(p.name) : undefined, now));
  }

  /** `appliance cert renew [NAME]`: renews now, whatever the schedule says (but never before the CA's Retry-After). */
  async renew(names: readonly string[], progress: (message: string) => void): Promise<RenewResult[]> {
    const out: RenewResult[] = [];
    for (const name of names) {
      const state = this.state(name);
      if (state.retryAfter && new Date(state.retryAfter) > new Date()) {
        const error = `the CA asked not to retry before ${state.retryAfter} (${state.lastError ?? 'rate limited'})`;
        progress(`${name}: ${error}`);
        out.push({ name, ok: false, error });
        continue;
      }
      progress(`${name}: renewing now`);
      out.push(await this.serial(() => this.attempt(name, (m) => progress(`${name}: ${m}`))));
    }
    return out;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    await this.responder.close();
  }

  private state(name: string): RenewalState {
    let s = this.states.get(name);
    if (!s) {
      s = readState(this.opts.config().dataDir, name);
      this.states.set(name, s);
    }
    return s;
  }

  private setState(name: string, s: RenewalState): void {
    this.states.set(name, s);
    try {
      writeState(this.opts.config().dataDir, name, s);
    } catch (err) {
      this.opts.log.error({ pki: name, err: (err as Error).message }, 'cannot write the renewal state');
    }
  }

  private schedule(name: string, at: Date): void {
    if (this.stopped) return;
    clearTimeout(this.timers.get(name));
    const delay = Math.max(0, at.getTime() - Date.now());
    const timer = setTimeout(() => {
      this.timers.delete(name);
      void this.serial(() => this.check(name));
    }, delay);
    timer.unref();
    this.timers.set(name, timer);
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** A timer fired: renew if due, else sleep until it is. */
  private async check(name: string): Promise<void> {
    if (this.stopped) return;
    const pki = this.opts.config().pki.get(name);
    if (!pki?.acme) return;
    const info = this.opts.registry.info(name);
    const now = new Date();
    if (info?.source === 'acme') {
      const { renewAt, pollAfter, window } = await this.renewalTime(name, info.notBefore, info.notAfter);
      this.opts.log.info({ pki: name, notAfter: info.notAfter.toISOString(), secondsLeft: secondsLeft(info), renewAt: renewAt.toISOString() }, 'certificate expiry checked');
      if (renewAt > now) {
        const next = nextCheckTime(now, renewAt, pollAfter);
        this.setState(name, {
          ...this.state(name),
          renewAt: renewAt.toISOString(),
          nextCheck: next.toISOString(),
          ...(window ? { renewalWindow: window } : {}),
        });
        this.schedule(name, next);
        return;
      }
    }
    const retryAfter = this.state(name).retryAfter;
    if (retryAfter && new Date(retryAfter) > now) {
      this.schedule(name, new Date(retryAfter));
      return;
    }
    await this.attempt(name, (m) => this.opts.log.debug({ pki: name }, m));
  }

  /** The renewal time by lifetime, or earlier by the CA's renewal information when the directory offers it. */
  private async renewalTime(name: string, notBefore: Date, notAfter: Date): Promise<{ renewAt: Date; pollAfter?: Date; window?: { start: string; end: string } }> {
    const byLife = renewalTime({ notBefore, notAfter }, undefined);
    const keep = this.state(name);
    try {
      const dir = await readDirectory(this.opts.config().acme.directory);
      if (!dir.renewalInfo) return { renewAt: byLife };
      const pem = this.opts.registry.keyPair(name)!.cert;
      const w = await fetchRenewalWindow(dir.renewalInfo, pem);
      const window = { start: w.start.toISOString(), end: w.end.toISOString() };
      // Keep the instant picked in an unchanged window (re-picking at every poll would drift to its start).
      const same = keep.renewalWindow?.start === window.start && keep.renewalWindow?.end === window.end && keep.renewAt;
      const pick = same ? new Date(keep.renewAt!) : pickInWindow(w, (this.opts.random ?? Math.random)());
      return { renewAt: renewalTime({ notBefore, notAfter }, pick), window, ...(w.pollAfter ? { pollAfter: w.pollAfter } : {}) };
    } catch (err) {
      this.opts.log.debug({ pki: name, err: describeError(err) }, 'no renewal information from the CA; using the lifetime rule');
      return { renewAt: byLife };
    }
  }

  /** One issuance attempt: on success store, install, schedule the next check; on failure keep the current certificate and back off. */
  private async attempt(name: string, progress: (m: string) => void): Promise<RenewResult> {
    const config = this.opts.config();
    const pki = config.pki.get(name);
    if (!pki?.acme) return { name, ok: false, error: `pki ${name} does not use acme` };
    const log = this.opts.log.child({ pki: name });
    const now = new Date();
    const before = this.state(name);
    const current = this.opts.registry.info(name);
    const names = [pki.name, ...pki.acme.altNames];
    log.info({ directory: config.acme.directory, names, attempt: before.failures + 1 }, 'requesting a certificate from the CA');
    const started = Date.now();
    try {
      const replaces = current?.source === 'acme' ? safeCertId(this.opts.registry.keyPair(name)!.cert) : undefined;
      const accountUrl = readAccountUrl(config.dataDir, config.acme.directory);
      const issued = await withProblemCapture(() =>
        issueCertificate({
          directory: config.acme.directory,
          accountKey: this.accountKey,
          ...(accountUrl ? { accountUrl } : {}),
          ...(config.acme.contact ? { contact: config.acme.contact } : {}),
          names,
          responder: this.responder,
          ...(replaces ? { replaces } : {}),
          progress,
        }),
      );
      writeAccountUrl(config.dataDir, config.acme.directory, issued.accountUrl);
      storePair(config.dataDir, pki, issued.cert, issued.key);
      const info = this.opts.registry.install(name, { cert: issued.cert, key: issued.key }, 'acme');
      progress('installed: new TLS handshakes get the new certificate; open connections keep theirs');
      const renewAt = renewalTime(info, undefined);
      const next = nextCheckTime(new Date(), renewAt);
      this.setState(name, {
        failures: 0,
        lastAttempt: now.toISOString(),
        lastOutcome: 'issued',
        accountUrl: issued.accountUrl,
        renewAt: renewAt.toISOString(),
        nextCheck: next.toISOString(),
      });
      log.info(
        { serial: info.serialNumber, issuer: info.issuer, notAfter: info.notAfter.toISOString(), secondsLeft: secondsLeft(info), ms: Date.now() - started, replaced: current?.source },
        `certificate issued and installed for ${name}`,
      );
      this.schedule(name, next);
      return { name, ok: true, notAfter: info.notAfter.toISOString() };
    } catch (err) {
      const e = err instanceof AcmeError ? err : new AcmeError(describeError(err), { cause: err });
      const failures = before.failures + 1;
      const next = retryTime(new Date(), failures, (this.opts.random ?? Math.random)(), e.retryAfter);
      this.setState(name, {
        ...before,
        failures,
        lastAttempt: now.toISOString(),
        lastOutcome: 'failed',
        lastError: e.message,
        directory: config.acme.directory,
        ...(e.problem ? { lastProblem: e.problem } : { lastProblem: undefined }),
        retryAfter: e.retryAfter?.toISOString(),
        nextCheck: next.toISOString(),
      });
      log.error(
        {
          err: e.message,
          ...(e.problem ? { problem: e.problem } : {}),
          ...(e.retryAfter ? { retryAfter: e.retryAfter.toISOString() } : {}),
          failures,
          nextAttempt: next.toISOString(),
          serving: current ? { source: current.source, notAfter: current.notAfter.toISOString(), secondsLeft: secondsLeft(current) } : undefined,
        },
        'certificate request failed; the current certificate stays in service',
      );
      progress(`failed: ${e.message}; next attempt ${next.toISOString()}`);
      this.schedule(name, next);
      return { name, ok: false, error: e.message };
    }
  }
}

function safeCertId(pem: string): string | undefined {
  try {
    return ariCertId(pem);
  } catch {
    return undefined;
  }
}

/**
 * Key (0600) and chain both written to temp files and fsync'd first, then
 * renamed key then chain: a failed write (disk full) replaces nothing; only
 * a crash between the two renames leaves a mismatched pair, which the next
 * start detects (serves self-signed and re-issues) — never a torn file.
 */
function storePair(dataDir: string, pki: PkiDecl, cert: string, key: string): void {
  const paths = acmeCertificatePaths(dataDir, pki);
  new X509Certificate(cert); // parseable before anything is replaced
  const tmpKey = writeTemp(paths.key, key, 0o600);
  let tmpCert: string;
  try {
    tmpCert = writeTemp(paths.cert, cert, 0o644);
  } catch (err) {
    rmSync(tmpKey, { force: true });
    throw err;
  }
  renameSync(tmpKey, paths.key);
  renameSync(tmpCert, paths.cert);
}

function writeTemp(path: string, data: string, mode: number): string {
  const tmp = `${path}.new-${process.pid}`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeFileSync(fd, data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  chmodSync(tmp, mode);
  return tmp;
}
