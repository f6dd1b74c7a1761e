/**
 * Command framing (RFC 3501 §2.2, §4.3; RFC 7888 LITERAL+): turns the byte
 * stream of a connection into whole commands — one line, or several lines
 * joined by literals `{n}` / `{n+}` — handed on as the raw bytes (without the
 * final CRLF) for the parser. A synchronising literal asks for a `+`
 * continuation; a non-synchronising one does not.
 *
 * Memory is bounded by the limits: a line segment longer than `maxLine` is
 * discarded while it streams in (the command then gets BAD), a literal larger
 * than `maxLiteral` is refused before its bytes are read, and a whole command
 * never exceeds `maxCommand`. A refused non-synchronising literal cannot be
 * skipped safely (its bytes are already on their way), so it ends the
 * connection.
 */

export interface ReaderLimits {
  /** One line segment (between literals), CRLF included. */
  readonly maxLine: number;
  /** One literal. */
  readonly maxLiteral: number;
  /** All segments and literals of one command. */
  readonly maxCommand: number;
}

export type ReaderEvent =
  | { readonly kind: 'command'; readonly bytes: Buffer }
  /** A synchronising literal was accepted: the session must send `+ …`. */
  | { readonly kind: 'continue' }
  /** The command was dropped; the session answers BAD (or NO [TOOBIG]) and reading goes on. */
  | { readonly kind: 'refused'; readonly tag: string | null; readonly reason: 'line-too-long' | 'literal-too-big' | 'command-too-big'; readonly command: string | null }
  /** Nothing sensible can follow: the session says BYE and closes. */
  | { readonly kind: 'fatal'; readonly reason: string };

const LF = 0x0a;
const LITERAL_AT_END = /\{(\d{1,20})(\+?)\}\r?\n$/;

export class CommandReader {
  private readonly limits: ReaderLimits;
  private readonly emit: (e: ReaderEvent) => void;
  /** Completed segments and literals of the command being read. */
  private parts: Buffer[] = [];
  private commandBytes = 0;
  /** The current line segment, not yet ended by LF. */
  private line: Buffer[] = [];
  private lineBytes = 0;
  private literalLeft = 0;
  private skipping = false;
  /** The start of a command being skipped, to find its tag. */
  private skippedHead: Buffer | null = null;
  private dead = false;

  constructor(limits: ReaderLimits, emit: (e: ReaderEvent) => void) {
    this.limits = limits;
    this.emit = emit;
  }

  /** Bytes held for the command being read (bounded by the limits). */
  get bufferedBytes(): number {
    let n = this.lineBytes;
    for (const p of this.parts) n += p.length;
    return n;
  }

  /** True while the bytes of a literal are expected (a client may go silent in the middle). */
  get inLiteral(): boolean {
    return this.literalLeft > 0;
  }

  push(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length && !this.dead) {
      if (this.literalLeft > 0) {
        const n = Math.min(this.literalLeft, chunk.length - pos);
        this.parts.push(chunk.subarray(pos, pos + n));
        this.literalLeft -= n;
        pos += n;
        continue;
      }
      const lf = chunk.indexOf(LF, pos);
      const end = lf === -1 ? chunk.length : lf + 1;
      const piece = chunk.subarray(pos, end);
      pos = end;
      if (this.skipping) {
        if (lf !== -1) this.finishSkip();
        continue;
      }
      if (this.lineBytes + piece.length > this.limits.maxLine) {
        this.startSkip(piece);
        if (lf !== -1) this.finishSkip();
        continue;
      }
      this.line.push(piece);
      this.lineBytes += piece.length;
      if (lf !== -1) this.endLine();
    }
  }

  private endLine(): void {
    const line = this.line.length === 1 ? this.line[0]! : Buffer.concat(this.line);
    this.line = [];
    this.lineBytes = 0;
    // Only the tail can announce a literal; read it as latin1 to keep byte positions.
    const tail = line.subarray(Math.max(0, line.length - 26)).toString('latin1');
    const m = LITERAL_AT_END.exec(tail);
    if (!m) {
      const body = line.subarray(0, line.length - (line.length >= 2 && line[line.length - 2] === 0x0d ? 2 : 1));
      if (this.commandBytes + body.length > this.limits.maxCommand) return this.refuse(body, 'command-too-big');
      this.parts.push(body);
      const bytes = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
      this.parts = [];
      this.commandBytes = 0;
      // A bare CRLF between commands is tolerated (some clients send one after a literal).
      if (bytes.length > 0) this.emit({ kind: 'command', bytes });
      return;
    }
    const size = Number(m[1]);
    const sync = m[2] !== '+';
    const headEnd = line.length - m[0].length;
    const normalised = Buffer.concat([line.subarray(0, headEnd), Buffer.from(`{${m[1]}${m[2]}}\r\n`)]);
    if (size > this.limits.maxLiteral || this.commandBytes + normalised.length + size > this.limits.maxCommand) {
      const reason = size > this.limits.maxLiteral ? 'literal-too-big' : 'command-too-big';
      if (!sync) {
        // RFC 7888 §4: the client sends the bytes anyway; we cannot tell them from commands.
        this.dead = true;
        this.emit({ kind: 'fatal', reason: `non-synchronising literal of ${m[1]} octets is over the limit` });
        return;
      }
      return this.refuse(normalised, reason);
    }
    this.parts.push(normalised);
    this.commandBytes += normalised.length + size;
    this.literalLeft = size;
    if (sync) this.emit({ kind: 'continue' });
  }

  private refuse(last: Buffer, reason: 'line-too-long' | 'literal-too-big' | 'command-too-big'): void {
    const head = this.parts.length > 0 ? this.parts[0]! : last;
    this.parts = [];
    this.commandBytes = 0;
    const { tag, command } = tagOf(head);
    this.emit({ kind: 'refused', tag, reason, command });
  }

  private startSkip(piece: Buffer): void {
    this.skipping = true;
    const first = this.parts[0] ?? (this.line.length > 0 ? Buffer.concat(this.line) : piece);
    this.skippedHead = first.subarray(0, 200);
    this.line = [];
    this.lineBytes = 0;
  }

  private finishSkip(): void {
    this.skipping = false;
    this.parts = [];
    this.commandBytes = 0;
    const { tag, command } = tagOf(this.skippedHead ?? Buffer.alloc(0));
    this.skippedHead = null;
    this.emit({ kind: 'refused', tag, reason: 'line-too-long', command });
  }
}

/** The tag and command name at the start of a command, when they look valid. */
export function tagOf(head: Buffer): { tag: string | null; command: string | null } {
  const m = /^([\x21\x23\x24\x26\x27\x2c-\x5b\x5d-\x7a\x7c-\x7e]+) ([A-Za-z]+)(?: ([A-Za-z]+))?/.exec(head.subarray(0, 200).toString('latin1'));
  if (!m) return { tag: null, command: null };
  const cmd = m[2]!.toUpperCase();
  return { tag: m[1]!, command: cmd === 'UID' && m[3] ? `UID ${m[3].toUpperCase()}` : cmd };
}
