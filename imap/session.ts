/**
 * One IMAP connection: framing in, one command at a time through the
 * command registry (which checks the state before the handler runs),
 * responses out with back-pressure. Owns the connection state of RFC 3501
 * §3 (not authenticated → authenticated → selected → logout), STARTTLS
 * (RFC 3501 §6.2.1: buffered plaintext is discarded), continuation reads
 * (AUTHENTICATE, IDLE), the autologout timer, and turning every failure into
 * a tagged response: no exception leaves a command.
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { isLoopbackAddress } from '../core/address.ts';
import type { AuthFailureLimiter } from '../core/auth/failures.ts';
import type { Config, ListenerDecl } from '../core/config/types.ts';
import type { Logger } from '../core/log.ts';
import type { Metrics } from '../core/metrics.ts';
import type { TableSet } from '../core/tables/registry.ts';
import type { LookupResult } from '../core/tables/types.ts';
import { TLS_CIPHERS, TLS_MIN_VERSION, type TlsRegistry } from '../core/tls.ts';
import type { MailStoreService, UserMailStore } from '../store/mailbox/types.ts';
import { runCommand } from './commands/index.ts';
import { taggedForError } from './errors.ts';
import { parseCommand } from './protocol/command.ts';
import type { Piece } from './protocol/encode.ts';
import { CommandReader, type ReaderEvent } from './protocol/reader.ts';
import type { SelectedMailbox } from './selected.ts';
import type { SessionRegistry } from '../core/sessions.ts';

export type ImapState = 'not-authenticated' | 'authenticated' | 'selected' | 'logout';

export interface Tagged {
  readonly status: 'OK' | 'NO' | 'BAD';
  /** A response code without brackets: `TRYCREATE`, `APPENDUID 1 2`. */
  readonly code?: string;
  readonly text: string;
  /** The handler already wrote the tagged line (STARTTLS must, before the handshake). */
  readonly sent?: boolean;
}

export interface ImapRuntime {
  config(): Config;
  tables(): TableSet;
  readonly log: Logger;
  readonly authFailures: AuthFailureLimiter;
  readonly tls: TlsRegistry;
  readonly mail: MailStoreService;
  readonly sessions: SessionRegistry;
  /** The Maildir root of a logged-in user (core/mail-location.ts). */
  locateMaildir(username: string): Promise<LookupResult<string>>;
  shuttingDown(): boolean;
  sleep(ms: number): Promise<void>;
  /** Counters for the metrics endpoint. */
  readonly metrics?: Metrics;
}

/** Longest line segment of a command (RFC 7162 §4 asks for at least 8192). */
export const MAX_LINE = 64 * 1024;
/** Gathered output is written once it reaches this size (else at the end of the event-loop turn). */
const OUTPUT_CHUNK = 64 * 1024;
/** Unauthenticated clients get at most this long between commands. */
const PREAUTH_TIMEOUT_MS = 60_000;

let nextId = 0;

export class ImapSession {
  readonly id: string;
  readonly protocol = 'imap' as const;
  readonly rt: ImapRuntime;
  readonly listener: ListenerDecl;
  readonly remoteAddress: string;
  readonly since = new Date();
  log: Logger;
  state: ImapState = 'not-authenticated';
  user: string | null = null;
  store: UserMailStore | null = null;
  selected: SelectedMailbox | null = null;
  private socket: Socket;
  private reader: CommandReader;
  private readonly queue: ReaderEvent[] = [];
  private busy = false;
  private waiter: ((line: Buffer | null) => void) | null = null;
  private closed = false;
  private readonly closers: (() => void)[] = [];

  constructor(socket: Socket, listener: ListenerDecl, rt: ImapRuntime) {
    this.id = `I${(++nextId).toString(36)}${Date.now().toString(36).slice(-4)}`;
    this.socket = socket;
    this.listener = listener;
    this.rt = rt;
    this.remoteAddress = normaliseIp(socket.remoteAddress ?? '');
    this.log = rt.log.child({ component: 'imap', cid: this.id });
    this.reader = this.newReader();
    this.attach(socket);
  }

