/**
 * Delivery status notifications (SPEC §smtp, §ops): the bounce and the delay
 * warning the outbound scheduler sends to a message's envelope sender, with
 * the null sender (`MAIL FROM:<>`), so that a DSN can never cause another.
 *
 * The message is a `multipart/report; report-type=delivery-status`
 * (RFC 6522) with three parts:
 *   1. text/plain — a human explanation, one entry per recipient;
 *   2. message/delivery-status (RFC 3464) — per-message fields, then one
 *      block per recipient;
 *   3. text/rfc822-headers — the original header block only, never the body
 *      (small DSNs, and no backscatter of the content).
 *
 * Choices:
 * - `shouldSendDsn` refuses only the null sender (`''`, `'<>'`), which is
 *   what RFC 5321 §4.5.5 / RFC 3461 require. MAILER-DAEMON@… and
 *   postmaster@… senders do get DSNs: they are real mailboxes, and a
 *   well-behaved MTA bounces to them with the null sender, so no loop.
 *   `buildDsn` throws for the null sender (never a bounce for a bounce).
 * - A mixed set of recipients (some `failed`, some `delayed`) goes into ONE
 *   report: RFC 3464 gives every recipient block its own Action. Its subject
 *   is the failure one; the text has a section per kind. Callers that prefer
 *   one DSN per kind just call `buildDsn` twice with the split lists.
 * - The whole report is 7-bit except the `To:` field when the sender's
 *   address itself is non-ASCII (RFC 6532; that sender can only be reached
 *   over SMTPUTF8 anyway). Non-ASCII recipients use the `utf-8` address type
 *   in its 7-bit `utf-8-addr-xtext` form (RFC 6533 §3); the human part is
 *   quoted-printable UTF-8 when it needs to be; an original header block with
 *   8-bit bytes (an SMTPUTF8 message) is `message/global-headers`
 *   (RFC 6533 §6.3) in quoted-printable, and one with a line over 998 octets
 *   is quoted-printable too.
 * - Diagnostic text must be US-ASCII in message/delivery-status: other
 *   characters become `?` there (the human part keeps them). A diagnostic
 *   without a `smtp;`/`x400;`/`X-…;` type gets `smtp;` when it starts with a
 *   reply code, else `X-Appliance;`.
 * - A status that is not an enhanced code (RFC 3463 syntax) becomes 5.0.0
 *   (failed) / 4.0.0 (delayed); its class is not checked (an expired message
 *   fails with its last transient code, e.g. 4.4.7).
 * - Dates are RFC 5322, in UTC (+0000). Lines are folded at spaces to 78
 *   columns where possible and never exceed 998 octets (a longer token is
 *   broken as a last resort). The original header block is cut, at a field
 *   boundary, after 64 KiB.
 */
import { isUtf8 } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import { domainToASCII } from 'node:url';

export interface DsnRecipient {
  /** The envelope recipient, with or without angle brackets. */
  readonly address: string;
  readonly action: 'failed' | 'delayed';
  /** An RFC 3463 enhanced status code, e.g. '5.1.1'. */
  readonly status: string;
  /** Host name or `[ip]` of the MTA that gave the diagnostic. */
  readonly remoteMta?: string;
  /** 'smtp; 550 5.1.1 <x>: user unknown' (a bare reply or text is typed for you). */
  readonly diagnostic?: string;
  readonly lastAttempt?: Date;
  /** For `delayed`: when the queue gives up. */
  readonly willRetryUntil?: Date;
  /** The RFC 3461 ORCPT value ('rfc822;bob@example.org'), when the client gave one. */
  readonly originalRecipient?: string;
}

export interface DsnInput {
  /** Our host name (Reporting-MTA, Message-ID domain, default From:). */
  readonly reportingMta: string;
  /** The envelope sender of the original: the DSN goes there. '' never gets a DSN. */
  readonly originalSender: string;
  readonly queueId: string;
  readonly arrival: Date;
  readonly recipients: readonly DsnRecipient[];
  /** The header block of the original as received (a body after the blank line is ignored). */
  readonly originalHeaders: Buffer;
  readonly now?: Date;
  /** The From: address; default MAILER-DAEMON@reportingMta. */
  readonly postmaster?: string;
  /** The RFC 3461 ENVID of the original, when the client gave one. */
  readonly envelopeId?: string;
  /** Fixes the Message-ID and the MIME boundary (tests); default random. */
  readonly id?: string;
}

