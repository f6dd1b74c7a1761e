/**
 * New mail to an IDLE client: how long from the delivery to the `* N
 * EXISTS` (issue "Read mail": aim under 100 ms from the commit). One IMAP
 * client logs in, SELECTs INBOX and IDLEs; an SMTP client delivers messages
 * to that mailbox one at a time over the MX port. For each message three
 * instants on the client side, one clock: `dot` (the final "." of DATA is
 * written), `ok` (the 250 after DATA — sent once the Maildir commit is
 * durable) and `exists` (the untagged EXISTS arrives on the IDLE
 * connection). The commit lies between dot and ok, so `exists − dot` is an
 * upper bound of commit → EXISTS (it includes the fsyncs), and `exists − ok`
 * a lower one (negative when EXISTS wins the race with the 250).
 *
 *   npm run build && npx node bench/idle-latency.ts [--messages N] [--gap-ms G]
 *
 * Bounded: N messages (default 200), each waited for at most 5 s; G ms
 * between messages (default 20) so each is measured on its own. Loopback
 * only; the appliance and its temp directory are removed at the end.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startAppliance } from './lib/appliance.ts';
import { Started } from './lib/processes.ts';
import { median, pct, r1, r2 } from './lib/stats.ts';
import { freePort, LOOPBACK, sleep } from './lib/system.ts';

const { values: o } = parseArgs({ options: { messages: { type: 'string', default: '200' }, 'gap-ms': { type: 'string', default: '20' } }, strict: true });
const N = Number(o.messages);
const GAP = Number(o['gap-ms']);
const WAIT_MS = 5_000;

/** A line-oriented client that timestamps every line it receives. */
class Lines {
  private buf = '';
  private readonly lines: { text: string; at: number }[] = [];
  private wake: (() => void) | null = null;
  readonly socket: Socket;
  constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.setNoDelay(true);
    socket.on('data', (d: string) => {
      const at = performance.now();
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\r\n')) !== -1) {
        this.lines.push({ text: this.buf.slice(0, i), at });
        this.buf = this.buf.slice(i + 2);
      }
      this.wake?.();
    });
  }
  static async open(port: number): Promise<Lines> {
    const s = connect(port, LOOPBACK);
    await new Promise((resolve, reject) => s.once('connect', resolve).once('error', reject));
    return new Lines(s);
  }
  /** The first line matching `re` (consumed with everything before it), with its arrival time. */
  async until(re: RegExp, ms = WAIT_MS): Promise<{ text: string; at: number }> {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.lines.findIndex((l) => re.test(l.text));
      if (i !== -1) return this.lines.splice(0, i + 1)[i]!;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${re}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          this.wake = null;
          resolve();
        };
      });
    }
  }
  send(line: string): number {
    this.socket.write(`${line}\r\n`);
    return performance.now();
  }
}

async function main(): Promise<void> {
  const started = new Started((m) => process.stderr.write(`${m}\n`));
  const dir = mkdtempSync(join(tmpdir(), 'bench-idle-'));
  try {
    const { hashPassword } = await import('../core/auth/passwords.ts');
    const mx = await freePort();
    const imap = await freePort();
    await startAppliance({
      dir: join(dir, 'appliance'),
      started,
      config: [
        'table domains { example.test }',
        `table users { "alice@example.test" = "${await hashPassword('secret')}" }`,
        `listen on ${LOOPBACK} port ${mx} tag MX`,
        `imap listen on ${LOOPBACK} port ${imap} auth <users>`,
        'action "local" maildir userbase <users>',
        'match from any for domain <domains> action "local"',
        'match from any for any reject',
      ],
    });
    const i = await Lines.open(imap);
    await i.until(/^\* OK/);
    i.send('a LOGIN alice@example.test secret');
    await i.until(/^a OK/);
    i.send('b SELECT INBOX');
    await i.until(/^b OK/);
    i.send('c IDLE');
    await i.until(/^\+ /);

    const smtp = async (): Promise<Lines> => {
      const c = await Lines.open(mx);
      await c.until(/^220 /);
      c.send('EHLO bench.example');
      await c.until(/^250 /);
      return c;
    };
    let s = await smtp();
    const upper: number[] = [];
    const lower: number[] = [];
    for (let n = 1; n <= N; n++) {
      if (n % 90 === 0) {
        // `smtp limit max-mails` is 100 a connection: a new one now and then.
        s.send('QUIT');
        await s.until(/^221/);
        s.socket.destroy();
        s = await smtp();
      }
      s.send('MAIL FROM:<sender@remote.example>');
      await s.until(/^250 /);
      s.send('RCPT TO:<alice@example.test>');
      await s.until(/^250 /);
      s.send('DATA');
      await s.until(/^354 /);
      s.socket.write(`Subject: idle ${n}\r\nMessage-ID: <idle${n}@remote.example>\r\n\r\nhello\r\n`);
      const dot = s.send('.');
      const ok = await s.until(/^250 /);
      const exists = await i.until(new RegExp(`^\\* ${n} EXISTS`));
      upper.push(exists.at - dot);
      lower.push(exists.at - ok.at);
      await sleep(GAP);
    }
    i.send('DONE');
    const stat = (xs: number[]) => {
      const sorted = [...xs].sort((a, b) => a - b);
      return { p50: r2(median(sorted)!), p90: r2(pct(sorted, 90)), p99: r2(pct(sorted, 99)), max: r2(sorted.at(-1)!) };
    };
    const out = { messages: N, exists_minus_dot_ms: stat(upper), exists_minus_250_ms: stat(lower), exists_before_250: lower.filter((x) => x < 0).length, load: loadavg().map(r1) };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } finally {
    await started.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
