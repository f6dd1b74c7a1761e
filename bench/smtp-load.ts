/**
 * A Node equivalent of Postfix's `smtp-source`, for the one case smtp-source
 * cannot drive: a submission listener that requires AUTH (smtp-source has no
 * AUTH). bench/inbound.ts runs it against the appliance's MX port, its
 * submission-style port and Postfix, beside smtp-source, so the two clients
 * can be compared on the same servers in the same run.
 *
 *   npx node bench/smtp-load.ts --port P --sessions S --count M --size BYTES
 *       [--reuse] [--auth USER:PASSWORD] [--from F] [--to T] [--max-seconds X]
 *
 * It speaks what smtp-source speaks, one command at a time (no pipelining):
 * greeting, HELO (EHLO + AUTH PLAIN with --auth), MAIL, RCPT, DATA, the same
 * headers (From, To, Date, Message-Id) and the same payload (BYTES of
 * 78-character "1XXX…" lines, CRLFs counted), QUIT, 221, then a reset (as
 * smtp-source, whose sockets have SO_LINGER 0). Unlike smtp-source, whose
 * sessions share one queue of pending connects (one connect at a time), every
 * session connects on its own, like independent clients.
 * Without --reuse every message has its own connection (smtp-source's
 * default); with --reuse a session sends its share over one connection
 * (`smtp-source -d`). Messages are split evenly between sessions.
 *
 * Connects to 127.0.0.1 only. Bounded: M messages or --max-seconds (default
 * 60), whichever comes first. Prints one JSON line on stdout:
 * { accepted, errors, elapsed_ms, capped, t0_epoch_ms, sessions: [[t, …], …] }
 * where each t is the moment (ms after the first connect) a message's DATA had been sent — the
 * moment `smtp-source -c` prints its counter — so per-session gaps are
 * measured the same way for both clients.
 */
import { connect, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';

const { values: o } = parseArgs({
  options: {
    port: { type: 'string' },
    sessions: { type: 'string', default: '1' },
    count: { type: 'string', default: '10' },
    size: { type: 'string', default: '4096' },
    reuse: { type: 'boolean', default: false },
    auth: { type: 'string' },
    from: { type: 'string', default: 'sender@bench.test' },
    to: { type: 'string', default: 'user@example.test' },
    'max-seconds': { type: 'string', default: '60' },
  },
  strict: true,
});

const HOST = '127.0.0.1';
const PORT = Number(o.port);
const SESSIONS = Number(o.sessions);
const COUNT = Number(o.count);
const SIZE = Number(o.size);
const MAX_MS = Number(o['max-seconds']) * 1000;
if (!Number.isInteger(PORT) || PORT < 1 || PORT > 65535) usage('--port is required (1-65535)');
if (!Number.isInteger(SESSIONS) || SESSIONS < 1 || SESSIONS > 1000) usage('--sessions must be 1-1000');
if (!Number.isInteger(COUNT) || COUNT < 1 || COUNT > 1_000_000) usage('--count must be 1-1000000');
if (!Number.isInteger(SIZE) || SIZE < 0 || SIZE > 100 * 1024 * 1024) usage('--size must be 0-100 MiB');
if (!Number.isFinite(MAX_MS) || MAX_MS <= 0 || MAX_MS > 3_600_000) usage('--max-seconds must be at most 3600');

function usage(message: string): never {
  process.stderr.write(`smtp-load: ${message}\n`);
  process.exit(2);
}

const HELO_NAME = hostname().split('.')[0] || 'localhost';

/** smtp-source's payload: lines of 78 characters (line number digit + X), CRLF counted in the size. */
function payload(size: number): string {
  const lines: string[] = [];
  let left = size;
  for (let i = 1; left > 80; i++, left -= 80) lines.push(`${i % 10}${'X'.repeat(77)}`);
  lines.push('X'.repeat(Math.max(0, left - 2)));
  return lines.join('\r\n');
}
const PAYLOAD = payload(SIZE);
let messageSeq = 0;

function message(): string {
  messageSeq++;
  return (
    `From: <${o.from}>\r\nTo: <${o.to}>\r\nDate: ${new Date().toUTCString()}\r\n` +
    `Message-Id: <${process.pid.toString(16)}.${messageSeq.toString(16).padStart(4, '0')}@${HELO_NAME}>\r\n\r\n` +
    `${PAYLOAD}\r\n.\r\n`
  );
}

/** One connection, replies read one at a time. */
class Conversation {
  private readonly socket: Socket;
  private buffer = '';
  private waiting: ((reply: { code: number; text: string }) => void) | null = null;
  private failed: Error | null = null;
  private failWaiter: ((err: Error) => void) | null = null;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buffer += d;
      this.pump();
    });
    const fail = (err: Error) => {
      this.failed ??= err;
      this.failWaiter?.(this.failed);
    };
    socket.on('error', fail);
    socket.on('close', () => fail(new Error('connection closed')));
  }

  static open(): Promise<Conversation> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: HOST, port: PORT });
      s.once('connect', () => resolve(new Conversation(s)));
      s.once('error', reject);
    });
  }

  private pump(): void {
    if (!this.waiting) return;
    // A reply ends with a line whose 4th character is a space.
    let start = 0;
    for (;;) {
      const nl = this.buffer.indexOf('\r\n', start);
      if (nl < 0) return;
      const line = this.buffer.slice(start, nl);
      start = nl + 2;
      if (line.length < 4 || line[3] !== '-') {
        const text = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(start);
        const w = this.waiting;
        this.waiting = null;
        this.failWaiter = null;
        w({ code: Number(line.slice(0, 3)), text });
        return;
      }
    }
  }

  reply(): Promise<{ code: number; text: string }> {
    return new Promise((resolve, reject) => {
      if (this.failed && this.buffer.indexOf('\r\n') < 0) return reject(this.failed);
      this.waiting = resolve;
      this.failWaiter = reject;
      this.pump();
    });
  }

  async expect(code: number, line?: string): Promise<void> {
    if (line !== undefined) this.socket.write(`${line}\r\n`);
    const r = await this.reply();
    if (Math.floor(r.code / 100) !== Math.floor(code / 100)) throw new Error(`${line ?? 'greeting'}: ${r.text.split('\r\n').pop()}`);
  }

  write(data: string): void {
    this.socket.write(data);
  }

  /** QUIT, wait for the reply, then reset the connection (smtp-source sets SO_LINGER 0). */
  async quit(): Promise<void> {
    this.socket.on('error', () => undefined);
    try {
      await this.expect(221, 'QUIT');
    } finally {
      this.socket.resetAndDestroy();
    }
  }

  destroy(): void {
    this.socket.destroy();
  }
}

