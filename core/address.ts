/**
 * Mail address syntax and normalisation: the Mailbox of an SMTP path
 * (RFC 5321 §4.1.2: Local-part as Dot-string or Quoted-string, Domain,
 * address-literal; §4.1.3 address literals; §4.5.3.1 size limits), the
 * path itself with its ignored source route (RFC 5321 §3.3, §4.1.1.2,
 * appendix C) and the null reverse-path, UTF-8 local parts and domains
 * (RFC 6531 §3.3, RFC 6532 §3.2), plus the address helpers the rest of the
 * server keys on: lookup keys, sub-addressing (`user+tag`) and IP/CIDR
 * matching (RFC 4291 §2.2/§2.5.5.2, RFC 4632).
 *
 * Nothing here routes: `user%host@domain`, `host!user@domain` and
 * `"user@host"@domain` are plain local parts of `domain`. The source route
 * of a path is dropped, so `@ours.org:user@external.org` is
 * `user@external.org` and goes through the relay rules like any other.
 */

import { domainToASCII } from 'node:url';

export interface MailAddress {
  /** The local part as given (quoted-string content dequoted, case preserved). */
  readonly local: string;
  /** Lower-cased (NFC), one trailing dot removed; or an address literal `[1.2.3.4]` / `[IPv6:…]`. */
  readonly domain: string;
}

export type ParseAddressResult =
  | { ok: true; address: MailAddress }
  | { ok: false; reason: string };

export interface ParseAddressOptions {
  /** Accept UTF-8 in the local part and domain (RFC 6531 SMTPUTF8). Default true. */
  allowUtf8?: boolean;
}

const MAX_LOCAL_OCTETS = 64;
const MAX_DOMAIN_OCTETS = 255;
const MAX_LABEL_OCTETS = 63;

/** RFC 5322 §3.2.3 atext, ASCII part. */
const ASCII_ATEXT = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]$/;
/** RFC 5321 Let-dig / Ldh-str characters (after lower-casing). */
const ASCII_LDH = /^[a-z0-9-]$/;
/** Non-ASCII characters allowed in a U-label (letters, marks, digits). */
const UNICODE_LABEL_CHAR = /^[\p{L}\p{M}\p{N}]$/u;
const CONTROL = /\p{Cc}/u;
const UNICODE_SPACE = /^[\p{Zs}\p{Zl}\p{Zp}]$/u;
const LONE_SURROGATE = /^[\uD800-\uDFFF]$/;

const utf8Length = (s: string): number => Buffer.byteLength(s, 'utf8');

function fail(reason: string): { ok: false; reason: string } {
  return { ok: false, reason };
}

/** Invisible or line-breaking characters, shown as U+XXXX in reasons (they may end up in replies and logs). */
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\uD800-\uDFFF]|(?! )\p{Zs}/u;

