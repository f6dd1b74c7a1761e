/**
 * `senders <table> masquerade` (OpenSMTPD): the From: header of a message
 * submitted by an authenticated user is rewritten to the envelope sender the
 * `senders` check allowed, keeping the display name — so a user cannot put
 * someone else's address in From: either.
 *
 * Streaming: only the header block is held (bounded); the body passes
 * through untouched. A header block larger than the bound, or one without a
 * From:, is left as it is (a From: is then added only when missing).
 */
import { Transform, type TransformCallback } from 'node:stream';

export const MAX_HEADER_BYTES = 256 * 1024;

export class FromRewriter extends Transform {
  private readonly sender: string;
  private head: Buffer[] = [];
  private headBytes = 0;
  private passing = false;

  constructor(sender: string) {
    super();
    this.sender = sender;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.passing) return done(null, chunk);
    this.head.push(chunk);
    this.headBytes += chunk.length;
    const all = Buffer.concat(this.head);
    this.head = [all];
    const end = headerEnd(all);
    if (end !== -1 && end <= MAX_HEADER_BYTES) {
      this.passing = true;
      this.head = [];
      this.push(rewriteFrom(all.subarray(0, end), this.sender));
      return done(null, all.subarray(end));
    }
    if (end !== -1 || this.headBytes > MAX_HEADER_BYTES) {
      this.passing = true;
      this.head = [];
      return done(null, all);
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    if (!this.passing && this.headBytes > 0) {
      // A message that is all headers.
      this.push(rewriteFrom(Buffer.concat(this.head), this.sender));
    }
    done();
  }
}

/** Index just past the header block's last line (before the blank line), or -1. */
export function headerEnd(buf: Buffer): number {
  const crlf = buf.indexOf('\r\n\r\n');
  const lf = buf.indexOf('\n\n');
  if (crlf === -1 && lf === -1) return buf.length > 0 && (buf[0] === 0x0d || buf[0] === 0x0a) ? 0 : -1;
  if (crlf === -1) return lf + 1;
  if (lf === -1) return crlf + 2;
  return Math.min(crlf + 2, lf + 1);
}

/** Rewrites (or adds) the From: header of a header block. */
export function rewriteFrom(block: Buffer, sender: string): Buffer {
  const text = block.toString('latin1');
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  // Header fields with their folded continuation lines.
  const fields = text.match(/[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*\r?\n?/g)?.filter((f) => f !== '') ?? [];
  let seen = false;
  const out = fields.map((field) => {
    if (!/^from\s*:/i.test(field)) return field;
    seen = true;
    const value = field.slice(field.indexOf(':') + 1).replace(/\r?\n[ \t]/g, ' ').trim();
    const angle = /^(.*?)<[^<>]*>\s*$/.exec(value);
    const display = angle ? angle[1]!.trim() : '';
    return `From: ${display ? `${display} ` : ''}<${sender}>${eol}`;
  });
  if (!seen) out.unshift(`From: <${sender}>${eol}`);
  return Buffer.from(out.join(''), 'latin1');
}
