/**
 * The Received: trace header (RFC 5321 §4.4) we prepend to every accepted
 * message, with the RFC 3848 protocol keyword (ESMTP, ESMTPS, ESMTPA,
 * ESMTPSA), the TLS version and cipher, and the authenticated user only when
 * the listener says `received-auth`. `mask-src` hides the client's address.
 */

export interface ReceivedFacts {
  readonly helo?: string;
  readonly clientHostname?: string;
  readonly clientAddress: string;
  readonly byHost: string;
  readonly protocol: 'SMTP' | 'ESMTP' | 'ESMTPS' | 'ESMTPA' | 'ESMTPSA';
  readonly id: string;
  readonly tls?: { readonly version: string; readonly cipher: string };
  readonly authUser?: string;
  readonly recipient?: string;
  readonly date: Date;
  readonly maskSource: boolean;
}

/** Header text ending in CRLF, folded to stay under 78 columns per line. */
export function receivedHeader(f: ReceivedFacts): string {
  const parts: string[] = [];
  if (f.maskSource) {
    parts.push(`from ${clean(f.helo) || 'unknown'}`);
  } else {
    const ip = f.clientAddress.includes(':') ? `IPv6:${f.clientAddress}` : f.clientAddress;
    const rdns = clean(f.clientHostname);
    const named = rdns && !rdns.startsWith('[') ? `${rdns} ` : '';
    parts.push(`from ${clean(f.helo) || 'unknown'} (${named}[${ip}])`);
  }
  parts.push(`by ${f.byHost} (appliance) with ${f.protocol} id ${f.id}`);
  if (f.tls) parts.push(`(version=${clean(f.tls.version)} cipher=${clean(f.tls.cipher)})`);
  if (f.authUser !== undefined) parts.push(`(authenticated as ${clean(f.authUser)})`);
  if (f.recipient) parts.push(`for <${clean(f.recipient)}>`);
  return `Received: ${parts.join('\r\n\t')};\r\n\t${rfc5322Date(f.date)}\r\n`;
}

/** Client-supplied text (HELO, names) reduced to printable, comment-safe characters. */
function clean(s: string | undefined): string {
  return (s ?? '').replace(/[^\x21-\x7e]/g, '').replace(/[()\\;]/g, '').slice(0, 255);
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export function rfc5322Date(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  const offset = -d.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  const abs = Math.abs(offset);
  return `${DAYS[d.getDay()]}, ${d.getDate()} ${MONTHS[d.getMonth()]} ${d.getFullYear()} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ${sign}${pad(Math.floor(abs / 60))}${pad(abs % 60)}`;
}