function codePointName(c: string): string {
  return `U+${c.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
}

function describeChar(c: string): string {
  return UNPRINTABLE.test(c) ? codePointName(c) : `'${c}'`;
}

/** A piece of input quoted for a reason: unprintable characters escaped, length capped. */
function show(s: string): string {
  let out = '';
  for (const c of s) out += UNPRINTABLE.test(c) ? `<${codePointName(c)}>` : c;
  return `'${out.length > 80 ? out.slice(0, 77) + '...' : out}'`;
}

/** Is `c` (one code point) an atext character of a dot-atom? */
function isAtext(c: string, allowUtf8: boolean): boolean {
  if (c.length === 1 && c.charCodeAt(0) < 0x80) return ASCII_ATEXT.test(c);
  if (!allowUtf8) return false;
  return !CONTROL.test(c) && !UNICODE_SPACE.test(c) && !LONE_SURROGATE.test(c);
}

/** True when `local` can be written unquoted (RFC 5321 Dot-string, RFC 6531 UTF-8 atext). */
function isDotAtom(local: string): boolean {
  if (local === '') return false;
  for (const atom of local.split('.')) {
    if (atom === '') return false;
    for (const c of atom) if (!isAtext(c, true)) return false;
  }
  return true;
}

/** Validates an unquoted local part; returns the reason it is invalid, or null. */
function dotAtomProblem(local: string, allowUtf8: boolean): string | null {
  if (local === '') return 'empty local part';
  if (local.startsWith('.')) return 'leading dot in local part';
  if (local.endsWith('.')) return 'trailing dot in local part';
  if (local.includes('..')) return 'consecutive dots in local part';
  for (const c of local) {
    if (c === '.') continue;
    if (c === '@') return "unquoted '@' in local part";
    if (c === ' ' || UNICODE_SPACE.test(c)) return 'space in unquoted local part';
    if (c.charCodeAt(0) >= 0x80 && !allowUtf8 && !LONE_SURROGATE.test(c)) {
      return 'non-ASCII local part requires SMTPUTF8';
    }
    if (!isAtext(c, allowUtf8)) return `invalid character ${describeChar(c)} in local part`;
  }
  return null;
}

/**
 * Reads the quoted-string at the start of `input` (RFC 5321 Quoted-string,
 * RFC 6531 UTF-8 qtext). Returns its dequoted content and where it ends.
 */
function readQuoted(
  input: string,
  allowUtf8: boolean,
): { ok: true; content: string; end: number } | { ok: false; reason: string } {
  let content = '';
  let i = 1;
  while (i < input.length) {
    const cp = input.codePointAt(i)!; // i < input.length
    const c = String.fromCodePoint(cp);
    if (c === '"') return { ok: true, content, end: i + 1 };
    if (c === '\\') {
      const next = input.codePointAt(i + 1);
      if (next === undefined) break;
      // quoted-pairSMTP = %d92 %d32-126
      if (next < 32 || next > 126) return fail(`invalid quoted-pair ${describeChar(String.fromCodePoint(next))} in local part`);
      content += String.fromCharCode(next);
      i += 2;
      continue;
    }
    // controls were refused for the whole address already
    if (cp >= 0x80) {
      if (LONE_SURROGATE.test(c)) return fail(`invalid character ${describeChar(c)} in local part`);
      if (!allowUtf8) return fail('non-ASCII local part requires SMTPUTF8');
    }
    content += c;
    i += c.length;
  }
  return fail('unterminated quoted local part');
}

/** Parses the IPv4 dotted quad `s` (no leading zeros) into 4 bytes. */
function parseIPv4(s: string): number[] | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  const bytes: number[] = [];
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    bytes.push(n);
  }
  return bytes;
}

/** Parses an IPv6 address in any RFC 4291 §2.2 text form into 16 bytes (no zone id). */
function parseIPv6(s: string): number[] | null {
  if (s.length < 2 || s.length > 45) return null;
  let tail: number[] = [];
  let text = s;
  const lastColon = text.lastIndexOf(':');
  if (lastColon >= 0 && text.includes('.', lastColon)) {
    const v4 = parseIPv4(text.slice(lastColon + 1));
    if (!v4) return null;
    tail = [(v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!];
    // keep a '::' directly before the IPv4 part ('::1.2.3.4'), drop a single ':'
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const readGroups = (part: string): number[] | null => {
    if (part === '') return [];
    const groups: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9A-Fa-f]{1,4}$/.test(g)) return null;
      groups.push(parseInt(g, 16));
    }
    return groups;
  };
  const head = readGroups(halves[0]!);
  if (!head) return null;
  let groups: number[];
  if (halves.length === 2) {
    const rest = readGroups(halves[1]!);
    if (!rest) return null;
    const known = head.length + rest.length + tail.length;
    if (known > 7) return null;
    groups = [...head, ...new Array<number>(8 - known).fill(0), ...rest, ...tail];
  } else {
    groups = [...head, ...tail];
    if (groups.length !== 8) return null;
  }
  const bytes: number[] = [];
  for (const g of groups) bytes.push(g >> 8, g & 0xff);
  return bytes;
}

/** Returns 4 or 6 for a syntactically valid IPv4 / IPv6 address (no zone id, no brackets), else 0. */
export function isIpAddress(s: string): 4 | 6 | 0 {
  if (parseIPv4(s)) return 4;
  if (parseIPv6(s)) return 6;
  return 0;
}

/** Parses an address literal `[…]` (RFC 5321 §4.1.3) into its canonical form, or explains why not. */
function parseAddressLiteral(d: string): { ok: true; literal: string } | { ok: false; reason: string } {
  if (!d.endsWith(']')) return fail(`invalid address literal ${show(d)}`);
  const inner = d.slice(1, -1);
  if (parseIPv4(inner)) return { ok: true, literal: `[${inner}]` };
  const colon = inner.indexOf(':');
  if (colon > 0 && inner.slice(0, colon).toLowerCase() === 'ipv6') {
    const ip = inner.slice(colon + 1);
    if (parseIPv6(ip)) return { ok: true, literal: `[IPv6:${ip.toLowerCase()}]` };
    return fail(`invalid IPv6 address literal ${show(d)}`);
  }
  if (colon > 0) return fail(`unsupported address literal ${show(d)}`);
  return fail(`invalid address literal ${show(d)}`);
}

/** Lower-cases (ASCII and Unicode, NFC) and strips one trailing dot. Address literals get a canonical `IPv6:` tag. */
export function normalizeDomain(d: string): string {
  if (d.startsWith('[') && d.endsWith(']')) {
    const inner = d.slice(1, -1);
    if (/^ipv6:/i.test(inner)) return `[IPv6:${inner.slice(5).toLowerCase()}]`;
    return d.toLowerCase();
  }
  let out = d.normalize('NFC').toLowerCase().normalize('NFC');
  if (out.endsWith('.')) out = out.slice(0, -1);
  return out;
}

/**
 * Checks a normalised host name (lower-case, no trailing dot) against
 * RFC 5321 Domain (sub-domain = Let-dig [Ldh-str]) with U-labels allowed
 * when `allowUtf8`. Returns the reason it is invalid, or null.
 */
function hostnameProblem(d: string, allowUtf8: boolean): string | null {
  if (d === '') return 'empty domain';
  if (utf8Length(d) > MAX_DOMAIN_OCTETS) return `domain longer than ${MAX_DOMAIN_OCTETS} octets`;
  const labels = d.split('.');
  let ascii = true;
  for (const label of labels) {
    if (label === '') return 'empty label';
    if (label.startsWith('-') || label.endsWith('-')) return `label ${show(label)} starts or ends with '-'`;
    let labelAscii = true;
    for (const c of label) {
      if (c.charCodeAt(0) < 0x80) {
        if (!ASCII_LDH.test(c)) return `invalid character ${describeChar(c)}`;
      } else {
        if (!allowUtf8) return 'non-ASCII domain requires SMTPUTF8';
        if (!UNICODE_LABEL_CHAR.test(c)) return `invalid character ${describeChar(c)}`;
        labelAscii = false;
      }
    }
    if (labelAscii && label.length > MAX_LABEL_OCTETS) return `label longer than ${MAX_LABEL_OCTETS} octets`;
    ascii &&= labelAscii;
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) {
    return parseIPv4(d) ? `an IP address must be written as an address literal [${d}]` : 'top-level label is numeric';
  }
  if (!ascii) {
    // The DNS limits apply to the A-label form (RFC 5890 §2.3.2.1).
    const alabels = domainToASCII(d);
    if (alabels === '') return 'not a valid internationalized domain name';
    if (alabels.length > MAX_DOMAIN_OCTETS) return `domain longer than ${MAX_DOMAIN_OCTETS} octets`;
    for (const label of alabels.split('.')) {
      if (label.length > MAX_LABEL_OCTETS) return `label longer than ${MAX_LABEL_OCTETS} octets`;
    }
  }
  return null;
}

/**
 * True for a host name usable as the domain of an address (ASCII or UTF-8
 * U-labels, one trailing dot allowed, case-insensitive). Address literals
 * are not domains here; `parseAddress` accepts them separately.
 */
export function isValidDomain(d: string): boolean {
  return hostnameProblem(normalizeDomain(d), true) === null;
}

/** Parses `local@domain` (the inside of `<…>`, RFC 5321 Mailbox). */
export function parseAddress(input: string, opts?: ParseAddressOptions): ParseAddressResult {
  const allowUtf8 = opts?.allowUtf8 ?? true;
  if (input === '') return fail('empty address');
  if (input.includes('\0')) return fail('NUL character in address');
  const ctl = CONTROL.exec(input);
  if (ctl) return fail(`control character ${describeChar(ctl[0])} in address`);

  let local: string;
  let rawLocal: string;
  let domainPart: string;
  if (input.startsWith('"')) {
    const q = readQuoted(input, allowUtf8);
    if (!q.ok) return q;
    rawLocal = input.slice(0, q.end);
    if (q.end >= input.length) return fail('missing @');
    if (input[q.end] !== '@') return fail('unexpected text after quoted local part');
    local = q.content;
    domainPart = input.slice(q.end + 1);
    if (local === '') return fail('empty local part');
  } else {
    const at = input.lastIndexOf('@');
    if (at < 0) return fail('missing @');
    rawLocal = input.slice(0, at);
    domainPart = input.slice(at + 1);
    const problem = dotAtomProblem(rawLocal, allowUtf8);
    if (problem) return fail(problem);
    local = rawLocal;
  }
  if (utf8Length(rawLocal) > MAX_LOCAL_OCTETS) return fail(`local part longer than ${MAX_LOCAL_OCTETS} octets`);

  if (domainPart === '') return fail('empty domain');
  if (domainPart.startsWith('[')) {
    const lit = parseAddressLiteral(domainPart);
    if (!lit.ok) return lit;
    return { ok: true, address: { local, domain: lit.literal } };
  }
  const domain = normalizeDomain(domainPart);
  const problem = hostnameProblem(domain, allowUtf8);
  if (problem) return fail(`invalid domain ${show(domainPart)}: ${problem}`);
  return { ok: true, address: { local, domain } };
}

/**
 * Parses an SMTP path (RFC 5321 §4.1.2 Path / Reverse-path): `<>` or `''` is
 * the null reverse-path (address null); surrounding `<…>` is stripped; a
 * source route `@a,@b:` is checked for syntax and dropped (§3.3, appendix C).
 */
export function parsePath(
  input: string,
  opts?: ParseAddressOptions,
): ParseAddressResult | { ok: true; address: null } {
  let s = input;
  if (s.startsWith('<') || s.endsWith('>')) {
    if (!(s.startsWith('<') && s.endsWith('>') && s.length >= 2)) return fail('unbalanced angle brackets');
    s = s.slice(1, -1);
  }
  if (s === '') return { ok: true, address: null };
  if (s.startsWith('@')) {
    // A-d-l = At-domain *( "," At-domain ) ":"
    let i = 0;
    for (;;) {
      if (s[i] !== '@') return fail('invalid source route');
      let j = i + 1;
      if (s[j] === '[') {
        const close = s.indexOf(']', j);
        if (close < 0) return fail('invalid source route');
        j = close + 1;
      } else {
        while (j < s.length && s[j] !== ',' && s[j] !== ':') j++;
      }
      const hop = s.slice(i + 1, j);
      const hopOk = hop.startsWith('[')
        ? parseAddressLiteral(hop).ok
        : hostnameProblem(normalizeDomain(hop), opts?.allowUtf8 ?? true) === null;
      if (!hopOk) return fail(`invalid domain ${show(hop)} in source route`);
      if (s[j] === ',') {
        i = j + 1;
        continue;
      }
      if (s[j] === ':') {
        s = s.slice(j + 1);
        break;
      }
      return fail('invalid source route');
    }
  }
  return parseAddress(s, opts);
}

/** Writes an address back, quoting the local part when it is not a dot-atom. */
export function formatAddress(a: MailAddress): string {
  if (isDotAtom(a.local)) return `${a.local}@${a.domain}`;
  return `"${a.local.replace(/["\\]/g, '\\$&')}"@${a.domain}`;
}

