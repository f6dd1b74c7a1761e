/**
 * What verifying SPF, DKIM and DMARC of incoming mail costs the MX
 * (smtp/authentication-results.ts): the same appliance build, two instances
 * side by side — `smtp authentication-results no` and `yes` — receiving the
 * same messages over SMTP into a Maildir, interleaved, the order rotated
 * each repetition. With `yes`, names resolve through an in-bench DNS server
 * on loopback (test/helpers/dns-server.ts) publishing bench.test's SPF, DKIM
 * key and DMARC policy: the DNS round trips are those to a local caching
 * resolver (unbound on the host), not to the Internet. Two kinds of message:
 * unsigned (SPF + DMARC lookups) and DKIM-signed rsa-sha256 2048 (plus the
 * key lookup, the body hash and the RSA verification).
 *
 *   npm run build && npx node bench/authentication-results.ts [--messages N] [--reps R] [--sizes 4096,102400]
 *
 * Each run: S sessions (1 and 10), each sending its share of N messages over
 * reused connections (100 messages each, the default `smtp limit max-mails`,
 * as MTAs do), one command at a time; msg/s from the first
 * connect to the last 250. Medians of the repetitions and the ratio
 * yes ÷ no. Bounded: every run stops after N messages or 120 s. Everything
 * on 127.0.0.1; processes stopped and the temp directory removed at the end.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { dkimSign } from 'mailauth';
import { startDnsServer } from '../test/helpers/dns-server.ts';
import { startAppliance } from './lib/appliance.ts';
import { Started } from './lib/processes.ts';
import { median, r1, r2 } from './lib/stats.ts';
import { freePort, LOOPBACK } from './lib/system.ts';

const { values: o } = parseArgs({
  options: {
    messages: { type: 'string', default: '2000' },
    reps: { type: 'string', default: '3' },
    sizes: { type: 'string', default: '4096' },
  },
  strict: true,
});
const MESSAGES = Number(o.messages);
const REPS = Number(o.reps);
const SIZES = o.sizes.split(',').map(Number);
const RUN_CAP_MS = 120_000;
const MAILS_PER_CONNECTION = 100;

/** One SMTP client connection: send a line, read one (possibly multi-line) reply. */
class Client {
  private buf = '';
  private waiting: ((line: string) => void) | null = null;
  private readonly socket: Socket;
  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buf += d;
      this.pump();
    });
  }
  static async open(port: number): Promise<Client> {
    const s = connect(port, LOOPBACK);
    await new Promise((resolve, reject) => s.once('connect', resolve).once('error', reject));
    const c = new Client(s);
    await c.reply();
    return c;
  }
  private pump(): void {
    const m = /(?:^|\r\n)(\d{3}) [^\r]*\r\n/.exec(this.buf);
    if (m && this.waiting) {
      const end = m.index + m[0].length;
      const line = this.buf.slice(0, end);
      this.buf = this.buf.slice(end);
      const w = this.waiting;
      this.waiting = null;
      w(line);
    }
  }
  reply(): Promise<string> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.pump();
    });
  }
  async cmd(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }
  close(): void {
    this.socket.destroy();
  }
}

function body(size: number): string {
  const line = `${'1'.repeat(76)}\r\n`;
  return line.repeat(Math.max(1, Math.floor(size / line.length)));
}

