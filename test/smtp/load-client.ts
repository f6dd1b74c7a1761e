/**
 * SMTP load client for the crash-safety test (crash.test.ts), on raw
 * sockets: N concurrent sessions, each pipelining MAIL/RCPT/DATA (RFC 2920),
 * then the body, then waiting for the reply to the final dot. A message is
 * recorded as acknowledged ONLY when that reply is a 250; a message whose
 * body was written but whose reply never came (connection reset, process
 * killed) is recorded as `unacked` — the server may or may not have it.
 *
 * Sessions reconnect every `perConnection` messages (under the server's
 * max-mails). A session that loses its connection stops: after a kill the
 * clients are meant to fail, not to retry.
 *
 * Also runnable as a script, printing a JSON summary:
 *   node test/smtp/load-client.ts --port PORT [--sessions 20] [--total 2000] [--seconds 60]
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export type MessageKind = 'alice' | 'team' | 'remote' | 'mixed';

export interface LoadMessage {
  /** Unique key: the Message-ID is `<KEY@load.test>`, the envelope sender `KEY@client.test`. */
  readonly key: string;
  readonly messageId: string;
  readonly kind: MessageKind;
  readonly from: string;
  readonly to: readonly string[];
  /** Headers and body, CRLF, without the terminating dot. */
  readonly data: Buffer;
}

export const REMOTE_DOMAIN = 'remote.test';

/** The recipients of each kind: alice; team (→ alice, bob); a remote address (→ queue); alice + remote. */
export function recipientsFor(kind: MessageKind, key: string): string[] {
  switch (kind) {
    case 'alice':
      return ['alice@example.test'];
    case 'team':
      return ['team@example.test'];
    case 'remote':
      return [`${key}@${REMOTE_DOMAIN}`];
    case 'mixed':
      return ['alice@example.test', `${key}@${REMOTE_DOMAIN}`];
  }
}

/** The end marker of every body: a delivered file that lacks it is truncated. */
export function endMarker(key: string): string {
  return `-- end of ${key} --`;
}

/** Builds message `key`: unique Message-ID, `bodyBytes` of body lines, the end marker last. */
export function makeMessage(key: string, kind: MessageKind, bodyBytes: number): LoadMessage {
  const messageId = `<${key}@load.test>`;
  const from = `${key}@client.test`;
  const to = recipientsFor(kind, key);
  const lines: string[] = [
    `From: <${from}>`,
    `To: ${to.map((a) => `<${a}>`).join(', ')}`,
    `Subject: load ${key} (${kind})`,
    `Date: ${new Date().toUTCString()}`,
    `Message-ID: ${messageId}`,
    '',
  ];
  let size = 0;
  for (let i = 0; size < bodyBytes; i++) {
    const line = `${key} line ${i} ${randomBytes(24).toString('base64')}`;
    lines.push(line);
    size += line.length + 2;
  }
  lines.push(endMarker(key));
  return { key, messageId, kind, from, to, data: Buffer.from(`${lines.join('\r\n')}\r\n`) };
}

export interface LoadOptions {
  readonly host?: string;
  readonly port: number;
  readonly sessions: number;
  /** The messages to send, in order (taken by whichever session is free). */
  readonly messages: readonly LoadMessage[];
  /** Wall-clock bound for the whole run. */
  readonly timeLimitMs: number;
  /** Messages per connection before QUIT and reconnect (below the server's max-mails). */
  readonly perConnection?: number;
  /** Called after each acknowledged message with the running count. */
  readonly onAck?: (acked: number, m: LoadMessage) => void;
}

export interface LoadResult {
  /** Got `250` after the final dot. */
  readonly acked: LoadMessage[];
  /** Body written, no final reply read (connection lost): the server may or may not have it. */
  readonly unacked: LoadMessage[];
  /** A non-250 reply somewhere in the transaction (nothing written for it, or refused). */
  readonly refused: { message: LoadMessage; reply: string }[];
  /** Never started. */
  readonly notSent: number;
  /** Why sessions ended early (connection errors), deduplicated with counts. */
  readonly sessionErrors: Record<string, number>;
  readonly ms: number;
}

interface Reply {
  readonly code: number;
  readonly text: string;
}

