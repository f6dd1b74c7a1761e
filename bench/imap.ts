/**
 * IMAP, side by side in one run, on the same Maildir tree: the appliance and
 * Debian's Dovecot (private instance, its index in a directory of its own),
 * driven by the same client, Python's imaplib (bench/imap-client.py), for a
 * mailbox of 10,000 and 100,000 realistic messages (bench/lib/corpus.ts):
 *
 *  - login+SELECT; UID FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE);
 *    BODYSTRUCTURE for all; every body; UID SEARCH SUBJECT; STORE +FLAGS on
 *    all — cold (server just started, no index: Dovecot's index directory
 *    and the appliance's LevelDB removed) then warm (the same server again);
 *  - a full `mbsync` pull into an empty local Maildir (warm);
 *  - memory (PSS and RSS of each server's processes) idle after start, and
 *    with 50 clients logged in with the mailbox selected.
 *
 * The servers take turns on the tree, never at once (both see the other's
 * flag changes, as they would in production: the tree is shared, the
 * caches are not). Medians of --reps warm repetitions; ratios appliance /
 * Dovecot (below 1: the appliance is faster or smaller).
 *
 *   npm run build && npx node bench/imap.ts [--quick] [--counts 10000,100000]
 *       [--reps N] [--clients 50] [--keep]
 *
 * Needs root (both servers read the tree as `nobody`), dovecot-imapd,
 * python3 and isync. Everything on 127.0.0.1; every process is stopped by
 * pid; every wait is bounded. JSON lines on stdout, notes on stderr.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { hashPassword } from '../core/auth/passwords.ts';
import { startAppliance } from './lib/appliance.ts';
import { writeCorpus } from './lib/corpus.ts';
import { startDovecot } from './lib/dovecot.ts';
import { Started } from './lib/processes.ts';
import { median, r2 } from './lib/stats.ts';
import { freePort, LOOPBACK, memoryOfSession, sleep, userOf, waitForGreeting, which } from './lib/system.ts';

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    counts: { type: 'string' },
    reps: { type: 'string' },
    clients: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const QUICK = opts.quick;
const COUNTS = (opts.counts ?? (QUICK ? '2000' : '10000,100000')).split(',').map(Number);
const REPS = Number(opts.reps ?? (QUICK ? 1 : 3));
const CLIENTS = Number(opts.clients ?? 50);
const CLIENT = join(dirname(fileURLToPath(import.meta.url)), 'imap-client.py');
const USER = 'user@example.test';
const PASSWORD = 'bench-password';
const RUN_USER = 'nobody';

const note = (s: string): void => void process.stderr.write(`[imap] ${s}\n`);
const emit = (o: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(o)}\n`);

const tmp = mkdtempSync(join(tmpdir(), 'appliance-imap-bench-'));
chmodSync(tmp, 0o755);
const started = new Started(note, () => {
  if (!opts.keep) rmSync(tmp, { recursive: true, force: true });
  else note(`kept ${tmp}`);
});

interface ImapServer {
  readonly name: 'appliance' | 'dovecot';
  readonly version: string;
  readonly port: number;
  readonly sid: number;
  stop(): Promise<void>;
}

type OpsResult = Record<string, number>;

function runOps(port: number, word: string): OpsResult {
  const r = spawnSync('python3', [CLIENT, LOOPBACK, String(port), USER, PASSWORD, 'ops', word], { encoding: 'utf8', timeout: 900_000, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`imap-client ops on ${port}: ${(r.stderr || r.stdout || String(r.error)).slice(-600)}`);
  return JSON.parse(r.stdout) as OpsResult;
}

/** `clients` sessions held open; memory sampled while they are. */
async function underClients(server: ImapServer): Promise<{ pss_kib: number; rss_kib: number; errors: number }> {
  const p = started.track(spawn('python3', [CLIENT, LOOPBACK, String(server.port), USER, PASSWORD, 'clients', String(CLIENTS), '120'], { stdio: ['pipe', 'pipe', 'pipe'] }));
  let out = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const until = Date.now() + 120_000;
  while (!out.includes('READY') && p.exitCode === null && Date.now() < until) await sleep(100);
  let peak = { pss: 0, rss: 0 };
  for (let i = 0; i < 10 && p.exitCode === null; i++) {
    const m = memoryOfSession(server.sid);
    if (m.pss > peak.pss) peak = m;
    await sleep(200);
  }
  p.stdin!.end();
  await new Promise<void>((r) => (p.exitCode !== null ? r() : p.once('exit', () => r())));
  const last = out.trim().split('\n').pop() ?? '{}';
  let errors = -1;
  try {
    errors = (JSON.parse(last) as { error_count: number }).error_count;
  } catch {
    note(`${server.name}: clients run gave no summary: ${last}`);
  }
  return { pss_kib: peak.pss, rss_kib: peak.rss, errors };
}

