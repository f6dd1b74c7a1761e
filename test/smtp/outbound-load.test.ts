/**
 * Outbound load, end to end with the built appliance and an in-test DNS
 * server (issue 4, "Faults"):
 *  1. LOAD messages (default 5,000; env OUTBOUND_LOAD) to 50 domains dN.test,
 *     MX of dN.test → 127.0.0.(50 + N % 10) (5 domains per address). They
 *     are submitted while nothing listens on those addresses (every one is
 *     deferred), then receivers start and `queue flush` runs: every message
 *     must arrive exactly once within a deadline and the queue must end empty.
 *     Submission goes over a few reused authenticated connections (nodemailer
 *     pool, unlimited messages per connection) — one connection per message
 *     would cost the TLS handshake and AUTH each time. The sinks also check
 *     the global limit: never more than 20 connections open at once (idle
 *     kept-open connections included).
 *  2. kill -9 of the appliance mid-delivery (receivers answer the final dot
 *     after 50 ms, so the kill lands during transfers), restart, flush: every
 *     message arrives at least once (none lost), and the duplicates — the
 *     documented at-least-once — are at most the transfers that can be in
 *     flight at the kill (20, the global connection limit).
 * The receivers are plain smtp-server sinks (no STARTTLS offered, to measure
 * the queue and not TLS handshakes) that count messages by their Subject key.
 * Loopback addresses used by this file: 127.0.0.50–127.0.0.59 (port 25).
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { SMTPServer } from 'smtp-server';
import t from 'tap';
import { MAIN, startAppliance, writeConfig, type RunningAppliance } from '../helpers/appliance.ts';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.ts';
import { ALICE, queueShow, sleep, waitFor } from '../helpers/outbound.ts';

t.setTimeout(300_000);

const run = promisify(execFile);
const LOAD = Number(process.env.OUTBOUND_LOAD ?? 5000);
const DOMAINS = 50;
const ADDRESSES = Array.from({ length: 10 }, (_, i) => `127.0.0.${50 + i}`);
const EXTRA = 'smtp limit max-mails 1000000';

const dir = mkdtempSync(join(tmpdir(), 'appliance-outbound-load-'));
let dns: DnsServer;

t.before(async () => {
  const zone: Record<string, { type: 'MX'; preference: number; exchange: string }[] | { type: 'A'; address: string }[]> = {};
  for (let n = 0; n < DOMAINS; n++) {
    zone[`d${n}.test`] = [{ type: 'MX', preference: 10, exchange: `mx.d${n}.test` }];
    zone[`mx.d${n}.test`] = [{ type: 'A', address: ADDRESSES[n % ADDRESSES.length]! }];
  }
  dns = await startDnsServer(zone);
});

t.teardown(async () => {
  await dns?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** `appliance queue flush` with a longer bound than the shared helper's. */
async function flush(configPath: string): Promise<string> {
  const { stdout } = await run(process.execPath, [MAIN, 'queue', 'flush', '-c', configPath], { timeout: 180_000, maxBuffer: 64 * 1024 * 1024 });
  return stdout;
}

interface Sink {
  /** Times each key (the Subject's number) arrived, over all sinks. */
  readonly counts: Map<number, number>;
  total(): number;
  /** Messages whose final dot arrived and whose reply was not sent yet. */
  inFlight(): number;
  /** The most connections open at once, over all sinks. */
  peakConnections(): number;
  close(): Promise<void>;
}

/** Plain sinks on every address, port 25; `delayMs` before the reply to the final dot. */
async function startSinks(delayMs = 0): Promise<Sink> {
  const counts = new Map<number, number>();
  let total = 0;
  let inFlight = 0;
  let open = 0;
  let peak = 0;
  const servers: SMTPServer[] = [];
  for (const host of ADDRESSES) {
    const server = new SMTPServer({
      name: `mx.${host}`,
      banner: 'load sink',
      disableReverseLookup: true,
      hideSTARTTLS: true,
      authOptional: true,
      disabledCommands: ['AUTH'],
      size: 10 * 1024 * 1024,
      maxClients: 1000,
      closeTimeout: 1000,
      logger: false,
      onConnect(_session, cb) {
        peak = Math.max(peak, ++open);
        cb();
      },
      onClose() {
        open--;
      },
      onData(stream, _session, cb) {
        const chunks: Buffer[] = [];
        stream.on('data', (c: Buffer) => chunks.push(c));
        stream.on('end', () => {
          // Counted as received once the whole message is here (what a real MTA
          // would keep even if the client vanished before reading the reply).
          const key = /^Subject: load (\d+)\r?$/m.exec(Buffer.concat(chunks).toString('latin1'))?.[1];
          if (key !== undefined) counts.set(Number(key), (counts.get(Number(key)) ?? 0) + 1);
          total++;
          inFlight++;
          const reply = (): void => {
            inFlight--;
            cb(null, '2.0.0 Ok');
          };
          if (delayMs > 0) setTimeout(reply, delayMs);
          else reply();
        });
      },
    });
    server.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(25, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    if ((server.server.address() as AddressInfo).port !== 25) throw new Error('sink not on port 25');
    servers.push(server);
  }
  return {
    counts,
    total: () => total,
    inFlight: () => inFlight,
    peakConnections: () => peak,
    close: () => Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r())))).then(() => undefined),
  };
}

