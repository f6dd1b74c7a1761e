/**
 * IMAP side by side: the appliance and Debian's Dovecot serving the same
 * Maildir tree (Dovecot with its own index directory), driven by the same
 * client (Python's imaplib, as the reference figures), interleaved
 * in one run. Per round and server: login+SELECT; UID FETCH 1:* (FLAGS
 * INTERNALDATE RFC822.SIZE ENVELOPE); FETCH 1:* BODYSTRUCTURE; all bodies;
 * UID SEARCH SUBJECT; STORE +FLAGS on all (undone afterwards, untimed).
 * Round 1 is cold (the appliance's LevelDB and Dovecot's index deleted
 * before it), the others warm. Then a full mbsync pull each, and RSS idle
 * at start, after the rounds and with 50 logged-in clients (Dovecot: all
 * its processes summed).
 *
 *   npx node bench/imap-interleaved.ts [--messages N (10000)] [--rounds R (3)] [--max-seconds S (1200)] [--no-mbsync] [--keep]
 *
 * Needs a build (`npm run build`) and root (both servers run as `nobody`
 * on the same files; Dovecot refuses uid 0). Prints one JSON line per
 * measurement; notes on stderr. Everything started is stopped at the end.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { hashPassword } from '../core/auth/passwords.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MAIN = join(ROOT, 'dist/cli/main.js');
const NOBODY = 65534;

const { values: opts } = parseArgs({
  options: {
    messages: { type: 'string', default: '10000' },
    rounds: { type: 'string', default: '3' },
    'max-seconds': { type: 'string', default: '1200' },
    'no-mbsync': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
  strict: true,
});
const N = Number(opts.messages);
const ROUNDS = Number(opts.rounds);
const DEADLINE = Date.now() + Number(opts['max-seconds']) * 1000;
if (!Number.isInteger(N) || N < 1 || N > 200_000) throw new Error('--messages: 1..200000');
if (!Number.isInteger(ROUNDS) || ROUNDS < 2 || ROUNDS > 20) throw new Error('--rounds: 2..20');
if (process.getuid?.() !== 0) throw new Error('run as root: both servers run as nobody on the same files');
if (!existsSync(MAIN)) throw new Error('npm run build first');

const note = (s: string) => process.stderr.write(`imap-bench: ${s}\n`);
const children: ChildProcess[] = [];

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => res(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

// ------------------------------------------------------------ the mailbox

const WORDS = 'meeting invoice report project update lunch travel budget review draft release weekly notes question answer schedule contract offer'.split(' ');

function message(i: number): string {
  const w = (k: number) => WORDS[(i * 7 + k * 13) % WORDS.length]!;
  const from = `"Sender ${i % 97}" <sender${i % 97}@example${i % 5}.net>`;
  const hdr = [
    `Return-Path: <sender${i % 97}@example${i % 5}.net>`,
    `Received: from mx${i % 3}.example.net ([192.0.2.${i % 250}]) by mail.example.test (appliance) with ESMTPS id X${i}; Mon, 2 Mar 2026 10:00:00 +0000`,
    `From: ${from}`,
    `To: Alice <alice@example.test>${i % 4 === 0 ? ', bob@example.test' : ''}`,
    ...(i % 6 === 0 ? ['Cc: team@example.test'] : []),
    `Subject: ${i % 11 === 0 ? '=?utf-8?q?R=C3=A9union?= ' : ''}${w(1)} ${w(2)} #${i}`,
    `Date: Mon, ${1 + (i % 28)} Feb 2026 ${String(i % 24).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}:00 +0100`,
    `Message-ID: <${i}.${w(3)}@example${i % 5}.net>`,
    'MIME-Version: 1.0',
  ];
  const para = `${w(4)} ${w(5)} ${w(6)}. Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.\r\n`;
  const text = para.repeat(2 + (i % 30));
  if (i % 5 !== 0) return `${hdr.join('\r\n')}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${text}`;
  const att = Buffer.alloc(2000 + (i % 20) * 1000, i % 251).toString('base64').replace(/.{76}/g, '$&\r\n');
  return `${hdr.join('\r\n')}\r\nContent-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${text}\r\n--b${i}\r\nContent-Type: application/pdf; name="doc${i}.pdf"\r\nContent-Disposition: attachment; filename="doc${i}.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n${att}\r\n--b${i}--\r\n`;
}

function populate(maildir: string): number {
  for (const d of ['cur', 'new', 'tmp']) mkdirSync(join(maildir, d), { recursive: true });
  let bytes = 0;
  for (let i = 1; i <= N; i++) {
    const m = message(i);
    const size = Buffer.byteLength(m);
    bytes += size;
    const flags = `${i % 9 === 0 ? 'F' : ''}${i % 10 < 7 ? 'S' : ''}`;
    writeFileSync(join(maildir, 'cur', `${1_770_000_000 + i}.M${i}P1.bench,S=${size}:2,${flags}`), m);
  }
  return bytes;
}

function chownTree(path: string): void {
  spawnSync('chown', ['-R', `${NOBODY}:${NOBODY}`, path]);
}

// ------------------------------------------------------------ servers

interface Server {
  readonly name: 'appliance' | 'dovecot';
  readonly port: number;
  pids(): number[];
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Delete the index (cold start next time). */
  dropIndex(): void;
}

