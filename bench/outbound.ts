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
 *     fresh process opens it and runs `count()` and one `due()` pass (which
 *     reads and parses every envelope: there is no index by retry time),
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
import { chmodSync, closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, statSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = join(ROOT, 'dist/cli/main.js');
const SELF = fileURLToPath(import.meta.url);
const NODE = process.execPath;
const LO = '127.0.0.1';

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

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const emit = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);
const note = (s: string) => process.stderr.write(`[outbound] ${s}\n`);
const r1 = (n: number) => Math.round(n * 10) / 10;

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
  // A pass at a time when nothing is due: every envelope is read and parsed, none yielded —
  // the cost of a runner pass over a queue of deferred mail.
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
const live = new Set<ChildProcess>();
const stops: (() => Promise<void>)[] = [];

function track(c: ChildProcess): ChildProcess {
  live.add(c);
  c.once('exit', () => live.delete(c));
  return c;
}
async function stopChild(c: ChildProcess, graceMs = 10_000): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  c.kill('SIGTERM');
  const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
  await new Promise((r) => c.once('exit', r));
  clearTimeout(t);
}
async function cleanup(): Promise<void> {
  for (const stop of stops.splice(0).reverse()) await stop().catch((e: Error) => note(`stop: ${e.message}`));
  for (const c of live) c.kill('SIGKILL');
  if (!opts.keep) rmSync(tmp, { recursive: true, force: true });
  else note(`kept ${tmp}`);
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void cleanup().finally(() => process.exit(130)));

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, LO, () => {
      const a = s.address();
      const p = typeof a === 'object' && a ? a.port : 0;
      s.close(() => res(p));
    });
  });
}
async function waitForGreeting(port: number, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = connect({ host: LO, port });
      let buf = '';
      const t = setTimeout(() => (s.destroy(), res(false)), 3000);
      s.on('data', (d) => {
        buf += d.toString('latin1');
        if (buf.includes('\r\n')) {
          clearTimeout(t);
          s.end('QUIT\r\n');
          res(buf.startsWith('220'));
        }
      });
      s.on('error', () => (clearTimeout(t), res(false)));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`no greeting on ${port}`);
    await sleep(100);
  }
}
function userOf(name: string): { uid: number; gid: number } | null {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}
function sessionPids(sid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const st = readFileSync(`/proc/${name}/stat`, 'latin1');
      if (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[3]) === sid) out.push(Number(name));
    } catch {
      /* gone */
    }
  }
  return out;
}
function sessionOf(pid: number): number {
  const st = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[3]);
}
function rssOfSession(sid: number): number {
  let kib = 0;
  for (const pid of sessionPids(sid)) {
    try {
      const m = /^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1'));
      if (m) kib += Number(m[1]);
    } catch {
      /* gone */
    }
  }
  return kib;
}
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
  stops.push(stop);
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
  const dir = join(tmp, 'appliance');
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const conf = join(dir, 'appliance.conf');
  writeFileSync(
    conf,
    [
      'hostname mail.example.test',
      `data-dir "${join(dir, 'data')}"`,
      'user root',
      `control socket "${join(dir, 'control.sock')}"`,
      `listen on ${LO} port ${port} tag MX`,
      `action "out" relay host smtp://${LO}:${sinkPort}`,
      'match from local for any action "out"',
      'match from any for any reject',
      '',
    ].join('\n'),
  );
  const log = join(dir, 'appliance.log');
  const fd = openSync(log, 'a');
  const child = track(spawn(NODE, [MAIN, 'start', '-c', conf], { stdio: ['ignore', fd, fd], detached: true, env: { ...process.env, APPLIANCE_CONFIG: '' } }));
  closeSync(fd);
  const until = Date.now() + 20_000;
  while (!readFileSync(log, 'utf8').includes('"appliance ready"')) {
    if (child.exitCode !== null) throw new Error(`appliance exited: ${readFileSync(log, 'utf8').slice(-500)}`);
    if (Date.now() > until) throw new Error('appliance not ready within 20 s');
    await sleep(50);
  }
  const stop = () => stopChild(child, 15_000);
  stops.push(stop);
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  return {
    name: 'appliance',
    version,
    port,
    sid: child.pid!,
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
    stop,
  };
}

