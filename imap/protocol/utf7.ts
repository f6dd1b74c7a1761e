/**
 * Modified UTF-7 for mailbox names (RFC 3501 §5.1.3): printable ASCII stands
 * for itself except `&`, written `&-`; anything else is `&` + modified
 * base64 of UTF-16BE + `-`. Decoding is strict (a name that does not
 * round-trip is refused), so one mailbox never has two spellings.
 */

export function encodeMailboxName(name: string): string {
  let out = '';
  let pending = '';
  const flush = () => {
    if (!pending) return;
    const utf16 = Buffer.alloc(pending.length * 2);
    for (let i = 0; i < pending.length; i++) utf16.writeUInt16BE(pending.charCodeAt(i), i * 2);
    out += `&${utf16.toString('base64').replace(/=+$/, '').replace(/\//g, ',')}-`;
    pending = '';
  };
  for (const ch of name) {
    const c = ch.codePointAt(0)!;
    if (c >= 0x20 && c <= 0x7e) {
      flush();
      out += ch === '&' ? '&-' : ch;
    } else pending += ch;
  }
  flush();
  return out;
}

/** The UTF-8 name, or null if the bytes are not valid modified UTF-7. */
export function decodeMailboxName(raw: Buffer): string | null {
  let out = '';
  let i = 0;
  while (i < raw.length) {
    const c = raw[i]!;
    if (c < 0x20 || c > 0x7e) return null;
    if (c !== 0x26) {
      out += String.fromCharCode(c);
      i++;
      continue;
    }
    const end = raw.indexOf(0x2d, i + 1);
    if (end === -1) return null;
    const b64 = raw.toString('latin1', i + 1, end);
    i = end + 1;
    if (b64 === '') {
      out += '&';
      continue;
    }
    if (!/^[A-Za-z0-9+,]+$/.test(b64)) return null;
    const bytes = Buffer.from(b64.replace(/,/g, '/'), 'base64');
    if (bytes.length % 2 !== 0 || bytes.length === 0) return null;
    let chunk = '';
    for (let k = 0; k < bytes.length; k += 2) chunk += String.fromCharCode(bytes.readUInt16BE(k));
    if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(chunk)) return null;
    out += chunk;
  }
  // Strictness: printable ASCII encoded in base64, or a split shift sequence, does not round-trip.
  return encodeMailboxName(out) === raw.toString('latin1') ? out : null;
}