/**
 * Splits a sub-address off the local part at the first `delimiter`
 * (`user+tag` → `user`, `tag`). An empty delimiter disables it; a local part
 * starting with the delimiter is not split.
 */
export function stripSubaddress(a: MailAddress, delimiter: string): { base: MailAddress; detail: string | null } {
  if (delimiter === '') return { base: a, detail: null };
  const i = a.local.indexOf(delimiter);
  if (i <= 0) return { base: a, detail: null };
  return {
    base: { local: a.local.slice(0, i), domain: a.domain },
    detail: a.local.slice(i + delimiter.length),
  };
}

/** The canonical lookup key: local part lower-cased (NFC) + '@' + normalised domain. */
export function addressKey(a: MailAddress): string {
  return `${a.local.normalize('NFC').toLowerCase()}@${normalizeDomain(a.domain)}`;
}

/** Parses an IP address (an IPv6 zone id `%eth0` is ignored). `bytes` has 4 or 16 entries. */
function parseIp(s: string): { bytes: number[]; mapped: boolean } | null {
  const zone = s.indexOf('%');
  if (zone >= 0 && (zone === s.length - 1 || !s.slice(0, zone).includes(':'))) return null;
  const ip = zone >= 0 ? s.slice(0, zone) : s;
  const v4 = parseIPv4(ip);
  if (v4) return { bytes: v4, mapped: false };
  const v6 = parseIPv6(ip);
  if (!v6) return null;
  return { bytes: v6, mapped: v6.slice(0, 12).every((b, i) => b === (i < 10 ? 0 : 0xff)) };
}

