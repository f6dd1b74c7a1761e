/**
 * `appliance dkim keygen <domain>`: makes a DKIM signing key where the
 * signer looks for it (SPEC §ops) and prints the DNS TXT record to publish.
 * The selector, key path and algorithm default to those of the first
 * `dkim sign` line whose domain table holds the domain — the line the
 * signer will use.
 */
import { generateKeyPair, createPrivateKey } from 'node:crypto';
import { chownSync, closeSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { domainToASCII } from 'node:url';
import { promisify } from 'node:util';
import { isValidDomain, normalizeDomain } from '../../core/address.ts';
import type { Config, DkimSign } from '../../core/config/types.ts';
import { openTable } from '../../core/tables/registry.ts';
import type { LookupResult, Table } from '../../core/tables/types.ts';
import { dkimKeyPath, dkimPublicKeyValue } from '../../smtp/dkim.ts';
import type { Store } from '../../store/db.ts';
import { connectControl, type ControlClient } from '../control/client.ts';
import { loadConfigOrThrow } from '../load.ts';
import { findUser, isRoot } from '../privileges.ts';
import { CommandError, UsageError, configPath, parse } from '../usage.ts';

export const dkimHelp = `usage: appliance dkim keygen <domain> [--selector S] [--algorithm rsa|ed25519] [--force] [-c CONFIG] [--json]

Makes a DKIM signing key for DOMAIN and prints the DNS TXT record to publish.
The key (PKCS#8 PEM, mode 0600) goes to DATA-DIR/dkim/DOMAIN.SELECTOR.key, or
to the "key" path of the config's "dkim sign" line for DOMAIN (%{domain}
replaced). An existing key is never replaced without --force.
  --selector S     default: the selector of the first "dkim sign" line whose
                   domain table holds DOMAIN (the one that signs its mail),
                   else s<current year>
  --algorithm A    rsa (2048 bits) or ed25519 (RFC 8463, not known to every
                   verifier yet); default: the algorithm of that line, else rsa
  --force          replace an existing key (the published record must then
                   change too: a new selector is usually the better way)
  --json           print {domain, selector, algorithm, key, name, value}

Output (stdout), in zone-file (BIND) syntax:
  SELECTOR._domainkey.DOMAIN. IN TXT "v=DKIM1; k=rsa; p=BASE64"
A value longer than 255 characters (every RSA key) is split into quoted
255-character strings inside parentheses, as BIND expects; two comment lines
(";") then give the value in one piece, for DNS web panels. ed25519 keys are
published as k=ed25519 with the raw 32-byte public key.`;

type KeyAlgorithm = 'rsa' | 'ed25519';

const SELECTOR = /^[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?$/;
const TXT_STRING_MAX = 255;

const generate = promisify(generateKeyPair);

export async function dkimCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {
    selector: { type: 'string', short: 's' },
    algorithm: { type: 'string', short: 'a' },
    force: { type: 'boolean', short: 'f' },
  });
  if (values.help) {
    process.stdout.write(`${dkimHelp}\n`);
    return 0;
  }
  const [verb, domainArg, ...extra] = positionals;
  if (verb === undefined) {
    process.stdout.write(`${dkimHelp}\n`);
    return 2;
  }
  if (verb !== 'keygen') throw new UsageError(`unknown dkim command "${verb}" (keygen)`);
  if (domainArg === undefined || extra.length > 0) throw new UsageError('usage: appliance dkim keygen <domain> [--selector S] [--algorithm rsa|ed25519] [--force]');
  const domain = normalizeDomain(domainArg);
  if (domain.startsWith('[') || !isValidDomain(domain)) throw new UsageError(`"${domainArg}" is not a valid domain`);
  if (values.selector !== undefined && !SELECTOR.test(values.selector)) {
    throw new UsageError(`--selector: "${values.selector}" is not a valid selector (letters, digits, - and _)`);
  }
  const wantedAlgorithm = values.algorithm === undefined ? undefined : parseAlgorithm(values.algorithm);

  const config = loadConfigOrThrow(configPath(values), { warnings: false });
  const line = await signingLine(config, domain);
  const selector = values.selector ?? line?.selector ?? `s${new Date().getFullYear()}`;
  const sameLine = line && line.selector === selector ? line : undefined;
  const algorithm: KeyAlgorithm = wantedAlgorithm ?? (line ? lineAlgorithm(line) : 'rsa');
  const ascii = domainToASCII(domain) || domain;
  const keyPath = dkimKeyPath(config, sameLine ?? { selector }, ascii);

  if (existsSync(keyPath) && !values.force) {
    throw new CommandError(`${keyPath} already exists; not overwriting it (--force replaces it, and the published record must then change too)`);
  }

  const pair =
    algorithm === 'rsa'
      ? await generate('rsa', { modulusLength: 2048, publicExponent: 0x10001 })
      : await generate('ed25519', {});
  const pem = pair.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  writeKey(config, keyPath, pem, values.force === true);

  const { k, p } = dkimPublicKeyValue(createPrivateKey(pem));
  const value = `v=DKIM1; k=${k}; p=${p}`;
  const name = `${selector}._domainkey.${ascii}`;
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ domain: ascii, selector, algorithm, key: keyPath, name, value }, null, 2)}\n`);
  } else {
    process.stdout.write(formatRecord(name, value));
  }

  process.stderr.write(`wrote ${keyPath} (${algorithm === 'rsa' ? 'rsa 2048' : 'ed25519'})\n`);
  if (!line) {
    process.stderr.write(
      `note: no "dkim sign" line of ${config.path} covers ${domain}; mail from it is signed once the config has:\n` +
        `  dkim sign domain ${domain} selector ${selector}${algorithm === 'ed25519' ? ' algorithm ed25519' : ''}\n`,
    );
  } else if (!sameLine) {
    process.stderr.write(`note: ${config.path}:${line.pos.line} signs ${domain} with selector ${line.selector}; this key (selector ${selector}) is used once that line says selector ${selector}\n`);
  } else if (lineAlgorithm(line) !== algorithm) {
    process.stderr.write(`note: ${config.path}:${line.pos.line} says algorithm ${line.algorithm}; the signer follows the key (${algorithm}), say "algorithm ${algorithm}" there to match\n`);
  }
  return 0;
}

function parseAlgorithm(a: string): KeyAlgorithm {
  const v = a.toLowerCase();
  if (v === 'rsa' || v === 'rsa-sha256') return 'rsa';
  if (v === 'ed25519' || v === 'ed25519-sha256') return 'ed25519';
  throw new UsageError(`--algorithm: "${a}" is not rsa or ed25519`);
}

function lineAlgorithm(line: DkimSign): KeyAlgorithm {
  return line.algorithm === 'ed25519-sha256' ? 'ed25519' : 'rsa';
}

/**
 * The TXT record in zone-file syntax: one quoted string when it fits in 255
 * characters, else 255-character strings in parentheses plus the value in
 * one piece as comments.
 */
export function formatRecord(name: string, value: string): string {
  if (value.length <= TXT_STRING_MAX) return `${name}. IN TXT "${value}"\n`;
  const chunks: string[] = [];
  for (let i = 0; i < value.length; i += TXT_STRING_MAX) chunks.push(`"${value.slice(i, i + TXT_STRING_MAX)}"`);
  const indent = ' '.repeat(`${name}. IN TXT ( `.length);
  return (
    `${name}. IN TXT ( ${chunks.join(`\n${indent}`)} )\n` +
    `; DNS web panel: a TXT record named ${name} with this value (one line):\n` +
    `; ${value}\n`
  );
}

/**
 * Writes the key file atomically with mode 0600: a temporary file, synced,
 * then linked into place (which fails if a key appeared meanwhile) or, with
 * --force, renamed over the old one. Started as root, the key is given to the
 * config's run-as user, who must be able to read it.
 */
function writeKey(config: Config, path: string, pem: string, force: boolean): void {
  const dir = dirname(path);
  const defaultDir = join(config.dataDir, 'dkim');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const owner = isRoot() ? findUser(config.user) : null;
  const runAs = owner && owner.uid !== 0 ? owner : null;
  if (runAs && dir === defaultDir) chownSync(dir, runAs.uid, runAs.gid);
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, pem);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  try {
    if (runAs) chownSync(tmp, runAs.uid, runAs.gid);
    if (force) {
      renameSync(tmp, path);
    } else {
      try {
        linkSync(tmp, path);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') throw new CommandError(`${path} already exists; not overwriting it (--force replaces it)`);
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV') throw err;
        // No hard links on this file system: the existence check above has to do.
        if (existsSync(path)) throw new CommandError(`${path} already exists; not overwriting it (--force replaces it)`);
        renameSync(tmp, path);
      }
    }
  } finally {
    if (existsSync(tmp)) unlinkSync(tmp);
  }
  try {
    const dfd = openSync(dir, 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    // Directory fsync is best effort (not every platform allows it).
  }
}

/**
 * The first `dkim sign` line whose domain table holds the domain, as the
 * signer picks it. db tables are asked through the running appliance when
 * there is one (it owns the database), else read from the data directory.
 * A table that cannot answer is reported on stderr and skipped.
 */
async function signingLine(config: Config, domain: string): Promise<DkimSign | null> {
  if (config.dkim.length === 0) return null;
  const opened = new Map<string, Table>();
  let client: ControlClient | null | undefined;
  let store: Store | null | undefined;
  try {
    for (const line of config.dkim) {
      const decl = config.tables.get(line.domains.name);
      if (!decl) continue;
      let result: LookupResult<unknown>['kind'];
      try {
        if (decl.source.type === 'db') {
          if (client === undefined) client = await connectControl(config.control.socket).catch(() => null);
          if (client) {
            const r = await client.request('table.lookup', { table: decl.name, key: domain, kind: 'domain' });
            result = r.result === 'found' ? 'found' : r.result === 'none' ? 'none' : 'tempfail';
          } else {
            if (store === undefined) store = await (await import('../../store/db.ts')).Store.open(config.dataDir);
            result = (await localTable(decl.name, () => openTable(decl, { kv: (n) => store!.tableStore(n) }), opened).lookup('domain', domain)).kind;
          }
        } else {
          result = (await localTable(decl.name, () => openTable(decl, { file: { watch: false } }), opened).lookup('domain', domain)).kind;
        }
      } catch (err) {
        process.stderr.write(`warning: cannot look ${domain} up in table ${decl.name}: ${(err as Error).message}\n`);
        continue;
      }
      if (result === 'tempfail') process.stderr.write(`warning: table ${decl.name} could not answer for ${domain} (temporary failure)\n`);
      if (result === 'found') return line;
    }
    return null;
  } finally {
    for (const t of opened.values()) await t.close?.();
    client?.close();
    await store?.close();
  }
}

function localTable(name: string, open: () => Table, opened: Map<string, Table>): Table {
  let t = opened.get(name);
  if (!t) opened.set(name, (t = open()));
  return t;
}
