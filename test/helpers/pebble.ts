/**
 * Debian's pebble (Let's Encrypt's test CA) as a private instance on
 * loopback. The package ships no certificates (PEERS.md): a self-signed
 * listener certificate for 127.0.0.1 is made here and is also the trust
 * anchor the appliance gets through `acme ca`. Validation fetches HTTP-01
 * tokens on `httpPort` from the address `-dnsserver` resolves the names to.
 * Output goes to a file (a pipe would keep the test waiting).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { freePort } from './appliance.ts';
import { selfSignedCert } from './smtp-receiver.ts';

export const PEBBLE = '/usr/bin/pebble';

export function pebbleAvailable(): boolean {
  return existsSync(PEBBLE);
}

export interface Pebble {
  readonly directory: string;
  /** PEM file of pebble's listener certificate (for `acme ca`). */
  readonly caPath: string;
  readonly port: number;
  readonly managementPort: number;
  /** The root that issued the certificates, from the management API. */
  issuingRoot(): Promise<string>;
  log(): string;
  /** Certificates pebble issued so far (its log lines). */
  issuedCount(): number;
  /** New orders pebble received so far. */
  orderCount(): number;
  /** newAccount requests pebble received so far. */
  accountCount(): number;
  stop(): Promise<void>;
  /** Starts it again on the same ports (a new CA: pebble keeps no state). */
  restart(): Promise<void>;
}

export async function startPebble(dir: string, opts: { httpPort: number; dnsPort: number }): Promise<Pebble> {
  const port = await freePort();
  const managementPort = await freePort();
  const tlsPort = await freePort();
  const listener = await selfSignedCert('localhost', { dns: ['localhost'], ips: ['127.0.0.1'] });
  const caPath = join(dir, 'pebble-listener.pem');
  const keyPath = join(dir, 'pebble-listener.key');
  writeFileSync(caPath, listener.cert);
  writeFileSync(keyPath, listener.key);
  const configPath = join(dir, 'pebble-config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${port}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: caPath,
        privateKey: keyPath,
        httpPort: opts.httpPort,
        tlsPort,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }),
  );
  const logPath = join(dir, 'pebble.log');
  let child: ChildProcess | null = null;
  let logStart = 0;

  const launch = async () => {
    logStart = existsSync(logPath) ? readFileSync(logPath, 'utf8').length : 0;
    const fd = openSync(logPath, 'a');
    child = spawn(PEBBLE, ['-config', configPath, '-dnsserver', `127.0.0.1:${opts.dnsPort}`], {
      stdio: ['ignore', fd, fd],
      // No random sleeps before validation; no rejected nonces or reused authorizations (each order validates for real).
      env: { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_AUTHZREUSE: '0' },
    });
    closeSync(fd);
    const deadline = Date.now() + 10_000;
    while (!readFileSync(logPath, 'utf8').slice(logStart).includes('ACME directory available')) {
      if (child.exitCode !== null) throw new Error(`pebble exited (${child.exitCode}):\n${readFileSync(logPath, 'utf8')}`);
      if (Date.now() > deadline) throw new Error(`pebble not ready within 10 s:\n${readFileSync(logPath, 'utf8')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await launch();
  const fullLog = () => readFileSync(logPath, 'utf8');
  const count = (re: RegExp) => (fullLog().match(re) ?? []).length;

  const pebble: Pebble = {
    directory: `https://127.0.0.1:${port}/dir`,
    caPath,
    port,
    managementPort,
    issuingRoot: () => httpsGet(`https://127.0.0.1:${managementPort}/roots/0`, listener.cert),
    log: fullLog,
    issuedCount: () => count(/Issued certificate serial/g),
    orderCount: () => count(/POST \/order-plz/g),
    accountCount: () => count(/POST \/sign-me-up/g),
    async stop() {
      const c = child as ChildProcess | null;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
    async restart() {
      await pebble.stop();
      await launch();
    },
  };
  return pebble;
}

function httpsGet(url: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: timeout`)));
    req.on('error', reject);
    req.end();
  });
}