/** Submits `count` messages as alice over a few reused authenticated connections; returns the elapsed ms. */
async function submitMany(port: number, count: number): Promise<number> {
  const transport = nodemailer.createTransport({
    pool: true,
    maxConnections: 4,
    maxMessages: Infinity,
    host: '127.0.0.1',
    port,
    secure: false,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user: ALICE.address, pass: ALICE.password },
    name: 'client.example.test',
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 60_000,
  });
  const started = Date.now();
  try {
    await Promise.all(
      Array.from({ length: count }, (_, i) =>
        transport.sendMail({ from: ALICE.address, to: `user@d${i % DOMAINS}.test`, subject: `load ${i}`, text: `message ${i}\r\n` }),
      ),
    );
  } finally {
    transport.close();
  }
  return Date.now() - started;
}

/**
 * Waits until `count` distinct queue ids were logged as deferred (every one
 * tried once while nothing listens). From the log, not `queue show --json`:
 * with thousands of entries its answer exceeds the control socket's 1 MiB
 * line limit ("control line too long").
 */
async function waitAllDeferred(app: RunningAppliance, count: number): Promise<void> {
  const deferred = (): number => {
    const ids = new Set<string>();
    for (const line of app.log().split('\n')) {
      if (!line.includes('"msg":"delivery deferred"')) continue;
      const qid = /"qid":"([^"]+)"/.exec(line)?.[1];
      if (qid) ids.add(qid);
    }
    return ids.size;
  };
  await waitFor(`${count} deferred messages`, () => deferred() >= count, 120_000);
  await sleep(500); // the log line comes just before the state is written
}

/** True once `queue show` answers with an empty queue (while it is too large to answer, false). */
async function queueEmpty(configPath: string): Promise<boolean> {
  try {
    return (await queueShow(configPath)).length === 0;
  } catch {
    return false;
  }
}

t.test(`${LOAD} queued messages to ${DOMAINS} domains flushed after a receiver comes back`, async (t) => {
  const home = join(dir, 'flush');
  mkdirSync(home);
  const cfg = await writeConfig(home, { resolver: `127.0.0.1:${dns.port}`, extra: EXTRA });
  const app = await startAppliance(cfg.path, home);
  t.teardown(() => app.stop());

  const submitMs = await submitMany(cfg.ports.submission, LOAD);
  t.comment(`submitted ${LOAD} messages in ${submitMs} ms (${Math.round((LOAD * 1000) / submitMs)}/s) over 4 connections`);
  await waitAllDeferred(app, LOAD);
  t.pass(`all ${LOAD} deferred while nothing listens`);

  const sink = await startSinks();
  t.teardown(() => sink.close());
  const started = Date.now();
  await flush(cfg.path);
  await waitFor(`${LOAD} messages at the receivers`, () => sink.counts.size >= LOAD, 120_000);
  const deliverMs = Date.now() - started;
  await waitFor('an empty queue', () => queueEmpty(cfg.path), 60_000);
  const ms = Date.now() - started;
  t.comment(`flush: ${LOAD} messages delivered in ${deliverMs} ms (${Math.round((LOAD * 1000) / deliverMs)} msg/s), queue empty after ${ms} ms`);

  const missing = Array.from({ length: LOAD }, (_, i) => i).filter((i) => !sink.counts.has(i));
  const dupes = [...sink.counts.entries()].filter(([, n]) => n > 1);
  t.same(missing, [], 'every message arrived');
  t.same(dupes, [], 'none arrived twice');
  t.equal(sink.total(), LOAD, 'exactly LOAD transfers');
  t.ok(sink.peakConnections() <= 20, `at most 20 connections at once (peak ${sink.peakConnections()})`);
});

t.test('kill -9 mid-delivery, restart, flush: nothing lost, few duplicates', async (t) => {
  const COUNT = Math.min(LOAD, 1000);
  const home = join(dir, 'kill');
  mkdirSync(home);
  const cfg = await writeConfig(home, { resolver: `127.0.0.1:${dns.port}`, extra: EXTRA });
  let app = await startAppliance(cfg.path, home);
  t.teardown(() => app.stop());

  await submitMany(cfg.ports.submission, COUNT);
  await waitAllDeferred(app, COUNT);

  const sink = await startSinks(50);
  t.teardown(() => sink.close());
  const flushing = flush(cfg.path).catch(() => '');
  await waitFor('a quarter delivered', () => sink.total() >= COUNT / 4, 60_000);
  await app.kill9();
  const atKill = sink.total();
  const inFlightAtKill = sink.inFlight();
  await flushing;
  t.ok(atKill < COUNT, `killed with ${atKill}/${COUNT} received`);

  app = await startAppliance(cfg.path, home, 'appliance-2');
  await flush(cfg.path);
  await waitFor(`all ${COUNT} keys at the receivers`, () => sink.counts.size >= COUNT, 120_000);
  await waitFor('an empty queue', () => queueEmpty(cfg.path), 60_000);

  const missing = Array.from({ length: COUNT }, (_, i) => i).filter((i) => !sink.counts.has(i));
  const dupes = sink.total() - sink.counts.size;
  t.same(missing, [], 'none lost');
  t.comment(`kill -9 at ${atKill}/${COUNT} received, ${inFlightAtKill} awaiting their reply; ${dupes} duplicate(s) after restart (${sink.total()} transfers)`);
  t.ok(dupes <= 20, `duplicates (${dupes}) at most the transfers in flight at the kill (≤ 20)`);
});
