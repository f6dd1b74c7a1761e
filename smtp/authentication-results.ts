/**
 * SPF, DKIM and DMARC (and ARC) of mail from outside, verified with
 * `mailauth` and recorded in an `Authentication-Results:` header (RFC 8601)
 * plus `Received-SPF:`, which the delivered copy carries on top — what
 * OpenDKIM + OpenDMARC + policyd-spf add to a Postfix. The verdicts are
 * recorded, not enforced: nothing is refused on them (a DMARC `p=reject` is
 * a filter's decision, and there is no filter yet).
 *
 * Only unauthenticated sessions are verified (a user's own submission has
 * nothing to prove). `Authentication-Results:` fields already in the message
 * that claim our authserv-id are removed (RFC 8601 §5), so a sender cannot
 * forge our verdict; others' are left alone.
 *
 * DNS is cached briefly in-process (answers for a minute, negatives for
 * half of that, failures never) and bounded: each query gives up after a few seconds and the whole
 * verification after VERIFY_BUDGET_MS, after which every lookup fails at once
 * and the verdicts read `temperror` — the 250 is never held longer than that.
 */
import { Resolver } from 'node:dns/promises';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { authenticate, type AuthenticateResult } from 'mailauth';
import type { Config } from '../core/config/types.ts';
import { MAX_HEADER_BYTES, headerEnd } from './masquerade.ts';

/** The longest a message's verification may take, DNS included. */
export const VERIFY_BUDGET_MS = 10_000;
const QUERY_TIMEOUT_MS = 3_000;

export interface VerifyFacts {
  /** The client's address. */
  readonly ip: string;
  /** What it said in EHLO/HELO. */
  readonly helo: string;
  /** MAIL FROM, '' for the null sender. */
  readonly sender: string;
  /** Our authserv-id: the hostname the listener answers as. */
  readonly mta: string;
}

export interface Verdicts {
  readonly spf: string;
  readonly dkim: string;
  readonly dmarc: string;
  readonly arc: string;
}

export interface Verification {
  /** Header lines to prepend (CRLF line ends, ending with CRLF). */
  readonly headers: string;
  readonly verdicts: Verdicts;
}

type DnsLookup = (name: string, rrtype: string) => Promise<unknown>;

/** One DNS client per resolver setting (a reload that changes `resolver` gets a new one). */
const resolvers = new WeakMap<NonNullable<Config['resolver']> | object, DnsLookup>();
const SYSTEM = {};

