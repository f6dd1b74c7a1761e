/**
 * Inbound acceptance, side by side in one run: the appliance, Debian's
 * Postfix and Debian's OpenSMTPD, each receiving over SMTP on loopback and
 * delivering into a Maildir on the same disk (one temp directory) with its
 * default durability, all driven by the same load generator, Postfix's
 * `smtp-source`. Messages/s at 1 and 20 sessions, 4 KiB and 100 KiB, with
 * and without connection reuse; per-message time within a session (p50/p99);
 * the time until the last message is in the Maildir; peak RSS and PSS of
 * each server's processes. A session is one `smtp-source -s 1` process
 * (independent clients); the classic single `smtp-source -s 20` is measured
 * too at 4 KiB, because its connects queue behind one another (see Client).
 * Plus what the design choices cost or save:
 *
 *  - the greeting pause: the appliance keeps smtp-server's 100 ms pause on
 *    MX listeners and drops it on listeners that require AUTH
 *    (smtp/greeting-delay.ts). smtp-source cannot AUTH, so a Node client with
 *    the same protocol (bench/smtp-load.ts) measures the MX port against a
 *    loopback `auth <users>` listener, and Postfix, in the same run;
 *  - Maildir-first against queue-first (smtp/inbound.ts): the store's own
 *    primitives, timed in this process (spool + Maildir delivery; synced
 *    LevelDB enqueue; enqueue + delivery + synced removal);
 *  - a durability census: the fsync-family calls per message of each server,
 *    by program and file, from `strace -f -Y -y` on a short run (when strace
 *    is installed), delivery included.
 *
 *   npm run build && npx node bench/inbound.ts [--quick] [--reps N]
 *       [--max-seconds S] [--no-census] [--keep]
 *
 * Needs root (Postfix and OpenSMTPD run as private instances from their
 * Debian packages; /work/shared/PEERS.md): `postfix` installed (it brings
 * smtp-source), OpenSMTPD unpacked with `apt-get download opensmtpd` +
 * `dpkg-deb -x` into a cache directory (done here when missing; the users
 * opensmtpd/opensmtpq are created when missing) and run inside `unshare -m`
 * with its compiled-in paths bind-mounted and a resolv.conf that answers
 * from /etc/hosts, so its reverse lookups never leave the machine. A peer
 * that cannot run is reported as skipped.
 *
 * Prints one JSON line per measurement on stdout (medians of the repetitions,
 * ratios appliance/peer); notes and per-run figures go to stderr. The
 * servers run together but are measured one at a time, interleaved, the
 * order rotated every repetition; RSS/PSS are sampled in a worker thread
 * (bench/proc-sampler.ts) so that reading /proc never delays the main
 * thread's timestamps. Bounded:
 * every run stops at its message count or its time cap; the whole run stops
 * starting runs at --max-seconds. Everything listens on 127.0.0.1 only, all
 * traffic is loopback; every process started is stopped by its pid (Postfix
 * by `postfix -c DIR stop`) and the temp directory removed (--keep keeps it).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  watch,
  type FSWatcher,
} from 'node:fs';
import { availableParallelism, cpus, loadavg, release, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import type { MessageSource } from '../store/maildir.ts';
import { MAIN, NODE, ROOT, startAppliance as startApplianceInstance } from './lib/appliance.ts';
import { startOpenSmtpd } from './lib/opensmtpd.ts';
import { startPostfix as startPostfixInstance } from './lib/postfix.ts';
import { exited, Started } from './lib/processes.ts';
import { median, pct, r1, r2 } from './lib/stats.ts';
import { freePort, LOOPBACK, memoryOfSession, sessionPids, sleep, userOf, which } from './lib/system.ts';

const LOAD = join(ROOT, 'bench/smtp-load.ts');
const SENDER = 'sender@bench.test';
const RCPT = 'user@example.test';
const ARGON_RCPT = 'argon@example.test';
const PASSWORD = 'bench-password';

/* ------------------------------------------------------------ options */

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    reps: { type: 'string' },
    'max-seconds': { type: 'string' },
    'no-census': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (opts.help) {
  process.stdout.write('usage: npx node bench/inbound.ts [--quick] [--reps N (5; quick 1)] [--max-seconds S (1200; quick 360)] [--no-census] [--keep]\n');
  process.exit(0);
}
const QUICK = opts.quick;
const REPS = Number(opts.reps ?? (QUICK ? 1 : 5));
const MAX_SECONDS = Number(opts['max-seconds'] ?? (QUICK ? 360 : 1200));
if (!Number.isInteger(REPS) || REPS < 1 || REPS > 20) fail('--reps must be an integer from 1 to 20');
if (!Number.isFinite(MAX_SECONDS) || MAX_SECONDS <= 0 || MAX_SECONDS > 3600) fail('--max-seconds must be at most 3600');
const STARTED = Date.now();
const DEADLINE = STARTED + MAX_SECONDS * 1000;
/** A run stops here even if messages remain (OpenSMTPD's listen backlog makes some runs crawl). */
const RUN_CAP_MS = QUICK ? 8_000 : 15_000;
/** After the load, how long we wait for the last message to reach the Maildir. */
const MAILDIR_WAIT_MS = 60_000;
const SAMPLE_MS = 200;

