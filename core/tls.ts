/**
 * TLS contexts by pki name. Listeners never hold a certificate: they ask the
 * registry on every handshake (SNI callback) and are told when a pki changes
 * (for the default context), so a renewed certificate is served at once
 * without a restart or a dropped connection — the seam ACME installs into.
 *
 * A pki with cert/key files serves those; `self-signed` (and `acme` until
 * the first certificate is issued) serves a certificate generated for the
 * pki name into DATA-DIR/tls/, kept across restarts, renewed when it nears
 * expiry. TLS 1.2 minimum, Mozilla's "intermediate" ciphers.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config, PkiDecl } from './config/types.ts';
import type { Logger } from './log.ts';

/** Mozilla intermediate (TLS 1.2 suites; TLS 1.3 suites are Node's defaults). */
export const TLS_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'DHE-RSA-AES128-GCM-SHA256',
  'DHE-RSA-AES256-GCM-SHA384',
].join(':');

export const TLS_MIN_VERSION = 'TLSv1.2' as const;

export type CertificateSource = 'files' | 'self-signed' | 'acme';

export interface CertificateInfo {
  readonly name: string;
  readonly source: CertificateSource;
  readonly subject: string;
  readonly altNames: readonly string[];
  readonly issuer: string;
  readonly notAfter: Date;
  readonly notBefore: Date;
  readonly serialNumber: string;
  readonly fingerprint256: string;
}

export interface KeyPair {
  readonly cert: string;
  readonly key: string;
}

interface Entry {
  readonly context: SecureContext;
  readonly pair: KeyPair;
  readonly info: CertificateInfo;
}

export class TlsRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Map<string, Set<(pair: KeyPair) => void>>();

  /** Installs (or replaces) the certificate of a pki; throws if cert and key do not match. */
  install(name: string, pair: KeyPair, source: CertificateSource): CertificateInfo {
    const context = createSecureContext({ ...pair, minVersion: TLS_MIN_VERSION, ciphers: TLS_CIPHERS });
    const info = describeCertificate(name, pair.cert, source);
    const x509 = new X509Certificate(pair.cert);
    if (!x509.checkPrivateKey(createPrivateKey(pair.key))) {
      throw new Error(`pki ${name}: the key does not match the certificate`);
    }
    this.entries.set(name, { context, pair, info });
    for (const fn of this.listeners.get(name) ?? []) fn(pair);
    return info;
  }

  /** The current context, read on every handshake. */
  context(name: string): SecureContext | undefined {
    return this.entries.get(name)?.context;
  }

  keyPair(name: string): KeyPair | undefined {
    return this.entries.get(name)?.pair;
  }

  info(name: string): CertificateInfo | undefined {
    return this.entries.get(name)?.info;
  }

  all(): CertificateInfo[] {
    return [...this.entries.values()].map((e) => e.info);
  }

  /** Called with the new key pair whenever the pki's certificate is replaced. */
  onChange(name: string, fn: (pair: KeyPair) => void): () => void {
    let set = this.listeners.get(name);
    if (!set) this.listeners.set(name, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }
}


export function describeCertificate(name: string, pem: string, source: CertificateSource): CertificateInfo {
  const x = new X509Certificate(pem);
  const altNames = (x.subjectAltName ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4));
  return {
    name,
    source,
    subject: x.subject.replace(/\n/g, ', '),
    altNames,
    issuer: x.issuer.replace(/\n/g, ', '),
    notAfter: new Date(x.validTo),
    notBefore: new Date(x.validFrom),
    serialNumber: x.serialNumber,
    fingerprint256: x.fingerprint256,
  };
}

/** Renew a self-signed certificate with less than this left. */
const SELF_SIGNED_MIN_REMAINING_MS = 30 * 86_400_000;

/**
 * The self-signed certificate of a pki, from DATA-DIR/tls/NAME.{crt,key},
 * generated (RSA 2048, SHA-256, one year, SAN = name and alt names) when
 * missing or near expiry. Written atomically, key mode 0600.
 */
export async function selfSignedPair(dataDir: string, pki: PkiDecl, log: Logger, now = new Date()): Promise<{ pair: KeyPair; generated: boolean }> {
  const dir = join(dataDir, 'tls');
  const { cert: certPath, key: keyPath } = selfSignedPaths(dataDir, pki.name);
  try {
    const pair = { cert: readFileSync(certPath, 'utf8'), key: readFileSync(keyPath, 'utf8') };
    const x = new X509Certificate(pair.cert);
    if (new Date(x.validTo).getTime() - now.getTime() > SELF_SIGNED_MIN_REMAINING_MS) return { pair, generated: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.warn({ pki: pki.name, err: (err as Error).message }, 'stored self-signed certificate unusable; making a new one');
  }
  const names = [pki.name, ...(pki.acme?.altNames ?? [])];
  // Loaded here only: the X.509 library is large and most runs never generate a certificate.
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: pki.name }], {
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate: new Date(now.getTime() - 60_000),
    notAfterDate: new Date(now.getTime() + 365 * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: names.map((value) => ({ type: 2 as const, value })) },
    ],
  });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeAtomic(keyPath, pems.private, 0o600);
  writeAtomic(certPath, pems.cert, 0o644);
  return { pair: { cert: pems.cert, key: pems.private }, generated: true };
}

/** Written to a temp file in the same directory (with its final mode), fsync'd, then renamed over the target. */
export function writeAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeFileSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

/** Where the self-signed certificate of a pki is kept. */
export function selfSignedPaths(dataDir: string, name: string): { cert: string; key: string } {
  const dir = join(dataDir, 'tls');
  return { cert: join(dir, `${safeName(name)}.self-signed.crt`), key: join(dir, `${safeName(name)}.self-signed.key`) };
}

