/**
 * Runs the real appliance (the built CLI, `appliance start`) as a subprocess
 * on loopback ports with a temp data directory, for end-to-end tests with
 * real clients. Every wait is bounded; every process is killed at teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hashPassword } from '../../core/auth/passwords.ts';

export const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

const handedOut = new Set<number>();

/**
 * A free TCP port on 127.0.0.1 (bound then released; the race with other
 * processes is acceptable in tests). The kernel may hand the same ephemeral
 * port out twice in a row once it is released, so a port already given to
 * this process is never given again.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await bindAndRelease();
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('freePort: no new port after 50 attempts');
}

function bindAndRelease(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface Ports {
  readonly mx: number;
  readonly submission: number;
  readonly smtps: number;
}

export interface TestUser {
  readonly address: string;
  readonly password: string;
}

export const USERS: readonly TestUser[] = [
  { address: 'alice@example.test', password: 'alice-secret' },
  { address: 'bob@example.test', password: 'bob-secret' },
];

/**
 * A config like the SPEC's, on loopback: MX (tls, tag MX), submission
 * (tls-require + auth + senders), smtps (auth), users in an inline table,
 * aliases in a file. `extra` is appended; `replace` rewrites the whole rules part;
 * `pki` replaces the pki line (the listeners use pki mail.example.test).
 */
export async function writeConfig(dir: string, opts: { extra?: string; rules?: string; aliases?: string; maxSize?: string; resolver?: string; pki?: string } = {}): Promise<{ path: string; ports: Ports; dataDir: string }> {
  const ports = { mx: await freePort(), submission: await freePort(), smtps: await freePort() };
  const dataDir = join(dir, 'data');
  const hashes = await Promise.all(USERS.map((u) => hashPassword(u.password, 'bcrypt')));
  writeFileSync(join(dir, 'aliases'), opts.aliases ?? 'postmaster@example.test: alice@example.test\nteam@example.test: alice@example.test, bob@example.test\nboth@example.test: alice@example.test, postmaster@example.test\n');
  const users = USERS.map((u, i) => `"${u.address}" = "${hashes[i]}"`).join(', ');
  const rules =
    opts.rules ??
    `match from any for domain <domains> action "local"
match from any tag SUBMIT for any action "out"
match from any for any reject`;
  const text = `hostname mail.example.test
data-dir "${dataDir}"
user ${userInfo().username}
${opts.pki ?? 'pki mail.example.test self-signed'}
table domains { example.test }
table users { ${users} }
table aliases file:${join(dir, 'aliases')}
listen on 127.0.0.1 port ${ports.mx} tls pki mail.example.test tag MX
listen on 127.0.0.1 port ${ports.submission} tls-require pki mail.example.test auth <users> senders <users> received-auth tag SUBMIT
listen on 127.0.0.1 port ${ports.smtps} smtps pki mail.example.test auth <users> senders <users> tag SUBMIT
action "local" maildir virtual <aliases> userbase <users>
action "out" relay
${rules}
smtp max-message-size ${opts.maxSize ?? '1M'}
auth failure-delay 1s
auth max-failures 5
log level debug
# No DNS here: a closed port fails fast (temporary), unless a test serves a zone.
resolver ${opts.resolver ?? '127.0.0.1:9'}
${opts.extra ?? ''}
`;
  const path = join(dir, 'appliance.conf');
  writeFileSync(path, text);
  return { path, ports, dataDir };
}

export interface RunningAppliance {
  readonly child: ChildProcess;
  readonly logPath: string;
  log(): string;
  /** Parsed JSON log lines. */
  logLines(): Record<string, unknown>[];
  stop(): Promise<number | null>;
  kill9(): Promise<void>;
}

export async function startAppliance(configPath: string, dir: string, name = 'appliance'): Promise<RunningAppliance> {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first (npm test does)`);
  const logPath = join(dir, `${name}.log`);
  const fd = openSync(logPath, 'a');
  const start = readSize(logPath);
  const child = spawn(process.execPath, [MAIN, 'start', '-c', configPath], { stdio: ['ignore', fd, fd], env: { ...process.env, APPLIANCE_CONFIG: '' } });
  closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const log = () => readFileSync(logPath, 'utf8').slice(start);
  const deadline = Date.now() + 15_000;
  while (!log().includes('"appliance ready"')) {
    if (child.exitCode !== null) throw new Error(`appliance exited (${child.exitCode}) before it was ready:\n${log()}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`appliance not ready within 15 s:\n${log()}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    logPath,
    log,
    logLines: () =>
      log()
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    async kill9() {
      if (child.exitCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
  };
}

function readSize(path: string): number {
  try {
    return readFileSync(path, 'utf8').length;
  } catch {
    return 0;
  }
}
