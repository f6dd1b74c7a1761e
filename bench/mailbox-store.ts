/**
 * The mailbox store (store/mailbox) against Debian's Dovecot on the same
 * Maildir++ tree, store level (no IMAP): N realistic messages (default
 * 10,000; plain and multipart, 1–12 KiB, flags in the names, Dovecot-style
 * `,S=,W=` names), then, interleaved:
 *
 *  - open: ours cold (no index: stat + uidlist) and warm (LevelDB index);
 *    Dovecot `doveadm mailbox status` cold (its index deleted) and warm;
 *  - flags/date/size of all: our `view.messages` after open; Dovecot
 *    `doveadm fetch 'uid flags date.received size.virtual' all`;
 *  - structure of all: our `summary()` for every message cold (parsed once)
 *    and warm (index); Dovecot `fetch imap.bodystructure all`;
 *  - all bodies: our `read()` streams; Dovecot `fetch body all`;
 *  - +FLAGS \Flagged on all (renames): `setFlags`; `doveadm flags add`;
 *  - sync with nothing changed, and after one delivery (ours only);
 *  - heap kept by an open mailbox.
 *
 * Dovecot's figures include a doveadm process start (~30–60 ms here):
 * they are a scale, not a race; the IMAP-level comparison is the IMAP
 * bench's job. Needs root (the tree is handed to an unprivileged mail uid
 * for Dovecot) and doveadm; without them, only our figures are printed.
 *
 *   npx node --expose-gc bench/mailbox-store.ts [--messages N] [--reps R] [--keep]
 *
 * One JSON line per measurement on stdout (median ms of R repetitions).
 * Bounded: N ≤ 200,000, R ≤ 10; the temp directory is removed at the end.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store } from '../store/db.ts';
import { openMailStoreService, type MailboxView } from '../store/mailbox/index.ts';

const args = process.argv.slice(2);
const arg = (name: string, def: number): number => {
  const i = args.indexOf(name);
  return i >= 0 ? Math.max(1, Number(args[i + 1])) : def;
};
const N = Math.min(arg('--messages', 10_000), 200_000);
const REPS = Math.min(arg('--reps', 3), 10);
const keep = args.includes('--keep');
const log = { warn() {}, error() {}, info() {}, debug() {}, child() { return log; } } as never;

const dir = mkdtempSync(join(tmpdir(), 'mailbox-bench-'));
chmodSync(dir, 0o755); // Dovecot runs as an unprivileged uid
const root = join(dir, 'mail', 'alice');
const doveadm = ['/usr/bin/doveadm', '/usr/local/bin/doveadm'].find((p) => existsSync(p));
const dovecot = doveadm !== undefined && process.getuid?.() === 0 && !args.includes('--no-dovecot');

function message(i: number): Buffer {
  const words = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor'.split(' ');
  const lines: string[] = [];
  const n = 10 + ((i * 7919) % 150);
  for (let l = 0; l < n; l++) lines.push(Array.from({ length: 10 }, (_v, k) => words[(i + l + k) % words.length]).join(' '));
  const head = `Return-Path: <s${i}@example.net>\r\nReceived: from mx.example.net by mail.example.test; Sun, 22 Nov 2026 08:00:00 +0000\r\nFrom: Sender ${i} <s${i}@example.net>\r\nTo: Alice <alice@example.test>\r\nSubject: message ${i} about ${words[i % words.length]}\r\nDate: Sun, 22 Nov 2026 08:00:00 +0000\r\nMessage-ID: <${i}@example.net>\r\nMIME-Version: 1.0\r\n`;
  if (i % 4 === 0) {
    return Buffer.from(`${head}Content-Type: multipart/alternative; boundary="b${i}"\r\n\r\n--b${i}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${lines.join('\r\n')}\r\n--b${i}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>${lines.join('</p>\r\n<p>')}</p>\r\n--b${i}--\r\n`);
  }
  return Buffer.from(`${head}Content-Type: text/plain; charset=utf-8\r\n\r\n${lines.join('\r\n')}\r\n`);
}

function chownTree(p: string): void {
  chownSync(p, 65534, 65534);
  if (lstatSync(p).isDirectory()) for (const e of readdirSync(p)) chownTree(join(p, e));
}

const conf = join(dir, 'dovecot.conf');
function dove(cmd: string[]): void {
  chownTree(join(dir, 'mail'));
  chownTree(join(dir, 'index'));
  chownTree(join(dir, 'home'));
  execFileSync(doveadm!, ['-c', conf, ...cmd], { env: { USER: 'alice', HOME: join(dir, 'home'), PATH: '/usr/bin:/bin' }, stdio: ['ignore', 'ignore', 'inherit'], maxBuffer: 1 << 30 });
}

async function timed(fn: () => Promise<unknown> | unknown): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const results = new Map<string, number[]>();
const record = (name: string, ms: number): void => {
  const list = results.get(name) ?? [];
  list.push(ms);
  results.set(name, list);
};

async function main(): Promise<void> {
  for (const d of ['cur', 'new', 'tmp']) mkdirSync(join(root, d), { recursive: true });
  let bytes = 0;
  for (let i = 0; i < N; i++) {
    const m = message(i);
    bytes += m.length;
    const flags = ['S', 'RS', '', 'FS'][i % 4];
    writeFileSync(join(root, 'cur', `${1790000000 + i}.M${i}P1.bench,S=${m.length},W=${m.length}:2,${flags}`), m);
  }
  process.stderr.write(`${N} messages, ${(bytes / 1048576).toFixed(1)} MiB in ${root}\n`);
  for (const d of ['index', 'home', 'run', 'state']) mkdirSync(join(dir, d), { recursive: true });
  writeFileSync(
    conf,
    `base_dir = ${dir}/run\nstate_dir = ${dir}/state\nlog_path = ${dir}/dovecot.log\nssl = no\nmail_uid = 65534\nmail_gid = 65534\nmail_location = maildir:${dir}/mail/%u:LAYOUT=maildir++:INDEX=${dir}/index/%u\nnamespace inbox {\n  inbox = yes\n  separator = /\n}\n`,
  );

  const dataDir = join(dir, 'data');
  for (let rep = 0; rep < REPS; rep++) {
    // --- ours
    rmSync(dataDir, { recursive: true, force: true });
    let store = await Store.open(dataDir);
    let svc = openMailStoreService({ store, log, hostname: 'bench' });
    let view: MailboxView | undefined;
    record('ours: open cold (no index)', await timed(async () => (view = await svc.forRoot(root).open('INBOX', { readOnly: false }))));
    record('ours: structure of all, cold (parse each once)', await timed(async () => {
      for (const m of view!.messages) await view!.summary(m.uid);
    }));
    await view!.close();
    view = undefined;
    await svc.close();
    await store.close();
    store = await Store.open(dataDir);
    svc = openMailStoreService({ store, log, hostname: 'bench' });
    global.gc?.();
    const heap0 = process.memoryUsage().heapUsed;
    let open!: MailboxView;
    record('ours: open warm (index)', await timed(async () => (open = await svc.forRoot(root).open('INBOX', { readOnly: false }))));
    global.gc?.();
    record('ours: heap kept by the open mailbox (MiB)', (process.memoryUsage().heapUsed - heap0) / 1048576);
    const warm = open;
    record('ours: structure of all, warm', await timed(async () => {
      for (const m of warm.messages) await warm.summary(m.uid);
    }));
    record('ours: all bodies (streams)', await timed(async () => {
      for (const m of warm.messages) for await (const _c of await warm.read(m.uid)) void _c;
    }));
    record('ours: sync, nothing changed', await timed(() => warm.sync()));
    writeFileSync(join(root, 'new', `1799999999.M${rep}P2.bench,S=20`), 'Subject: d\r\n\r\nbody\r\n');
    record('ours: sync after one delivery', await timed(() => warm.sync()));
    const uids = warm.messages.map((m) => m.uid);
    record('ours: +FLAGS \\Flagged on all', await timed(() => warm.setFlags(uids, 'add', ['\\Flagged'])));
    await warm.setFlags(uids, 'remove', ['\\Flagged']);
    await warm.close();
    await svc.close();
    await store.close();

    // --- Dovecot, on the same tree
    if (dovecot) {
      rmSync(join(dir, 'index'), { recursive: true, force: true });
      mkdirSync(join(dir, 'index'));
      record('dovecot: open cold (mailbox status, no index)', await timed(() => dove(['mailbox', 'status', 'messages uidnext', 'INBOX'])));
      record('dovecot: open warm (mailbox status)', await timed(() => dove(['mailbox', 'status', 'messages uidnext', 'INBOX'])));
      record('dovecot: flags/date/size of all (fetch)', await timed(() => dove(['fetch', 'uid flags date.received size.virtual', 'mailbox', 'INBOX', 'all'])));
      record('dovecot: structure of all, cold (fetch imap.bodystructure)', await timed(() => dove(['fetch', 'imap.bodystructure', 'mailbox', 'INBOX', 'all'])));
      record('dovecot: structure of all, warm', await timed(() => dove(['fetch', 'imap.bodystructure', 'mailbox', 'INBOX', 'all'])));
      record('dovecot: all bodies (fetch body)', await timed(() => dove(['fetch', 'body', 'mailbox', 'INBOX', 'all'])));
      record('dovecot: +FLAGS \\Flagged on all (flags add)', await timed(() => dove(['flags', 'add', '\\Flagged', 'mailbox', 'INBOX', 'all'])));
      dove(['flags', 'remove', '\\Flagged', 'mailbox', 'INBOX', 'all']);
      record('dovecot: doveadm start (mailbox list)', await timed(() => dove(['mailbox', 'list'])));
    }
    process.stderr.write(`repetition ${rep + 1}/${REPS} done\n`);
  }
  for (const [name, xs] of results) {
    console.log(JSON.stringify({ messages: N, measurement: name, median: Math.round(median(xs) * 10) / 10, runs: xs.map((x) => Math.round(x)) }));
  }
}

try {
  await main();
} finally {
  if (!keep) rmSync(dir, { recursive: true, force: true });
  else process.stderr.write(`kept ${dir}\n`);
}
