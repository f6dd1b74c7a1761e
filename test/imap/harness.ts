/**
 * In-process IMAP server for transcript tests: the real listener, session
 * and commands over loopback TCP, with the in-memory store double and an
 * inline users table. `Client` sends raw lines and collects everything up to
 * the tagged answer.
 */
import { connect, type Socket } from 'node:net';
import pino from 'pino';
import { AuthFailureLimiter } from '../../core/auth/failures.ts';
import { hashPassword } from '../../core/auth/passwords.ts';
import { parseConfigText } from '../../core/config/index.ts';
import type { Config } from '../../core/config/types.ts';
import { openTables } from '../../core/tables/registry.ts';
import { TlsRegistry } from '../../core/tls.ts';
import { startImapListener, type ImapListener } from '../../imap/server.ts';
import type { ImapRuntime } from '../../imap/session.ts';
import { SessionRegistry } from '../../core/sessions.ts';
import { MemoryMailService } from './memory-store.ts';

export interface Harness {
  readonly port: number;
  readonly mail: MemoryMailService;
  readonly runtime: ImapRuntime;
  close(): Promise<void>;
}

export async function startHarness(opts: { extra?: string; tls?: 'none' | 'tls-require' } = {}): Promise<Harness> {
  const hash = await hashPassword('secret', 'bcrypt');
  const text = `hostname mail.example.test
data-dir "/nonexistent"
table users { "alice@example.test" = "${hash}" }
action "local" maildir userbase <users>
match from any for domain { example.test } action "local"
imap listen on 127.0.0.1 port 1143 ${opts.tls === 'tls-require' ? 'tls-require pki mail.example.test ' : ''}auth <users>
${opts.tls === 'tls-require' ? 'pki mail.example.test self-signed\n' : ''}imap mailbox "Sent" special-use "\\Sent" auto subscribe
imap mailbox "Trash" special-use "\\Trash" auto create
auth failure-delay 0s
${opts.extra ?? ''}
`;
  const r = parseConfigText(text);
  if (!r.ok) throw new Error(r.errors.map((e) => e.message).join('; '));
  const config: Config = r.config;
  const tables = openTables(config, { kv: () => { throw new Error('no db'); }, file: { onReload: () => {}, onReloadError: () => {} } });
  const mail = new MemoryMailService();
  const runtime: ImapRuntime = {
    config: () => config,
    tables: () => tables,
    log: pino({ level: 'silent' }),
    authFailures: new AuthFailureLimiter({ maxFailures: 100, windowMs: 60_000 }),
    tls: new TlsRegistry(),
    mail,
    sessions: new SessionRegistry(),
    locateMaildir: async (u) => ({ kind: 'found', value: `/mail/${u}` }),
    shuttingDown: () => false,
    sleep: async () => {},
  };
  const listener: ImapListener = await startImapListener({ ...config.imap.listeners[0]!, port: 0 }, '127.0.0.1', runtime);
  return {
    port: listener.port,
    mail,
    runtime,
    close: async () => {
      await listener.close();
      await tables.close();
    },
  };
}

export class Client {
  readonly socket: Socket;
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;
  private n = 0;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => {});
  }

  static async open(port: number): Promise<{ client: Client; greeting: string }> {
    const socket = connect(port, '127.0.0.1');
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const client = new Client(socket);
    const greeting = await client.until((t) => t.includes('\r\n'));
    return { client, greeting };
  }

  /** Waits (bounded) until the received text satisfies `done`; returns and consumes it. */
  async until(done: (text: string) => boolean, ms = 5000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const text = this.buf.toString('latin1');
      if (done(text)) {
        this.buf = Buffer.alloc(0);
        return text;
      }
      if (this.closed) return text;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout; got ${JSON.stringify(text.slice(0, 500))}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Sends `TAG rest` and returns everything up to and including the tagged line. */
  async cmd(rest: string, tag = `a${++this.n}`): Promise<string> {
    this.write(`${tag} ${rest}\r\n`);
    return this.until((t) => new RegExp(`(^|\\r\\n)${tag} (OK|NO|BAD)[^\\r]*\\r\\n$`).test(t));
  }

  async login(): Promise<void> {
    const r = await this.cmd('LOGIN alice@example.test secret');
    if (!/ OK /.test(r)) throw new Error(`login failed: ${r}`);
  }

  close(): void {
    this.socket.destroy();
  }
}

/** The tagged line of a response. */
export function tagged(text: string): string {
  const lines = text.trimEnd().split('\r\n');
  return lines[lines.length - 1]!;
}
