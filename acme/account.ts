/**
 * The ACME account key, DATA-DIR/acme/account.key: made once (ECDSA P-256,
 * PKCS#8 PEM, mode 0600, written atomically) and reused for the life of the
 * installation. The account at the CA is bound to this key; a key that cannot
 * be read is an error the operator must resolve — a silent new key would be a
 * silent new account (lost rate-limit history, lost authorizations).
 */
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeAtomic } from '../core/tls.ts';

export class AccountKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AccountKeyError';
  }
}

export function acmeDir(dataDir: string): string {
  return join(dataDir, 'acme');
}

export function accountKeyPath(dataDir: string): string {
  return join(acmeDir(dataDir), 'account.key');
}

/** The account key PEM, created when there is none; throws AccountKeyError when the file exists but is not a private key. */
export function loadOrCreateAccountKey(dataDir: string): { pem: string; created: boolean; path: string } {
  const path = accountKeyPath(dataDir);
  let pem: string | undefined;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new AccountKeyError(`the ACME account key ${path} cannot be read (${code ?? (err as Error).message})`);
  }
  if (pem !== undefined) {
    try {
      const key = createPrivateKey(pem);
      if (key.asymmetricKeyType !== 'ec' && key.asymmetricKeyType !== 'rsa') throw new Error(`unsupported key type ${key.asymmetricKeyType}`);
    } catch (err) {
      throw new AccountKeyError(
        `the ACME account key ${path} is corrupt (${(err as Error).message}); it is left as it is and no new account is registered — restore it from a backup, or move it away to register a new account`,
      );
    }
    return { pem, created: false, path };
  }
  mkdirSync(acmeDir(dataDir), { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const created = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  writeAtomic(path, created, 0o600);
  return { pem: created, created: true, path };
}

/** DATA-DIR/acme/accounts.json: the account URL at each directory this key registered with. */
export function readAccountUrl(dataDir: string, directory: string): string | undefined {
  try {
    const all = JSON.parse(readFileSync(join(acmeDir(dataDir), 'accounts.json'), 'utf8')) as Record<string, unknown>;
    const url = all[directory];
    return typeof url === 'string' ? url : undefined;
  } catch {
    return undefined;
  }
}

export function writeAccountUrl(dataDir: string, directory: string, url: string): void {
  let all: Record<string, unknown> = {};
  try {
    all = JSON.parse(readFileSync(join(acmeDir(dataDir), 'accounts.json'), 'utf8')) as Record<string, unknown>;
  } catch {
    // first registration
  }
  if (all[directory] === url) return;
  writeAtomic(join(acmeDir(dataDir), 'accounts.json'), `${JSON.stringify({ ...all, [directory]: url }, null, 2)}\n`, 0o600);
}
