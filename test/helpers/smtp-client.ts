/**
 * A raw SMTP client for tests that need byte-level control (odd addresses
 * sent verbatim, over-long lines, NUL bytes, stalls): it writes exactly what
 * it is given and reads replies line by line. STARTTLS and implicit TLS
 * accept any certificate. Every read has a deadline; nothing waits forever.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface Reply {
  readonly code: number;
  /** The enhanced status code of the last line, '' when there is none. */
  readonly enhanced: string;
  /** The reply lines without CRLF. */
  readonly lines: readonly string[];
  /** The last line, e.g. "554 5.7.1 Relay access denied". */
  readonly last: string;
}

export class ConnectionClosed extends Error {
  constructor(what: string) {
    super(`connection closed before ${what}`);
  }
}

export class RawSmtp {
  private socket: Socket | TLSSocket;
  private buffer = '';
  private partial: string[] = [];
  private readonly replies: Reply[] = [];
  private waiter: (() => void) | null = null;
  private ended = false;
  /** Resolves when the server closed the connection (or it failed). */
  readonly closed: Promise<void>;
  private markClosed!: () => void;

  private constructor(socket: Socket | TLSSocket) {
    this.socket = socket;
    this.closed = new Promise((resolve) => (this.markClosed = resolve));
    this.attach(socket);
  }

  static async connect(port: number, opts: { implicitTls?: boolean; timeoutMs?: number; host?: string } = {}): Promise<RawSmtp> {
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const host = opts.host ?? '127.0.0.1';
    const socket = await new Promise<Socket | TLSSocket>((resolve, reject) => {
      const s: Socket | TLSSocket = opts.implicitTls
        ? tlsConnect({ host, port, rejectUnauthorized: false, servername: 'mail.example.test' }, () => resolve(s))
        : netConnect({ host, port }, () => resolve(s));
      s.once('error', reject);
      s.setTimeout(timeoutMs, () => s.destroy(new Error(`connect to ${port} timed out`)));
    });
    socket.setTimeout(0);
    return new RawSmtp(socket);
  }

  private attach(socket: Socket | TLSSocket): void {
    socket.on('data', (chunk: Buffer) => {
      this.buffer += chunk.toString('latin1');
      this.parse();
    });
    const end = () => {
      this.ended = true;
      this.markClosed();
      this.wake();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  private parse(): void {
    for (;;) {
      const i = this.buffer.indexOf('\n');
      if (i < 0) break;
      const line = this.buffer.slice(0, i).replace(/\r$/, '');
      this.buffer = this.buffer.slice(i + 1);
      if (/^\d{3}-/.test(line)) {
        this.partial.push(line);
        continue;
      }
      const lines = [...this.partial, line];
      this.partial = [];
      // A line that is not SMTP becomes a reply with code 0, so a test sees it.
      const m = /^(\d{3})(?: ([245]\.\d{1,3}\.\d{1,3}))?/.exec(line);
      this.replies.push({ code: m ? Number(m[1]) : 0, enhanced: m?.[2] ?? '', lines, last: line });
    }
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** The next reply; throws ConnectionClosed if the server closes first, an Error after `timeoutMs`. */
  async reply(timeoutMs = 10_000, what = 'a reply'): Promise<Reply> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.replies.shift();
      if (r) return r;
      if (this.ended) throw new ConnectionClosed(what);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${timeoutMs} ms (${what})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  /** The next reply, or null when the server closed the connection instead. */
  async replyOrClose(timeoutMs = 10_000): Promise<Reply | null> {
    try {
      return await this.reply(timeoutMs);
    } catch (err) {
      if (err instanceof ConnectionClosed) return null;
      throw err;
    }
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.ended || this.socket.destroyed) return reject(new ConnectionClosed('a write'));
      this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data, (err) => (err ? reject(err) : resolve()));
    });
  }

  /** Writes one command line (CRLF added) and reads its reply. */
  async cmd(line: string, timeoutMs = 10_000): Promise<Reply> {
    await this.write(`${line}\r\n`);
    return this.reply(timeoutMs, line.slice(0, 40));
  }

  async greeting(): Promise<Reply> {
    return this.reply(10_000, 'the greeting');
  }

  async ehlo(name = 'client.example.net'): Promise<Reply> {
    return this.cmd(`EHLO ${name}`);
  }

  /** STARTTLS then a new EHLO; returns the EHLO reply after the handshake. With `ca`, the server's certificate must verify against it. */
  async starttls(name = 'client.example.net', verify?: { ca: string; servername?: string }): Promise<Reply> {
    const r = await this.cmd('STARTTLS');
    if (r.code !== 220) throw new Error(`STARTTLS refused: ${r.last}`);
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('end');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    this.socket = await new Promise<TLSSocket>((resolve, reject) => {
      const s = tlsConnect(
        { socket: plain, servername: verify?.servername ?? 'mail.example.test', ...(verify ? { ca: verify.ca, rejectUnauthorized: true } : { rejectUnauthorized: false }) },
        () => resolve(s),
      );
      s.once('error', reject);
    });
    this.attach(this.socket);
    return this.ehlo(name);
  }

  async authPlain(user: string, password: string, timeoutMs = 10_000): Promise<Reply> {
    return this.cmd(`AUTH PLAIN ${Buffer.from(`\0${user}\0${password}`).toString('base64')}`, timeoutMs);
  }

  /** The server's certificate once TLS is up (undefined on a plain connection). */
  peerCertificate(): import('node:tls').PeerCertificate | undefined {
    return 'getPeerCertificate' in this.socket ? this.socket.getPeerCertificate() : undefined;
  }

  get isClosed(): boolean {
    return this.ended;
  }

  /** QUIT if still open, then close; never throws. */
  async quit(): Promise<void> {
    if (!this.ended) {
      await this.cmd('QUIT', 2000).catch(() => undefined);
    }
    this.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** A message in SMTP DATA form (CRLF lines, no dot-stuffing needed for these tests) plus the terminator. */
export function dataBlock(headers: Record<string, string>, body: string): string {
  const head = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return `${head}\r\n${body}\r\n.\r\n`;
}

/** One MAIL/RCPT…/DATA transaction on an open session; RCPT lines are sent verbatim. */
export async function transaction(
  c: RawSmtp,
  from: string,
  rcpts: readonly string[],
  data?: string,
): Promise<{ mail: Reply; rcpt: Reply[]; data?: Reply; end?: Reply }> {
  const mail = await c.cmd(`MAIL FROM:<${from}>`);
  const rcpt: Reply[] = [];
  if (mail.code !== 250) return { mail, rcpt };
  for (const r of rcpts) rcpt.push(await c.cmd(`RCPT TO:<${r}>`));
  if (data === undefined || !rcpt.some((r) => r.code === 250)) {
    await c.cmd('RSET');
    return { mail, rcpt };
  }
  const d = await c.cmd('DATA');
  if (d.code !== 354) return { mail, rcpt, data: d };
  await c.write(data);
  const end = await c.reply(30_000, 'end of DATA');
  return { mail, rcpt, data: d, end };
}
