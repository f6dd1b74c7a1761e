/**
 * A tiny DNS server for tests (PEERS.md: no DNS server is reachable here, so
 * anything that resolves is pointed at one on loopback). UDP only, on
 * 127.0.0.1 (or `::1`), answering from an in-memory zone. RFC 1035 wire
 * format: header, the question echoed byte for byte, answers with
 * uncompressed owner names (compression is optional for a server; the
 * parser still follows pointers in queries).
 *
 * Behaviour, as an authoritative server (AA set; RA also set, because the
 * code under test talks to it as its recursive resolver):
 *  - a name with records of the asked type: NOERROR with them;
 *  - a name that exists (own records, or a descendant: an empty
 *    non-terminal) without that type: NOERROR, no answers (NODATA);
 *  - a name with a CNAME (asked for another type): the CNAME, then the
 *    target's answer, chased inside the zone (≤ 8 links); a target outside
 *    the zone ends the chain with NXDOMAIN (RFC 6604);
 *  - anything else: NXDOMAIN.
 * Per-name switches (`fail`) answer SERVFAIL, NXDOMAIN or REFUSED, or drop
 * the query (the client times out), optionally for one record type only.
 *
 * EDNS: a query with an OPT record gets an OPT record back and up to its
 * payload size (≤ 4096); otherwise 512 bytes. A larger answer is sent with
 * TC and no records (no TCP listener here: keep test answers small). Opcodes
 * other than QUERY get NOTIMP; a query with other than one question FORMERR.
 *
 * TXT: a string is split into character-strings of ≤ 255 bytes (as DKIM
 * keys are published); an array gives the character-strings themselves,
 * each of which must be ≤ 255 bytes.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv4, isIPv6 } from 'node:net';

export type DnsRecord =
  | { readonly type: 'A'; readonly address: string; readonly ttl?: number }
  | { readonly type: 'AAAA'; readonly address: string; readonly ttl?: number }
  | { readonly type: 'MX'; readonly preference: number; readonly exchange: string; readonly ttl?: number }
  | { readonly type: 'CNAME'; readonly target: string; readonly ttl?: number }
  | { readonly type: 'PTR'; readonly target: string; readonly ttl?: number }
  | { readonly type: 'TXT'; readonly strings: string | readonly string[]; readonly ttl?: number };

export type DnsZone = Readonly<Record<string, readonly DnsRecord[]>>;

export type DnsFailMode = 'SERVFAIL' | 'NXDOMAIN' | 'REFUSED' | 'drop';
export type DnsType = DnsRecord['type'];

export interface DnsQueryLog {
  readonly name: string;
  readonly type: string;
}

export interface DnsServer {
  readonly host: string;
  readonly port: number;
  /** Every question received, in order (names lowercased, no trailing dot). */
  readonly queries: DnsQueryLog[];
  /** Replace a name's records; `null` removes the name. */
  set(name: string, records: readonly DnsRecord[] | null): void;
  /** Fail queries for `name` (of `type`, or of every type); `null` clears. */
  fail(name: string, mode: DnsFailMode | null, type?: DnsType): void;
  close(): Promise<void>;
}

const TYPE_CODE: Readonly<Record<DnsType, number>> = { A: 1, CNAME: 5, PTR: 12, MX: 15, TXT: 16, AAAA: 28 };
const TYPE_NAME = new Map<number, string>([...Object.entries(TYPE_CODE).map(([k, v]) => [v, k] as [number, string]), [2, 'NS'], [6, 'SOA'], [255, 'ANY']]);
const T_OPT = 41;
const T_ANY = 255;
const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
const MAX_CNAME_CHAIN = 8;

function canon(name: string): string {
  const n = name.toLowerCase();
  return n.endsWith('.') ? n.slice(0, -1) : n;
}