async function startPostfix(sinkPort: number): Promise<Server> {
  const pf = userOf('postfix');
  if (!pf || !existsSync('/usr/sbin/postfix')) throw new Error('postfix not installed');
  const dir = join(tmp, 'postfix');
  mkdirSync(join(dir, 'queue'), { recursive: true });
  mkdirSync(join(dir, 'data'), { recursive: true });
  spawnSync('chown', [`${pf.uid}:${pf.gid}`, join(dir, 'data')]);
  const port = await freePort();
  const version = spawnSync('/usr/sbin/postconf', ['-d', '-h', 'mail_version'], { encoding: 'utf8' }).stdout.trim();
  writeFileSync(
    join(dir, 'main.cf'),
    [
      'compatibility_level = 3.6',
      `queue_directory = ${dir}/queue`,
      `data_directory = ${dir}/data`,
      'myhostname = mail.example.test',
      'mydomain = example.test',
      'mydestination =',
      `inet_interfaces = ${LO}`,
      'inet_protocols = ipv4',
      'mynetworks = 127.0.0.0/8',
      `relayhost = [${LO}]:${sinkPort}`,
      'default_transport = smtp',
      'relay_transport = smtp',
      'local_transport = error:no local mail in the benchmark',
      'smtp_tls_security_level = none',
      'smtp_dns_support_level = disabled',
      'alias_maps =',
      'alias_database =',
      `maillog_file = ${dir}/postfix.log`,
      `maillog_file_prefixes = ${dir}`,
      'biff = no',
      '',
    ].join('\n'),
  );
  writeFileSync(
    join(dir, 'master.cf'),
    [
      `${LO}:${port} inet n - n - - smtpd`,
      'pickup    unix  n - n 60 1 pickup',
      'cleanup   unix  n - n - 0 cleanup',
      'qmgr      unix  n - n 300 1 qmgr',
      'rewrite   unix  - - n - - trivial-rewrite',
      'bounce    unix  - - n - 0 bounce',
      'defer     unix  - - n - 0 bounce',
      'trace     unix  - - n - 0 bounce',
      'verify    unix  - - n - 1 verify',
      'flush     unix  n - n 1000? 0 flush',
      'proxymap  unix  - - n - - proxymap',
      'showq     unix  n - n - - showq',
      'error     unix  - - n - - error',
      'retry     unix  - - n - - error',
      'discard   unix  - - n - - discard',
      'smtp      unix  - - n - - smtp',
      'relay     unix  - - n - - smtp',
      'anvil     unix  - - n - 1 anvil',
      'scache    unix  - - n - 1 scache',
      'postlog   unix-dgram n - n - 1 postlogd',
      '',
    ].join('\n'),
  );
  const start = spawnSync('/usr/sbin/postfix', ['-c', dir, 'start'], { encoding: 'utf8', timeout: 30_000 });
  const pidFile = join(dir, 'queue/pid/master.pid');
  const masterPid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : NaN;
  const stop = async () => {
    spawnSync('/usr/sbin/postfix', ['-c', dir, 'stop'], { timeout: 30_000 });
    if (Number.isInteger(masterPid)) {
      const until = Date.now() + 10_000;
      while (existsSync(`/proc/${masterPid}`) && Date.now() < until) await sleep(100);
      if (existsSync(`/proc/${masterPid}`)) process.kill(masterPid, 'SIGKILL');
    }
  };
  stops.push(stop);
  if (start.status !== 0 || !Number.isInteger(masterPid)) throw new Error(`postfix start failed (${start.status}): ${start.stderr} ${start.stdout} ${start.error?.message ?? ''}`);
  await waitForGreeting(port, 15_000);
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
    version,
    port,
    sid: sessionOf(masterPid),
    flush() {
      spawnSync('/usr/sbin/postqueue', ['-c', dir, '-f'], { timeout: 30_000 });
    },
    queued: () => ['incoming', 'active', 'deferred', 'hold', 'maildrop'].reduce((n, q) => n + countFiles(join(dir, 'queue', q)), 0),
    stop,
  };
}