export interface Dsn {
  /** Always the null sender. */
  readonly sender: '';
  /** The envelope recipient of the DSN: the original's sender, without brackets. */
  readonly recipient: string;
  /** The whole RFC 5322 message, CRLF line endings. */
  readonly message: Buffer;
}

const CRLF = '\r\n';
const FOLD_AT = 78;
/** A token longer than this is broken even though that inserts whitespace. */
const HARD_TOKEN = 900;
export const MAX_ORIGINAL_HEADER_BYTES = 64 * 1024;
const MAX_DIAGNOSTIC_CHARS = 2000;

export const SUBJECT_FAILED = 'Undelivered Mail Returned to Sender';
export const SUBJECT_DELAYED = 'Delayed Mail (still being retried)';

/** False only for the null sender ('' or '<>', spaces ignored). */
export function shouldSendDsn(originalSender: string): boolean {
  return bareAddress(originalSender) !== '';
}

export function buildDsn(input: DsnInput): Dsn {
  const recipient = bareAddress(input.originalSender);
  if (recipient === '') throw new Error('no DSN for the null sender');
  if (input.recipients.length === 0) throw new Error('a DSN needs at least one recipient');
  const mta = hostName(input.reportingMta);
  if (mta === '') throw new Error('a DSN needs the reporting MTA name');
  const now = validDate(input.now) ?? new Date();
  const id = messageIdLeft(input.id ?? `${now.getTime().toString(36)}.${randomBytes(8).toString('hex')}`);
  const postmaster = bareAddress(input.postmaster ?? '') || `MAILER-DAEMON@${mta}`;

  const recipients = input.recipients.map(normalizeRecipient);
  const anyFailed = recipients.some((r) => r.action === 'failed');

  const original = originalHeaderBlock(input.originalHeaders);
  const parts: Part[] = [
    textPart(humanText(mta, input.queueId, recipients, original.truncated)),
    { headers: ['Content-Description: Delivery report', 'Content-Type: message/delivery-status'], body: deliveryStatus(mta, input, recipients) },
    headersPart(original.bytes),
  ];

  const boundary = chooseBoundary(id, parts);
  const head = [
    `From: Mail Delivery System <${postmaster}>`,
    `To: <${recipient}>`,
    `Subject: ${anyFailed ? SUBJECT_FAILED : SUBJECT_DELAYED}`,
    `Date: ${rfc5322Date(now)}`,
    `Message-ID: <${id}@${mta}>`,
    'Auto-Submitted: auto-replied',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type=delivery-status;${CRLF}\tboundary="${boundary}"`,
  ].map(foldLine);

  let out = head.join(CRLF) + CRLF + CRLF + 'This is a MIME-encapsulated message.' + CRLF;
  for (const p of parts) {
    out += CRLF + `--${boundary}` + CRLF + p.headers.join(CRLF) + CRLF + CRLF + ensureTrailingCrlf(p.body);
  }
  out += CRLF + `--${boundary}--` + CRLF;
  return { sender: '', recipient, message: Buffer.from(out, 'utf8') };
}

// ---------------------------------------------------------------------------

interface Recipient {
  readonly address: string;
  readonly action: 'failed' | 'delayed';
  readonly status: string;
  readonly remoteMta?: string;
  readonly diagnosticType?: string;
  readonly diagnosticText?: string;
  readonly lastAttempt?: Date;
  readonly willRetryUntil?: Date;
  readonly originalRecipient?: string;
}

interface Part {
  readonly headers: readonly string[];
  readonly body: string;
}

const STATUS = /^[245]\.\d{1,3}\.\d{1,3}$/;
const DIAGNOSTIC_TYPE = /^\s*(smtp|x400|x-[a-z0-9-]+)\s*;\s*/i;

function normalizeRecipient(r: DsnRecipient): Recipient {
  const status = r.status.trim();
  const remote = r.remoteMta ? hostName(r.remoteMta) : '';
  const lastAttempt = validDate(r.lastAttempt);
  const until = r.action === 'delayed' ? validDate(r.willRetryUntil) : undefined;
  const orcpt = r.originalRecipient ? asciiText(r.originalRecipient) : '';
  let diagnosticType: string | undefined;
  let diagnosticText: string | undefined;
  if (r.diagnostic !== undefined && r.diagnostic.trim() !== '') {
    const m = DIAGNOSTIC_TYPE.exec(r.diagnostic);
    const text = m ? r.diagnostic.slice(m[0].length) : r.diagnostic;
    diagnosticType = m ? (m[1]!.toLowerCase() === 'smtp' ? 'smtp' : m[1]!) : /^\s*[245]\d\d(?:[ -]|$)/.test(text) ? 'smtp' : 'X-Appliance';
    diagnosticText = singleLine(text).slice(0, MAX_DIAGNOSTIC_CHARS);
  }
  return {
    address: bareAddress(r.address),
    action: r.action,
    status: STATUS.test(status) ? status : r.action === 'failed' ? '5.0.0' : '4.0.0',
    ...(remote ? { remoteMta: remote } : {}),
    ...(diagnosticType !== undefined && diagnosticText ? { diagnosticType, diagnosticText } : {}),
    ...(lastAttempt ? { lastAttempt } : {}),
    ...(until ? { willRetryUntil: until } : {}),
    ...(orcpt && /^[^;\s]+\s*;\s*\S/.test(orcpt) ? { originalRecipient: orcpt } : {}),
  };
}

/** Part 1: what a person reads. */
function humanText(mta: string, queueId: string, recipients: readonly Recipient[], truncated: boolean): string {
  const failed = recipients.filter((r) => r.action === 'failed');
  const delayed = recipients.filter((r) => r.action === 'delayed');
  const out: string[] = [`This is the mail system at host ${mta}.`, ''];
  if (failed.length > 0) {
    out.push(...wrap('Your message could not be delivered to one or more recipients. This is a permanent error: the mail system has given up on the following addresses.'), '');
    for (const r of failed) out.push(...wrap(recipientLine(r), '    '));
    out.push('');
  }
  if (delayed.length > 0) {
    const until = delayed.reduce<Date | undefined>((a, r) => (r.willRetryUntil && (!a || r.willRetryUntil > a) ? r.willRetryUntil : a), undefined);
    out.push(
      ...wrap(`Delivery of your message to the following addresses has been delayed. The mail system will keep trying${until ? ` until ${rfc5322Date(until)}` : ''}; you do not need to send the message again.`),
      '',
    );
    for (const r of delayed) out.push(...wrap(recipientLine(r), '    '));
    out.push('');
  }
  const q = singleLine(queueId);
  out.push(
    ...wrap(
      `A delivery report and the headers of your message${truncated ? ' (cut short: they were very long)' : ''} are attached${q ? `. Queue ID: ${q}.` : '.'}`,
    ),
  );
  return out.join(CRLF) + CRLF;
}

function recipientLine(r: Recipient): string {
  const who = `<${r.address}>:`;
  if (!r.diagnosticText) return `${who} ${r.action === 'failed' ? 'delivery failed' : 'delivery delayed'} (status ${r.status})`;
  if (r.diagnosticType === 'smtp' && r.remoteMta) return `${who} host ${r.remoteMta} said: ${r.diagnosticText}`;
  return `${who} ${r.diagnosticText}${r.remoteMta ? ` (remote host ${r.remoteMta})` : ''}`;
}

/** Part 2: the machine-readable report (RFC 3464 §2.2, §2.3; field order as in its ABNF). */
function deliveryStatus(mta: string, input: DsnInput, recipients: readonly Recipient[]): string {
  const blocks: string[] = [];
  const perMessage: string[] = [];
  const envid = input.envelopeId ? asciiText(input.envelopeId).replace(/\s/g, '').slice(0, 100) : '';
  if (envid) perMessage.push(`Original-Envelope-Id: ${envid}`);
  perMessage.push(`Reporting-MTA: dns; ${mta}`);
  const arrival = validDate(input.arrival);
  if (arrival) perMessage.push(`Arrival-Date: ${rfc5322Date(arrival)}`);
  const qid = asciiText(input.queueId).replace(/\s/g, '');
  if (qid) perMessage.push(`X-Queue-ID: ${qid}`);
  blocks.push(perMessage.map(foldLine).join(CRLF));

  for (const r of recipients) {
    const f: string[] = [];
    if (r.originalRecipient) f.push(`Original-Recipient: ${r.originalRecipient}`);
    f.push(`Final-Recipient: ${typedAddress(r.address)}`);
    f.push(`Action: ${r.action}`);
    f.push(`Status: ${r.status}`);
    if (r.remoteMta) f.push(`Remote-MTA: dns; ${r.remoteMta}`);
    if (r.diagnosticType && r.diagnosticText) f.push(`Diagnostic-Code: ${r.diagnosticType}; ${asciiText(r.diagnosticText)}`);
    if (r.lastAttempt) f.push(`Last-Attempt-Date: ${rfc5322Date(r.lastAttempt)}`);
    if (r.willRetryUntil) f.push(`Will-Retry-Until: ${rfc5322Date(r.willRetryUntil)}`);
    blocks.push(f.map(foldLine).join(CRLF));
  }
  return blocks.join(CRLF + CRLF) + CRLF;
}

/** `rfc822; addr` for ASCII, else RFC 6533 `utf-8; ` with the 7-bit utf-8-addr-xtext form. */
export function typedAddress(address: string): string {
  return isAscii(address) ? `rfc822; ${address}` : `utf-8; ${utf8AddrXtext(address)}`;
}

/** RFC 6533 §3: QCHAR as is, anything else as `\x{HEXPOINT}` (upper case, at least two digits). */
export function utf8AddrXtext(address: string): string {
  let out = '';
  for (const ch of address) {
    const cp = ch.codePointAt(0)!;
    const qchar = cp >= 0x21 && cp <= 0x7e && cp !== 0x2b && cp !== 0x3d && cp !== 0x5c;
    out += qchar ? ch : `\\x{${cp.toString(16).toUpperCase().padStart(2, '0')}}`;
  }
  return out;
}

/** Part 1 as a MIME part: us-ascii 7bit when it can be, else UTF-8 quoted-printable. */
function textPart(text: string): Part {
  if (isAscii(text)) return { headers: ['Content-Description: Notification', 'Content-Type: text/plain; charset=us-ascii'], body: text };
  return {
    headers: ['Content-Description: Notification', 'Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable'],
    body: quotedPrintable(Buffer.from(text, 'utf8')),
  };
}

/** Part 3: text/rfc822-headers as is when 7-bit safe, else quoted-printable (message/global-headers for UTF-8). */
function headersPart(bytes: Buffer): Part {
  const description = 'Content-Description: Undelivered Message Headers';
  const eightBit = bytes.some((b) => b >= 0x80);
  const text = bytes.toString('latin1');
  // originalHeaderBlock left only CRLF line ends; a lone CR or a NUL needs encoding.
  const plain = !eightBit && !/\0|\r(?!\n)/.test(text) && text.split(CRLF).every((l) => l.length <= 998);
  if (plain) return { headers: [description, 'Content-Type: text/rfc822-headers'], body: text };
  const type = eightBit && isUtf8(bytes) ? 'message/global-headers' : 'text/rfc822-headers';
  return { headers: [description, `Content-Type: ${type}`, 'Content-Transfer-Encoding: quoted-printable'], body: quotedPrintable(bytes) };
}

/** The header block only (up to the first empty line), CRLF line ends, cut at a field boundary past the limit. */
export function originalHeaderBlock(raw: Buffer): { readonly bytes: Buffer; readonly truncated: boolean } {
  let s = raw.toString('latin1');
  const end = /(?:^|\r?\n)\r?\n/.exec(s);
  if (end) s = s.slice(0, end.index);
  s = s.replace(/\r?\n/g, CRLF).replace(/(?:\r\n)+$/, '');
  let truncated = false;
  if (s.length > MAX_ORIGINAL_HEADER_BYTES) {
    truncated = true;
    const fields = s.split(/\r\n(?![ \t])/);
    let kept = '';
    for (const f of fields) {
      const next = kept ? kept + CRLF + f : f;
      if (next.length > MAX_ORIGINAL_HEADER_BYTES) break;
      kept = next;
    }
    s = kept;
  }
  return { bytes: Buffer.from(s === '' ? '' : s + CRLF, 'latin1'), truncated };
}

/** RFC 2045 §6.7 over bytes; CRLF in the input are hard line breaks; output lines ≤ 76. */
export function quotedPrintable(buf: Buffer): string {
  const lines: Buffer[] = [];
  let start = 0;
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] === 0x0d && buf[i + 1] === 0x0a) {
      lines.push(buf.subarray(start, i));
      start = i + 2;
      i++;
    }
  }
  const trailingBreak = start === buf.length && buf.length > 0;
  if (!trailingBreak) lines.push(buf.subarray(start));
  const out: string[] = [];
  for (const line of lines) {
    let cur = '';
    for (let i = 0; i < line.length; i++) {
      const b = line[i]!;
      const last = i === line.length - 1;
      const literal = (b >= 0x21 && b <= 0x7e && b !== 0x3d) || ((b === 0x20 || b === 0x09) && !last);
      const tok = literal ? String.fromCharCode(b) : `=${b.toString(16).toUpperCase().padStart(2, '0')}`;
      if (cur.length + tok.length > 75) {
        out.push(cur + '=');
        cur = '';
      }
      cur += tok;
    }
    out.push(cur);
  }
  return out.join(CRLF) + (trailingBreak ? CRLF : '');
}

/** A boundary that occurs in no part (`=_` cannot occur in quoted-printable output either). */
function chooseBoundary(id: string, parts: readonly Part[]): string {
  for (let n = 0; ; n++) {
    const b = `=_appliance-dsn-${createHash('sha256').update(`${id}\0${n}`).digest('hex').slice(0, 32)}`;
    if (parts.every((p) => !p.body.includes(b) && p.headers.every((h) => !h.includes(b)))) return b;
  }
}

// --- text helpers -----------------------------------------------------------

/** Fold an unfolded `Name: value` line at spaces to ≤ 78 columns; never a line over 998. */
export function foldLine(line: string): string {
  if (line.includes(CRLF)) return line; // already folded by hand
  if (line.length <= FOLD_AT) return line;
  const colon = line.indexOf(':');
  const name = line.slice(0, colon + 1);
  const words = line.slice(colon + 1).split(' ').filter((w) => w !== '').flatMap(chunk);
  const out: string[] = [];
  let cur = name;
  for (const w of words) {
    if (cur !== name && cur.length + 1 + w.length > FOLD_AT) {
      out.push(cur);
      cur = '';
    }
    cur += ' ' + w;
  }
  out.push(cur);
  return out.join(CRLF);
}

/** Wrap prose to 76 columns; continuation lines take `indent`. */
function wrap(text: string, indent = ''): string[] {
  const words = text.split(' ').filter((w) => w !== '').flatMap(chunk);
  const out: string[] = [];
  let cur = '';
  for (const w of words) {
    if (cur !== '' && cur.length + 1 + w.length > 76) {
      out.push(cur);
      cur = indent + w;
    } else {
      cur = cur === '' ? w : `${cur} ${w}`;
    }
  }
  if (cur !== '') out.push(cur);
  return out;
}

function chunk(word: string): string[] {
  if (word.length <= HARD_TOKEN) return [word];
  const out: string[] = [];
  for (let i = 0; i < word.length; i += HARD_TOKEN) out.push(word.slice(i, i + HARD_TOKEN));
  return out;
}

/** Line breaks and tabs to single spaces; other control characters dropped. */
function singleLine(s: string): string {
  return s.replace(/[\r\n\t]+/g, ' ').replace(/[\x00-\x1f\x7f-\x9f]/g, '').replace(/ {2,}/g, ' ').trim();
}

/** singleLine, then anything outside printable US-ASCII becomes '?'. */
function asciiText(s: string): string {
  return singleLine(s).replace(/[^\x20-\x7e]/gu, '?');
}

function isAscii(s: string): boolean {
  return /^[\x00-\x7f]*$/.test(s);
}

/** An envelope address without brackets, spaces at the ends or control characters. */
function bareAddress(s: string): string {
  let a = s.replace(/[\x00-\x1f\x7f]/g, '').trim();
  if (a.startsWith('<') && a.endsWith('>')) a = a.slice(1, -1).trim();
  return a;
}

/** A host name in A-label form, or an address literal `[…]` as given (printable ASCII only). */
function hostName(s: string): string {
  const h = s.trim().replace(/\.$/, '');
  if (h.startsWith('[')) return asciiText(h).replace(/\s/g, '');
  const ascii = isAscii(h) ? h : domainToASCII(h) || h;
  return asciiText(ascii).replace(/\s/g, '').toLowerCase();
}

/** A dot-atom-text usable left of the @ in a Message-ID. */
function messageIdLeft(s: string): string {
  const cleaned = s
    .replace(/[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]/g, '-')
    .replace(/\.{2,}/g, '.')
    .replace(/^\.+|\.+$/g, '')
    .slice(0, 200);
  return cleaned || 'dsn';
}

function validDate(d: Date | undefined): Date | undefined {
  return d instanceof Date && !Number.isNaN(d.getTime()) ? d : undefined;
}

function ensureTrailingCrlf(s: string): string {
  return s === '' || s.endsWith(CRLF) ? s : s + CRLF;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** RFC 5322 date-time in UTC: `Tue, 3 Mar 2026 14:05:09 +0000`. */
export function rfc5322Date(d: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`;
}
