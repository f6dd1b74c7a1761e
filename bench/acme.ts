/**
 * ACME against Debian's pebble on loopback (issue "Certificates"):
 *
 *  1. time from spawning `appliance start` to "appliance ready" (it must not
 *     wait for the CA), to the issuance log line, and to the first TLS
 *     handshake that presents the pebble-issued certificate (verified
 *     against pebble's root) — per repetition, a fresh data dir and CA;
 *  2. certificate swaps under load: S STARTTLS sessions held open while
 *     `appliance cert renew` runs R times and a client makes new verified
 *     handshakes in a loop; after each swap every open session must answer
 *     NOOP, and no handshake may fail.
 *
 *   npm run build && npx node bench/acme.ts [--reps N] [--sessions S] [--renewals R] [--max-seconds T] [--keep]
 *
 * Needs pebble (/usr/bin/pebble). Prints one JSON line per measurement on
 * stdout, notes on stderr. Bounded: N, S, R, and T seconds in total (no
 * repetition starts after that). Every process started is stopped by pid;
 * the temp directory is removed unless --keep.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MAIN, freePort, startAppliance, writeConfig, type RunningAppliance } from '../test/helpers/appliance.ts';
import { startDnsServer } from '../test/helpers/dns-server.ts';
import { pebbleAvailable, startPebble, type Pebble } from '../test/helpers/pebble.ts';
import { RawSmtp } from '../test/helpers/smtp-client.ts';

const { values: opts } = parseArgs({
  options: {
    reps: { type: 'string', default: '5' },
    sessions: { type: 'string', default: '20' },
    renewals: { type: 'string', default: '5' },
    'max-seconds': { type: 'string', default: '300' },
    keep: { type: 'boolean', default: false },
  },
});
const REPS = Number(opts.reps);
const SESSIONS = Number(opts.sessions);
const RENEWALS = Number(opts.renewals);
const DEADLINE = Date.now() + Number(opts['max-seconds']) * 1000;

if (!pebbleAvailable()) throw new Error('pebble is not installed (/usr/bin/pebble)');
const note = (s: string) => process.stderr.write(`${s}\n`);
note(`machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function handshake(port: number, ca: string): Promise<{ ok: true; issuer: string; serial: string } | { ok: false; error: string }> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'mail.example.test' }, () => {
      const c = s.getPeerCertificate();
      s.destroy();
      resolve({ ok: true, issuer: String(c.issuer.CN ?? ''), serial: c.serialNumber });
    });
    s.once('error', (e) => resolve({ ok: false, error: e.message }));
    s.setTimeout(10_000, () => s.destroy(new Error('timeout')));
  });
}

function cli(args: string[]): Promise<{ code: number | null; stderr: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, APPLIANCE_CONFIG: '' } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, ms: performance.now() - t0 });
    });
  });
}

interface Setup {
  dir: string;
  pebble: Pebble;
  app: RunningAppliance;
  path: string;
  ports: { mx: number; smtps: number };
  close(): Promise<void>;
}

async function setup(): Promise<Setup & { spawnedAt: number; readyAt: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-bench-acme-'));
  const dns = await startDnsServer({ 'mail.example.test': [{ type: 'A', address: '127.0.0.1' }] });
  const challengePort = await freePort();
  const pebble = await startPebble(dir, { httpPort: challengePort, dnsPort: dns.port });
  const { path, ports } = await writeConfig(dir, {
    pki: 'pki mail.example.test acme',
    extra: `acme directory "${pebble.directory}"\nacme ca "${pebble.caPath}"\nacme challenge http-01 listen on 127.0.0.1 port ${challengePort}\nlog level info`,
  });
  const spawnedAt = Date.now();
  const app = await startAppliance(path, dir);
  const readyAt = Number(app.logLines().find((l) => l.msg === 'appliance ready')?.time ?? Date.now());
  return {
    dir,
    pebble,
    app,
    path,
    ports,
    spawnedAt,
    readyAt,
    async close() {
      await app.stop();
      await pebble.stop();
      await dns.close();
      if (!opts.keep) rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- 1. start → certificate in service
const rows: { ready: number; issued: number; served: number }[] = [];
for (let rep = 0; rep < REPS && Date.now() < DEADLINE; rep++) {
  const s = await setup();
  try {
    const root = await s.pebble.issuingRoot();
    let servedAt = 0;
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      const h = await handshake(s.ports.smtps, root);
      if (h.ok) {
        servedAt = Date.now();
        break;
      }
      await sleep(10);
    }
    const issuedLine = s.app.logLines().find((l) => l.msg === 'certificate issued and installed for mail.example.test');
    if (!servedAt || !issuedLine) throw new Error(`no pebble certificate in service within 60 s:\n${s.app.log()}`);
    const row = { ready: s.readyAt - s.spawnedAt, issued: Number(issuedLine.time) - s.spawnedAt, served: servedAt - s.spawnedAt };
    rows.push(row);
    process.stdout.write(`${JSON.stringify({ bench: 'start-to-certificate', rep, ms_to_ready: row.ready, ms_to_issued_log: row.issued, ms_to_first_verified_handshake: row.served, issuance_ms: issuedLine.ms })}\n`);
  } finally {
    await s.close();
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
if (rows.length > 0) {
  process.stdout.write(
    `${JSON.stringify({ bench: 'start-to-certificate', reps: rows.length, median_ms_to_ready: median(rows.map((r) => r.ready)), median_ms_to_issued_log: median(rows.map((r) => r.issued)), median_ms_to_first_verified_handshake: median(rows.map((r) => r.served)) })}\n`,
  );
}

// ---------------------------------------------------------------- 2. swaps under open sessions and new handshakes
if (Date.now() < DEADLINE) {
  const s = await setup();
  try {
    const root = await s.pebble.issuingRoot();
    const first = Date.now() + 60_000;
    while (!(await handshake(s.ports.smtps, root)).ok) {
      if (Date.now() > first) throw new Error('no pebble certificate within 60 s');
      await sleep(10);
    }
    const sessions: RawSmtp[] = [];
    for (let i = 0; i < SESSIONS; i++) {
      const c = await RawSmtp.connect(s.ports.mx);
      await c.greeting();
      await c.ehlo();
      await c.starttls('bench.example.net', { ca: root, servername: 'mail.example.test' });
      sessions.push(c);
    }
    let stop = false;
    let handshakes = 0;
    let handshakeFailures = 0;
    const serials = new Set<string>();
    const loop = (async () => {
      while (!stop && Date.now() < DEADLINE + 60_000 && handshakes < 100_000) {
        const h = await handshake(s.ports.smtps, root);
        handshakes++;
        if (h.ok) serials.add(h.serial);
        else handshakeFailures++;
      }
    })();
    let noopFailures = 0;
    const renewMs: number[] = [];
    let renewFailures = 0;
    for (let r = 0; r < RENEWALS && Date.now() < DEADLINE; r++) {
      const res = await cli(['cert', 'renew', '-c', s.path]);
      if (res.code !== 0) {
        renewFailures++;
        note(`renew ${r} failed: ${res.stderr}`);
      }
      renewMs.push(res.ms);
      for (const c of sessions) {
        const reply = await c.cmd('NOOP').catch(() => null);
        if (reply?.code !== 250) noopFailures++;
      }
    }
    stop = true;
    await loop;
    for (const c of sessions) await c.quit();
    process.stdout.write(
      `${JSON.stringify({
        bench: 'swap-under-load',
        open_sessions: SESSIONS,
        renewals: renewMs.length,
        renew_failures: renewFailures,
        median_cert_renew_cli_ms: Math.round(median(renewMs)),
        noop_checks: renewMs.length * SESSIONS,
        noop_failures: noopFailures,
        new_handshakes: handshakes,
        handshake_failures: handshakeFailures,
        distinct_serials_seen: serials.size,
      })}\n`,
    );
  } finally {
    await s.close();
  }
}