/** One SMTP client connection: write commands, read replies in order. */
class Connection {
  private readonly socket: Socket;
  private buffer = '';
  private lines: string[] = [];
  private readonly replies: Reply[] = [];
  private readonly waiters: { resolve: (r: Reply) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | null = null;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.onData(d.toString('latin1')));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  static open(host: string, port: number): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const s = connect({ host, port });
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new Connection(s));
      });
      s.once('error', reject);
    });
  }

  private onData(text: string): void {
    this.buffer += text;
    let nl: number;
    while ((nl = this.buffer.indexOf('\r\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 2);
      this.lines.push(line);
      if (line.length < 4 || line[3] !== '-') {
        const reply = { code: Number(line.slice(0, 3)), text: this.lines.join('\n') };
        this.lines = [];
        const w = this.waiters.shift();
        if (w) w.resolve(reply);
        else this.replies.push(reply);
      }
    }
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  reply(): Promise<Reply> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  write(data: string | Buffer): void {
    if (this.failure) throw this.failure;
    this.socket.write(data);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Dot-stuffing (RFC 5321 §4.5.2) and the terminating dot. */
function dataBlock(data: Buffer): Buffer {
  let text = data.toString('latin1');
  if (text.startsWith('.')) text = `.${text}`;
  text = text.replace(/\r\n\./g, '\r\n..');
  if (!text.endsWith('\r\n')) text += '\r\n';
  return Buffer.from(`${text}.\r\n`, 'latin1');
}

/** Runs the load; `stop()` ends it early (sessions finish their current message, then close). */
export function runLoad(opts: LoadOptions): { done: Promise<LoadResult>; stop(): void } {
  const host = opts.host ?? '127.0.0.1';
  const perConnection = opts.perConnection ?? 40;
  const started = Date.now();
  const acked: LoadMessage[] = [];
  const unacked: LoadMessage[] = [];
  const refused: { message: LoadMessage; reply: string }[] = [];
  const sessionErrors: Record<string, number> = {};
  const open = new Set<Connection>();
  let next = 0;
  let stopped = false;
  const deadline = setTimeout(() => stop(), opts.timeLimitMs);

  function stop(): void {
    stopped = true;
  }

  const take = (): LoadMessage | undefined => (stopped || next >= opts.messages.length ? undefined : opts.messages[next++]);

  async function expect(c: Connection, code: number, what: string): Promise<Reply> {
    const r = await c.reply();
    if (r.code !== code) throw Object.assign(new Error(`${what}: ${r.text}`), { reply: r });
    return r;
  }

  async function session(n: number): Promise<void> {
    while (!stopped && next < opts.messages.length) {
      let c: Connection;
      try {
        c = await Connection.open(host, opts.port);
      } catch (err) {
        const code = (err as { code?: string }).code ?? (err as Error).message;
        sessionErrors[`connect: ${code}`] = (sessionErrors[`connect: ${code}`] ?? 0) + 1;
        return;
      }
      open.add(c);
      let current: LoadMessage | undefined;
      let bodySent = false;
      try {
        await expect(c, 220, 'greeting');
        c.write(`EHLO load${n}.client.test\r\n`);
        await expect(c, 250, 'EHLO');
        for (let i = 0; i < perConnection; i++) {
          current = take();
          bodySent = false;
          if (!current) break;
          // One write: MAIL, every RCPT and DATA (PIPELINING); then their replies in order.
          c.write(`MAIL FROM:<${current.from}>\r\n${current.to.map((a) => `RCPT TO:<${a}>\r\n`).join('')}DATA\r\n`);
          const replies: Reply[] = [];
          for (let k = 0; k < current.to.length + 2; k++) replies.push(await c.reply());
          const bad = replies.find((r, k) => r.code !== (k === replies.length - 1 ? 354 : 250));
          if (bad) {
            refused.push({ message: current, reply: bad.text });
            current = undefined;
            // DATA was refused (503) or accepted (354) despite a refused RCPT: end the transaction either way.
            if (replies[replies.length - 1]!.code === 354) {
              c.write('.\r\n');
              await c.reply();
            }
            c.write('RSET\r\n');
            await c.reply();
            continue;
          }
          c.write(dataBlock(current.data));
          bodySent = true;
          const final = await c.reply();
          const m = current;
          current = undefined;
          if (final.code === 250) {
            acked.push(m);
            opts.onAck?.(acked.length, m);
          } else {
            refused.push({ message: m, reply: final.text });
          }
        }
        c.write('QUIT\r\n');
        await c.reply().catch(() => undefined);
        c.close();
        open.delete(c);
      } catch (err) {
        open.delete(c);
        c.close();
        if (current && bodySent) unacked.push(current);
        else if (current) refused.push({ message: current, reply: `connection lost before the body: ${(err as Error).message}` });
        const key = (err as { code?: string }).code ?? (err as Error).message;
        sessionErrors[key] = (sessionErrors[key] ?? 0) + 1;
        return;
      }
    }
  }

  const done = (async (): Promise<LoadResult> => {
    await Promise.all(Array.from({ length: opts.sessions }, (_, n) => session(n)));
    clearTimeout(deadline);
    for (const c of open) c.close();
    return { acked, unacked, refused, notSent: opts.messages.length - next, sessionErrors, ms: Date.now() - started };
  })();
  return { done, stop };
}

// --- as a script ------------------------------------------------------------

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string' },
      sessions: { type: 'string', default: '20' },
      total: { type: 'string', default: '2000' },
      seconds: { type: 'string', default: '60' },
    },
  });
  if (!values.port) {
    process.stderr.write('usage: node test/smtp/load-client.ts --port PORT [--host H] [--sessions 20] [--total 2000] [--seconds 60]\n');
    process.exit(2);
  }
  const kinds: MessageKind[] = ['alice', 'alice', 'alice', 'team', 'remote', 'mixed'];
  const run = randomBytes(3).toString('hex');
  const messages = Array.from({ length: Number(values.total) }, (_, i) => makeMessage(`m${i}.${run}`, kinds[i % kinds.length]!, 512 + ((i * 7919) % 16_384)));
  const { done } = runLoad({ host: values.host, port: Number(values.port), sessions: Number(values.sessions), messages, timeLimitMs: Number(values.seconds) * 1000 });
  const r = await done;
  process.stdout.write(
    `${JSON.stringify({ acked: r.acked.length, unacked: r.unacked.map((m) => m.messageId), refused: r.refused.length, notSent: r.notSent, sessionErrors: r.sessionErrors, ms: r.ms, perSecond: Math.round((r.acked.length * 1000) / r.ms) })}\n`,
  );
}