function fail(message: string): never {
  process.stderr.write(`inbound: ${message}\n`);
  process.exit(2);
}
function note(message: string): void {
  process.stderr.write(`# ${message}\n`);
}
function emit(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}
const now = () => performance.timeOrigin + performance.now();

if (!existsSync(MAIN)) fail(`${MAIN} does not exist: build first with "npm run build" (this benchmark builds nothing)`);
const SMTP_SOURCE = which('smtp-source');
if (!SMTP_SOURCE) fail('smtp-source not found: it comes with Debian\'s postfix (apt-get install -y postfix, debconf "Local only"; policy-rc.d keeps it from starting)');
const IS_ROOT = process.getuid?.() === 0;

/* ------------------------------------------------ processes we started */

let tmp: string | null = null;
const started = new Started(note, () => {
  if (tmp && !opts.keep) rmSync(tmp, { recursive: true, force: true });
  else if (tmp) note(`kept ${tmp}`);
});
const track = (c: ChildProcess): ChildProcess => started.track(c);
const cleanup = (): Promise<void> => started.cleanup();

/* ------------------------------------------------------- /proc helpers */

function procStatusKib(pid: number, field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'latin1'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

interface MemoryPeaks {
  readonly peakRss: number;
  readonly peakPss: number;
  readonly peakProcs: number;
  readonly samples: number;
  readonly sampleMs: number;
}

/** The same sampling in a worker thread (bench/proc-sampler.ts), every SAMPLE_MS during a run. */
class MemorySampler {
  private readonly worker = new Worker(new URL('./proc-sampler.ts', import.meta.url));
  private pending: ((p: MemoryPeaks) => void) | null = null;
  readonly costs: number[] = [];
  constructor() {
    this.worker.on('message', (p: MemoryPeaks) => {
      this.costs.push(p.sampleMs);
      const w = this.pending;
      this.pending = null;
      w?.(p);
    });
    this.worker.unref();
  }
  start(sid: number): void {
    this.worker.postMessage({ type: 'start', sid, intervalMs: SAMPLE_MS });
  }
  stop(): Promise<MemoryPeaks> {
    return new Promise((resolvePeaks) => {
      this.pending = resolvePeaks;
      this.worker.postMessage({ type: 'stop' });
    });
  }
  close(): Promise<number> {
    return this.worker.terminate();
  }
}
let sampler: MemorySampler | null = null;

/* ------------------------------------------------------------ Maildirs */

/** Distinct names appearing in a Maildir's new/, with the time each appeared (inotify). */
class MaildirWatch {
  private readonly names = new Set<string>();
  readonly times: number[] = [];
  private watcher: FSWatcher | null = null;
  readonly dir: string;
  constructor(maildir: string) {
    this.dir = join(maildir, 'new');
  }
  start(): this {
    this.watcher = watch(this.dir, { persistent: false }, (_event, name) => {
      if (name === null || this.names.has(name)) return;
      this.names.add(name);
      this.times.push(now());
    });
    return this;
  }
  get count(): number {
    return this.names.size;
  }
  stop(): void {
    this.watcher?.close();
    this.watcher = null;
  }
}

function listNew(maildir: string): string[] {
  try {
    return readdirSync(join(maildir, 'new'));
  } catch {
    return [];
  }
}

function emptyMaildir(maildir: string): void {
  for (const sub of ['new', 'cur']) {
    const dir = join(maildir, sub);
    for (const name of readdirSync(dir)) unlinkSync(join(dir, name));
  }
}

function makeMaildir(path: string, owner?: { uid: number; gid: number }): void {
  for (const sub of ['', 'new', 'cur', 'tmp']) {
    mkdirSync(join(path, sub), { recursive: true, mode: 0o700 });
    if (owner) chownSync(join(path, sub), owner.uid, owner.gid);
  }
}

/* ---------------------------------------------------------- networking */

/* ------------------------------------------------------------- servers */

interface Server {
  readonly key: 'appliance' | 'postfix' | 'opensmtpd';
  readonly version: string;
  readonly maildir: string;
  /** Session id shared by the server's processes. */
  readonly sid: number;
  readonly log: string;
  stop(): Promise<void>;
}

interface Target {
  /** Label in the output: appliance | appliance-submission | appliance-submission-argon2id | postfix | opensmtpd. */
  readonly name: string;
  readonly server: Server;
  readonly port: number;
  readonly auth?: string;
  readonly rcpt: string;
  readonly what: string;
}

function ssha512(password: string): string {
  const salt = randomBytes(8);
  const digest = createHash('sha512').update(password).update(salt).digest();
  return `{SSHA512}${Buffer.concat([digest, salt]).toString('base64')}`;
}

async function startAppliance(base: string): Promise<{ server: Server; mx: number; submission: number }> {
  const dir = join(base, 'appliance');
  mkdirSync(dir, { recursive: true });
  const maildir = join(base, 'mail/appliance');
  makeMaildir(maildir);
  const mx = await freePort();
  const submission = await freePort();
  const { hashPassword } = await import('../core/auth/passwords.ts');
  const argon = await hashPassword(PASSWORD);
  // Both listeners on loopback; the auth one has no TLS (allowed on loopback only) so that
  // the only difference from MX is the greeting pause and one AUTH PLAIN exchange.
  const app = await startApplianceInstance({
    dir,
    started,
    config: [
      'table domains { example.test }',
      `table users { "${RCPT}" = "${ssha512(PASSWORD)}", "${ARGON_RCPT}" = "${argon}" }`,
      `listen on ${LOOPBACK} port ${mx} tag MX`,
      `listen on ${LOOPBACK} port ${submission} auth <users> tag SUBMIT`,
      `action "local" maildir "${maildir}" userbase <users>`,
      'match from any for domain <domains> action "local"',
      'match from any for any reject',
    ],
  });
  const server: Server = { key: 'appliance', version: app.version, maildir, sid: app.sid, log: app.log, stop: app.stop };
  return { server, mx, submission };
}

async function startPostfix(base: string): Promise<{ server: Server; port: number }> {
  const nobody = userOf('nobody');
  if (!nobody) throw new Error('no user nobody');
  const maildir = join(base, 'mail/postfix');
  makeMaildir(maildir, nobody);
  const pf = await startPostfixInstance({
    dir: join(base, 'postfix'),
    port: await freePort(),
    started,
    main: [
      'myorigin = $myhostname',
      'virtual_mailbox_domains = example.test',
      `virtual_mailbox_base = ${join(base, 'mail')}`,
      `virtual_mailbox_maps = inline:{ ${RCPT}=postfix/ }`,
      `virtual_uid_maps = static:${nobody.uid}`,
      `virtual_gid_maps = static:${nobody.gid}`,
      'virtual_mailbox_limit = 0',
      'message_size_limit = 36700160',
      'default_transport = error:no outbound mail in the benchmark',
      'relay_transport = error:no outbound mail in the benchmark',
      'local_transport = error:no local mail in the benchmark',
    ],
    services: ['virtual   unix  - n n - - virtual'],
  });
  return { server: { key: 'postfix', version: pf.version, maildir, sid: pf.sid, log: pf.log, stop: pf.stop }, port: pf.port };
}

async function startOpenSMTPD(base: string): Promise<{ server: Server; port: number }> {
  const nobody = userOf('nobody');
  if (!nobody) throw new Error('no user nobody');
  const maildir = join(base, 'mail/opensmtpd');
  makeMaildir(maildir, nobody);
  const dir = join(base, 'opensmtpd');
  mkdirSync(dir, { recursive: true });
  const smtpd = await startOpenSmtpd({
    dir,
    port: await freePort(),
    started,
    note,
    config: [`table vusers { "${RCPT}" = "nobody" }`, `action "local" maildir "${maildir}" virtual <vusers>`, 'match from any for domain "example.test" action "local"'],
  });
  return { server: { key: 'opensmtpd', version: smtpd.version, maildir, sid: smtpd.sid, log: smtpd.log, stop: smtpd.stop }, port: smtpd.port };
}

/* ------------------------------------------------------ load generator */

/**
 * smtp-source: one `smtp-source -s 1` process per session, so each session
 * connects on its own like an independent client, and its counter gives that
 * session's per-message times. smtp-source-one-process: the classic single
 * `smtp-source -s N`, whose sessions share one queue of pending connects
 * (one connect in flight at a time: a connect the server's listen queue
 * drops stalls every session's reconnect for the 1 s SYN retry); no
 * per-session times. smtp-load: bench/smtp-load.ts.
 */
type Client = 'smtp-source' | 'smtp-source-one-process' | 'smtp-load';

interface Cell {
  readonly client: Client;
  readonly sessions: number;
  readonly size: number;
  readonly reuse: boolean;
  readonly count: number;
}

interface LoadResult {
  readonly accepted: number;
  readonly elapsedMs: number;
  /** Epoch ms of the first connection attempt. */
  readonly t0: number;
  /** Per message, within one session: from one message's end of DATA to the next one's. */
  readonly gaps: number[];
  readonly errors: string[];
  readonly capped: boolean;
}

/**
 * `smtp-source -c -s 1 -m SHARE` × sessions: exact per-session timing from each process's counter.
 * Each starts as a shell waiting for a line on stdin and then exec'ing smtp-source, so all are
 * spawned (spawning blocks this thread for milliseconds each) before any is released and timed.
 */
function runSmtpSource(port: number, cell: Cell, rcpt: string): Promise<LoadResult> {
  return new Promise((resolveRun) => {
    let t0 = now();
    const gaps: number[] = [];
    const errors: string[] = [];
    let accepted = 0;
    let running = cell.sessions;
    let capped = false;
    let lastExit = t0;
    const procs: ChildProcess[] = [];
    let cap: NodeJS.Timeout | undefined;
    for (let s = 0; s < cell.sessions; s++) {
      const share = Math.floor(cell.count / cell.sessions) + (s < cell.count % cell.sessions ? 1 : 0);
      const args = ['-c', '-s', '1', '-m', String(share), '-l', String(cell.size), ...(cell.reuse ? ['-d'] : []), '-f', SENDER, '-t', rcpt, `${LOOPBACK}:${port}`];
      const p = track(spawn('/bin/sh', ['-c', 'read go && exec "$0" "$@"', SMTP_SOURCE!, ...args], { stdio: ['pipe', 'pipe', 'pipe'] }));
      procs.push(p);
      let marks = 0;
      let last = 0;
      let err = '';
      p.stdout!.on('data', (d: Buffer) => {
        const t = now();
        for (const c of d) {
          if (c !== 13) continue; // "N\r" per message whose DATA was sent
          if (marks > 0) gaps.push(t - last);
          last = t;
          marks++;
        }
      });
      p.stderr!.on('data', (d: Buffer) => {
        if (err.length < 400) err += d.toString();
      });
      p.once('exit', (code) => {
        lastExit = now();
        // Exit 0: every message got its 250. Otherwise the last one sent may not have.
        accepted += code === 0 ? share : Math.max(0, marks - 1);
        if (code !== 0 && err) errors.push(err.trim().split('\n')[0]!);
        if (--running === 0) {
          clearTimeout(cap);
          resolveRun({ accepted, elapsedMs: lastExit - t0, t0, gaps, errors, capped });
        }
      });
    }
    // Go.
    t0 = now();
    for (const p of procs) p.stdin!.end('go\n');
    cap = setTimeout(() => {
      capped = true;
      for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
    }, RUN_CAP_MS);
  });
}

/** The classic `smtp-source -c -s N -m M`: one process, counter printed per message over all sessions. */
function runSmtpSourceOneProcess(port: number, cell: Cell, rcpt: string): Promise<LoadResult> {
  return new Promise((resolveRun) => {
    const t0 = now();
    const args = ['-c', '-s', String(cell.sessions), '-m', String(cell.count), '-l', String(cell.size), ...(cell.reuse ? ['-d'] : []), '-f', SENDER, '-t', rcpt, `${LOOPBACK}:${port}`];
    const p = track(spawn(SMTP_SOURCE!, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let marks = 0;
    let err = '';
    let capped = false;
    const cap = setTimeout(() => {
      capped = true;
      p.kill('SIGKILL');
    }, RUN_CAP_MS);
    p.stdout!.on('data', (d: Buffer) => {
      for (const c of d) if (c === 13) marks++;
    });
    p.stderr!.on('data', (d: Buffer) => {
      if (err.length < 400) err += d.toString();
    });
    p.once('exit', (code) => {
      clearTimeout(cap);
      const errors = code !== 0 && err ? [err.trim().split('\n')[0]!] : [];
      // Up to N messages may have been in flight when it stopped: runOnce counts the Maildir then.
      resolveRun({ accepted: code === 0 ? cell.count : Math.max(0, marks - cell.sessions), elapsedMs: now() - t0, t0, gaps: [], errors, capped });
    });
  });
}

/** bench/smtp-load.ts: one Node process, all sessions; same protocol, plus AUTH PLAIN when asked. */
function runSmtpLoad(port: number, cell: Cell, rcpt: string, auth: string | undefined): Promise<LoadResult> {
  return new Promise((resolveRun) => {
    const args = [LOAD, '--port', String(port), '--sessions', String(cell.sessions), '--count', String(cell.count), '--size', String(cell.size), '--from', SENDER, '--to', rcpt, '--max-seconds', String(RUN_CAP_MS / 1000)];
    if (cell.reuse) args.push('--reuse');
    if (auth) args.push('--auth', auth);
    const spawned = now();
    const p = track(spawn(NODE, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let out = '';
    let err = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr!.on('data', (d: Buffer) => {
      if (err.length < 400) err += d.toString();
    });
    const kill = setTimeout(() => p.kill('SIGKILL'), RUN_CAP_MS + 20_000);
    p.once('exit', () => {
      clearTimeout(kill);
      try {
        const r = JSON.parse(out.trim().split('\n').pop()!) as { accepted: number; errors: string[]; elapsed_ms: number; capped: boolean; t0_epoch_ms: number; sessions: number[][] };
        const gaps: number[] = [];
        for (const s of r.sessions) for (let i = 1; i < s.length; i++) gaps.push(s[i]! - s[i - 1]!);
        resolveRun({ accepted: r.accepted, elapsedMs: r.elapsed_ms, t0: r.t0_epoch_ms, gaps, errors: [...new Set(r.errors)].slice(0, 3), capped: r.capped });
      } catch {
        resolveRun({ accepted: 0, elapsedMs: now() - spawned, t0: spawned, gaps: [], errors: [`smtp-load: ${err.trim() || out.trim() || 'no output'}`.slice(0, 300)], capped: false });
      }
    });
  });
}

interface RunResult {
  readonly opsPerS: number;
  readonly accepted: number;
  readonly gaps: number[];
  readonly lastInMaildirMs: number | null;
  readonly maildirCount: number;
  readonly peakRss: number;
  readonly peakPss: number;
  readonly peakProcs: number;
  readonly capped: boolean;
  readonly errors: string[];
}

async function runOnce(target: Target, cell: Cell): Promise<RunResult> {
  const { server } = target;
  sampler!.start(server.sid);
  let memStopped: MemoryPeaks | null = null;
  const watcher = new MaildirWatch(server.maildir).start();
  try {
    let load =
      cell.client === 'smtp-source'
        ? await runSmtpSource(target.port, cell, target.rcpt)
        : cell.client === 'smtp-source-one-process'
          ? await runSmtpSourceOneProcess(target.port, cell, target.rcpt)
          : await runSmtpLoad(target.port, cell, target.rcpt, target.auth);
    if (load.capped || load.errors.length > 0) {
      // Cut short: every server delivers every message it accepted, so the Maildir, once it
      // stops growing, holds the exact count (the client's own count is a lower bound).
      const until = Date.now() + MAILDIR_WAIT_MS;
      let seen = -1;
      let stableSince = Date.now();
      while (Date.now() < until && Date.now() - stableSince < 1500) {
        await sleep(50);
        if (watcher.count !== seen) {
          seen = watcher.count;
          stableSince = Date.now();
        }
      }
      const settled = Math.max(watcher.count, listNew(server.maildir).length);
      if (settled > load.accepted) load = { ...load, accepted: settled };
    }
    // Queue-first servers answer 250 before delivery: wait for the Maildir to catch up.
    const until = Date.now() + MAILDIR_WAIT_MS;
    for (let i = 1; watcher.count < load.accepted && Date.now() < until; i++) {
      await sleep(10);
      if (i % 50 === 0 && listNew(server.maildir).length >= load.accepted) break; // an event was missed
    }
    const onDisk = listNew(server.maildir).length;
    let lastInMaildirMs: number | null = null;
    if (load.accepted > 0 && watcher.count >= load.accepted) lastInMaildirMs = watcher.times[load.accepted - 1]! - load.t0;
    else if (load.accepted > 0 && onDisk >= load.accepted) lastInMaildirMs = now() - load.t0; // upper bound
    const mem = (memStopped = await sampler!.stop());
    return {
      opsPerS: load.elapsedMs > 0 ? (load.accepted * 1000) / load.elapsedMs : 0,
      accepted: load.accepted,
      gaps: load.gaps,
      lastInMaildirMs,
      maildirCount: onDisk,
      peakRss: mem.peakRss,
      peakPss: mem.peakPss,
      peakProcs: mem.peakProcs,
      capped: load.capped,
      errors: load.errors,
    };
  } finally {
    if (!memStopped) await sampler!.stop();
    watcher.stop();
  }
}

/** Between runs: no delivery still running, the Maildir empty again. */
async function settle(server: Server): Promise<void> {
  await sleep(300);
  emptyMaildir(server.maildir);
  await sleep(200);
}

/* -------------------------------------------------------- measurements */

const SIZE_LABEL = (n: number) => (n >= 1024 ? `${n / 1024}KiB` : `${n}B`);

function cellName(cell: Cell): string {
  const client =
    cell.client === 'smtp-source'
      ? cell.sessions === 1
        ? 'smtp-source'
        : `${cell.sessions} x smtp-source -s 1`
      : cell.client === 'smtp-source-one-process'
        ? `smtp-source -s ${cell.sessions}, one process`
        : 'smtp-load, Node';
  return `inbound ${SIZE_LABEL(cell.size)} ${cell.sessions} session${cell.sessions > 1 ? 's' : ''} ${cell.reuse ? 'reuse' : 'new connection per message'} (${client})`;
}

function countFor(sessions: number, reuse: boolean, size: number): number {
  const q = QUICK ? 2 : 1;
  if (sessions === 1) return (reuse ? 100 : 30) / q; // ≤ 100 per connection: OpenSMTPD's and our max-mails default
  if (!reuse) return 400 / q;
  return (size > 8192 ? 1000 : 2000) / q;
}

async function measureCell(cell: Cell, targets: readonly Target[], reps: number): Promise<void> {
  const runs = new Map<string, RunResult[]>(targets.map((t) => [t.name, []]));
  for (let rep = 0; rep < reps; rep++) {
    // Interleaved, with the order rotated every repetition.
    for (let i = 0; i < targets.length; i++) {
      const target = targets[(i + rep) % targets.length]!;
      if (Date.now() > DEADLINE) break;
      const r = await runOnce(target, cell);
      runs.get(target.name)!.push(r);
      note(
        `${cellName(cell)} ${target.name} rep ${rep + 1}: ${r.accepted} msgs, ${r1(r.opsPerS)} msg/s, last in Maildir ${r.lastInMaildirMs === null ? '-' : Math.round(r.lastInMaildirMs)} ms, ` +
          `peak RSS ${Math.round(r.peakRss / 1024)} MiB PSS ${Math.round(r.peakPss / 1024)} MiB (${r.peakProcs} procs)${r.capped ? `, capped at ${RUN_CAP_MS / 1000} s` : ''}${r.errors.length ? `, errors: ${r.errors.slice(0, 2).join(' | ')}` : ''}`,
      );
      await settle(target.server);
    }
  }
  const lines: Record<string, unknown>[] = [];
  for (const target of targets) {
    const rs = runs.get(target.name)!;
    const name = cellName(cell);
    if (rs.length === 0) {
      lines.push({ name, server: target.name, skipped: `total time bound of ${MAX_SECONDS} s reached` });
      continue;
    }
    const gaps = rs.flatMap((r) => r.gaps).sort((a, b) => a - b);
    const ops = median(rs.map((r) => r.opsPerS));
    const last = median(rs.filter((r) => r.lastInMaildirMs !== null).map((r) => r.lastInMaildirMs!));
    const delivered = median(rs.filter((r) => r.lastInMaildirMs !== null && r.lastInMaildirMs > 0).map((r) => (r.accepted * 1000) / r.lastInMaildirMs!));
    const line: Record<string, unknown> = {
      name,
      server: target.name,
      what: target.what,
      client: cell.client,
      sessions: cell.sessions,
      size: cell.size,
      reuse: cell.reuse,
      msgs: cell.count,
      runs: rs.length,
      accepted: rs.reduce((n, r) => n + r.accepted, 0),
      ops_per_s: ops === null ? null : r1(ops),
      ops_per_s_runs: rs.map((r) => r1(r.opsPerS)),
      p50_ms: gaps.length ? r2(pct(gaps, 50)) : null,
      p99_ms: gaps.length ? r2(pct(gaps, 99)) : null,
      last_in_maildir_ms: last === null ? null : Math.round(last),
      maildir_msgs_per_s: delivered === null ? null : r1(delivered),
      peak_rss_kib: Math.max(...rs.map((r) => r.peakRss)),
      peak_pss_kib: Math.max(...rs.map((r) => r.peakPss)),
      peak_processes: Math.max(...rs.map((r) => r.peakProcs)),
    };
    const capped = rs.filter((r) => r.capped).length;
    if (capped) line.capped_runs = capped;
    const errors = [...new Set(rs.flatMap((r) => r.errors))];
    if (errors.length) line.errors = errors.slice(0, 3);
    const short = rs.filter((r) => r.maildirCount < r.accepted).length;
    if (short) line.maildir_short_runs = short;
    lines.push(line);
  }
  // Ratios: every appliance line against every peer measured in this cell.
  for (const line of lines) {
    if (!String(line.server).startsWith('appliance') || line.ops_per_s == null) continue;
    const ratio: Record<string, number> = {};
    const lastRatio: Record<string, number> = {};
    for (const other of lines) {
      if (other === line || other.ops_per_s == null || !other.ops_per_s) continue;
      ratio[String(other.server)] = r2((line.ops_per_s as number) / (other.ops_per_s as number));
      if (line.last_in_maildir_ms != null && other.last_in_maildir_ms != null && other.last_in_maildir_ms !== 0) {
        lastRatio[String(other.server)] = r2((line.last_in_maildir_ms as number) / (other.last_in_maildir_ms as number));
      }
    }
    line.ops_ratio_to = ratio;
    line.last_in_maildir_ratio_to = lastRatio;
  }
  for (const line of lines) emit(line);
}

/* --------------------------------------------- durability census (strace) */

async function census(target: Target): Promise<void> {
  const strace = which('strace');
  if (!strace) {
    emit({ name: 'durability census', server: target.name, skipped: 'strace not installed (apt-get install -y strace)' });
    return;
  }
  const server = target.server;
  const pids = sessionPids(server.sid);
  const out = join(tmp!, `strace-${target.name}.txt`);
  // -Y: program names, -y: paths of the descriptors, so each sync is attributed to a process and a file.
  const calls = 'fsync,fdatasync,sync_file_range,syncfs,msync';
  const st = track(spawn(strace, ['-f', '-qq', '-Y', '-y', '-e', `trace=${calls}`, '-e', 'signal=none', '-o', out, ...pids.flatMap((p) => ['-p', String(p)])], { stdio: ['ignore', 'ignore', 'pipe'] }));
  let stErr = '';
  st.stderr!.on('data', (d: Buffer) => (stErr += d.toString()));
  await sleep(800);
  const n = 20;
  const cell: Cell = { client: 'smtp-source', sessions: 1, size: 4096, reuse: false, count: n };
  const r = await runOnce(target, cell);
  await sleep(1500); // queue files are removed after delivery
  st.kill('SIGINT');
  const t = setTimeout(() => st.kill('SIGKILL'), 10_000);
  await exited(st);
  clearTimeout(t);
  const counts: Record<string, number> = {};
  try {
    for (const line of readFileSync(out, 'utf8').split('\n')) {
      const m = /^\d+<([^>]*)>\s+(\w+)\((\d+)(?:<([^>]*)>)?/.exec(line);
      if (!m) continue;
      const path = (m[4] ?? '?').replace(tmp!, '…').replace(/\/[^/]*(?:[0-9A-F]{8,}|[0-9a-f]{8,}|spool\.)[^/]*$/, '/*');
      const key = `${m[1]} ${m[2]} ${path}`;
      counts[key] = (counts[key] ?? 0) + 1;
    }
  } catch {
    /* no output */
  }
  const perMsg = Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, r2(v / Math.max(1, r.accepted))]));
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  emit({
    name: 'durability census',
    server: target.name,
    msgs: r.accepted,
    processes_traced_at_start: pids.length,
    syncs_per_msg: r2(total / Math.max(1, r.accepted)),
    by_program_call_file: perMsg,
    what: 'strace -f -Y -y of every process of the server over smtp-source -s 1 -m 20 -l 4096, delivery included',
  });
  if (r.accepted !== n) note(`census ${target.name}: ${r.accepted} of ${n} accepted ${r.errors.join(' | ')} ${stErr.slice(-200)}`);
  await settle(server);
}

/* ------------------------------------- Maildir-first vs queue-first (in process) */

async function storeCosts(base: string): Promise<void> {
  const { Store } = await import('../store/db.ts');
  const { Queue } = await import('../store/queue.ts');
  const { SpooledMessage, deliverToMaildirs } = await import('../store/maildir.ts');
  const dir = join(base, 'store-bench');
  const spoolDir = join(dir, 'spool');
  const maildir = join(dir, 'Maildir');
  mkdirSync(spoolDir, { recursive: true });
  makeMaildir(maildir);
  const store = await Store.open(dir);
  const queue = Queue.open(store);
  const body = Buffer.alloc(4096, 'x');
  const recipients = [{ address: RCPT, transport: 'local' as const, action: 'local' }];
  const deliver = async (source: MessageSource): Promise<void> => {
    const spool = await SpooledMessage.write(spoolDir, source, { maxBytes: 1 << 26 });
    try {
      const r = await deliverToMaildirs(spool, [{ path: maildir }], { hostname: 'bench' });
      if (r.failed.length) throw r.failed[0]!.error;
    } finally {
      await spool.remove();
    }
  };
  const ops: [string, string, () => Promise<unknown>][] = [
    ['maildir-first: spool + Maildir delivery', 'what the appliance does before its 250 (tmp/ link, fsync, rename into new/, fsync of new/)', () => deliver([body])],
    ['queue-first: synced LevelDB enqueue', 'what a queue-first design does before its 250 (store/queue.ts enqueue, group commit)', () => queue.enqueue({ sender: SENDER, recipients, body })],
    [
      'queue-first: enqueue + delivery + synced dequeue',
      'the whole work of a queue-first local delivery with the same primitives',
      async () => {
        const m = await queue.enqueue({ sender: SENDER, recipients, body });
        await deliver(queue.body(m.id));
        await queue.update(m.id, [{ address: RCPT, state: 'delivered' }]);
      },
    ],
  ];
  const base1: Record<number, number> = {};
  try {
    for (const concurrency of [1, 20]) {
      const n = concurrency === 1 ? (QUICK ? 100 : 300) : QUICK ? 600 : 2000;
      for (const [name, what, op] of ops) {
        if (Date.now() > DEADLINE) return;
        for (let i = 0; i < 10; i++) await op(); // warm-up
        emptyMaildir(maildir);
        const lat: number[] = [];
        const until = Date.now() + 15_000;
        let issued = 0;
        const t0 = performance.now();
        await Promise.all(
          Array.from({ length: concurrency }, async () => {
            while (issued < n && Date.now() < until) {
              issued++;
              const t = performance.now();
              await op();
              lat.push(performance.now() - t);
            }
          }),
        );
        const elapsed = performance.now() - t0;
        lat.sort((a, b) => a - b);
        const opsPerS = (lat.length * 1000) / elapsed;
        if (name.startsWith('maildir-first')) base1[concurrency] = opsPerS;
        const line: Record<string, unknown> = { name: `${name} (4KiB, ${concurrency} at once)`, what, concurrency, ops: lat.length, ops_per_s: r1(opsPerS), p50_ms: r2(pct(lat, 50)), p99_ms: r2(pct(lat, 99)) };
        if (!name.startsWith('maildir-first') && base1[concurrency]) line.maildir_first_ratio_to_this = r2(base1[concurrency]! / opsPerS);
        if (name.includes('enqueue')) line.group_commit = queue.writeStats;
        emit(line);
        emptyMaildir(maildir);
      }
    }
  } finally {
    await queue.close().catch(() => undefined);
    await store.close();
  }
}

/* ----------------------------------------------------------------- run */

function machine(base: string): Record<string, unknown> {
  let fs = 'unknown';
  try {
    const dev = statSync(base).dev;
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const f = line.split(' ');
      const [maj, min] = (f[2] ?? '').split(':').map(Number);
      if (maj === undefined || min === undefined) continue;
      if (((maj << 8) | (min & 0xff) | ((min & ~0xff) << 12)) === dev) {
        const dash = f.indexOf('-');
        fs = `${f[dash + 1]} on ${f[dash + 2]} (mounted at ${f[4]})`;
        break;
      }
    }
  } catch {
    /* best effort */
  }
  return {
    name: 'machine',
    nproc: availableParallelism(),
    cpu: cpus()[0]?.model ?? 'unknown',
    mem_gib: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    temp_dir: base,
    filesystem: fs,
    quick: QUICK,
    reps: REPS,
    run_cap_s: RUN_CAP_MS / 1000,
    loadavg_1m_at_start: r2(loadavg()[0]!),
  };
}

async function main(): Promise<void> {
  tmp = mkdtempSync(join(tmpdir(), 'appliance-inbound-'));
  chmodSync(tmp, 0o755); // the peers deliver as nobody under it
  mkdirSync(join(tmp, 'mail'), { mode: 0o755 });
  chmodSync(join(tmp, 'mail'), 0o755);
  const m = machine(tmp);
  note(JSON.stringify(m));

  sampler = new MemorySampler();
  // 1. The store primitives alone (no server running yet).
  await storeCosts(tmp);

  // 2. Servers.
  const servers: Server[] = [];
  const app = await startAppliance(tmp);
  servers.push(app.server);
  const mx: Target = { name: 'appliance', server: app.server, port: app.mx, rcpt: RCPT, what: 'MX listener (no auth): smtp-server\'s 100 ms greeting pause kept' };
  const sub: Target = {
    name: 'appliance-submission',
    server: app.server,
    port: app.submission,
    rcpt: RCPT,
    auth: `${RCPT}:${PASSWORD}`,
    what: 'loopback "auth <users>" listener: no greeting pause; AUTH PLAIN per connection, {SSHA512} password (microseconds to verify)',
  };
  const subArgon: Target = { ...sub, name: 'appliance-submission-argon2id', rcpt: ARGON_RCPT, auth: `${ARGON_RCPT}:${PASSWORD}`, what: 'the same listener, user hashed as "appliance table add" hashes (argon2id m=19456 t=2, hash-wasm)' };
  const peers: Target[] = [];
  if (!IS_ROOT) {
    emit({ name: 'peers', skipped: 'not root: Postfix and OpenSMTPD run as private instances and need root' });
  } else {
    try {
      const pf = await startPostfix(tmp);
      servers.push(pf.server);
      peers.push({ name: 'postfix', server: pf.server, port: pf.port, rcpt: RCPT, what: `Postfix ${pf.server.version}: smtpd → cleanup (fsync) → qmgr → virtual(8) Maildir` });
    } catch (err) {
      emit({ name: 'postfix', skipped: (err as Error).message });
    }
    try {
      const os = await startOpenSMTPD(tmp);
      servers.push(os.server);
      peers.push({ name: 'opensmtpd', server: os.server, port: os.port, rcpt: RCPT, what: `OpenSMTPD ${os.server.version}: queue, then mail.maildir per delivery` });
    } catch (err) {
      emit({ name: 'opensmtpd', skipped: (err as Error).message });
    }
  }
  for (const s of servers) {
    const idle = memoryOfSession(s.sid);
    note(`${s.key} ${s.version} running: session ${s.sid}, ${idle.procs} processes, idle RSS ${Math.round(idle.rss / 1024)} MiB, PSS ${Math.round(idle.pss / 1024)} MiB, Maildir ${s.maildir}`);
    emit({ name: 'idle', server: s.key, version: s.version, processes: idle.procs, rss_kib: idle.rss, pss_kib: idle.pss });
  }

  // 3. What each server does to make a message durable.
  if (!opts['no-census']) for (const t of [mx, ...peers]) await census(t);

  // 4. The matrix with smtp-source, every server in every cell, interleaved.
  const main3 = [mx, ...peers];
  for (const sessions of [1, 20]) {
    for (const reuse of [false, true]) {
      for (const size of [4096, 102400]) {
        if (Date.now() > DEADLINE) break;
        await measureCell({ client: 'smtp-source', sessions, size, reuse, count: countFor(sessions, reuse, size) }, main3, REPS);
      }
    }
  }

  // 4b. The classic single smtp-source process at 20 sessions (how the issue's figures were taken).
  for (const reuse of [false, true]) {
    if (Date.now() > DEADLINE) break;
    // With reuse, fewer messages: its sessions take messages from one pool, and a fast one must stay under the 100 per connection limit.
    const count = reuse ? (QUICK ? 300 : 600) : countFor(20, false, 4096);
    await measureCell({ client: 'smtp-source-one-process', sessions: 20, size: 4096, reuse, count }, main3, REPS);
  }

  // 5. The greeting pause: the same Node client against MX, submission (no pause) and Postfix.
  const pf = peers.find((p) => p.name === 'postfix');
  for (const sessions of [1, 20]) {
    for (const reuse of [false, true]) {
      if (Date.now() > DEADLINE) break;
      await measureCell({ client: 'smtp-load', sessions, size: 4096, reuse, count: countFor(sessions, reuse, 4096) }, [mx, sub, ...(pf ? [pf] : [])], REPS);
    }
  }
  // What a login costs when the password is hashed the way `table add` hashes it (one repetition).
  for (const sessions of [1, 20]) {
    if (Date.now() > DEADLINE) break;
    await measureCell({ client: 'smtp-load', sessions, size: 4096, reuse: false, count: countFor(sessions, false, 4096) }, [subArgon], 1);
  }

  for (const s of servers) {
    if (s.key === 'appliance') note(`appliance VmHWM over the whole run: ${procStatusKib(s.sid, 'VmHWM')} KiB`);
  }
  const costs = sampler.costs.filter((c) => c > 0);
  note(`memory sampler (worker thread): ${costs.length} runs, mean ${r2(costs.reduce((a, b) => a + b, 0) / Math.max(1, costs.length))} ms per sample every ${SAMPLE_MS} ms`);
  await sampler.close();
  note(`total ${Math.round((Date.now() - STARTED) / 1000)} s; load average (1 min) ${r2(loadavg()[0]!)} at the end on ${availableParallelism()} CPUs`);
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`inbound: ${process.env.APPLIANCE_DEBUG ? ((err as Error).stack ?? String(err)) : ((err as Error).message ?? String(err))}\n`);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
