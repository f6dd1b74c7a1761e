/**
 * kill -9 under load (SPEC §store: "After kill -9 at any instant, every
 * acknowledged message is found again, once, on restart").
 *
 * Three times, each on a fresh data directory: 20 concurrent SMTP sessions
 * (load-client.ts) send up to 2,000 messages to the MX port — to alice, to
 * team (→ alice and bob), to a remote address (→ the queue) and to alice plus
 * a remote address — and the appliance is killed with SIGKILL after a random
 * number (200–1,200) of acknowledged messages, plus a random few ms. The
 * clients fail; the appliance is restarted on the same config and data dir,
 * and then:
 *  - every message that got a 250 after its final dot is in each of its
 *    Maildirs (new/ or cur/) exactly once, complete, and its remote part is
 *    exactly once in `appliance queue show --json`;
 *  - nothing is duplicated, acknowledged or not, and nothing appears whose
 *    body was never sent (the client does not retry);
 *  - files left in tmp/ are not counted and belong only to unacknowledged
 *    messages;
 *  - the restart removed the spool files the kill left (DATA-DIR/spool is
 *    empty, and the log says how many).
 * Unacknowledged messages that were nevertheless delivered are counted and
 * reported: they are the window between the durable write and the 250 that
 * the client never read. The test then does what a real sending MTA does —
 * resends exactly those — and checks that each of them is then present
 * once, or twice where it had already been delivered: SMTP's inherent
 * duplicate window (RFC 1047), at-least-once from the sender's side.
 *
 * The seed is printed; CRASH_SEED=N reproduces a run's choices.
 */
import { execFile } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { MAIN, freePort, startAppliance, writeConfig, type RunningAppliance } from '../helpers/appliance.ts';
import { REMOTE_DOMAIN, endMarker, makeMessage, runLoad, type LoadMessage, type MessageKind } from './load-client.ts';

const run = promisify(execFile);

const SESSIONS = 20;
const TOTAL = 2000;
const LOAD_LIMIT_MS = 60_000;
const RUNS = 3;
const SPOOL_SWEPT = 'removed spool files left by an interrupted run (never acknowledged)';

/** mulberry32: a small seeded PRNG, so a failing run can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Remote mail is relayed through a smarthost on a port where nothing listens:
 * the outbound runner defers it (connection refused), so it stays in the
 * queue to be counted — no DNS, no bounce.
 */
function rules(closedPort: number): string {
  return `table remote { ${REMOTE_DOMAIN} }
action "nowhere" relay host smtp+notls://127.0.0.1:${closedPort}
match from any for domain <domains> action "local"
match from any for domain <remote> action "nowhere"
match from any for any reject`;
}

interface MailboxScan {
  /** Message key → files in new/ and cur/. */
  readonly counts: Map<string, number>;
  /** Files in new/ or cur/ that are not complete (size or end marker wrong). */
  readonly broken: string[];
  /** Message keys of the files in tmp/ (never counted). */
  readonly tmpKeys: string[];
  readonly files: number;
}

const MESSAGE_ID = /^Message-ID: <([^@>\r\n]+)@load\.test>\r?$/im;

function keyOf(content: Buffer): string | undefined {
  const end = content.indexOf('\r\n\r\n');
  const head = content.subarray(0, end < 0 ? content.length : end).toString('latin1');
  return MESSAGE_ID.exec(head)?.[1];
}

function scanMailbox(dataDir: string, user: string): MailboxScan {
  const root = join(dataDir, 'mail', 'example.test', user);
  const counts = new Map<string, number>();
  const broken: string[] = [];
  const tmpKeys: string[] = [];
  let files = 0;
  for (const sub of ['new', 'cur', 'tmp']) {
    const dir = join(root, sub);
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const content = readFileSync(join(dir, name));
      const key = keyOf(content);
      if (sub === 'tmp') {
        tmpKeys.push(key ?? `(unreadable ${name})`);
        continue;
      }
      files++;
      const size = /,S=(\d+)/.exec(name)?.[1];
      if (!key || size === undefined || Number(size) !== content.length || !content.toString('latin1').includes(`\r\n${endMarker(key)}\r\n`)) {
        broken.push(`${sub}/${name}`);
      }
      if (key) counts.set(key, (counts.get(key) ?? 0) + 1);
    }
  }
  return { counts, broken, tmpKeys, files };
}

interface QueueScan {
  /** Message key (from the envelope sender) → queue entries. */
  readonly counts: Map<string, number>;
  /** Entries that are not one waiting (pending or deferred) remote recipient named after their sender's key. */
  readonly odd: string[];
  readonly entries: number;
}