function mbsyncPull(port: number, dir: string): number {
  const local = join(dir, `mbsync-${Date.now()}`);
  mkdirSync(local, { recursive: true });
  const conf = join(dir, 'mbsyncrc');
  writeFileSync(
    conf,
    [
      'IMAPAccount bench',
      `Host ${LOOPBACK}`,
      `Port ${port}`,
      `User ${USER}`,
      `Pass ${PASSWORD}`,
      'SSLType None',
      'AuthMechs PLAIN',
      '',
      'IMAPStore remote',
      'Account bench',
      '',
      'MaildirStore local',
      `Path ${local}/`,
      `Inbox ${local}/INBOX`,
      '',
      'Channel pull',
      'Far :remote:',
      'Near :local:',
      'Patterns INBOX',
      'Create Near',
      'Sync Pull',
      'SyncState *',
      '',
    ].join('\n'),
  );
  const t = performance.now();
  const r = spawnSync('mbsync', ['-q', '-c', conf, 'pull'], { encoding: 'utf8', timeout: 900_000 });
  const s = (performance.now() - t) / 1000;
  rmSync(local, { recursive: true, force: true });
  if (r.status !== 0) throw new Error(`mbsync pull from ${port}: ${r.stderr.slice(-400)}`);
  return s;
}

async function startApplianceImap(dir: string, mailRoot: string, fresh: boolean): Promise<ImapServer> {
  const port = await freePort();
  const dataDir = join(dir, 'data');
  if (fresh) rmSync(join(dataDir, 'db'), { recursive: true, force: true });
  // The control socket is created after privileges are dropped: its directory must be the run user's.
  mkdirSync(dir, { recursive: true });
  const owner = userOf(RUN_USER)!;
  chownSync(dir, owner.uid, owner.gid);
  const app = await startAppliance({
    dir,
    started,
    config: [
      `table users { "${USER}" = "${await hashPassword(PASSWORD)}" }`,
      `imap listen on ${LOOPBACK} port ${port} auth <users>`,
      `action "local" maildir "${mailRoot}/%{dest.domain}/%{dest.user}" userbase <users>`,
      'match from any for domain "example.test" action "local"',
      `imap limit connections-per-user-ip ${CLIENTS + 10}`,
    ],
    user: RUN_USER,
  });
  await waitForGreeting(port, 15_000, { alive: () => app.child.exitCode === null, expect: '* OK', quit: 'a LOGOUT\r\n' });
  return { name: 'appliance', version: app.version, port, sid: app.sid, stop: app.stop };
}

async function startDovecotImap(dir: string, maildir: string, fresh: boolean): Promise<ImapServer> {
  const d = await startDovecot({ dir, port: await freePort(), maildir, user: USER, password: PASSWORD, systemUser: RUN_USER, fresh, started });
  return { name: 'dovecot', version: d.version, port: d.port, sid: d.sid, stop: d.stop };
}

const OPS = ['login_select_s', 'fetch_headers_s', 'fetch_bodystructure_s', 'fetch_bodies_s', 'search_subject_s', 'store_flags_s'] as const;