function encodeName(name: string): Buffer {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  if (n === '') return Buffer.from([0]);
  const parts: Buffer[] = [];
  for (const label of n.split('.')) {
    const b = Buffer.from(label, 'utf8');
    if (b.length === 0 || b.length > 63) throw new Error(`dns-server: bad label in ${JSON.stringify(name)}`);
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  const out = Buffer.concat(parts);
  if (out.length > 255) throw new Error(`dns-server: name too long: ${name}`);
  return out;
}

/** Reads a (possibly compressed) name at `off`; returns it and the offset after it in the original position. */
function readName(buf: Buffer, off: number): { name: string; end: number } {
  const labels: string[] = [];
  let end = -1;
  let jumps = 0;
  for (;;) {
    if (off >= buf.length) throw new Error('truncated name');
    const len = buf[off]!;
    if (len === 0) {
      if (end < 0) end = off + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (off + 1 >= buf.length || ++jumps > 16) throw new Error('bad pointer');
      if (end < 0) end = off + 2;
      off = ((len & 0x3f) << 8) | buf[off + 1]!;
      continue;
    }
    if ((len & 0xc0) !== 0 || off + 1 + len > buf.length) throw new Error('bad label');
    labels.push(buf.toString('latin1', off + 1, off + 1 + len));
    off += 1 + len;
  }
  return { name: labels.join('.'), end };
}

export function ipv6Bytes(address: string): Buffer {
  if (!isIPv6(address)) throw new Error(`dns-server: not an IPv6 address: ${address}`);
  let text = address.split('%')[0]!;
  const words: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  let tail: number[] = [];
  if (v4) {
    const o = v4[1]!.split('.').map(Number);
    tail = [(o[0]! << 8) | o[1]!, (o[2]! << 8) | o[3]!];
    text = text.slice(0, -v4[1]!.length);
    if (text.endsWith(':') && !text.endsWith('::')) text = text.slice(0, -1);
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((w) => parseInt(w, 16)));
  const h = parse(head);
  const r = rest === undefined ? [] : parse(rest);
  const fill = 8 - h.length - r.length - tail.length;
  words.push(...h, ...(rest === undefined ? [] : new Array<number>(fill).fill(0)), ...r, ...tail);
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

function txtStrings(strings: string | readonly string[]): Buffer[] {
  const out: Buffer[] = [];
  if (typeof strings === 'string') {
    const all = Buffer.from(strings, 'utf8');
    if (all.length === 0) out.push(all);
    for (let i = 0; i < all.length; i += 255) out.push(all.subarray(i, i + 255));
  } else {
    for (const s of strings) {
      const b = Buffer.from(s, 'utf8');
      if (b.length > 255) throw new Error(`dns-server: TXT character-string over 255 bytes (${b.length})`);
      out.push(b);
    }
  }
  return out.map((b) => Buffer.concat([Buffer.from([b.length]), b]));
}

function rdata(r: DnsRecord): Buffer {
  switch (r.type) {
    case 'A':
      if (!isIPv4(r.address)) throw new Error(`dns-server: not an IPv4 address: ${r.address}`);
      return Buffer.from(r.address.split('.').map(Number));
    case 'AAAA':
      return ipv6Bytes(r.address);
    case 'MX': {
      const p = Buffer.alloc(2);
      p.writeUInt16BE(r.preference);
      return Buffer.concat([p, encodeName(r.exchange)]);
    }
    case 'CNAME':
    case 'PTR':
      return encodeName(r.target);
    case 'TXT':
      return Buffer.concat(txtStrings(r.strings));
  }
}

function rr(owner: Buffer | string, r: DnsRecord): Buffer {
  const data = rdata(r);
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(TYPE_CODE[r.type], 0);
  fixed.writeUInt16BE(1, 2); // IN
  fixed.writeUInt32BE(r.ttl ?? 300, 4);
  fixed.writeUInt16BE(data.length, 8);
  return Buffer.concat([typeof owner === 'string' ? encodeName(owner) : owner, fixed, data]);
}

interface Parsed {
  readonly id: number;
  readonly flags: number;
  readonly qdcount: number;
  readonly question?: { readonly raw: Buffer; readonly name: string; readonly type: number; readonly cls: number };
  readonly edns?: number;
}

function parseQuery(msg: Buffer): Parsed | undefined {
  if (msg.length < 12) return undefined;
  const id = msg.readUInt16BE(0);
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000) return undefined; // a response: ignore
  const qdcount = msg.readUInt16BE(4);
  const ancount = msg.readUInt16BE(6);
  const nscount = msg.readUInt16BE(8);
  const arcount = msg.readUInt16BE(10);
  if (qdcount !== 1) return { id, flags, qdcount };
  try {
    const { name, end } = readName(msg, 12);
    if (end + 4 > msg.length) return { id, flags, qdcount };
    const question = { raw: msg.subarray(12, end + 4), name, type: msg.readUInt16BE(end), cls: msg.readUInt16BE(end + 2) };
    let off = end + 4;
    let edns: number | undefined;
    for (let i = 0; i < ancount + nscount + arcount; i++) {
      const n = readName(msg, off);
      off = n.end;
      if (off + 10 > msg.length) break;
      const type = msg.readUInt16BE(off);
      const cls = msg.readUInt16BE(off + 2);
      const len = msg.readUInt16BE(off + 8);
      if (type === T_OPT && i >= ancount + nscount) edns = Math.max(512, Math.min(cls, 4096));
      off += 10 + len;
    }
    return edns === undefined ? { id, flags, qdcount, question } : { id, flags, qdcount, question, edns };
  } catch {
    return { id, flags, qdcount };
  }
}

export async function startDnsServer(zone: DnsZone = {}, opts: { host?: string } = {}): Promise<DnsServer> {
  const host = opts.host ?? '127.0.0.1';
  const records = new Map<string, DnsRecord[]>();
  const failures = new Map<string, Map<string, DnsFailMode>>();
  const queries: DnsQueryLog[] = [];
  for (const [name, rs] of Object.entries(zone)) {
    for (const r of rs) rdata(r);
    records.set(canon(name), [...rs]);
  }

  const exists = (name: string): boolean => {
    if (records.has(name)) return true;
    const suffix = `.${name}`;
    for (const k of records.keys()) if (k.endsWith(suffix)) return true;
    return false;
  };
  const failureFor = (name: string, type: number): DnsFailMode | undefined => {
    const f = failures.get(name);
    return f?.get(TYPE_NAME.get(type) ?? String(type)) ?? f?.get('*');
  };

  /** The answer records and rcode for a question, following CNAMEs inside the zone. */
  const answer = (qname: string, qwire: Buffer, qtype: number): { rcode: number; answers: Buffer[] } | 'drop' => {
    const answers: Buffer[] = [];
    let name = canon(qname);
    let owner: Buffer | string = qwire; // the question's own bytes: its case, uncompressed
    for (let link = 0; ; link++) {
      const f = failureFor(name, qtype);
      if (f === 'drop') return 'drop';
      if (f) return { rcode: RCODE[f], answers };
      if (!exists(name)) return { rcode: RCODE.NXDOMAIN, answers };
      const here = records.get(name) ?? [];
      const cname = here.find((r) => r.type === 'CNAME');
      if (cname && qtype !== TYPE_CODE.CNAME && qtype !== T_ANY) {
        answers.push(rr(owner, cname));
        if (link >= MAX_CNAME_CHAIN) return { rcode: RCODE.SERVFAIL, answers: [] };
        owner = cname.target;
        name = canon(cname.target);
        continue;
      }
      for (const r of here) if (qtype === T_ANY || TYPE_CODE[r.type] === qtype) answers.push(rr(owner, r));
      return { rcode: RCODE.NOERROR, answers };
    }
  };

  const respond = (q: Parsed): Buffer | undefined => {
    const opcode = (q.flags >> 11) & 0xf;
    const rd = q.flags & 0x0100;
    let rcode: number = RCODE.NOERROR;
    let answers: Buffer[] = [];
    if (opcode !== 0) rcode = RCODE.NOTIMP;
    else if (!q.question) rcode = RCODE.FORMERR;
    else {
      queries.push({ name: canon(q.question.name), type: TYPE_NAME.get(q.question.type) ?? String(q.question.type) });
      if (q.question.cls !== 1 && q.question.cls !== 255) rcode = RCODE.REFUSED;
      else {
        const a = answer(q.question.name, q.question.raw.subarray(0, q.question.raw.length - 4), q.question.type);
        if (a === 'drop') return undefined;
        ({ rcode, answers } = a);
      }
    }
    const opt = q.edns === undefined ? [] : [Buffer.from([0, 0, T_OPT, 0x04, 0xd0, 0, 0, 0, 0, 0, 0])]; // root, OPT, 1232, ttl 0, rdlen 0
    const limit = q.edns ?? 512;
    const header = (ancount: number, tc: boolean): Buffer => {
      const h = Buffer.alloc(12);
      h.writeUInt16BE(q.id, 0);
      h.writeUInt16BE(0x8000 | (opcode << 11) | 0x0400 | (tc ? 0x0200 : 0) | rd | 0x0080 | rcode, 2);
      h.writeUInt16BE(q.question ? 1 : 0, 4);
      h.writeUInt16BE(ancount, 6);
      h.writeUInt16BE(opt.length, 10);
      return h;
    };
    const qsec = q.question ? [q.question.raw] : [];
    const full = Buffer.concat([header(answers.length, false), ...qsec, ...answers, ...opt]);
    if (full.length <= limit) return full;
    return Buffer.concat([header(0, true), ...qsec, ...opt]);
  };

  const socket: Socket = createSocket(isIPv6(host) ? 'udp6' : 'udp4');
  socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
    const q = parseQuery(msg);
    if (!q) return;
    let out: Buffer | undefined;
    try {
      out = respond(q);
    } catch {
      out = Buffer.alloc(12);
      out.writeUInt16BE(q.id, 0);
      out.writeUInt16BE(0x8000 | RCODE.SERVFAIL, 2);
    }
    if (out) socket.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
  socket.on('error', () => {});
  socket.unref(); // never what keeps a test process alive; close() still ends it
  const port = socket.address().port;
  let closed: Promise<void> | undefined;

  return {
    host,
    port,
    queries,
    set(name, rs) {
      if (rs === null) records.delete(canon(name));
      else {
        for (const r of rs) rdata(r); // validate now, not at query time
        records.set(canon(name), [...rs]);
      }
    },
    fail(name, mode, type) {
      const n = canon(name);
      const key = type ?? '*';
      const f = failures.get(n) ?? new Map<string, DnsFailMode>();
      if (mode === null) f.delete(key);
      else f.set(key, mode);
      if (f.size) failures.set(n, f);
      else failures.delete(n);
    },
    close() {
      closed ??= new Promise<void>((resolve) => socket.close(() => resolve()));
      return closed;
    },
  };
}
