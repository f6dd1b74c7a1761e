/**
 * DKIM signing of outgoing mail (`dkim sign domain <domains> selector S`,
 * RFC 6376; ed25519-sha256 per RFC 8463). The first `dkim sign` line whose
 * domain table holds the From: domain signs the message with d= that domain,
 * relaxed/relaxed, over the standard header set with From: oversigned (named
 * once more than it occurs, so no second From: can be added later).
 *
 * The signature is computed here with node:crypto rather than with mailauth's
 * dkimSign: mailauth only names header fields that are present in h=, so it
 * cannot oversign. The tests verify every signature with mailauth's verifier.
 *
 * Signing never fails delivery: a missing or unreadable key, a table that is
 * temporarily unavailable, or a key of an unusable type is logged (a key
 * problem once per domain) and the message goes out unsigned.
 */
import { createHash, createPrivateKey, createPublicKey, sign as cryptoSign, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { domainToASCII } from 'node:url';
import { isValidDomain, normalizeDomain } from '../core/address.ts';
import type { Config, DkimSign } from '../core/config/types.ts';
import type { Logger } from '../core/log.ts';
import type { TableSet } from '../core/tables/registry.ts';

export type DkimAlgorithm = DkimSign['algorithm'];

/** Header fields signed when present (lower-case); every `List-*` field is signed too. */
export const SIGNED_HEADERS: readonly string[] = [
  'from',
  'to',
  'cc',
  'subject',
  'date',
  'message-id',
  'reply-to',
  'in-reply-to',
  'references',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
];

/** At most this many entries of an enumerable domain table are checked for keys at load. */
const PREFLIGHT_LIMIT = 1000;

/**
 * Where the key of a `dkim sign` line is for a domain (give it in A-label
 * form): `key PATH` with %{domain} replaced (relative to the config's
 * directory), or DATA-DIR/dkim/DOMAIN.SELECTOR.key.
 */
export function dkimKeyPath(config: Pick<Config, 'path' | 'dataDir'>, line: Pick<DkimSign, 'selector' | 'keyPath'>, domain: string): string {
  if (line.keyPath) {
    const p = line.keyPath.replaceAll('%{domain}', domain);
    return isAbsolute(p) ? p : resolve(dirname(config.path), p);
  }
  return join(config.dataDir, 'dkim', `${domain}.${line.selector}.key`);
}

/** The DKIM key type of a key object, or null when DKIM has no algorithm for it. */
export function dkimKeyType(key: KeyObject): 'rsa' | 'ed25519' | null {
  const t = key.asymmetricKeyType;
  return t === 'rsa' || t === 'ed25519' ? t : null;
}

/**
 * The p= value of the DNS record for a key (private or public): for RSA the
 * DER SubjectPublicKeyInfo, for ed25519 the raw 32-byte public key (RFC 8463).
 */
export function dkimPublicKeyValue(key: KeyObject): { k: 'rsa' | 'ed25519'; p: string } {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const type = dkimKeyType(pub);
  if (type === 'rsa') return { k: 'rsa', p: pub.export({ type: 'spki', format: 'der' }).toString('base64') };
  if (type === 'ed25519') {
    const der = pub.export({ type: 'spki', format: 'der' });
    return { k: 'ed25519', p: der.subarray(der.length - 32).toString('base64') };
  }
  throw new Error(`a ${String(pub.asymmetricKeyType)} key cannot be used for DKIM (rsa or ed25519)`);
}

// ---------------------------------------------------------------- header parsing

interface HeaderField {
  /** Lower-case field name. */
  readonly name: string;
  /** The whole field as it is in the message (latin1), folds included, no final line break. */
  readonly raw: string;
}

/** Offset of the body (after the empty line), or -1 when the message has no empty line. */
function bodyStart(message: Buffer): number {
  if (message.length >= 2 && message[0] === 0x0d && message[1] === 0x0a) return 2;
  if (message.length >= 1 && message[0] === 0x0a) return 1;
  for (let i = message.indexOf(0x0a); i !== -1; i = message.indexOf(0x0a, i + 1)) {
    if (message[i + 1] === 0x0a) return i + 2;
    if (message[i + 1] === 0x0d && message[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

/** The header block of a message (or of a header block alone), without the empty line. */
function headerBlock(message: Buffer): Buffer {
  const start = bodyStart(message);
  return start === -1 ? message : message.subarray(0, start);
}

function parseHeaderFields(block: Buffer): HeaderField[] {
  const lines = block.toString('latin1').split(/\r?\n/);
  const fields: HeaderField[] = [];
  let current: string[] | null = null;
  const flush = () => {
    if (!current) return;
    const raw = current.join('\r\n');
    const colon = raw.indexOf(':');
    if (colon > 0) fields.push({ name: raw.slice(0, colon).replace(/\r\n/g, '').trim().toLowerCase(), raw });
    current = null;
  };
  for (const line of lines) {
    if (line === '') {
      flush();
      break;
    }
    if ((line[0] === ' ' || line[0] === '\t') && current) current.push(line);
    else {
      flush();
      current = [line];
    }
  }
  flush();
  return fields;
}

/**
 * The domain of the (first) address of the From: header of a header block
 * (a whole message is fine: parsing stops at the empty line), lower-case, or
 * null when there is no usable From:. Handles folding, display names (quoted
 * or encoded words), comments, angle addresses and groups.
 */
export function fromDomainOf(headers: Buffer): string | null {
  const field = parseHeaderFields(headerBlock(headers)).find((f) => f.name === 'from');
  if (!field) return null;
  const value = Buffer.from(field.raw.slice(field.raw.indexOf(':') + 1), 'latin1').toString('utf8').replace(/\r\n/g, '');
  const address = firstMailbox(value);
  if (address === null) return null;
  const at = address.lastIndexOf('@');
  if (at === -1) return null;
  const domain = normalizeDomain(address.slice(at + 1).replace(/[\s]+/g, ''));
  if (domain === '' || domain.startsWith('[') || !/^[^\s@<>()[\]\\,;:"]+$/.test(domain)) return null;
  return domain;
}

/** The address of the first mailbox of an address list (RFC 5322 §3.4), tolerant of common breakage. */
function firstMailbox(value: string): string | null {
  let plain = '';
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (c === '"') {
      // Quoted string: part of a display name or of a local part.
      let j = i + 1;
      let text = '';
      for (; j < value.length && value[j] !== '"'; j++) {
        if (value[j] === '\\') j++;
        text += value[j] ?? '';
      }
      plain += `"${text}"`;
      i = j;
    } else if (c === '(') {
      // Comment (nested, with quoted pairs): ignored.
      let depth = 1;
      let j = i + 1;
      for (; j < value.length && depth > 0; j++) {
        if (value[j] === '\\') j++;
        else if (value[j] === '(') depth++;
        else if (value[j] === ')') depth--;
      }
      i = j - 1;
    } else if (c === '<') {
      const end = value.indexOf('>', i + 1);
      const inside = (end === -1 ? value.slice(i + 1) : value.slice(i + 1, end)).trim();
      // An obsolete route (<@a,@b:user@host>) goes before the colon.
      const addr = inside.startsWith('@') && inside.includes(':') ? inside.slice(inside.indexOf(':') + 1) : inside;
      if (addr.includes('@')) return addr;
      plain = '';
      i = end === -1 ? value.length : end;
    } else if (c === ':') {
      // A group: what came before was its name.
      plain = '';
    } else if (c === ',' || c === ';') {
      if (plain.includes('@')) return plain.trim();
      plain = '';
    } else {
      plain += c;
    }
  }
  return plain.includes('@') ? plain.trim() : null;
}

// ---------------------------------------------------------------- canonicalization (RFC 6376 §3.4.2, §3.4.4)

/** Relaxed canonical form of one header field, without the CRLF (latin1 in, latin1 out). */
function relaxedHeader(raw: string): string {
  const colon = raw.indexOf(':');
  const name = raw.slice(0, colon).replace(/\r\n/g, '').trim().toLowerCase();
  const value = raw
    .slice(colon + 1)
    .replace(/\r\n/g, '')
    .replace(/[ \t]+/g, ' ')
    .replace(/^ | $/g, '');
  return `${name}:${value}`;
}

function relaxedBody(body: Buffer): Buffer {
  const lines = body.toString('latin1').split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) lines[i] = lines[i]!.replace(/[ \t]+/g, ' ').replace(/ $/, '');
  let n = lines.length;
  while (n > 0 && lines[n - 1] === '') n--;
  if (n === 0) return Buffer.alloc(0);
  lines.length = n;
  return Buffer.from(`${lines.join('\r\n')}\r\n`, 'latin1');
}

/** Chooses the header field instances that h= names, each from the bottom up, as a verifier does. */
function selectHeaders(fields: readonly HeaderField[], names: readonly string[]): HeaderField[] {
  const used = new Set<number>();
  const out: HeaderField[] = [];
  for (const name of names) {
    for (let i = fields.length - 1; i >= 0; i--) {
      if (!used.has(i) && fields[i]!.name === name) {
        used.add(i);
        out.push(fields[i]!);
        break;
      }
    }
    // A name with no instance left (the oversigned From) contributes nothing.
  }
  return out;
}

function isSigned(name: string): boolean {
  return SIGNED_HEADERS.includes(name) || name.startsWith('list-');
}

/** h= folded after colons so no line grows past about 76 characters. */
function foldList(tag: string, items: readonly string[]): string {
  let out = `${tag}=`;
  let lineLength = 1 + out.length;
  for (const [i, item] of items.entries()) {
    const piece = i === 0 ? item : `:${item}`;
    if (lineLength + piece.length > 76 && i > 0) {
      out += `:\r\n\t${item}`;
      lineLength = 1 + item.length;
    } else {
      out += piece;
      lineLength += piece.length;
    }
  }
  return out;
}

function foldBase64(b64: string): string {
  const chunks: string[] = [];
  for (let i = 0; i < b64.length; i += 72) chunks.push(b64.slice(i, i + 72));
  return chunks.join('\r\n\t');
}

export interface DkimSignParams {
  readonly domain: string;
  readonly selector: string;
  readonly key: KeyObject;
  /** Seconds since the epoch for t= (default: now). */
  readonly time?: number;
}

/**
 * Signs a message: the DKIM-Signature header field to prepend (ending CRLF).
 * The algorithm follows the key (rsa-sha256 or ed25519-sha256). Throws when
 * the message has no From: or the key is of another type.
 */
export function dkimSignMessage(message: Buffer, params: DkimSignParams): string {
  const type = dkimKeyType(params.key);
  if (!type) throw new Error(`a ${String(params.key.asymmetricKeyType)} key cannot sign DKIM (rsa or ed25519)`);
  const start = bodyStart(message);
  const fields = parseHeaderFields(start === -1 ? message : message.subarray(0, start));
  const body = start === -1 ? Buffer.alloc(0) : message.subarray(start);
  const names = fields.filter((f) => isSigned(f.name)).map((f) => f.name);
  if (!names.includes('from')) throw new Error('the message has no From: header');
  names.push('from');

  const bh = createHash('sha256').update(relaxedBody(body)).digest('base64');
  const algorithm = type === 'rsa' ? 'rsa-sha256' : 'ed25519-sha256';
  const d = domainToASCII(params.domain) || params.domain;
  const t = params.time ?? Math.floor(Date.now() / 1000);
  const unsigned =
    `DKIM-Signature: v=1; a=${algorithm}; c=relaxed/relaxed; d=${d};\r\n` +
    `\ts=${params.selector}; t=${t};\r\n` +
    `\t${foldList('h', names)};\r\n` +
    `\tbh=${bh};\r\n` +
    `\tb=`;
  const canonical = selectHeaders(fields, names).map((f) => `${relaxedHeader(f.raw)}\r\n`).join('') + relaxedHeader(unsigned);
  const data = Buffer.from(canonical, 'latin1');
  const signature = type === 'rsa' ? cryptoSign('sha256', data, params.key) : cryptoSign(null, createHash('sha256').update(data).digest(), params.key);
  return `${unsigned}${foldBase64(signature.toString('base64'))}\r\n`;
}

// ---------------------------------------------------------------- the signer

interface LoadedKey {
  readonly key: KeyObject;
  readonly type: 'rsa' | 'ed25519';
}

export class DkimSigner {
  private readonly config: Pick<Config, 'path' | 'dataDir' | 'dkim'>;
  private readonly tables: TableSet;
  private readonly log: Logger;
  private readonly keys = new Map<string, LoadedKey>();
  /** Domains whose key problem was logged already. */
  private readonly reported = new Set<string>();

  private constructor(config: Pick<Config, 'path' | 'dataDir' | 'dkim'>, tables: TableSet, log: Logger) {
    this.config = config;
    this.tables = tables;
    this.log = log;
  }

  /**
   * A signer for the config's `dkim sign` lines. Reads the keys of the
   * domains it can enumerate now, so a missing key shows in the log at start.
   */
  static async load(config: Pick<Config, 'path' | 'dataDir' | 'dkim'>, tables: TableSet, log: Logger): Promise<DkimSigner> {
    const signer = new DkimSigner(config, tables, log.child({ component: 'dkim' }));
    await signer.preflight();
    return signer;
  }

  /** True when the config has any `dkim sign` line. */
  get enabled(): boolean {
    return this.config.dkim.length > 0;
  }

  /**
   * The DKIM-Signature header to prepend to a message whose From: domain is
   * senderDomain, or null when no `dkim sign` line covers the domain or its
   * key cannot be used (logged). Never throws.
   */
  async sign(message: Buffer, senderDomain: string): Promise<{ header: string | null }> {
    if (this.config.dkim.length === 0) return { header: null };
    const domain = normalizeDomain(senderDomain);
    if (!isValidDomain(domain)) return { header: null };
    const line = await this.lineFor(domain);
    if (!line) return { header: null };
    const key = await this.keyFor(line, domain);
    if (!key) return { header: null };
    try {
      return { header: dkimSignMessage(message, { domain, selector: line.selector, key: key.key }) };
    } catch (err) {
      this.log.warn({ domain, selector: line.selector, err: (err as Error).message }, 'DKIM signing failed; the message goes out unsigned');
      return { header: null };
    }
  }

  /** The first `dkim sign` line whose domain table holds the domain. */
  private async lineFor(domain: string): Promise<DkimSign | null> {
    for (const line of this.config.dkim) {
      const table = this.tables.get(line.domains.name);
      if (!table) continue;
      const r = await table.lookup('domain', domain).catch((err: unknown) => ({ kind: 'tempfail' as const, error: err as Error }));
      if (r.kind === 'found') return line;
      if (r.kind === 'tempfail') {
        this.log.warn({ domain, table: line.domains.name, err: r.error.message }, 'DKIM: domain table lookup failed temporarily');
      }
    }
    return null;
  }

  private async keyFor(line: DkimSign, domain: string): Promise<LoadedKey | null> {
    const path = dkimKeyPath(this.config, line, domainToASCII(domain) || domain);
    const cached = this.keys.get(path);
    if (cached) return cached;
    let loaded: LoadedKey;
    try {
      const key = createPrivateKey(await readFile(path));
      const type = dkimKeyType(key);
      if (!type) throw new Error(`a ${String(key.asymmetricKeyType)} key cannot sign DKIM (rsa or ed25519)`);
      loaded = { key, type };
    } catch (err) {
      if (!this.reported.has(domain)) {
        this.reported.add(domain);
        const e = err as NodeJS.ErrnoException;
        const reason = e.code === 'ENOENT' ? 'no such file' : e.message;
        this.log.error(
          { domain, selector: line.selector, path, err: reason },
          `DKIM key for ${domain} unusable (${reason}); mail from ${domain} goes out unsigned — create it with: appliance dkim keygen ${domain} --selector ${line.selector}`,
        );
      }
      return null;
    }
    const wanted = line.algorithm === 'ed25519-sha256' ? 'ed25519' : 'rsa';
    if (loaded.type !== wanted && !this.reported.has(`${domain} type`)) {
      this.reported.add(`${domain} type`);
      this.log.warn({ domain, selector: line.selector, path }, `DKIM key ${path} is ${loaded.type}, the config says ${line.algorithm}; signing with ${loaded.type}`);
    }
    this.keys.set(path, loaded);
    return loaded;
  }

  private async preflight(): Promise<void> {
    for (const line of this.config.dkim) {
      const table = this.tables.get(line.domains.name);
      if (!table?.entries) continue;
      let n = 0;
      try {
        for await (const e of table.entries()) {
          if (++n > PREFLIGHT_LIMIT) break;
          const domain = normalizeDomain(e.key);
          if (domain.startsWith('*.') || !isValidDomain(domain)) continue;
          if ((await this.lineFor(domain)) === line) await this.keyFor(line, domain);
        }
      } catch (err) {
        this.log.warn({ table: line.domains.name, err: (err as Error).message }, 'DKIM: cannot list the domain table');
      }
    }
  }
}
