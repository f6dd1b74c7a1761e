/**
 * IMAP test helpers: an appliance config with IMAP listeners (a plain one,
 * where loopback may log in, and a tls-require one), and a raw line client
 * for transcripts against the real server.
 */
import { connect, type Socket } from 'node:net';
import { freePort, writeConfig } from './appliance.ts';

export interface ImapPorts {
  readonly plain: number;
  readonly tlsRequire: number;
  readonly imaps: number;
}

export async function writeImapConfig(dir: string, opts: { extra?: string } = {}) {
  const imap: ImapPorts = { plain: await freePort(), tlsRequire: await freePort(), imaps: await freePort() };
  const cfg = await writeConfig(dir, {
    extra: `imap listen on 127.0.0.1 port ${imap.plain} auth <users>
imap listen on 127.0.0.1 port ${imap.tlsRequire} tls-require pki mail.example.test auth <users>
imap listen on 127.0.0.1 port ${imap.imaps} imaps pki mail.example.test auth <users>
imap mailbox "Drafts" special-use "\\Drafts" auto subscribe
imap mailbox "Sent" special-use "\\Sent" auto subscribe
imap mailbox "Junk" special-use "\\Junk" auto subscribe
imap mailbox "Trash" special-use "\\Trash" auto subscribe
${opts.extra ?? ''}`,
  });
  return { ...cfg, imap };
}

/** A raw IMAP connection: write lines, wait (bounded) for what comes back. */
export class RawImap {
  readonly socket: Socket;
  private text = '';
  private wake: (() => void) | null = null;
  closed = false;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.text += d;
      this.wake?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    socket.on('error', () => {});
  }

  static async connect(port: number): Promise<RawImap> {
    const s = connect(port, '127.0.0.1');
    await new Promise((resolve, reject) => s.once('connect', resolve).once('error', reject));
    return new RawImap(s);
  }

  /** Everything received up to a match of `re` (consumed), or throws after `ms`. */
  async expect(re: RegExp, ms = 10_000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = re.exec(this.text);
      if (m) {
        const out = this.text.slice(0, m.index + m[0].length);
        this.text = this.text.slice(m.index + m[0].length);
        return out;
      }
      if (this.closed) throw new Error(`closed; got ${JSON.stringify(this.text.slice(-300))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timeout waiting for ${re}; got ${JSON.stringify(this.text.slice(-300))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = null;
          resolve();
        };
      });
    }
  }

  /** Waits for the connection to close (bounded); true if it did. */
  async closedWithin(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    return this.closed;
  }

  write(s: string | Buffer): void {
    this.socket.write(s);
  }

  async cmd(tag: string, rest: string, ms?: number): Promise<string> {
    this.write(`${tag} ${rest}\r\n`);
    return this.expect(new RegExp(`(^|\\r\\n)${tag} (OK|NO|BAD)[^\\r]*\\r\\n`), ms);
  }

  close(): void {
    this.socket.destroy();
  }
}
