/**
 * Decoding what SEARCH compares and BINARY serves: Content-Transfer-Encoding
 * (RFC 2045 §6: base64, quoted-printable), RFC 2047 encoded words in header
 * values, charsets through TextDecoder, and splitting a header block into
 * its fields (RFC 5322 §2.2: a field continues on lines starting with WSP).
 */

export function decodeTransfer(body: Buffer, encoding: string): Buffer | null {
  switch (encoding) {
    case 'base64':
      return Buffer.from(body.toString('latin1').replace(/[^A-Za-z0-9+/]/g, ''), 'base64');
    case 'quoted-printable':
      return decodeQuotedPrintable(body);
    case '7bit':
    case '8bit':
    case 'binary':
    case '':
      return body;
    default:
      return null;
  }
}

function decodeQuotedPrintable(b: Buffer): Buffer {
  const out = Buffer.alloc(b.length);
  let n = 0;
  for (let i = 0; i < b.length; i++) {
    const c = b[i]!;
    if (c !== 0x3d) {
      out[n++] = c;
      continue;
    }
    // soft line break: "=" CRLF (or bare LF)
    if (b[i + 1] === 0x0d && b[i + 2] === 0x0a) {
      i += 2;
      continue;
    }
    if (b[i + 1] === 0x0a) {
      i += 1;
      continue;
    }
    const hex = b.toString('latin1', i + 1, i + 3);
    if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
      out[n++] = parseInt(hex, 16);
      i += 2;
    } else out[n++] = c;
  }
  return out.subarray(0, n);
}

export function decodeCharset(b: Buffer, charset: string | undefined): string {
  try {
    return new TextDecoder(charset && charset !== 'us-ascii' ? charset : 'utf-8').decode(b);
  } catch {
    return b.toString('latin1');
  }
}

const ENCODED_WORD = /=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=/g;

/** A header value with its encoded words decoded (whitespace between adjacent ones dropped, RFC 2047 §6.2). */
export function decodeHeaderValue(raw: string): string {
  const joined = raw.replace(/(\?=)\s+(=\?)/g, '$1$2');
  return joined.replace(ENCODED_WORD, (_m, charset: string, enc: string, text: string) => {
    const cs = charset.split('*')[0]!.toLowerCase();
    const bytes = enc.toUpperCase() === 'B' ? Buffer.from(text, 'base64') : decodeQuotedPrintable(Buffer.from(text.replace(/_/g, ' '), 'latin1'));
    return decodeCharset(bytes, cs);
  });
}

export interface HeaderField {
  /** Lowercased name. */
  readonly name: string;
  /** The raw field, name to the end of its last line, CRLF included. */
  readonly raw: Buffer;
}

export function splitHeader(block: Buffer): HeaderField[] {
  const out: HeaderField[] = [];
  let start = -1;
  let i = 0;
  const push = (end: number) => {
    if (start < 0) return;
    const raw = block.subarray(start, end);
    const colon = raw.indexOf(0x3a);
    if (colon > 0) out.push({ name: raw.toString('latin1', 0, colon).trim().toLowerCase(), raw });
  };
  while (i < block.length) {
    let nl = block.indexOf(0x0a, i);
    if (nl === -1) nl = block.length - 1;
    const lineStart = i;
    const c = block[lineStart]!;
    const empty = c === 0x0d || c === 0x0a;
    if (empty) break;
    if (c !== 0x20 && c !== 0x09) {
      push(lineStart);
      start = lineStart;
    }
    i = nl + 1;
  }
  push(i);
  return out;
}

/** The unfolded value of a raw field. */
export function fieldValue(f: HeaderField): string {
  const s = f.raw.toString('utf8');
  return s.slice(s.indexOf(':') + 1).replace(/\r?\n[ \t]/g, ' ').trim();
}
