/**
 * `appliance cert status [--json]` and `appliance cert renew [NAME]`:
 * through the running appliance (its live certificates and renewal timers),
 * or from the stored files when it is stopped — status reads what `start`
 * would serve, renew runs the issuance in this process (it needs the
 * challenge port) and the next start serves the result.
 */
import { readFileSync } from 'node:fs';
import type { Config, PkiDecl } from '../../core/config/types.ts';
import { acmeCertificatePaths, describeCertificate, selfSignedPaths, TlsRegistry, type CertificateInfo } from '../../core/tls.ts';
import { certStatusView, type CertStatusView } from '../../acme/status.ts';
import { readState } from '../../acme/state.ts';
import type { RenewResult } from '../../acme/manager.ts';
import { connectControl } from '../control/client.ts';
import { loadConfigOrThrow } from '../load.ts';
import { CommandError, UsageError, configPath, parse } from '../usage.ts';

export const certHelp = `usage: appliance cert status [--json]
       appliance cert renew [NAME]
       (both take -c CONFIG)

status shows each pki: where its certificate comes from (acme, files,
self-signed), subject and alt names, issuer, not-after and days left, and
for acme the last renewal attempt and its outcome and the next check.
--json prints an array of {name, source, subject, alt_names, issuer,
not_after, days_left, seconds_left, last_attempt, last_outcome, last_error,
next_check, ...}.
renew asks the CA for a new certificate now (every acme pki, or NAME),
printing progress; the running appliance installs it without a restart.`;

export async function certCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (values.help) {
    process.stdout.write(`${certHelp}\n`);
    return 0;
  }
  const [verb, ...rest] = positionals;
  if (verb === undefined) throw new UsageError(certHelp);
  const config = loadConfigOrThrow(configPath(values), { warnings: false });
  if (verb === 'status' && rest.length === 0) {
    const certs = await status(config);
    process.stdout.write(values.json ? `${JSON.stringify(certs, null, 2)}\n` : certs.map(formatStatus).join('\n'));
    return 0;
  }
  if (verb === 'renew' && rest.length <= 1) {
    const results = await renew(config, rest[0]);
    for (const r of results) {
      if (r.ok) process.stdout.write(`${r.name}: renewed, valid until ${r.notAfter}\n`);
      else process.stderr.write(`appliance: ${r.name}: renewal failed: ${r.error}\n`);
    }
    return results.every((r) => r.ok) ? 0 : 1;
  }
  throw new UsageError(`unknown cert command "${positionals.join(' ')}" (status [--json], renew [NAME])`);
}

async function status(config: Config): Promise<CertStatusView[]> {
  const client = await connectControl(config.control.socket);
  if (client) {
    try {
      return (await client.request('cert.status', {})).certificates;
    } finally {
      client.close();
    }
  }
  return [...config.pki.values()].map((p) => certStatusView(p, storedCertificate(config, p), p.acme ? readState(config.dataDir, p.name) : undefined));
}

/** The certificate `appliance start` would serve for this pki (without generating anything). */
function storedCertificate(config: Config, pki: PkiDecl): CertificateInfo | undefined {
  const tryRead = (path: string, source: CertificateInfo['source']) => {
    try {
      return describeCertificate(pki.name, readFileSync(path, 'utf8'), source);
    } catch {
      return undefined;
    }
  };
  if (pki.acme) return tryRead(acmeCertificatePaths(config.dataDir, pki).cert, 'acme') ?? tryRead(selfSignedPaths(config.dataDir, pki.name).cert, 'self-signed');
  if (pki.cert !== undefined) return tryRead(pki.cert, 'files');
  return tryRead(selfSignedPaths(config.dataDir, pki.name).cert, 'self-signed');
}

async function renew(config: Config, name: string | undefined): Promise<RenewResult[]> {
  const progress = (p: string) => process.stderr.write(`${p}\n`);
  const client = await connectControl(config.control.socket);
  if (client) {
    try {
      return (await client.request('cert.renew', name === undefined ? {} : { name }, progress)).results;
    } finally {
      client.close();
    }
  }
  const acmePkis = [...config.pki.values()].filter((p) => p.acme).map((p) => p.name);
  if (name !== undefined && !config.pki.has(name)) throw new UsageError(`no pki ${name} in the config`);
  if (name !== undefined && !acmePkis.includes(name)) throw new UsageError(`pki ${name} does not use acme: its certificate is not renewed by the appliance`);
  if (acmePkis.length === 0) throw new UsageError('no pki uses acme in the config');
  progress('the appliance is not running: renewing from this process; the next start serves the new certificate');
  const { createLogger } = await import('../../core/log.ts');
  const { loadCertificates } = await import('../../core/tls.ts');
  const { AcmeManager } = await import('../../acme/manager.ts');
  const log = createLogger({ level: 'fatal', destination: process.stderr });
  const registry = await loadCertificates(config, log, new TlsRegistry());
  let manager;
  try {
    manager = await AcmeManager.open({ config: () => config, registry, log });
  } catch (err) {
    throw new CommandError((err as Error).message);
  }
  try {
    return await manager.renew(name !== undefined ? [name] : acmePkis, progress);
  } finally {
    await manager.stop();
  }
}

function formatStatus(c: CertStatusView): string {
  const lines = [`${c.name}  ${c.source}${c.acme && c.source !== 'acme' ? ' (acme: not issued yet)' : ''}`];
  if (c.subject !== null) lines.push(`  subject     ${c.subject}`);
  if (c.alt_names.length > 0) lines.push(`  alt names   ${c.alt_names.join(', ')}`);
  if (c.issuer !== null) lines.push(`  issuer      ${c.issuer}`);
  if (c.not_after !== null) lines.push(`  not after   ${c.not_after}  (${c.days_left} days left)`);
  if (c.acme) {
    if (c.renew_at) lines.push(`  renew at    ${c.renew_at}`);
    lines.push(`  last try    ${c.last_attempt ?? 'never'}${c.last_outcome ? `  ${c.last_outcome}` : ''}${c.last_error ? `: ${c.last_error}` : ''}`);
    if (c.retry_after) lines.push(`  retry after ${c.retry_after}  (asked by the CA)`);
    lines.push(`  next check  ${c.next_check ?? 'at start'}`);
  }
  return `${lines.join('\n')}\n`;
}
