/**
 * Outbound (issue "Send mail"): relay throughput to local sinks, side by side
 * with Postfix and OpenSMTPD, and the queue at rest.
 *
 *  1. Relay throughput: the appliance, Debian's Postfix and Debian's OpenSMTPD
 *     each relay N messages (default 10,000) to D recipient domains (100).
 *     Two routings (`--modes`):
 *     - mx: per domain, as with D real domains. Domain d<i>.example.test goes
 *       to its own sink, Postfix's `smtp-sink` on 127.0.77.<i+1>:25. The
 *       appliance finds it by MX lookup (a DNS server in a child process
 *       serves d<i> MX mx.d<i>, mx.d<i> A 127.0.77.<i+1>); Postfix by
 *       `transport_maps` (`d<i> smtp:[127.0.77.<i+1>]:25`); OpenSMTPD by one
 *       `action relay host` per domain. Every server thus sees D destinations
 *       and applies its per-destination limits to each.
 *     - smarthost: everything to ONE sink on 127.0.0.1:PORT (`relay host`,
 *       `relayhost`).
 *     Each server's queue is filled over SMTP (smtp-source, one process per
 *     domain) while the sinks are down, so every message is queued and its
 *     first attempt fails (connection refused); then the sinks start, the
 *     queue is flushed (`appliance queue flush`, `postqueue -f`), and the time
 *     from the flush to the sinks' count reaching N is measured. OpenSMTPD is
 *     filled with its MTA paused (`smtpctl pause mta`) and started with
 *     `smtpctl resume mta`: after refused connections, `schedule all` does not
 *     lift its route backoff. Repetitions interleave the servers (the order
 *     rotates); memory is the summed PSS of each server's session, CPU the
 *     user+system time of its processes during delivery.
 *  2. The queue at rest: N small messages enqueued directly with
 *     store/queue.ts in a child process; the LevelDB size on disk; then a
 *     fresh process opens it and runs `count()` and `due()` passes (one
 *     when nothing is due: a seek in the due index; one when all is due),
 *     timed, with its RSS. And Postfix with the same number deferred: its
 *     deferred queue on disk, qmgr's memory.
 *
 *   npm run build && npx node bench/outbound.ts [--quick] [--messages N]
 *       [--domains D] [--reps R] [--modes mx,smarthost] [--rest N]
 *       [--rest-postfix N] [--only appliance,postfix,opensmtpd,rest,postfix-rest]
 *       [--cap-seconds S] [--max-seconds S] [--cpu-prof DIR]
 *       [--appliance-config 'queue concurrency 50;...'] [--keep]
 *
 * Needs root (sinks on port 25 of 127.0.77.x) and the peers as in
 * bench/inbound.ts (/work/shared/PEERS.md). All traffic is loopback; every
 * process started is stopped by pid (Postfix by `postfix -c DIR stop`); every
 * wait is bounded (fill 300 s, delivery --cap-seconds, no run starts after
 * --max-seconds). JSON lines on stdout.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MAIN, NODE, startAppliance as startApplianceInstance } from './lib/appliance.ts';
import { startOpenSmtpd } from './lib/opensmtpd.ts';
import { startPostfix as startPostfixInstance } from './lib/postfix.ts';
import { Started, stopChild } from './lib/processes.ts';
import { median, r1 } from './lib/stats.ts';
import { freePort, LOOPBACK as LO, memOf, memoryOfSession, sessionPids, sleep, waitForGreeting } from './lib/system.ts';
import { type DnsRecord, startDnsServer } from '../test/helpers/dns-server.ts';

const SELF = fileURLToPath(import.meta.url);

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    messages: { type: 'string' },
    domains: { type: 'string' },
    rest: { type: 'string' },
    keep: { type: 'boolean', default: false },
    only: { type: 'string' },
    'child-fill': { type: 'string' },
    'child-open': { type: 'string' },
    count: { type: 'string' },
    reps: { type: 'string' },
    modes: { type: 'string' },
    'rest-postfix': { type: 'string' },
    'max-seconds': { type: 'string' },
    'cpu-prof': { type: 'string' },
    'appliance-config': { type: 'string' },
    'child-dns': { type: 'string' },
    'cap-seconds': { type: 'string' },
  },
});

const emit = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);
const note = (s: string) => process.stderr.write(`[outbound] ${s}\n`);

function statusKib(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'latin1'));
  return m ? Number(m[1]) : -1;
}

/* ---------------------------------------------------------- the MX zone's DNS server (child) */