async function scanQueue(configPath: string): Promise<QueueScan> {
  const { stdout } = await run(process.execPath, [MAIN, 'queue', 'show', '--json', '-c', configPath], { timeout: 20_000 });
  const entries = JSON.parse(stdout) as { id: string; sender: string; recipients: { address: string; state: string }[] }[];
  const counts = new Map<string, number>();
  const odd: string[] = [];
  for (const e of entries) {
    const key = /^([^@]+)@client\.test$/.exec(e.sender)?.[1] ?? `(sender ${e.sender})`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    const rcpts = e.recipients.map((r) => `${r.address}:${r.state === 'deferred' ? 'pending' : r.state}`);
    if (rcpts.length !== 1 || rcpts[0] !== `${key}@${REMOTE_DOMAIN}:pending`) odd.push(`${e.id} from ${e.sender}: ${e.recipients.map((r) => `${r.address}:${r.state}`).join(', ')}`);
  }
  return { counts, odd, entries: entries.length };
}

/** Where each kind of message must end up. */
function destinations(kind: MessageKind): { alice: boolean; bob: boolean; queue: boolean } {
  return { alice: kind !== 'remote', bob: kind === 'team', queue: kind === 'remote' || kind === 'mixed' };
}

interface Found {
  alice: MailboxScan;
  bob: MailboxScan;
  queue: QueueScan;
}

async function scanAll(dataDir: string, configPath: string): Promise<Found> {
  return { alice: scanMailbox(dataDir, 'alice'), bob: scanMailbox(dataDir, 'bob'), queue: await scanQueue(configPath) };
}

/** Copies of message `m` at each of its expected destinations, and anywhere it should not be. */
function copies(f: Found, m: LoadMessage): { alice: number; bob: number; queue: number } {
  return { alice: f.alice.counts.get(m.key) ?? 0, bob: f.bob.counts.get(m.key) ?? 0, queue: f.queue.counts.get(m.key) ?? 0 };
}

/** The JSON log lines (a line still being written is skipped, not a parse error). */
function logLines(app: RunningAppliance): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of app.log().split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // incomplete last line
    }
  }
  return out;
}

function spoolFiles(dataDir: string): string[] {
  const dir = join(dataDir, 'spool');
  return existsSync(dir) ? readdirSync(dir) : [];
}

interface RunReport {
  run: number;
  killAfterAcks: number;
  acked: number;
  unacked: number;
  unackedDelivered: number;
  unackedPartial: number;
  notSent: number;
  spoolSwept: number;
  tmpLeftovers: number;
  aliceFiles: number;
  bobFiles: number;
  queueEntries: number;
  ackedMissing: number;
  ackedDuplicated: number;
  resentDuplicates: number;
}

const seed = process.env.CRASH_SEED ? Number(process.env.CRASH_SEED) : randomInt(2 ** 31);
const random = prng(seed);
const reports: RunReport[] = [];

t.setTimeout(120_000);
t.comment(`CRASH_SEED=${seed}`);