  mailboxName(): string | null {
    return this.selected?.view.name ?? null;
  }

  get secure(): boolean {
    return this.socket instanceof TLSSocket && this.socket.encrypted === true;
  }

  /** LOGIN/AUTHENTICATE allowed now: over TLS, or from loopback unless the listener requires TLS (SPEC §config). */
  get loginAllowed(): boolean {
    if (this.secure) return true;
    return this.listener.tls !== 'tls-require' && this.listener.tls !== 'smtps' && isLoopbackAddress(this.remoteAddress);
  }

  get canStartTls(): boolean {
    return !this.secure && (this.listener.tls === 'tls' || this.listener.tls === 'tls-require') && this.listener.pki !== undefined;
  }

  start(): void {
    this.log.debug({ ip: this.remoteAddress, port: this.listener.port, tls: this.secure }, 'connect');
    if (this.rt.shuttingDown()) {
      this.send('* BYE Server shutting down');
      this.close();
      return;
    }
    this.send(`* OK [CAPABILITY ${this.capabilities().join(' ')}] appliance ready`);
    this.armTimer();
  }

  capabilities(): string[] {
    const caps = ['IMAP4rev1', 'SASL-IR', 'LITERAL+', 'ID', 'ENABLE', 'IDLE'];
    if (this.state === 'not-authenticated') {
      if (this.canStartTls) caps.push('STARTTLS');
      if (this.loginAllowed) caps.push('AUTH=PLAIN');
      else caps.push('LOGINDISABLED');
      return caps;
    }
    caps.push('NAMESPACE', 'UIDPLUS', 'MOVE', 'SPECIAL-USE', 'LIST-EXTENDED', 'LIST-STATUS', 'UNSELECT', 'CHILDREN', 'BINARY', `APPENDLIMIT=${this.rt.config().imap.limits.maxLiteralSize}`);
    return caps;
  }