// In its own process: the harness blocks its event loop in spawnSync (flush, queue show), which
// would stall a DNS server living in it, and the appliance's lookups would time out.
if (opts['child-dns']) {
  const domains = Number(opts['child-dns']);
  // d<i>.example.test MX 10 mx.d<i>.example.test, A 127.0.77.<i+1>.
  const zone: Record<string, DnsRecord[]> = {};
  for (let d = 0; d < domains; d++) {
    zone[`d${d}.example.test`] = [{ type: 'MX', preference: 10, exchange: `mx.d${d}.example.test` }];
    zone[`mx.d${d}.example.test`] = [{ type: 'A', address: `127.0.77.${d + 1}` }];
  }
  const dns = await startDnsServer(zone);
  setInterval(() => {
    process.stderr.write(`queries ${dns.queries.length}\n`);
    dns.queries.length = 0;
  }, 10_000);
  process.stdout.write(`${dns.port}\n`);
  process.stdin.resume();
  process.stdin.once('end', () => process.exit(0));
  await new Promise<never>(() => {}); // serves until the harness closes stdin (or kills it)
}

if (opts['child-fill']) {
  const dir = opts['child-fill'];
  const n = Number(opts.count);
  const { Store } = await import('../store/db.ts');
  const { Queue } = await import('../store/queue.ts');
  const store = await Store.open(dir);
  const q = Queue.open(store);
  const body = Buffer.from(
    `From: sender@bench.test\r\nTo: user@example.test\r\nSubject: queued at rest\r\nMessage-ID: <x@bench.test>\r\n\r\n${'This is a small deferred message.\r\n'.repeat(12)}`,
  );
  const t0 = performance.now();
  const WINDOW = 256;
  let next = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      await q.enqueue({
        sender: 'sender@bench.test',
        recipients: [{ address: `user${i % 1000}@d${i % 100}.example.test`, transport: 'relay', action: 'out', route: '127.0.0.1:2525' }],
        body,
      });
    }
  };
  await Promise.all(Array.from({ length: WINDOW }, worker));
  const ms = performance.now() - t0;
  const stats = q.writeStats;
  await q.close();
  await store.close?.();
  process.stdout.write(`${JSON.stringify({ enqueued: n, ms, body_bytes: body.length, batches: stats.batches, peak_rss_kib: statusKib('VmHWM') })}\n`);
  process.exit(0);
}

if (opts['child-open']) {
  const dir = opts['child-open'];
  const rss0 = statusKib('VmRSS');
  const { Store } = await import('../store/db.ts');
  const { Queue } = await import('../store/queue.ts');
  let t = performance.now();
  const store = await Store.open(dir);
  const q = Queue.open(store);
  const openMs = performance.now() - t;
  const rssOpen = statusKib('VmRSS');
  t = performance.now();
  const count = await q.count();
  const countMs = performance.now() - t;
  const rssCount = statusKib('VmRSS');
  // A pass at a time when nothing is due — the cost of a runner pass over a queue of deferred
  // mail: one seek in the due index (before it existed: every envelope read and parsed).
  t = performance.now();
  let due = 0;
  for await (const _ of q.due(0)) due++;
  const dueMs = performance.now() - t;
  const rssDue = statusKib('VmRSS');
  // And a pass where everything is due (what `queue flush` or a recovered relay sees).
  t = performance.now();
  let dueAll = 0;
  for await (const _ of q.due(Date.now() + 1000)) dueAll++;
  const dueAllMs = performance.now() - t;
  await q.close();
  process.stdout.write(
    `${JSON.stringify({ count, open_ms: openMs, count_ms: countMs, due_none_ms: dueMs, due_none: due, due_all_ms: dueAllMs, due_all: dueAll, rss_start_kib: rss0, rss_open_kib: rssOpen, rss_after_count_kib: rssCount, rss_after_due_kib: rssDue, peak_rss_kib: statusKib('VmHWM') })}\n`,
  );
  process.exit(0);
}

/* ---------------------------------------------------------- main */