/**
 * Where an ACME pki's certificate chain and key are kept: the pki's
 * cert/key paths when the config names them, else DATA-DIR/acme/NAME.{crt,key}.
 */
export function acmeCertificatePaths(dataDir: string, pki: PkiDecl): { cert: string; key: string } {
  if (pki.cert !== undefined && pki.key !== undefined) return { cert: pki.cert, key: pki.key };
  const dir = join(dataDir, 'acme');
  return { cert: join(dir, `${safeName(pki.name)}.crt`), key: join(dir, `${safeName(pki.name)}.key`) };
}

/** Seconds until the certificate's not-after (negative once expired): the number to alert on. */
export function secondsLeft(info: CertificateInfo, now = Date.now()): number {
  return Math.floor((info.notAfter.getTime() - now) / 1000);
}

function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, '_');
}

/**
 * Loads every pki of the config into a registry: files are read (an
 * unreadable or mismatched pair fails the start), self-signed and
 * not-yet-issued ACME pkis get their self-signed certificate.
 */
/**
 * `appliance reload`: re-reads the certificate files of file pkis (the
 * certbot deploy-hook flow: renew, then reload) and loads pkis that are new
 * in the config. All or nothing: every file is read and checked before any
 * is installed, so a half-written renewal refuses the reload and the running
 * certificates stay. ACME pkis already served are the renewer's business.
 */
export async function reloadCertificates(config: Config, registry: TlsRegistry, log: Logger): Promise<string[]> {
  const staged: { name: string; pair: KeyPair }[] = [];
  const added: PkiDecl[] = [];
  for (const pki of config.pki.values()) {
    const current = registry.info(pki.name);
    if (!current) {
      added.push(pki);
      continue;
    }
    if (pki.acme || pki.cert === undefined || pki.key === undefined) continue;
    let pair: KeyPair;
    try {
      pair = { cert: readFileSync(pki.cert, 'utf8'), key: readFileSync(pki.key, 'utf8') };
    } catch (err) {
      throw new Error(`pki ${pki.name}: cannot read ${(err as NodeJS.ErrnoException).path ?? pki.cert}: ${(err as Error).message}`);
    }
    const info = checkPair(pki.name, pair);
    if (info.fingerprint256 !== current.fingerprint256 || current.source !== 'files') staged.push({ name: pki.name, pair });
  }
  // New pkis are loaded as at start (files, a stored ACME certificate, or self-signed), into a scratch
  // registry first so an error here still changes nothing.
  const scratch = new TlsRegistry();
  if (added.length > 0) await loadCertificates({ ...config, pki: new Map(added.map((p) => [p.name, p])) }, log, scratch);
  const changed: string[] = [];
  for (const { name, pair } of staged) {
    const info = registry.install(name, pair, 'files');
    log.info({ pki: name, notAfter: info.notAfter.toISOString(), serial: info.serialNumber }, `certificate files of ${name} re-read: the new certificate is served`);
    changed.push(name);
  }
  for (const info of scratch.all()) {
    registry.install(info.name, scratch.keyPair(info.name)!, info.source);
    changed.push(info.name);
  }
  return changed;
}

function checkPair(name: string, pair: KeyPair): CertificateInfo {
  try {
    const x509 = new X509Certificate(pair.cert);
    if (!x509.checkPrivateKey(createPrivateKey(pair.key))) throw new Error('the key does not match the certificate');
    createSecureContext({ ...pair, minVersion: TLS_MIN_VERSION, ciphers: TLS_CIPHERS });
    return describeCertificate(name, pair.cert, 'files');
  } catch (err) {
    throw new Error(`pki ${name}: ${(err as Error).message}`);
  }
}

export async function loadCertificates(config: Config, log: Logger, registry = new TlsRegistry()): Promise<TlsRegistry> {
  for (const pki of config.pki.values()) {
    const paths = pki.acme ? acmeCertificatePaths(config.dataDir, pki) : pki.cert !== undefined && pki.key !== undefined ? { cert: pki.cert, key: pki.key } : undefined;
    if (paths) {
      let pair: KeyPair | undefined;
      try {
        pair = { cert: readFileSync(paths.cert, 'utf8'), key: readFileSync(paths.key, 'utf8') };
      } catch (err) {
        if (!pki.acme) throw new Error(`pki ${pki.name}: cannot read ${(err as NodeJS.ErrnoException).path ?? paths.cert}: ${(err as Error).message}`);
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log.error({ pki: pki.name, err: (err as Error).message }, 'stored ACME certificate unreadable');
      }
      if (pair) {
        try {
          const info = registry.install(pki.name, pair, pki.acme ? 'acme' : 'files');
          if (pki.acme) log.info({ pki: pki.name, notAfter: info.notAfter.toISOString(), secondsLeft: secondsLeft(info) }, `serving the stored ACME certificate for ${pki.name}`);
          continue;
        } catch (err) {
          if (!pki.acme) throw err;
          log.error({ pki: pki.name, err: (err as Error).message }, 'stored ACME certificate unusable; a new one will be requested');
        }
      }
    }
    const { pair, generated } = await selfSignedPair(config.dataDir, pki, log);
    const info = registry.install(pki.name, pair, 'self-signed');
    log.warn(
      { pki: pki.name, notAfter: info.notAfter.toISOString(), generated, reason: pki.acme ? 'acme certificate not issued yet' : 'self-signed' },
      `serving a self-signed certificate for ${pki.name}`,
    );
  }
  return registry;
}