/**
 * True when `ip` lies in `cidr` (`addr/len`, or a single address), IPv4 or
 * IPv6. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address,
 * on either side: `::ffff:10.0.0.0/104` is `10.0.0.0/8`. Any other IPv6
 * CIDR (`::/0` included) matches IPv6 addresses only. Malformed input gives
 * false, never an exception.
 */
export function ipInCidr(ip: string, cidr: string): boolean {
  if (typeof ip !== 'string' || typeof cidr !== 'string') return false;
  const a = parseIp(ip);
  if (!a) return false;
  const slash = cidr.indexOf('/');
  const n = parseIp(slash >= 0 ? cidr.slice(0, slash) : cidr);
  if (!n) return false;
  let prefix = n.bytes.length * 8;
  if (slash >= 0) {
    const p = cidr.slice(slash + 1);
    if (!/^[0-9]{1,3}$/.test(p)) return false;
    prefix = Number(p);
    if (prefix > n.bytes.length * 8) return false;
  }
  let net = n.bytes;
  if (n.mapped && prefix >= 96) {
    net = net.slice(12);
    prefix -= 96;
  }
  const addr = a.mapped ? a.bytes.slice(12) : a.bytes;
  if (addr.length !== net.length) return false;
  let bits = prefix;
  for (let i = 0; bits > 0; i++) {
    const take = Math.min(8, bits);
    const mask = (0xff << (8 - take)) & 0xff;
    if ((addr[i]! & mask) !== (net[i]! & mask)) return false;
    bits -= take;
  }
  return true;
}

/** True for loopback addresses: 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
export function isLoopbackAddress(ip: string): boolean {
  return ipInCidr(ip, '127.0.0.0/8') || ipInCidr(ip, '::1/128');
}