const QUICK = opts.quick;
const N = Number(opts.messages ?? (QUICK ? 1000 : 10_000));
const DOMAINS = Number(opts.domains ?? (QUICK ? 10 : 100));
const REPS = Number(opts.reps ?? (QUICK ? 1 : 3));
const REST = Number(opts.rest ?? (QUICK ? 10_000 : 100_000));
const REST_POSTFIX = Number(opts['rest-postfix'] ?? REST);
const MODES = (opts.modes ?? 'mx,smarthost').split(',').filter(Boolean) as Mode[];
const MAX_SECONDS = Number(opts['max-seconds'] ?? 3600);
/** A run that has not delivered everything by then reports its rate over this window (`capped`). */
const DELIVER_CAP_MS = Number(opts['cap-seconds'] ?? 90) * 1000;
/** Sink i (domain d<i>) listens on 127.0.77.<i+1>:25, MX mode: one address per domain, as 100 real domains have. */
const SINK_NET = '127.0.77.';
type Mode = 'mx' | 'smarthost';
if (N % DOMAINS !== 0) throw new Error('--messages must be a multiple of --domains');
if (DOMAINS > 250) throw new Error('--domains: at most 250 (one sink address each)');
for (const m of MODES) if (m !== 'mx' && m !== 'smarthost') throw new Error(`--modes: mx or smarthost, not ${m}`);
if (!existsSync(MAIN)) throw new Error(`${MAIN} missing: npm run build first`);

const tmp = mkdtempSync(join(tmpdir(), 'appliance-outbound-'));
chmodSync(tmp, 0o755); // Postfix's daemons (user postfix) must reach their data_directory
const started = new Started(note, () => {
  if (!opts.keep) rmSync(tmp, { recursive: true, force: true });
  else note(`kept ${tmp}`);
});
const track = (c: ChildProcess): ChildProcess => started.track(c);
const cleanup = (): Promise<void> => started.cleanup();

function duKib(path: string): number {
  const r = spawnSync('du', ['-sk', path], { encoding: 'utf8' });
  return Number(r.stdout.split('\t')[0]);
}
const domainName = (d: number): string => `d${d}.example.test`;
const sinkAddress = (d: number): string => `${SINK_NET}${d + 1}`;

/** CPU seconds (user + system, with reaped children) of a session's processes, now. */
function cpuOfSession(sid: number): number {
  const hz = 100; // USER_HZ on Linux
  let ticks = 0;
  for (const pid of sessionPids(sid)) {
    try {
      const st = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      /* gone */
    }
  }
  return ticks / hz;
}

/** Busy share of the machine's CPUs since the last call (from /proc/stat): the load others add is in here too. */
function machineBusy(): () => number {
  const read = () => {
    const f = readFileSync('/proc/stat', 'latin1').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const idle = f[3]! + f[4]!;
    return { idle, total: f.reduce((a, b) => a + b, 0) };
  };
  const a = read();
  return () => {
    const b = read();
    return b.total === a.total ? 0 : 1 - (b.idle - a.idle) / (b.total - a.total);
  };
}

/* ---------------------------------------------------------- the sinks */

interface Sinks {
  count(): number;
  stop(): Promise<void>;
}

/** smtp-sink processes: one per domain on 127.0.77.<d+1>:25 (mx), or one on 127.0.0.1:PORT (smarthost). */
async function startSinks(mode: Mode, name: string, smarthostPort: number): Promise<Sinks> {
  const where = mode === 'mx' ? Array.from({ length: DOMAINS }, (_, d) => ({ host: sinkAddress(d), port: 25 })) : [{ host: LO, port: smarthostPort }];
  const outs: string[] = [];
  const children: ChildProcess[] = [];
  for (const [i, w] of where.entries()) {
    const out = join(tmp, `sink-${name}-${i}.out`);
    outs.push(out);
    const fd = openSync(out, 'w');
    // -c: running counters (mesg=N after each "."); backlog 256; -u nobody because we are root.
    children.push(track(spawn('smtp-sink', ['-u', 'nobody', '-c', `${w.host}:${w.port}`, '256'], { stdio: ['ignore', fd, fd], detached: true })));
    closeSync(fd);
  }
  const stop = async () => {
    await Promise.all(children.map((c) => stopChild(c, 3000)));
  };
  started.onStop(stop);
  for (const w of where) await waitForGreeting(w.port, 10_000, { host: w.host });
  const last = outs.map(() => 0);
  return {
    count() {
      let n = 0;
      for (const [i, out] of outs.entries()) {
        const text = readFileSync(out, 'latin1');
        const j = text.lastIndexOf('mesg=');
        if (j >= 0) last[i] = parseInt(text.slice(j + 5), 10);
        n += last[i]!;
      }
      return n;
    },
    stop,
  };
}