async function run(port: number, sessions: number, message: string): Promise<number> {
  const per = Math.ceil(MESSAGES / sessions);
  const t0 = performance.now();
  const deadline = Date.now() + RUN_CAP_MS;
  let sent = 0;
  await Promise.all(
    Array.from({ length: sessions }, async () => {
      let c = await Client.open(port);
      await c.cmd('EHLO mta.bench.test');
      for (let i = 0; i < per && Date.now() < deadline; i++) {
        if (i > 0 && i % MAILS_PER_CONNECTION === 0) {
          // `smtp limit max-mails` (100): a new connection, as an MTA would open.
          await c.cmd('QUIT');
          c.close();
          c = await Client.open(port);
          await c.cmd('EHLO mta.bench.test');
        }
        const mail = await c.cmd('MAIL FROM:<sender@bench.test>');
        if (!mail.startsWith('250')) throw new Error(`MAIL refused: ${mail}`);
        await c.cmd('RCPT TO:<user@example.test>');
        await c.cmd('DATA');
        const r = await c.cmd(`${message}.`);
        if (!r.startsWith('250')) throw new Error(`not accepted: ${r}`);
        sent++;
      }
      await c.cmd('QUIT');
      c.close();
    }),
  );
  return sent / ((performance.now() - t0) / 1000);
}

async function main(): Promise<void> {
  const started = new Started((m) => process.stderr.write(`${m}\n`));
  const dir = mkdtempSync(join(tmpdir(), 'bench-authres-'));
  try {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const dns = await startDnsServer({
      'bench.test': [{ type: 'TXT', strings: 'v=spf1 ip4:127.0.0.0/8 -all' }],
      'sel._domainkey.bench.test': [{ type: 'TXT', strings: `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}` }],
      '_dmarc.bench.test': [{ type: 'TXT', strings: 'v=DMARC1; p=reject' }],
    });
    const instances: Record<'no' | 'yes', number> = { no: 0, yes: 0 };
    for (const v of ['no', 'yes'] as const) {
      const port = await freePort();
      await startAppliance({
        dir: join(dir, v),
        started,
        config: [
          `resolver 127.0.0.1:${dns.port}`,
          `smtp authentication-results ${v}`,
          'smtp max-message-size 10M',
          'table domains { example.test }',
          'table users { "user@example.test" = "{PLAIN}unused" }',
          `listen on ${LOOPBACK} port ${port} tag MX`,
          `action "local" maildir "${join(dir, v, 'Maildir')}" userbase <users>`,
          'match from any for domain <domains> action "local"',
          'match from any for any reject',
        ],
      });
      instances[v] = port;
    }
    const results: Record<string, unknown>[] = [];
    for (const size of SIZES) {
      const plain = `From: <sender@bench.test>\r\nTo: <user@example.test>\r\nSubject: bench\r\nMessage-ID: <x@bench.test>\r\n\r\n${body(size)}`;
      const key = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
      const signed = await dkimSign(plain, { signatureData: [{ signingDomain: 'bench.test', selector: 'sel', privateKey: key }] } as never);
      const kinds = { unsigned: plain, signed: signed.signatures + plain };
      for (const sessions of [1, 10]) {
        for (const [kind, message] of Object.entries(kinds)) {
          const rates: Record<'no' | 'yes', number[]> = { no: [], yes: [] };
          for (let rep = 0; rep < REPS; rep++) {
            const order = rep % 2 === 0 ? (['no', 'yes'] as const) : (['yes', 'no'] as const);
            for (const v of order) rates[v].push(await run(instances[v], sessions, message));
          }
          const no = median(rates.no)!;
          const yes = median(rates.yes)!;
          const row = { size, sessions, kind, msgs_per_s_off: r1(no), msgs_per_s_on: r1(yes), on_over_off: r2(yes / no), spread_off: rates.no.map(r1), spread_on: rates.yes.map(r1) };
          results.push(row);
          process.stdout.write(`${JSON.stringify(row)}\n`);
        }
      }
    }
    process.stderr.write(`\nload average at the end: ${loadavg().map(r2).join(' ')}; DNS queries served: ${dns.queries.length}\n`);
    process.stderr.write('| size | sessions | message | msg/s off | msg/s on | on ÷ off |\n|---:|---:|---|---:|---:|---:|\n');
    for (const r of results) process.stderr.write(`| ${r.size} | ${r.sessions} | ${r.kind} | ${r.msgs_per_s_off} | ${r.msgs_per_s_on} | ${r.on_over_off}× |\n`);
    await dns.close();
  } finally {
    await started.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
