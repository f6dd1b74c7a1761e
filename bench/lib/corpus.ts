/**
 * A realistic, reproducible mailbox for IMAP benchmarks: plain-text notes,
 * multipart/alternative newsletters, replies with quoted text, messages with
 * a base64 attachment and a few forwarded messages (message/rfc822), UTF-8
 * and encoded-word subjects, 1 KiB to ~120 KiB with most under 8 KiB (the
 * average lands near 4 KiB, like the 10,000 messages / 38 MB of the issue's
 * Dovecot figures). Written straight into a Maildir's `cur/` (or `new/`) with
 * Maildir names (`time.Mseq.host,S=size:2,FLAGS`), mtime = the Date header,
 * as delivery would have left them; a seed makes the same tree every time.
 */
import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Mulberry32: small, fast, good enough to pick words. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = (
  'the of and to in is you that it he was for on are as with his they at be this have from or one had by word but not what all were we when your ' +
  'can said there use an each which she do how their if will up other about out many then them these so some her would make like him into time has ' +
  'look two more write go see number no way could people my than first water been call who oil its now find long down day did get come made may part ' +
  'meeting invoice server backup release schedule garden kernel budget report draft review travel football concert weather recipe library station'
).split(' ');
const NAMES = ['Alice Martin', 'Bob Dupont', 'Chloé Bernard', 'David Petit', 'Émile Durand', 'Fatima Leroy', 'Gabriel Moreau', 'Hugo Simon', 'Inès Laurent', 'Jules Michel'];
const DOMAINS = ['example.org', 'example.net', 'labomedia.example', 'radio.example', 'lists.example.com'];

export interface CorpusOptions {
  readonly count: number;
  readonly seed?: number;
  /** Receiving address. */
  readonly to?: string;
  /** Fraction put in `new/` (unseen, not yet moved to `cur/`), default 0.05. */
  readonly newFraction?: number;
}

export interface CorpusStats {
  readonly count: number;
  readonly bytes: number;
  /** A word that appears in the Subject of about 1% of the messages. */
  readonly rareSubjectWord: string;
}