function dnsLookup(config: Config): DnsLookup {
  const key = config.resolver ?? SYSTEM;
  let fn = resolvers.get(key);
  if (!fn) {
    const r = new Resolver({ timeout: QUERY_TIMEOUT_MS, tries: 1 });
    if (config.resolver) {
      const { host, port } = config.resolver;
      r.setServers([host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`]);
    }
    fn = cached((name, rrtype) => r.resolve(name, rrtype as 'TXT') as Promise<unknown>);
    resolvers.set(key, fn);
  }
  return fn;
}

/** Answers kept this long: senders repeat (a mailing list, a busy domain) and c-ares keeps nothing. */
const ANSWER_TTL_MS = 60_000;
/** "No such name" / "no such record" kept this long (RFC 2308 negative caching, bounded). */
const NEGATIVE_TTL_MS = 30_000;
const CACHE_ENTRIES = 10_000;

/**
 * A small in-process cache in front of the resolver: found answers and
 * definite negatives (ENOTFOUND, ENODATA) for a minute at most; failures
 * (timeouts, refused) are never kept. The oldest entry goes first when full.
 */
function cached(lookup: DnsLookup): DnsLookup {
  const entries = new Map<string, { expires: number; answer: Promise<unknown> }>();
  return (name, rrtype) => {
    const key = `${rrtype} ${name.toLowerCase()}`;
    const now = Date.now();
    const hit = entries.get(key);
    // Each caller gets its own copy: nothing mailauth does to an answer can reach the next message.
    if (hit && hit.expires > now) return hit.answer.then((a) => structuredClone(a));
    if (hit) entries.delete(key);
    const answer = lookup(name, rrtype);
    const entry = { expires: now + ANSWER_TTL_MS, answer };
    entries.set(key, entry);
    if (entries.size > CACHE_ENTRIES) entries.delete(entries.keys().next().value!);
    answer.catch((err: { code?: string }) => {
      if (err.code === 'ENOTFOUND' || err.code === 'ENODATA') entry.expires = Math.min(entry.expires, Date.now() + NEGATIVE_TTL_MS);
      else if (entries.get(key) === entry) entries.delete(key);
    });
    return answer.then((a) => structuredClone(a));
  };
}

/** The lookup function for one message: fails fast (ETIMEOUT) once the budget is spent. */
function budgeted(lookup: DnsLookup, budgetMs: number): DnsLookup {
  const deadline = Date.now() + budgetMs;
  return (name, rrtype) => {
    const left = deadline - Date.now();
    if (left <= 0) return Promise.reject(Object.assign(new Error(`DNS budget of the message spent (${name} ${rrtype})`), { code: 'ETIMEOUT' }));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error(`DNS query timed out (${name} ${rrtype})`), { code: 'ETIMEOUT' })), left);
    });
    return Promise.race([lookup(name, rrtype), timeout]).finally(() => clearTimeout(timer));
  };
}

export async function verifyMessage(message: Readable, facts: VerifyFacts, config: Config, budgetMs = VERIFY_BUDGET_MS): Promise<Verification> {
  // RFC 7208 §2.4: with a null reverse-path the identity checked is postmaster@HELO.
  const sender = facts.sender !== '' ? facts.sender : `postmaster@${facts.helo}`;
  const result: AuthenticateResult = await authenticate(await headerOrWhole(message), {
    ip: facts.ip,
    helo: facts.helo,
    sender,
    mta: facts.mta,
    resolver: budgeted(dnsLookup(config), budgetMs) as never,
    disableBimi: true,
  });
  return { headers: normaliseEol(result.headers), verdicts: verdictsOf(result) };
}

/**
 * Without a DKIM-Signature or ARC field nothing needs the body (SPF needs
 * the envelope, DMARC the From field): then only the header block is read
 * and parsed, which keeps a large unsigned message as cheap as a small one.
 * Otherwise the whole message, as received.
 */
async function headerOrWhole(message: Readable): Promise<Buffer | Readable> {
  const it = message[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  let seen: Buffer = Buffer.alloc(0);
  for (;;) {
    const r = await it.next();
    if (r.done) return seen;
    seen = seen.length === 0 ? r.value : Buffer.concat([seen, r.value]);
    const end = headerEnd(seen);
    if (end === -1 && seen.length <= MAX_HEADER_BYTES) continue;
    if (end !== -1 && end <= MAX_HEADER_BYTES && !SIGNED.test(seen.subarray(0, end).toString('latin1'))) {
      message.destroy();
      return Buffer.concat([seen.subarray(0, end), CRLF]);
    }
    const first = seen;
    return Readable.from(
      (async function* () {
        yield first;
        for (let n = await it.next(); !n.done; n = await it.next()) yield n.value;
      })(),
    );
  }
}

const SIGNED = /^(?:dkim-signature|arc-seal|arc-message-signature|arc-authentication-results)[ \t]*:/im;
const CRLF = Buffer.from('\r\n');

function verdictsOf(r: AuthenticateResult): Verdicts {
  const dkim = r.dkim.results?.length ? r.dkim.results.map((d) => d.status?.result ?? 'none').join(',') : 'none';
  return {
    spf: r.spf ? (r.spf.status?.result ?? 'none') : 'none',
    dkim,
    dmarc: r.dmarc ? (r.dmarc.status?.result ?? 'none') : 'none',
    arc: r.arc ? (r.arc.status?.result ?? 'none') : 'none',
  };
}

function normaliseEol(headers: string): string {
  const text = headers.replace(/\r?\n/g, '\r\n');
  return text === '' || text.endsWith('\r\n') ? text : `${text}\r\n`;
}

/**
 * Drops `Authentication-Results:` fields whose authserv-id is ours from the
 * message's header block (held up to MAX_HEADER_BYTES); the body passes
 * through untouched.
 */
export class ForgedResultsFilter extends Transform {
  private readonly authservId: string;
  private head: Buffer[] = [];
  private headBytes = 0;
  private passing = false;
  removed = 0;

  constructor(authservId: string) {
    super();
    this.authservId = authservId.toLowerCase();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.passing) return done(null, chunk);
    this.head.push(chunk);
    this.headBytes += chunk.length;
    const all = this.head.length === 1 ? this.head[0]! : Buffer.concat(this.head);
    this.head = [all];
    const end = headerEnd(all);
    if (end === -1 && this.headBytes <= MAX_HEADER_BYTES) return done();
    this.passing = true;
    this.head = [];
    if (end === -1 || end > MAX_HEADER_BYTES) return done(null, all);
    this.push(this.withoutForged(all.subarray(0, end)));
    done(null, all.subarray(end));
  }

  override _flush(done: TransformCallback): void {
    if (!this.passing && this.headBytes > 0) this.push(this.withoutForged(Buffer.concat(this.head)));
    done();
  }

  private withoutForged(block: Buffer): Buffer {
    const text = block.toString('latin1');
    const fields = text.match(/[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*(?:\r?\n)?/g)?.filter((f) => f !== '') ?? [];
    const kept = fields.filter((field) => {
      const m = /^authentication-results\s*:\s*("?)([^\s;"]+)\1/i.exec(field);
      if (!m || m[2]!.toLowerCase() !== this.authservId) return true;
      this.removed++;
      return false;
    });
    return this.removed === 0 ? block : Buffer.from(kept.join(''), 'latin1');
  }
}