for (let n = 1; n <= RUNS; n++) {
  t.test(`run ${n}: kill -9 under load, restart, every acknowledged message exactly once`, async (t) => {
    const started = Date.now();
    const dir = t.testdir();
    const cfg = await writeConfig(dir, { rules: rules(await freePort()), extra: 'log level info' });
    const first = await startAppliance(cfg.path, dir, 'before-kill');
    t.teardown(() => first.kill9());

    const kinds: MessageKind[] = [];
    const messages = Array.from({ length: TOTAL }, (_, i) => {
      const r = random();
      const kind: MessageKind = r < 0.55 ? 'alice' : r < 0.7 ? 'team' : r < 0.85 ? 'remote' : 'mixed';
      kinds.push(kind);
      return makeMessage(`r${n}m${i}`, kind, 256 + Math.floor(random() * 16_384));
    });
    const killAfter = 200 + Math.floor(random() * 1001);
    const jitterMs = Math.floor(random() * 20);
    let killedAt = -1;
    let ackedNow = 0;
    const load = runLoad({
      port: cfg.ports.mx,
      sessions: SESSIONS,
      messages,
      timeLimitMs: LOAD_LIMIT_MS,
      onAck: (count) => {
        ackedNow = count;
        if (count === killAfter) {
          setTimeout(() => {
            killedAt = ackedNow;
            first.child.kill('SIGKILL');
          }, jitterMs);
        }
      },
    });
    const result = await load.done;
    await first.kill9();
    t.ok(killedAt >= killAfter, `killed after ${killedAt} acknowledged messages (aimed at ${killAfter} + ${jitterMs} ms), in ${result.ms} ms of load`);
    t.ok(result.notSent > 0, `the kill interrupted the load (${result.notSent} of ${TOTAL} never sent)`);
    t.same(result.refused.filter((r) => !r.reply.startsWith('connection lost')).map((r) => r.reply), [], 'no message was refused while the appliance ran');

    // What the kill left on disk, before the restart cleans up.
    const spoolLeft = spoolFiles(cfg.dataDir).filter((f) => f.startsWith('spool.'));

    const second = await startAppliance(cfg.path, dir, 'after-restart');
    t.teardown(() => second.kill9());
    const swept = logLines(second).find((l) => l.msg === SPOOL_SWEPT);
    if (spoolLeft.length > 0) {
      t.equal(swept?.files, spoolLeft.length, `the restart removed the ${spoolLeft.length} spool files the kill left, and logged it`);
    } else {
      t.equal(swept, undefined, 'no spool file was left, so none is reported removed');
    }
    t.same(spoolFiles(cfg.dataDir), [], 'DATA-DIR/spool is empty after the restart');

    const found = await scanAll(cfg.dataDir, cfg.path);
    t.same([...found.alice.broken, ...found.bob.broken], [], 'every file in new/ and cur/ is complete (size and end marker)');
    t.same(found.queue.odd, [], 'the queue holds only waiting remote recipients (no local delivery was deferred, nothing bounced)');

    // Acknowledged: at each destination exactly once.
    const missing: string[] = [];
    const duplicated: string[] = [];
    for (const m of result.acked) {
      const want = destinations(m.kind);
      const got = copies(found, m);
      for (const where of ['alice', 'bob', 'queue'] as const) {
        const expected = want[where] ? 1 : 0;
        if (got[where] < expected) missing.push(`${m.key} (${m.kind}) not in ${where}`);
        if (got[where] > expected) duplicated.push(`${m.key} (${m.kind}) ${got[where]}× in ${where}`);
      }
    }
    t.same(missing, [], `all ${result.acked.length} acknowledged messages are found`);
    t.same(duplicated, [], 'no acknowledged message is found twice (or where it does not belong)');

    // Nothing else: no duplicate of anything, nothing whose body was never sent.
    const sent = new Set([...result.acked, ...result.unacked].map((m) => m.key));
    const strays: string[] = [];
    const dups: string[] = [];
    for (const [where, counts] of [['alice', found.alice.counts], ['bob', found.bob.counts], ['queue', found.queue.counts]] as const) {
      for (const [key, count] of counts) {
        if (!sent.has(key)) strays.push(`${key} in ${where}`);
        if (count > 1) dups.push(`${key} ${count}× in ${where}`);
      }
    }
    t.same(strays, [], 'nothing is delivered whose body was never sent');
    t.same(dups, [], 'no message of any kind is delivered twice');

    // tmp/ leftovers: not counted above, and only of messages never acknowledged.
    const ackedKeys = new Set(result.acked.map((m) => m.key));
    const tmpKeys = [...found.alice.tmpKeys, ...found.bob.tmpKeys];
    t.same(tmpKeys.filter((k) => ackedKeys.has(k)), [], `the ${tmpKeys.length} files left in tmp/ belong to unacknowledged messages only`);

    // Unacknowledged but delivered: the window between the durable write and the 250 the client never read.
    let unackedDelivered = 0;
    let unackedPartial = 0;
    const before = new Map<string, { alice: number; bob: number; queue: number }>();
    for (const m of result.unacked) {
      const want = destinations(m.kind);
      const got = copies(found, m);
      before.set(m.key, got);
      const expected = Number(want.alice) + Number(want.bob) + Number(want.queue);
      const present = got.alice + got.bob + got.queue;
      if (present > 0) unackedDelivered++;
      if (present > 0 && present < expected) unackedPartial++;
    }

    // The sender's retry: resend exactly the unacknowledged messages, as a real MTA would.
    let resentDuplicates = 0;
    if (result.unacked.length > 0) {
      const again = await runLoad({ port: cfg.ports.mx, sessions: Math.min(SESSIONS, result.unacked.length), messages: result.unacked, timeLimitMs: 20_000 }).done;
      t.equal(again.acked.length, result.unacked.length, `all ${result.unacked.length} unacknowledged messages are accepted when resent`);
      const after = await scanAll(cfg.dataDir, cfg.path);
      const wrong: string[] = [];
      for (const m of result.unacked) {
        const want = destinations(m.kind);
        const was = before.get(m.key)!;
        const now = copies(after, m);
        for (const where of ['alice', 'bob', 'queue'] as const) {
          const expected = want[where] ? was[where] + 1 : 0;
          if (now[where] !== expected) wrong.push(`${m.key} (${m.kind}) ${where}: ${now[where]}, expected ${expected}`);
          if (want[where] && was[where] > 0) resentDuplicates++;
        }
      }
      t.same(wrong, [], `after the resend each is present once, or twice where it had been delivered unacknowledged (${resentDuplicates} such copies)`);
    }

    t.equal(await second.stop(), 0, 'the restarted appliance stops cleanly');

    const report: RunReport = {
      run: n,
      killAfterAcks: killedAt,
      acked: result.acked.length,
      unacked: result.unacked.length,
      unackedDelivered,
      unackedPartial,
      notSent: result.notSent,
      spoolSwept: spoolLeft.length,
      tmpLeftovers: tmpKeys.length,
      aliceFiles: found.alice.files,
      bobFiles: found.bob.files,
      queueEntries: found.queue.entries,
      ackedMissing: missing.length,
      ackedDuplicated: duplicated.length,
      resentDuplicates,
    };
    reports.push(report);
    t.comment(`run ${n} (${Date.now() - started} ms): ${JSON.stringify(report)}`);
  });
}

t.teardown(() => {
  // One line per run, for the record (also printed per run above).
  for (const r of reports) process.stderr.write(`crash run ${r.run}: ${JSON.stringify(r)}\n`);
});
