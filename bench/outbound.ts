/**
 * Outbound (issue "Send mail"), reduced to what fits a deadline:
 *
 *  1. Relay throughput: the appliance, Debian's Postfix and Debian's OpenSMTPD
 *     each relay the same load to ONE smarthost, Postfix's `smtp-sink` on
 *     127.0.0.1. Each server's queue is filled over SMTP (smtp-source, one
 *     process per recipient domain) while the sink is down, so every message
 *     is queued and its first attempt fails; then the sink starts, the queue
 *     is flushed (`appliance queue flush`, `postqueue -f`, `smtpctl schedule
 *     all`), and the time from the flush to the sink's count reaching N is
 *     measured. Servers are measured one after the other, each with its own sink.
 *  2. The queue at rest: N small messages enqueued directly with
 *     store/queue.ts in a child process; the LevelDB size on disk; then a
 *     fresh process opens it and runs `count()` and `due()` passes (one
 *     when nothing is due: a seek in the due index; one when all is due),
 *     timed, with its RSS.
 *
 *   npm run build && npx node bench/outbound.ts [--quick] [--messages N]
 *       [--domains D] [--rest N] [--keep]
 *
 * Needs root and the peers as in bench/inbound.ts (/work/shared/PEERS.md).
 * All traffic is loopback; every process started is stopped by pid (Postfix
 * by `postfix -c DIR stop`); every wait is bounded. JSON lines on stdout.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MAIN, NODE, startAppliance as startApplianceInstance } from './lib/appliance.ts';
import { startOpenSmtpd } from './lib/opensmtpd.ts';
import { startPostfix as startPostfixInstance } from './lib/postfix.ts';
import { Started, stopChild } from './lib/processes.ts';
import { r1 } from './lib/stats.ts';
import { freePort, LOOPBACK as LO, memoryOfSession, sleep, waitForGreeting } from './lib/system.ts';

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
  },
});

const emit = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);
const note = (s: string) => process.stderr.write(`[outbound] ${s}\n`);

function statusKib(field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'latin1'));
  return m ? Number(m[1]) : -1;
}

/* ---------------------------------------------------------- queue at rest (children) */

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
const N = Number(opts.messages ?? (QUICK ? 400 : 2000));
const DOMAINS = Number(opts.domains ?? (QUICK ? 10 : 20));
const REST = Number(opts.rest ?? (QUICK ? 10_000 : 100_000));
const DELIVER_CAP_MS = 90_000;
if (N % DOMAINS !== 0) throw new Error('--messages must be a multiple of --domains');
if (!existsSync(MAIN)) throw new Error(`${MAIN} missing: npm run build first`);

const tmp = mkdtempSync(join(tmpdir(), 'appliance-outbound-'));
chmodSync(tmp, 0o755); // Postfix's daemons (user postfix) must reach their data_directory
const started = new Started(note, () => {
  if (!opts.keep) rmSync(tmp, { recursive: true, force: true });
  else note(`kept ${tmp}`);
});
const track = (c: ChildProcess): ChildProcess => started.track(c);
const cleanup = (): Promise<void> => started.cleanup();

const pssOfSession = (sid: number): number => memoryOfSession(sid).pss;
function duKib(path: string): number {
  const r = spawnSync('du', ['-sk', path], { encoding: 'utf8' });
  return Number(r.stdout.split('\t')[0]);
}

/* ---------------------------------------------------------- the sink */