/* ---------------------------------------------------------- servers */

interface Server {
  readonly name: string;
  readonly version: string;
  readonly port: number;
  readonly sid: number;
  /** What starts delivery of the filled queue; resolves when the command returns. */
  flush(): Promise<void>;
  queued(): number;
  /** The pid whose CPU profile or logs matter (appliance). */
  readonly log?: string;
  stop(): Promise<void>;
}

interface Route {
  readonly mode: Mode;
  readonly smarthostPort: number;
  readonly dnsPort: number;
}

let profileDir: string | null = opts['cpu-prof'] ?? null;

async function startAppliance(route: Route, label: string): Promise<Server> {
  const port = await freePort();
  const relay = route.mode === 'mx' ? [`resolver ${LO}:${route.dnsPort}`, 'action "out" relay'] : [`action "out" relay host smtp://${LO}:${route.smarthostPort}`];
  const app = await startApplianceInstance({
    dir: join(tmp, `appliance-${label}`),
    started,
    config: [
      `listen on ${LO} port ${port} tag MX`,
      ...relay,
      ...(opts['appliance-config'] ? opts['appliance-config'].split(';').map((l) => l.trim()) : []),
      'match from local for any action "out"',
      'match from any for any reject',
    ],
    ...(profileDir ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', profileDir] } : {}),
  });
  const { conf, version } = app;
  return {
    name: 'appliance',
    version,
    port,
    sid: app.sid,
    log: app.log,
    async flush() {
      // Not spawnSync: `queue flush` returns when its pass ends, and the harness samples memory meanwhile.
      const c = track(spawn(NODE, [MAIN, 'queue', 'flush', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] }));
      let err = '';
      c.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      const t = setTimeout(() => c.kill('SIGKILL'), 600_000);
      const code = await new Promise<number | null>((r) => c.once('exit', (x) => r(x)));
      clearTimeout(t);
      if (code !== 0) note(`appliance queue flush: ${err}`);
    },
    queued() {
      const r = spawnSync(NODE, [MAIN, 'queue', 'show', '--json', '-c', conf], { encoding: 'utf8', timeout: 120_000, maxBuffer: 1 << 28 });
      try {
        return (JSON.parse(r.stdout) as unknown[]).length;
      } catch {
        return -1;
      }
    },
    stop: app.stop,
  };
}

function countFiles(d: string): number {
  let n = 0;
  const walk = (p: string) => {
    if (!existsSync(p)) return;
    for (const e of readdirSync(p, { withFileTypes: true })) e.isDirectory() ? walk(join(p, e.name)) : n++;
  };
  walk(d);
  return n;
}

async function startPostfix(route: Route, label: string, extra: readonly string[] = []): Promise<Server> {
  const dir = join(tmp, `postfix-${label}`);
  mkdirSync(dir, { recursive: true });
  let routing: string[];
  if (route.mode === 'mx') {
    // One nexthop per domain (its own address): per-destination concurrency as with 100 real domains.
    writeFileSync(join(dir, 'transport'), Array.from({ length: DOMAINS }, (_, d) => `${domainName(d)} smtp:[${sinkAddress(d)}]:25`).join('\n') + '\n');
    routing = [`transport_maps = texthash:${dir}/transport`, 'default_transport = error:not routed in the benchmark', 'relay_transport = error:not routed in the benchmark'];
  } else {
    routing = [`relayhost = [${LO}]:${route.smarthostPort}`, 'default_transport = smtp', 'relay_transport = smtp'];
  }
  const pf = await startPostfixInstance({
    dir,
    port: await freePort(),
    started,
    main: [...routing, 'local_transport = error:no local mail in the benchmark', 'smtp_tls_security_level = none', 'smtp_dns_support_level = disabled', ...extra],
    services: ['smtp      unix  - - n - - smtp', 'relay     unix  - - n - - smtp'],
  });
  return {
    name: 'postfix',
    version: pf.version,
    port: pf.port,
    sid: pf.sid,
    async flush() {
      spawnSync('/usr/sbin/postqueue', ['-c', dir, '-f'], { timeout: 30_000 });
    },
    queued: () => ['incoming', 'active', 'deferred', 'hold', 'maildrop'].reduce((n, q) => n + countFiles(join(dir, 'queue', q)), 0),
    stop: pf.stop,
  };
}