  /**
   * Writes one response line (or pieces of one, with literals). Output is
   * gathered and handed to the socket in large writes (a FETCH of thousands
   * of messages would otherwise cost a system call per piece); resolves once
   * the socket can take more.
   */
  send(line: string | readonly Piece[]): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (typeof line === 'string') this.outText += line;
    else for (const p of line) this.enqueue(p);
    this.outText += '\r\n';
    if (this.rt.log.isLevelEnabled('trace')) {
      const text = typeof line === 'string' ? line : line.map((p) => (typeof p === 'string' ? p : `<${p.length} bytes>`)).join('');
      this.log.trace({ s: text.slice(0, 300) }, 'S:');
    }
    return this.afterEnqueue();
  }

  private outText = '';
  private outChunks: Buffer[] = [];
  private outBytes = 0;
  private flushScheduled = false;

  private enqueue(p: Piece): void {
    if (typeof p === 'string') {
      this.outText += p;
      return;
    }
    this.moveText();
    this.outChunks.push(p);
    this.outBytes += p.length;
  }

  private moveText(): void {
    if (this.outText === '') return;
    const b = Buffer.from(this.outText, 'latin1');
    this.outText = '';
    this.outChunks.push(b);
    this.outBytes += b.length;
  }

  private afterEnqueue(): Promise<void> {
    if (this.outBytes + this.outText.length >= OUTPUT_CHUNK) return this.flush() ? Promise.resolve() : this.drained();
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
    return Promise.resolve();
  }

  /** Hands everything gathered to the socket; false if the socket wants us to wait. */
  private flush(): boolean {
    this.moveText();
    if (this.outChunks.length === 0 || this.closed) return true;
    const buf = this.outChunks.length === 1 ? this.outChunks[0]! : Buffer.concat(this.outChunks, this.outBytes);
    this.outChunks = [];
    this.outBytes = 0;
    return this.socket.write(buf);
  }

  /** Sends `+ text` and waits for the client's next line; null if the connection ends. */
  continuation(text: string): Promise<Buffer | null> {
    const early = this.takeQueued();
    if (early) return Promise.resolve(early);
    return new Promise((resolve) => {
      this.waiter = resolve;
      void this.send(`+ ${text}`);
      this.socket.resume();
    });
  }

  /** Like continuation() without a prompt: IDLE waits for DONE after its `+ idling`. */
  nextLine(): Promise<Buffer | null> {
    const early = this.takeQueued();
    if (early) return Promise.resolve(early);
    return new Promise((resolve) => {
      this.waiter = resolve;
      this.socket.resume();
    });
  }

  /** A line the client sent ahead (pipelined `DONE`, an AUTHENTICATE response). */
  private takeQueued(): Buffer | null {
    const first = this.queue[0];
    if (first?.kind !== 'command') return null;
    this.queue.shift();
    return first.bytes;
  }

  /** Writes pieces without a line end (a FETCH response under construction). */
  write(pieces: readonly Piece[]): Promise<void> {
    if (this.closed) return Promise.resolve();
    for (const p of pieces) this.enqueue(p);
    return this.afterEnqueue();
  }

  /** Copies a stream onto the connection with back-pressure (a large literal). */
  async pipe(stream: AsyncIterable<Buffer>): Promise<void> {
    if (!this.flush()) await this.drained();
    for await (const chunk of stream) {
      if (this.closed) return;
      if (!this.socket.write(chunk)) await this.drained();
    }
  }

  private drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** Cancels a pending continuation wait (IDLE ended by the server). */
  cancelWait(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.(null);
  }

  /** Called when the session ends, for whatever reason. */
  onClose(fn: () => void): void {
    if (this.closed) fn();
    else this.closers.push(fn);
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  /** `appliance kick`, shutdown: BYE then close. */
  kick(reason: string): void {
    void this.send(`* BYE ${reason}`);
    this.close();
  }

  /** STARTTLS after the tagged OK: the same connection continues encrypted. */
  startTls(): void {
    // The tagged OK goes out in plaintext, before the handshake.
    this.flush();
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('timeout');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    // RFC 3501 §6.2.1 and RFC 2595 §3.1: anything sent before the handshake is discarded.
    this.queue.length = 0;
    this.reader = this.newReader();
    const pki = this.listener.pki!;
    const tls = new TLSSocket(plain, {
      isServer: true,
      secureContext: this.rt.tls.context(pki),
      SNICallback: (_name, cb) => cb(null, this.rt.tls.context(pki)),
      minVersion: TLS_MIN_VERSION,
      ciphers: TLS_CIPHERS,
    } as ConstructorParameters<typeof TLSSocket>[1]);
    this.socket = tls;
    this.attach(tls);
    const failed = () => this.rt.metrics?.tlsErrors.inc({ protocol: 'imap' });
    tls.once('error', failed);
    tls.once('secure', () => {
      tls.off('error', failed);
      this.log.debug({ protocol: tls.getProtocol() }, 'tls established');
    });
  }

  private newReader(): CommandReader {
    const limit = this.rt.config().imap.limits.maxLiteralSize;
    return new CommandReader({ maxLine: MAX_LINE, maxLiteral: limit, maxCommand: limit + MAX_LINE * 4 }, (e) => this.onEvent(e));
  }

  private attach(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.activity++;
      this.armTimer();
      this.reader.push(chunk);
      if (this.busy && this.queue.length > 0 && !this.waiter) socket.pause();
    });
    socket.on('timeout', () => {
      // Timers run before pending input is read: look again after this turn's I/O, so a
      // client whose command is already here (a loaded server) is not taken for idle.
      const seen = this.activity;
      setImmediate(() => {
        if (this.closed) return;
        // The client is not idle while we work on its command (a slow login, a big FETCH).
        if (this.activity !== seen || (this.busy && !this.waiter)) {
          this.armTimer();
          return;
        }
        this.log.info({ user: this.user, literal: this.reader.inLiteral }, 'idle timeout');
        void this.send('* BYE Autologout; idle for too long');
        this.close();
      });
    });
    socket.on('error', (err: Error) => this.log.debug({ err: err.message }, 'connection error'));
    socket.on('close', () => this.cleanup());
  }

  private armTimer(): void {
    const limit = this.rt.config().imap.limits.idleTimeout;
    this.socket.setTimeout(this.state === 'not-authenticated' ? Math.min(limit, PREAUTH_TIMEOUT_MS) : limit);
  }

  private onEvent(e: ReaderEvent): void {
    if (this.closed) return;
    if (e.kind === 'continue') {
      void this.send('+ Ready for literal data');
      return;
    }
    if (e.kind === 'fatal') {
      this.log.info({ reason: e.reason }, 'connection closed: protocol error');
      void this.send(`* BYE ${e.reason}`);
      this.close();
      return;
    }
    if (this.waiter && e.kind === 'command') {
      const w = this.waiter;
      this.waiter = null;
      w(e.bytes);
      return;
    }
    this.queue.push(e);
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const e = this.queue.shift()!;
        await this.handle(e);
      }
    } catch (err) {
      // Only a bug gets here (handlers' failures are answered in handle()): end this session, not the process.
      this.log.error({ err: (err as Error).message, stack: (err as Error).stack }, 'imap session failed');
      this.kick('Internal server error');
    } finally {
      this.busy = false;
      if (!this.closed) this.socket.resume();
    }
  }

  private async handle(e: ReaderEvent): Promise<void> {
    if (e.kind === 'refused') {
      const what = e.reason === 'line-too-long' ? 'Command line too long' : e.reason === 'literal-too-big' ? 'Literal too big' : 'Command too long';
      if (e.tag === null) {
        void this.send(`* BAD ${what}`);
        return;
      }
      const code = e.reason === 'line-too-long' ? '' : '[TOOBIG] ';
      void this.send(`${e.tag} ${e.command === 'APPEND' && e.reason !== 'line-too-long' ? 'NO' : 'BAD'} ${code}${what}`);
      return;
    }
    if (e.kind !== 'command') return;
    const parsed = parseCommand(e.bytes);
    if (this.rt.log.isLevelEnabled('trace')) this.log.trace({ c: redactCommand(e.bytes) }, 'C:');
    if (!parsed.ok) {
      if (parsed.tag === null) {
        // RFC 3501 §7.1.5: garbage without a tag; say so untagged (and close after repeated garbage).
        this.garbage++;
        void this.send('* BAD Invalid tag or command');
        if (this.garbage >= 10) this.kick('Too many invalid commands');
        return;
      }
      await this.send(`${parsed.tag} BAD ${parsed.message}`);
      return;
    }
    this.garbage = 0;
    let result: Tagged;
    try {
      result = await runCommand(this, parsed.tag, parsed.command);
    } catch (err) {
      result = taggedForError(err, this.log);
    }
    if (this.closed) return;
    if (!result.sent) await this.send(`${parsed.tag} ${result.status} ${result.code ? `[${result.code}] ` : ''}${result.text}`);
    this.armTimer();
    if (this.state === 'logout') this.close();
  }

  private garbage = 0;
  /** Counts input events, for the idle check. */
  private activity = 0;

  private cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    this.cancelWait();
    const sel = this.selected;
    this.selected = null;
    if (sel) void sel.close().catch((err: Error) => this.log.warn({ err: err.message }, 'closing the mailbox failed'));
    for (const fn of this.closers.splice(0)) fn();
    this.log.debug({ user: this.user }, 'disconnect');
  }
}

/** `::ffff:127.0.0.1` → `127.0.0.1`. */
export function normaliseIp(ip: string): string {
  return ip.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

/** A command for the trace log, without LOGIN/AUTHENTICATE credentials. */
function redactCommand(bytes: Buffer): string {
  const s = bytes.subarray(0, 300).toString('latin1');
  return /^\S+ (LOGIN|AUTHENTICATE)\b/i.test(s) ? s.replace(/^(\S+ \S+ \S+).*$/s, '$1 [redacted]') : s.replace(/[^\x20-\x7e]/g, '.');
}