const t0 = performance.now();
const deadline = t0 + MAX_MS;
const marks: number[][] = [];
const errors: string[] = [];
let accepted = 0;

async function greet(c: Conversation): Promise<void> {
  await c.expect(220);
  if (o.auth !== undefined) {
    const colon = o.auth.indexOf(':');
    const user = o.auth.slice(0, colon);
    const pass = o.auth.slice(colon + 1);
    await c.expect(250, `EHLO ${HELO_NAME}`);
    await c.expect(235, `AUTH PLAIN ${Buffer.from(`\0${user}\0${pass}`).toString('base64')}`);
  } else {
    await c.expect(250, `HELO ${HELO_NAME}`);
  }
}

async function send(c: Conversation, mine: number[]): Promise<void> {
  await c.expect(250, `MAIL FROM:<${o.from}>`);
  await c.expect(250, `RCPT TO:<${o.to}>`);
  await c.expect(354, 'DATA');
  c.write(message());
  mine.push(performance.now() - t0);
  await c.expect(250);
  accepted++;
}

async function session(share: number, mine: number[]): Promise<void> {
  let c: Conversation | null = null;
  try {
    for (let i = 0; i < share && performance.now() < deadline; i++) {
      if (!c) {
        c = await Conversation.open();
        await greet(c);
      }
      await send(c, mine);
      if (!o.reuse) {
        const done = c;
        c = null;
        await done.quit();
      }
    }
    await c?.quit();
  } catch (err) {
    errors.push((err as Error).message);
    c?.destroy();
  }
}

const jobs: Promise<void>[] = [];
for (let s = 0; s < SESSIONS; s++) {
  const share = Math.floor(COUNT / SESSIONS) + (s < COUNT % SESSIONS ? 1 : 0);
  const mine: number[] = [];
  marks.push(mine);
  jobs.push(session(share, mine));
}
const timer = setTimeout(() => {
  errors.push(`stopped at --max-seconds ${MAX_MS / 1000}`);
  process.stdout.write(`${JSON.stringify({ accepted, errors, elapsed_ms: performance.now() - t0, capped: true, t0_epoch_ms: performance.timeOrigin + t0, sessions: marks })}\n`);
  process.exit(3);
}, MAX_MS + 5000);
await Promise.all(jobs);
clearTimeout(timer);
process.stdout.write(`${JSON.stringify({ accepted, errors, elapsed_ms: performance.now() - t0, capped: performance.now() >= deadline, t0_epoch_ms: performance.timeOrigin + t0, sessions: marks })}\n`);