async function startOpenSMTPD(route: Route, label: string): Promise<Server> {
  const dir = join(tmp, `opensmtpd-${label}`);
  mkdirSync(dir, { recursive: true });
  const config =
    route.mode === 'mx'
      ? Array.from({ length: DOMAINS }, (_, d) => [`action "r${d}" relay host smtp://${sinkAddress(d)}:25`, `match from local for domain "${domainName(d)}" action "r${d}"`]).flat()
      : [`action "out" relay host smtp://${LO}:${route.smarthostPort}`, 'match from local for any action "out"'];
  const smtpd = await startOpenSmtpd({ dir, port: await freePort(), started, note, config });
  // Filled with its MTA paused, then `resume mta`: `schedule all` after refused connections does not lift
  // the route's backoff (its MTA then delivers at its own retry pace), so the sink being down is not used here.
  const p = smtpd.smtpctl('pause', 'mta');
  if (p.status !== 0) throw new Error(`smtpctl pause mta: ${p.stderr}`);
  return {
    name: 'opensmtpd',
    version: smtpd.version,
    port: smtpd.port,
    sid: smtpd.sid,
    async flush() {
      const r = smtpd.smtpctl('resume', 'mta');
      if (r.status !== 0) note(`smtpctl resume mta: ${r.stderr}`);
    },
    queued() {
      // Envelopes on disk: spool/queue/XX/MSGID/EVPID, next to the body file "message".
      let n = 0;
      const qdir = join(smtpd.spool, 'queue');
      if (!existsSync(qdir)) return 0;
      // Directories come and go while it delivers: one that vanished between listing and reading counts 0.
      const list = (p: string): string[] => {
        try {
          return readdirSync(p);
        } catch {
          return [];
        }
      };
      for (const b of list(qdir)) for (const m of list(join(qdir, b))) n += list(join(qdir, b, m)).filter((f) => f !== 'message').length;
      return n;
    },
    stop: smtpd.stop,
  };
}

/* ---------------------------------------------------------- relay run */

/** One smtp-source per domain, N/DOMAINS messages each of `bytes`, reusing its connection (-d), 1 session each. */
async function fill(port: number, total: number, domains: number, bytes: number, capMs: number): Promise<number> {
  const per = total / domains;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: domains }, (_, d) => {
      const c = track(
        spawn('smtp-source', ['-d', '-s', '1', '-m', String(per), '-l', String(bytes), '-f', 'sender@bench.test', '-t', `user@${domainName(d)}`, `${LO}:${port}`], {
          stdio: 'ignore',
        }),
      );
      const t = setTimeout(() => c.kill('SIGKILL'), capMs);
      return new Promise((r) => c.once('exit', () => (clearTimeout(t), r(null))));
    }),
  );
  return performance.now() - t0;
}

type Make = (route: Route, label: string) => Promise<Server>;
const results: Record<string, unknown>[] = [];