interface Sink {
  count(): number;
  stop(): Promise<void>;
}
async function startSink(port: number, name: string): Promise<Sink> {
  const out = join(tmp, `sink-${name}.out`);
  const fd = openSync(out, 'w');
  // -c: running counters (mesg=N after each "."); backlog 256; -u nobody because we are root.
  const c = track(spawn('smtp-sink', ['-u', 'nobody', '-c', `${LO}:${port}`, '256'], { stdio: ['ignore', fd, fd], detached: true }));
  closeSync(fd);
  await waitForGreeting(port, 10_000);
  const stop = () => stopChild(c, 3000);
  started.onStop(stop);
  return {
    count() {
      const text = readFileSync(out, 'latin1');
      const i = text.lastIndexOf('mesg=');
      return i < 0 ? 0 : parseInt(text.slice(i + 5), 10);
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
  flush(): void;
  queued(): number;
  stop(): Promise<void>;
}

async function startAppliance(sinkPort: number): Promise<Server> {
  const port = await freePort();
  const app = await startApplianceInstance({
    dir: join(tmp, 'appliance'),
    started,
    config: [`listen on ${LO} port ${port} tag MX`, `action "out" relay host smtp://${LO}:${sinkPort}`, 'match from local for any action "out"', 'match from any for any reject'],
  });
  const { conf, version } = app;
  return {
    name: 'appliance',
    version,
    port,
    sid: app.sid,
    flush() {
      const r = spawnSync(NODE, [MAIN, 'queue', 'flush', '-c', conf], { encoding: 'utf8', timeout: 600_000 });
      if (r.status !== 0) note(`appliance queue flush: ${r.stderr}`);
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

async function startPostfix(sinkPort: number): Promise<Server> {
  const dir = join(tmp, 'postfix');
  const pf = await startPostfixInstance({
    dir,
    port: await freePort(),
    started,
    main: [
      `relayhost = [${LO}]:${sinkPort}`,
      'default_transport = smtp',
      'relay_transport = smtp',
      'local_transport = error:no local mail in the benchmark',
      'smtp_tls_security_level = none',
      'smtp_dns_support_level = disabled',
    ],
    services: ['smtp      unix  - - n - - smtp', 'relay     unix  - - n - - smtp'],
  });
  const countFiles = (d: string): number => {
    let n = 0;
    const walk = (p: string) => {
      if (!existsSync(p)) return;
      for (const e of readdirSync(p, { withFileTypes: true })) e.isDirectory() ? walk(join(p, e.name)) : n++;
    };
    walk(d);
    return n;
  };
  return {
    name: 'postfix',
    version: pf.version,
    port: pf.port,
    sid: pf.sid,
    flush() {
      spawnSync('/usr/sbin/postqueue', ['-c', dir, '-f'], { timeout: 30_000 });
    },
    queued: () => ['incoming', 'active', 'deferred', 'hold', 'maildrop'].reduce((n, q) => n + countFiles(join(dir, 'queue', q)), 0),
    stop: pf.stop,
  };
}

async function startOpenSMTPD(sinkPort: number): Promise<Server> {
  const dir = join(tmp, 'opensmtpd');
  mkdirSync(dir, { recursive: true });
  const smtpd = await startOpenSmtpd({
    dir,
    port: await freePort(),
    started,
    note,
    config: [`action "out" relay host smtp://${LO}:${sinkPort}`, 'match from local for any action "out"'],
  });
  return {
    name: 'opensmtpd',
    version: smtpd.version,
    port: smtpd.port,
    sid: smtpd.sid,
    flush() {
      const r = smtpd.smtpctl('schedule', 'all');
      if (r.status !== 0) note(`smtpctl schedule all: ${r.stderr}`);
    },
    queued() {
      // Envelopes on disk: spool/queue/XX/MSGID/EVPID, next to the body file "message".
      let n = 0;
      const qdir = join(smtpd.spool, 'queue');
      if (!existsSync(qdir)) return 0;
      for (const b of readdirSync(qdir)) for (const m of readdirSync(join(qdir, b))) n += readdirSync(join(qdir, b, m)).filter((f) => f !== 'message').length;
      return n;
    },
    stop: smtpd.stop,
  };
}

/* ---------------------------------------------------------- relay run */

/** One smtp-source per domain, N/DOMAINS messages each, reusing connections (-d), 1 session each. */
async function fill(server: Server): Promise<number> {
  const per = N / DOMAINS;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: DOMAINS }, (_, d) => {
      const c = track(
        spawn('smtp-source', ['-d', '-s', '1', '-m', String(per), '-l', '2048', '-f', 'sender@bench.test', '-t', `user@d${d}.example.test`, `${LO}:${server.port}`], {
          stdio: 'ignore',
        }),
      );
      const t = setTimeout(() => c.kill('SIGKILL'), 180_000);
      return new Promise((r) => c.once('exit', () => (clearTimeout(t), r(null))));
    }),
  );
  return performance.now() - t0;
}

async function relayRun(make: (sinkPort: number) => Promise<Server>): Promise<void> {
  const sinkPort = await freePort();
  const server = await make(sinkPort);
  try {
    const fillMs = await fill(server);
    // Let the first attempts fail against the closed port; wait until the queue holds everything.
    const until = Date.now() + 60_000;
    let queued = server.queued();
    while (queued < N && Date.now() < until) {
      await sleep(1000);
      queued = server.queued();
    }
    await sleep(3000);
    queued = server.queued();
    const rssIdle = pssOfSession(server.sid);
    note(`${server.name}: ${queued} queued after fill (${r1(fillMs / 1000)} s), PSS ${rssIdle} KiB`);
    const sink = await startSink(sinkPort, server.name);
    let peakRss = rssIdle;
    const t0 = performance.now();
    server.flush();
    const flushMs = performance.now() - t0;
    const cap = Date.now() + DELIVER_CAP_MS;
    let got = sink.count();
    while (got < N && Date.now() < cap) {
      await sleep(50);
      got = sink.count();
      if (Math.random() < 0.1) peakRss = Math.max(peakRss, pssOfSession(server.sid));
    }
    const ms = performance.now() - t0;
    await sleep(1000);
    const left = server.queued();
    emit({
      bench: 'relay',
      server: server.name,
      version: server.version,
      messages: N,
      domains: DOMAINS,
      queued_before: queued,
      delivered: got,
      seconds: r1(ms / 10) / 100,
      msgs_per_s: r1((got / ms) * 1000),
      flush_cmd_ms: Math.round(flushMs),
      left_in_queue_after: left,
      pss_idle_kib: rssIdle,
      pss_peak_kib: peakRss,
      fill_s: r1(fillMs / 1000),
      capped: got < N,
    });
    await sink.stop();
  } finally {
    await server.stop();
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
  // Twice: the first open may compact (LevelDB replays its log); the second is the steady state.
  for (const pass of [1, 2]) {
    const o = runChild(['--child-open', dir], 600_000);
    emit({ bench: 'queue-rest-open', pass, ...Object.fromEntries(Object.entries(o).map(([k, v]) => [k, k.endsWith('_ms') ? Math.round(v) : v])), du_kib_after: duKib(dir) });
  }
}

/* ---------------------------------------------------------- main */

note(`machine: ${cpus().length} × ${cpus()[0]?.model}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}; ${N} messages to ${DOMAINS} domains; queue at rest ${REST}`);
try {
  for (const [name, make] of [
    ['appliance', startAppliance],
    ['postfix', startPostfix],
    ['opensmtpd', startOpenSMTPD],
  ] as const) {
    if (opts.only && !opts.only.split(',').includes(name)) continue;
    try {
      await relayRun(make);
    } catch (err) {
      emit({ bench: 'relay', server: name, skipped: (err as Error).message });
    }
  }
  if (!opts.only || opts.only.includes('rest')) await queueAtRest();
} finally {
  await cleanup();
}