async function benchCount(count: number): Promise<void> {
  const base = join(tmp, `n${count}`);
  const mailRoot = join(base, 'mail');
  const maildir = join(mailRoot, 'example.test', 'user');
  const made = writeCorpus(maildir, { count });
  const owner = userOf(RUN_USER)!;
  spawnSync('chown', ['-R', `${owner.uid}:${owner.gid}`, base]);
  note(`${count} messages, ${(made.bytes / 1048576).toFixed(1)} MiB in ${maildir}`);

  const makers: Record<ImapServer['name'], (fresh: boolean) => Promise<ImapServer>> = {
    appliance: (fresh) => startApplianceImap(join(base, 'appliance'), mailRoot, fresh),
    dovecot: (fresh) => startDovecotImap(join(base, 'dovecot'), maildir, fresh),
  };
  const results: Record<string, { version: string; cold: OpsResult; warm: OpsResult[]; idle: { pss_kib: number; rss_kib: number }; clients: { pss_kib: number; rss_kib: number; errors: number }; mbsync_s: number }> = {};
  // Dovecot first: it writes dovecot-uidlist for a tree that has none, the appliance must then honour its UIDs.
  for (const name of ['dovecot', 'appliance'] as const) {
    let server: ImapServer;
    try {
      server = await makers[name](true);
    } catch (err) {
      note(`${name}: skipped: ${(err as Error).message}`);
      emit({ bench: 'imap', server: name, messages: count, skipped: (err as Error).message });
      continue;
    }
    await sleep(500);
    const idleMem = memoryOfSession(server.sid);
    const cold = runOps(server.port, made.rareSubjectWord);
    const warm: OpsResult[] = [];
    for (let i = 0; i < REPS; i++) warm.push(runOps(server.port, made.rareSubjectWord));
    const mbsync_s = mbsyncPull(server.port, base);
    const clients = await underClients(server);
    await server.stop();
    results[name] = { version: server.version, cold, warm, idle: { pss_kib: idleMem.pss, rss_kib: idleMem.rss }, clients, mbsync_s };
    const warmMedian = Object.fromEntries(OPS.map((k) => [k, median(warm.map((w) => w[k]!))]));
    emit({
      bench: 'imap',
      server: name,
      version: server.version,
      messages: count,
      mib: r2(made.bytes / 1048576),
      cold_ms: Object.fromEntries(OPS.map((k) => [k, Math.round(cold[k]! * 1000)])),
      warm_ms: Object.fromEntries(OPS.map((k) => [k, Math.round(warmMedian[k]! * 1000)])),
      check: { messages: cold.messages, search_hits: cold.search_hits, flagged_after_store: cold.flagged_after_store, header_bytes: cold.fetch_headers_bytes, bodies_bytes: cold.fetch_bodies_bytes },
      mbsync_pull_s: r2(mbsync_s),
      idle: results[name].idle,
      clients: { n: CLIENTS, ...clients },
    });
  }
  const a = results.appliance;
  const d = results.dovecot;
  if (a && d) {
    const ratio = (x: number, y: number): number | null => (y > 0 ? r2(x / y) : null);
    emit({
      bench: 'imap-ratio',
      messages: count,
      what: 'appliance / dovecot (below 1: the appliance is faster or smaller)',
      cold: Object.fromEntries(OPS.map((k) => [k, ratio(a.cold[k]!, d.cold[k]!)])),
      warm: Object.fromEntries(OPS.map((k) => [k, ratio(median(a.warm.map((w) => w[k]!))!, median(d.warm.map((w) => w[k]!))!)])),
      mbsync_pull: ratio(a.mbsync_s, d.mbsync_s),
      pss_idle: ratio(a.idle.pss_kib, d.idle.pss_kib),
      pss_clients: ratio(a.clients.pss_kib, d.clients.pss_kib),
    });
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root (both servers read the tree as nobody)');
  for (const cmd of ['python3', 'mbsync', 'dovecot']) if (!which(cmd)) throw new Error(`${cmd} not found`);
  note(`machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}; counts ${COUNTS.join(', ')}; warm reps ${REPS}; ${CLIENTS} clients`);
  for (const count of COUNTS) await benchCount(count);
}

main()
  .catch((err: Error) => {
    note(`failed: ${err.stack ?? err.message}`);
    process.exitCode = 1;
  })
  .finally(() => started.cleanup());