async function relayRun(mode: Mode, make: Make, rep: number, dnsPort: number): Promise<void> {
  const smarthostPort = await freePort();
  const route: Route = { mode, smarthostPort, dnsPort };
  const label = `${mode}-${rep}`;
  const load0 = loadavg()[0]!;
  const server = await make(route, label);
  try {
    const fillMs = await fill(server.port, N, DOMAINS, 2048, 300_000);
    // The first attempts fail against the closed ports (OpenSMTPD: MTA paused); wait until the queue holds everything.
    const until = Date.now() + 120_000;
    let queued = server.queued();
    while (queued < N && Date.now() < until) {
      await sleep(1000);
      queued = server.queued();
    }
    await sleep(3000);
    queued = server.queued();
    const pssIdle = memoryOfSession(server.sid).pss;
    note(`${server.name} ${label}: ${queued} queued after fill (${r1(fillMs / 1000)} s), PSS ${pssIdle} KiB`);
    const sinks = await startSinks(mode, `${server.name}-${label}`, smarthostPort);
    let peakPss = pssIdle;
    const cpu0 = cpuOfSession(server.sid);
    const busy = machineBusy();
    const t0 = performance.now();
    let flushMs = -1;
    const flushed = server.flush().then(() => (flushMs = performance.now() - t0));
    const cap = Date.now() + DELIVER_CAP_MS;
    let got = sinks.count();
    let firstMs = -1;
    let lastSample = 0;
    while (got < N && Date.now() < cap) {
      await sleep(50);
      got = sinks.count();
      if (got > 0 && firstMs < 0) firstMs = performance.now() - t0;
      if (performance.now() - lastSample > 500) {
        lastSample = performance.now();
        peakPss = Math.max(peakPss, memoryOfSession(server.sid).pss);
      }
    }
    const ms = performance.now() - t0;
    const cpu = cpuOfSession(server.sid) - cpu0;
    const machine = busy();
    await Promise.race([flushed, sleep(30_000)]);
    await sleep(1000);
    const left = server.queued();
    const r = {
      bench: 'relay',
      mode,
      rep,
      server: server.name,
      version: server.version,
      messages: N,
      domains: DOMAINS,
      queued_before: queued,
      delivered: got,
      seconds: r1(ms / 10) / 100,
      msgs_per_s: r1((got / ms) * 1000),
      first_ms: Math.round(firstMs),
      flush_cmd_ms: Math.round(flushMs),
      cpu_s: r1(cpu * 10) / 10,
      cpu_ms_per_msg: got > 0 ? Math.round((cpu * 1e5) / got) / 100 : null,
      machine_busy: Math.round(machine * 100) / 100,
      load1_before: load0,
      left_in_queue_after: left,
      pss_idle_kib: pssIdle,
      pss_peak_kib: peakPss,
      fill_s: r1(fillMs / 1000),
      capped: got < N,
    };
    results.push(r);
    emit(r);
    await sinks.stop();
  } finally {
    await server.stop();
  }
}

function summary(): void {
  const ok = results.filter((r) => r.bench === 'relay' && !r.skipped);
  for (const mode of MODES) {
    const by = (name: string) => ok.filter((r) => r.mode === mode && r.server === name);
    const med = (name: string, k: string) => median(by(name).map((r) => r[k] as number));
    const row: Record<string, unknown> = { bench: 'relay-summary', mode, messages: N, domains: DOMAINS };
    for (const name of ['appliance', 'postfix', 'opensmtpd']) {
      const xs = by(name).map((r) => r.msgs_per_s as number);
      if (xs.length === 0) continue;
      row[name] = { runs: xs.length, msgs_per_s_median: med(name, 'msgs_per_s'), min: Math.min(...xs), max: Math.max(...xs), all: xs, cpu_ms_per_msg_median: med(name, 'cpu_ms_per_msg'), pss_idle_kib_median: med(name, 'pss_idle_kib'), pss_peak_kib_median: med(name, 'pss_peak_kib'), capped: by(name).filter((r) => r.capped).length };
    }
    const a = med('appliance', 'msgs_per_s');
    const p = med('postfix', 'msgs_per_s');
    const o = med('opensmtpd', 'msgs_per_s');
    if (a && p) row.appliance_over_postfix = Math.round((a / p) * 100) / 100;
    if (a && o) row.appliance_over_opensmtpd = Math.round((a / o) * 100) / 100;
    emit(row);
  }
}

/* ---------------------------------------------------------- queue at rest */