async function startOpenSMTPD(sinkPort: number): Promise<Server> {
  const cache = join(tmpdir(), 'appliance-bench-opensmtpd');
  const root = join(cache, 'root');
  if (!existsSync(join(root, 'usr/sbin/smtpd'))) throw new Error(`OpenSMTPD not unpacked in ${root} (run bench/inbound.ts once)`);
  if (!userOf('opensmtpd') || !userOf('opensmtpq')) throw new Error('users opensmtpd/opensmtpq missing (bench/inbound.ts creates them)');
  const deb = readdirSync(cache).find((f) => /^opensmtpd_.*\.deb$/.test(f));
  const dir = join(tmp, 'opensmtpd');
  const spool = join(dir, 'spool');
  mkdirSync(spool, { recursive: true });
  chmodSync(spool, 0o711);
  const port = await freePort();
  const conf = join(dir, 'smtpd.conf');
  writeFileSync(
    conf,
    [`listen on ${LO} port ${port}`, `action "out" relay host smtp://${LO}:${sinkPort}`, 'match from local for any action "out"', ''].join('\n'),
  );
  writeFileSync(join(dir, 'resolv.conf'), `nameserver ${LO}\nlookup file bind\n`);
  const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  writeFileSync(
    join(dir, 'run.sh'),
    [
      'set -e',
      'mount -t tmpfs -o size=1m,mode=755 tmpfs /var/spool',
      'mkdir /var/spool/smtpd',
      `mount --bind ${q(spool)} /var/spool/smtpd`,
      'mount -t tmpfs -o size=1m,mode=755 tmpfs /usr/libexec',
      'mkdir /usr/libexec/opensmtpd',
      `mount --bind ${q(join(root, 'usr/libexec/opensmtpd'))} /usr/libexec/opensmtpd`,
      'mount -t tmpfs -o size=1m,mode=755 tmpfs /var/lib',
      'mkdir -p /var/lib/opensmtpd/empty',
      'mount -t tmpfs -o size=1m,mode=755 tmpfs /run',
      `mount --bind ${q(join(dir, 'resolv.conf'))} /etc/resolv.conf`,
      `exec ${q(join(root, 'usr/sbin/smtpd'))} -d -f ${q(conf)}`,
      '',
    ].join('\n'),
  );
  const log = join(dir, 'smtpd.log');
  const fd = openSync(log, 'a');
  const child = track(spawn('unshare', ['-m', '--propagation', 'private', 'sh', join(dir, 'run.sh')], { stdio: ['ignore', fd, fd], detached: true }));
  closeSync(fd);
  const sid = child.pid!;
  const stop = async () => {
    await stopChild(child, 10_000);
    for (const pid of sessionPids(sid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };
  stops.push(stop);
  await waitForGreeting(port, 15_000);
  const smtpctl = (...args: string[]) =>
    // smtpctl wants to run setgid opensmtpq (dpkg-deb -x keeps no setgid bit): root with that group, in smtpd's mount namespace.
    spawnSync('nsenter', ['-t', String(child.pid), '-m', 'setpriv', `--regid=${userOf('opensmtpq')!.gid}`, '--clear-groups', join(root, 'usr/sbin/smtpctl'), ...args], { encoding: 'utf8', timeout: 60_000 });
  return {
    name: 'opensmtpd',
    version: deb ? deb.split('_')[1]! : 'unknown',
    port,
    sid,
    flush() {
      const r = smtpctl('schedule', 'all');
      if (r.status !== 0) note(`smtpctl schedule all: ${r.stderr}`);
    },
    queued() {
      // Envelopes on disk: spool/queue/XX/MSGID/EVPID, next to the body file "message".
      let n = 0;
      const qdir = join(spool, 'queue');
      if (!existsSync(qdir)) return 0;
      for (const b of readdirSync(qdir)) for (const m of readdirSync(join(qdir, b))) n += readdirSync(join(qdir, b, m)).filter((f) => f !== 'message').length;
      return n;
    },
    stop,
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
    const rssIdle = rssOfSession(server.sid);
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
      if (Math.random() < 0.1) peakRss = Math.max(peakRss, rssOfSession(server.sid));
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
void statSync;