/** Writes `count` messages into the Maildir at `maildir` (creating cur/ new/ tmp/). */
export function writeCorpus(maildir: string, o: CorpusOptions): CorpusStats {
  for (const sub of ['cur', 'new', 'tmp']) mkdirSync(join(maildir, sub), { recursive: true });
  const rnd = prng(o.seed ?? 20261122);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const words = (n: number): string => Array.from({ length: n }, () => pick(WORDS)).join(' ');
  const paragraph = (): string => {
    const lines: string[] = [];
    let line = '';
    for (const w of words(20 + Math.floor(rnd() * 80)).split(' ')) {
      if (line.length + w.length > 72) {
        lines.push(line);
        line = w;
      } else line = line ? `${line} ${w}` : w;
    }
    lines.push(line);
    return lines.join('\r\n');
  };
  const text = (paras: number): string => Array.from({ length: paras }, paragraph).join('\r\n\r\n');
  const addr = (name: string): string => `${name.split(' ')[0]!.normalize('NFD').replace(/[^A-Za-z]/g, '').toLowerCase()}@${pick(DOMAINS)}`;
  const mailbox = (name: string): string => (/^[\x20-\x7e]*$/.test(name) ? `"${name}" <${addr(name)}>` : `=?UTF-8?B?${Buffer.from(name).toString('base64')}?= <${addr(name)}>`);
  const to = o.to ?? 'user@example.test';
  const start = Date.UTC(2025, 0, 1);
  let bytes = 0;
  let t = start;
  for (let i = 0; i < o.count; i++) {
    t += Math.floor(rnd() * 3_600_000);
    const date = new Date(t);
    const from = pick(NAMES);
    const rare = i % 100 === 37;
    let subject = `${rare ? 'zanzibar ' : ''}${words(3 + Math.floor(rnd() * 6))}`;
    if (rnd() < 0.1) subject = `=?UTF-8?Q?${encodeQ(`Réunion ${subject}`)}?=`;
    const msgId = `<${i}.${t.toString(36)}@${pick(DOMAINS)}>`;
    const headers = [
      `Return-Path: <${addr(from)}>`,
      `Received: from mx.${pick(DOMAINS)} (mx [192.0.2.${i % 250}]) by mail.example.test with ESMTPS id ${i.toString(36)}; ${date.toUTCString().replace('GMT', '+0000')}`,
      `Date: ${date.toUTCString().replace('GMT', '+0000')}`,
      `From: ${mailbox(from)}`,
      `To: ${to}`,
      ...(rnd() < 0.3 ? [`Cc: ${mailbox(pick(NAMES))}, ${mailbox(pick(NAMES))}`] : []),
      `Subject: ${subject}`,
      `Message-ID: ${msgId}`,
      ...(rnd() < 0.3 ? [`In-Reply-To: <${Math.max(0, i - 1)}.ref@${pick(DOMAINS)}>`] : []),
      'MIME-Version: 1.0',
    ];
    const kind = rnd();
    let body: string;
    if (kind < 0.55) {
      headers.push('Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: 8bit');
      body = text(1 + Math.floor(rnd() * 6));
    } else if (kind < 0.85) {
      const b = `alt-${i}`;
      const plain = text(2 + Math.floor(rnd() * 6));
      headers.push(`Content-Type: multipart/alternative; boundary="${b}"`);
      body = [
        `--${b}`,
        'Content-Type: text/plain; charset=utf-8',
        '',
        plain,
        `--${b}`,
        'Content-Type: text/html; charset=utf-8',
        '',
        `<html><body><p>${plain.replace(/\r\n\r\n/g, '</p><p>')}</p></body></html>`,
        `--${b}--`,
        '',
      ].join('\r\n');
    } else if (kind < 0.97) {
      const b = `mixed-${i}`;
      const attachment = Buffer.alloc(1024 + Math.floor(rnd() * rnd() * 40_000));
      for (let k = 0; k < attachment.length; k++) attachment[k] = Math.floor(rnd() * 256);
      headers.push(`Content-Type: multipart/mixed; boundary="${b}"`);
      body = [
        `--${b}`,
        'Content-Type: text/plain; charset=utf-8',
        '',
        text(1 + Math.floor(rnd() * 3)),
        `--${b}`,
        `Content-Type: application/pdf; name="report-${i}.pdf"`,
        `Content-Disposition: attachment; filename="report-${i}.pdf"`,
        'Content-Transfer-Encoding: base64',
        '',
        attachment.toString('base64').replace(/.{76}/g, '$&\r\n'),
        `--${b}--`,
        '',
      ].join('\r\n');
    } else {
      const b = `fwd-${i}`;
      headers.push(`Content-Type: multipart/mixed; boundary="${b}"`);
      body = [
        `--${b}`,
        'Content-Type: text/plain; charset=utf-8',
        '',
        'Forwarded message below.',
        `--${b}`,
        'Content-Type: message/rfc822',
        '',
        `From: ${mailbox(pick(NAMES))}`,
        `To: ${to}`,
        `Subject: ${words(4)}`,
        `Date: ${new Date(t - 86_400_000).toUTCString().replace('GMT', '+0000')}`,
        'Content-Type: text/plain; charset=utf-8',
        '',
        text(2),
        `--${b}--`,
        '',
      ].join('\r\n');
    }
    const message = Buffer.from(`${headers.join('\r\n')}\r\n\r\n${body}\r\n`);
    bytes += message.length;
    const isNew = rnd() < (o.newFraction ?? 0.05);
    // Never F: the benchmark's STORE +FLAGS (\Flagged) on all is undone with -FLAGS, leaving the tree as made.
    const flags = isNew ? '' : `${rnd() < 0.2 ? 'R' : ''}S`;
    const base = `${Math.floor(t / 1000)}.M${i}P1.bench,S=${message.length}`;
    const path = isNew ? join(maildir, 'new', base) : join(maildir, 'cur', `${base}:2,${flags}`);
    writeFileSync(path, message);
    utimesSync(path, date, date);
  }
  return { count: o.count, bytes, rareSubjectWord: 'zanzibar' };
}

function encodeQ(s: string): string {
  return [...Buffer.from(s)].map((b) => (b === 0x20 ? '_' : b >= 0x30 && b <= 0x7a && b !== 0x3d && b !== 0x3f && b !== 0x5f ? String.fromCharCode(b) : `=${b.toString(16).toUpperCase().padStart(2, '0')}`)).join('');
}