function runChild(args: string[], timeoutMs: number): Record<string, number> {
  const r = spawnSync('/usr/bin/time', ['-f', '%M', NODE, SELF, ...args], { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 1 << 24 });
  if (r.status !== 0) throw new Error(`child ${args.join(' ')}: ${r.stderr.slice(-500)}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<string, number>;
  out.time_max_rss_kib = Number(r.stderr.trim().split('\n').pop());
  return out;
}

async function queueAtRest(): Promise<void> {
  const dir = join(tmp, 'rest');
  mkdirSync(dir);
  const fillRes = runChild(['--child-fill', dir, '--count', String(REST)], 900_000);
  const files = readdirSync(dir, { recursive: true }) as string[];
  const sizeKib = duKib(dir);
  emit({ bench: 'queue-rest-fill', messages: REST, enqueue_s: r1(fillRes.ms! / 100) / 10, enqueue_per_s: Math.round((REST / fillRes.ms!) * 1000), body_bytes: fillRes.body_bytes, group_commits: fillRes.batches, du_kib: sizeKib, bytes_per_message: Math.round((sizeKib * 1024) / REST), files: files.length, peak_rss_kib: fillRes.time_max_rss_kib });
  // Three times: the first open may compact (LevelDB replays its log); the others are the steady state.
  for (const pass of [1, 2, 3]) {
    const o = runChild(['--child-open', dir], 600_000);
    emit({ bench: 'queue-rest-open', pass, ...Object.fromEntries(Object.entries(o).map(([k, v]) => [k, k.endsWith('_ms') ? Math.round(v * 100) / 100 : v])), du_kib_after: duKib(dir) });
  }
}

/** Postfix with REST_POSTFIX messages deferred (its relay refuses connections): queue size on disk, qmgr's memory. */
async function postfixAtRest(): Promise<void> {
  const closed = await freePort(); // nothing listens there: every attempt is refused and deferred
  const server = await startPostfix({ mode: 'smarthost', smarthostPort: closed, dnsPort: 0 }, 'rest');
  const dir = join(tmp, 'postfix-rest');
  try {
    // 400 body bytes from smtp-source: with its headers and Postfix's envelope records, about the appliance's 523 B message.
    const fillMs = await fill(server.port, REST_POSTFIX, 20, 400, 900_000);
    const until = Date.now() + 300_000;
    let deferred = countFiles(join(dir, 'queue/deferred'));
    while (deferred < REST_POSTFIX && Date.now() < until) {
      await sleep(2000);
      deferred = countFiles(join(dir, 'queue/deferred'));
    }
    await sleep(5000);
    deferred = countFiles(join(dir, 'queue/deferred'));
    let qmgr = { rss: -1, pss: -1 };
    for (const pid of sessionPids(server.sid)) {
      try {
        if (readFileSync(`/proc/${pid}/comm`, 'latin1').trim() === 'qmgr') qmgr = memOf(pid) ?? qmgr;
      } catch {
        /* gone */
      }
    }
    const all = memoryOfSession(server.sid);
    emit({ bench: 'postfix-rest', version: server.version, messages: REST_POSTFIX, fill_s: r1(fillMs / 1000), deferred, du_deferred_kib: duKib(join(dir, 'queue/deferred')), du_queue_kib: duKib(join(dir, 'queue')), bytes_per_message: Math.round((duKib(join(dir, 'queue/deferred')) * 1024) / Math.max(1, deferred)), qmgr_rss_kib: qmgr.rss, qmgr_pss_kib: qmgr.pss, session_pss_kib: all.pss, session_rss_kib: all.rss, procs: all.procs });
  } finally {
    await server.stop();
  }
}

/* ---------------------------------------------------------- main */

note(`machine: ${cpus().length} × ${cpus()[0]?.model}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ${N} messages to ${DOMAINS} domains, modes ${MODES.join(',')}, ${REPS} reps; queue at rest ${REST}`);
const benchStart = Date.now();
const only = opts.only ? opts.only.split(',') : null;
const servers: [string, Make][] = (
  [
    ['appliance', startAppliance],
    ['postfix', startPostfix],
    ['opensmtpd', startOpenSMTPD],
  ] as [string, Make][]
).filter(([name]) => !only || only.includes(name));
try {
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const dnsLog = openSync(join(tmp, 'dns.log'), 'w');
  const dnsChild = track(spawn(NODE, [SELF, '--child-dns', String(DOMAINS)], { stdio: ['pipe', 'pipe', dnsLog] }));
  closeSync(dnsLog);
  started.onStop(() => stopChild(dnsChild, 2000));
  const dns = {
    port: await new Promise<number>((resolve, reject) => {
      dnsChild.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      dnsChild.once('exit', () => reject(new Error('the DNS child exited')));
    }),
  };
  // Interleaved: every repetition runs each server once, the order rotating, so slow phases of the machine spread out.
  outer: for (let rep = 1; rep <= REPS; rep++) {
    for (const mode of MODES) {
      for (let k = 0; k < servers.length; k++) {
        if ((Date.now() - benchStart) / 1000 > MAX_SECONDS) {
          note(`--max-seconds ${MAX_SECONDS} reached: no more runs`);
          break outer;
        }
        const [name, make] = servers[(k + rep - 1) % servers.length]!;
        try {
          await relayRun(mode, make, rep, dns.port);
        } catch (err) {
          const r = { bench: 'relay', mode, rep, server: name, skipped: (err as Error).message };
          results.push(r);
          emit(r);
        }
      }
    }
  }
  if (servers.length > 0) summary();
  if (!only || only.includes('rest')) await queueAtRest();
  if (!only || only.includes('postfix-rest')) await postfixAtRest();
} finally {
  await cleanup();
}