async function waitFor(check: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timeout: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function canConnect(port: number): Promise<boolean> {
  const { connect } = await import('node:net');
  return new Promise((res) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      res(true);
    });
    s.once('error', () => res(false));
  });
}

function rssOf(pids: number[]): number {
  let kib = 0;
  for (const p of pids) {
    try {
      kib += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${p}/status`, 'latin1'))?.[1] ?? 0);
    } catch {
      /* gone */
    }
  }
  return kib;
}

/** Every process of a session (Dovecot forks login and imap processes). */
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

async function applianceServer(dir: string, dataDir: string, port: number): Promise<Server> {
  const hash = await hashPassword('secret', 'bcrypt');
  const conf = join(dir, 'appliance.conf');
  const smtpPort = await freePort();
  writeFileSync(
    conf,
    `hostname mail.example.test
data-dir "${dataDir}"
user nobody
table users { "alice@example.test" = "${hash}" }
listen on 127.0.0.1 port ${smtpPort} tag MX
action "local" maildir userbase <users>
match from any for domain { example.test } action "local"
imap listen on 127.0.0.1 port ${port} auth <users>
imap limit connections-per-user-ip 100
log level warn
resolver 127.0.0.1:9
`,
  );
  let child: ChildProcess | null = null;
  return {
    name: 'appliance',
    port,
    pids: () => (child?.pid ? [child.pid] : []),
    async start() {
      if (child && child.exitCode === null) return;
      const log = join(dir, 'appliance.log');
      const out = (await import('node:fs')).openSync(log, 'a');
      child = spawn(process.execPath, [MAIN, 'start', '-c', conf], { stdio: ['ignore', out, out] });
      children.push(child);
      await waitFor(() => existsSync(join(dataDir, 'control.sock')), 'appliance control socket');
      for (let i = 0; i < 200 && !(await canConnect(port)); i++) await new Promise((r) => setTimeout(r, 50));
    },
    async stop() {
      if (!child || child.exitCode !== null) return;
      const c = child;
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await exited;
      child = null;
    },
    dropIndex() {
      // The mailbox index lives in the one LevelDB; the users table here is inline, so nothing else is lost.
      rmSync(join(dataDir, 'db'), { recursive: true, force: true });
    },
  };
}

async function dovecotServer(dir: string, maildir: string, port: number): Promise<Server> {
  const base = join(dir, 'dovecot');
  const idx = join(base, 'index');
  mkdirSync(join(base, 'run'), { recursive: true });
  mkdirSync(join(base, 'home'), { recursive: true });
  mkdirSync(idx, { recursive: true });
  chownSync(join(base, 'home'), NOBODY, NOBODY);
  chownSync(idx, NOBODY, NOBODY);
  writeFileSync(join(base, 'passwd'), 'alice@example.test:{PLAIN}secret\n');
  const conf = join(base, 'dovecot.conf');
  writeFileSync(
    conf,
    `base_dir = ${base}/run
state_dir = ${base}/run
log_path = ${base}/dovecot.log
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:${maildir}:INDEX=${idx}
mail_max_userip_connections = 100
passdb {
  driver = passwd-file
  args = ${base}/passwd
}
userdb {
  driver = static
  args = uid=${NOBODY} gid=${NOBODY} home=${base}/home
}
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
`,
  );
  let child: ChildProcess | null = null;
  return {
    name: 'dovecot',
    port,
    pids: () => (child?.pid ? sessionPids(child.pid) : []),
    async start() {
      if (child && child.exitCode === null) return;
      child = spawn('dovecot', ['-F', '-c', conf], { stdio: 'ignore', detached: true });
      children.push(child);
      for (let i = 0; i < 200 && !(await canConnect(port)); i++) await new Promise((r) => setTimeout(r, 50));
    },
    async stop() {
      if (!child || child.exitCode !== null) return;
      const c = child;
      const exited = new Promise((r) => c.once('exit', r));
      spawnSync('doveadm', ['-c', conf, 'stop']);
      await exited;
      child = null;
    },
    dropIndex() {
      rmSync(idx, { recursive: true, force: true });
      mkdirSync(idx);
      chownSync(idx, NOBODY, NOBODY);
    },
  };
}

// ------------------------------------------------------------ the client

const CLIENT = `
import imaplib, json, sys, time
port = int(sys.argv[1])
out = {}
t = time.perf_counter()
m = imaplib.IMAP4('127.0.0.1', port)
m.login('alice@example.test', 'secret')
typ, d = m.select('INBOX')
out['login_select'] = time.perf_counter() - t
out['exists'] = int(d[0])
def timed(name, f):
    t = time.perf_counter(); r = f(); out[name] = time.perf_counter() - t; return r
r = timed('fetch_envelope', lambda: m.uid('FETCH', '1:*', '(FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)'))
out['fetch_envelope_items'] = sum(1 for x in r[1] if isinstance(x, bytes) or isinstance(x, tuple))
timed('fetch_bodystructure', lambda: m.fetch('1:*', '(BODYSTRUCTURE)'))
r = timed('fetch_bodies', lambda: m.fetch('1:*', '(BODY.PEEK[])'))
out['body_bytes'] = sum(len(x[1]) for x in r[1] if isinstance(x, tuple))
r = timed('search_subject', lambda: m.uid('SEARCH', None, 'SUBJECT', 'invoice'))
out['search_hits'] = len(r[1][0].split())
timed('store_flags', lambda: m.store('1:*', '+FLAGS.SILENT', '(\\\\Flagged)'))
m.store('1:*', '-FLAGS.SILENT', '(\\\\Flagged)')
m.logout()
print(json.dumps(out))
`;

// Undo of the STORE: messages flagged at generation time (i % 9 == 0) get \\Flagged back, so rounds see the same tree.
const RESTORE = `
import imaplib, sys
m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); m.login('alice@example.test', 'secret'); m.select('INBOX')
typ, d = m.uid('SEARCH', None, 'ALL'); uids = d[0].split()
flag = [u.decode() for i, u in enumerate(uids, 1) if i % 9 == 0]
for k in range(0, len(flag), 500): m.uid('STORE', ','.join(flag[k:k+500]), '+FLAGS.SILENT', '(\\\\Flagged)')
m.logout()
`;

function python(script: string, args: string[]): string {
  const r = spawnSync('python3', ['-c', script, ...args], { encoding: 'utf8', maxBuffer: 1 << 30, timeout: 600_000 });
  if (r.status !== 0) throw new Error(`client failed: ${r.stderr}`);
  return r.stdout;
}

const HOLD = `
import imaplib, sys, time
conns = []
for i in range(50):
    m = imaplib.IMAP4('127.0.0.1', int(sys.argv[1])); m.login('alice@example.test', 'secret'); m.select('INBOX'); conns.append(m)
print('ready', flush=True)
sys.stdin.readline()
for m in conns: m.logout()
`;

async function rssUnder50(s: Server): Promise<number> {
  const child = spawn('python3', ['-c', HOLD, String(s.port)], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  await new Promise<void>((res, rej) => {
    child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && res());
    child.once('exit', (code) => rej(new Error(`50-client holder exited ${code}`)));
  });
  await new Promise((r) => setTimeout(r, 500));
  const kib = rssOf(s.pids());
  child.stdin!.end('\n');
  await new Promise((r) => child.once('exit', r));
  return kib;
}

function mbsyncPull(dir: string, s: Server): number {
  const local = join(dir, `mbsync-${s.name}-${Date.now()}`);
  mkdirSync(local);
  const rc = join(local, 'rc');
  writeFileSync(rc, `IMAPAccount a\nHost 127.0.0.1\nPort ${s.port}\nUser alice@example.test\nPass secret\nSSLType None\nAuthMechs PLAIN\n\nIMAPStore r\nAccount a\n\nMaildirStore l\nPath ${local}/\nInbox ${local}/INBOX\n\nChannel c\nFar :r:\nNear :l:\nPatterns INBOX\nCreate Near\nSyncState *\n`);
  const t = performance.now();
  const r = spawnSync('mbsync', ['-c', rc, '-a'], { encoding: 'utf8', timeout: 900_000 });
  const ms = performance.now() - t;
  if (r.status !== 0) throw new Error(`mbsync against ${s.name} failed: ${r.stderr}`);
  const pulled = readdirSync(join(local, 'INBOX', 'cur')).length + readdirSync(join(local, 'INBOX', 'new')).length;
  if (pulled !== N) throw new Error(`mbsync pulled ${pulled} of ${N} from ${s.name}`);
  rmSync(local, { recursive: true, force: true });
  return ms;
}

// ------------------------------------------------------------ run

const dir = mkdtempSync(join(tmpdir(), 'imap-bench-'));
chmodSync(dir, 0o755);
const dataDir = join(dir, 'data');
const maildir = join(dataDir, 'mail', 'example.test', 'alice');
async function main(): Promise<void> {
  note(`generating ${N} messages in ${maildir}`);
  const bytes = populate(maildir);
  chownTree(dataDir);
  note(`${(bytes / 1048576).toFixed(1)} MiB`);
  const servers = [await applianceServer(dir, dataDir, await freePort()), await dovecotServer(dir, maildir, await freePort())];
  const results: Record<string, Record<string, number[]>> = { appliance: {}, dovecot: {} };
  for (let round = 1; round <= ROUNDS && Date.now() < DEADLINE; round++) {
    const cold = round === 1;
    for (const s of servers) {
      if (cold) {
        await s.stop();
        s.dropIndex();
      }
      await s.start();
      if (cold) {
        await new Promise((r) => setTimeout(r, 1000));
        (results[s.name]!['rss_started_kib'] ??= []).push(rssOf(s.pids()));
      }
      const out = JSON.parse(python(CLIENT, [String(s.port)])) as Record<string, number>;
      python(RESTORE, [String(s.port)]);
      for (const [k, v] of Object.entries(out)) {
        const key = `${k}${['exists', 'fetch_envelope_items', 'body_bytes', 'search_hits'].includes(k) ? '' : cold ? '.cold' : '.warm'}`;
        (results[s.name]![key] ??= []).push(v);
      }
      process.stdout.write(`${JSON.stringify({ server: s.name, round, cold, ...Object.fromEntries(Object.entries(out).map(([k, v]) => [k, k.includes('_') && v < 1000 ? Math.round(v * 1e4) / 10 : v])) })}\n`);
    }
  }
  for (const s of servers) {
    await new Promise((r) => setTimeout(r, 1000));
    results[s.name]!['rss_after_rounds_kib'] = [rssOf(s.pids())];
    results[s.name]!['rss_50_clients_kib'] = [await rssUnder50(s)];
    if (!opts['no-mbsync'] && Date.now() < DEADLINE) results[s.name]!['mbsync_pull_ms'] = [mbsyncPull(dir, s)];
  }
  const median = (xs: number[]) => {
    const v = [...xs].sort((a, b) => a - b);
    const m = Math.floor(v.length / 2);
    return v.length % 2 === 1 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
  };
  const summary: Record<string, unknown> = { messages: N, mib: Math.round((bytes / 1048576) * 10) / 10 };
  for (const key of Object.keys(results.appliance!)) {
    const a = results.appliance![key];
    const d = results.dovecot![key];
    if (!a || !d) continue;
    const ms = !key.startsWith('rss') && !key.startsWith('mbsync') && !['exists', 'fetch_envelope_items', 'body_bytes', 'search_hits'].includes(key);
    const av = median(a) * (ms ? 1000 : 1);
    const dv = median(d) * (ms ? 1000 : 1);
    summary[key] = { appliance: Math.round(av * 10) / 10, dovecot: Math.round(dv * 10) / 10, ratio: dv > 0 ? Math.round((av / dv) * 100) / 100 : null };
  }
  process.stdout.write(`${JSON.stringify({ name: 'imap-summary', ...summary })}\n`);
  for (const s of servers) await s.stop();
}

main()
  .catch((err: Error) => {
    note(err.stack ?? err.message);
    process.exitCode = 1;
  })
  .finally(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (!opts.keep) rmSync(dir, { recursive: true, force: true });
    else note(`kept ${dir}`);
  });
