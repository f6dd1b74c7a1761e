/**
 * Where outbound mail for a domain goes (SPEC §smtp "per recipient domain,
 * MX lookup (then A/AAAA fallback, null MX honoured)"; RFC 5321 §5.1,
 * RFC 7505). Nothing is cached here: the scheduler may cache per run.
 *
 * Order of work for `resolve(domain)`:
 *  1. Normalise: lowercase, one trailing dot dropped, U-labels to A-labels
 *     (SMTPUTF8 domains; `node:url` domainToASCII). A name that is not a
 *     valid DNS name (empty label, label > 63, name > 253 octets) is a
 *     permanent `nxdomain`.
 *  2. A domain literal resolves to itself without DNS: `[192.0.2.1]`,
 *     `[IPv6:2001:db8::1]` → one host, preference 0, `implicit: true` (no MX
 *     was asked). The host is the bare address. Any other literal (bad
 *     address, other tag) is a permanent `nxdomain`.
 *  3. MX query. Records with the root as exchange ("0 ." in the zone, "" from
 *     c-ares): if they are all there is, `null-mx` (RFC 7505 — the caller
 *     bounces with 5.1.10 at once); mixed with real hosts (a misconfiguration
 *     RFC 7505 §3 forbids) they are dropped with a warning and the others
 *     used. Duplicate exchanges keep their lowest preference. Hosts are sorted
 *     by preference; hosts of equal preference are shuffled (Fisher–Yates
 *     with the injected `random`, RFC 5321 §5.1 "randomize").
 *  4. Each MX host is resolved to AAAA and A (in parallel, all hosts at
 *     once). c-ares follows a CNAME inside the answer, so a CNAME'd MX host
 *     works (it is tolerated though RFC 2181 §10.3 forbids it). An exchange
 *     that is an IP address string ("10 192.0.2.1") is tolerated: used as
 *     the address, with a warning. Addresses per host: IPv6 first, then IPv4
 *     (RFC 6724's default preference; each list in the server's order,
 *     duplicates removed); the delivery side falls back address by address,
 *     and a v6 address fails fast (ENETUNREACH) where there is no v6 route.
 *     Hosts without any address are left out of `hosts` (with a warning
 *     when the reason was a temporary DNS error).
 *  5. No MX (NODATA, or an answer holding only a CNAME to a name without
 *     MX): the domain's own AAAA/A, `implicit: true` (RFC 5321 §5.1).
 *
 * Results and the status the caller should use:
 *  - `hosts`     deliver, in the given order;
 *  - `null-mx`   permanent, 550 5.1.10 (RFC 7505 §4.2);
 *  - `nxdomain`  permanent, 550 5.1.2 "bad destination system address":
 *                NXDOMAIN for the MX query, or no MX and neither AAAA nor A
 *                (NODATA or NXDOMAIN for both — RFC 5321 §5.1: the domain is
 *                not a mail domain), or an invalid name / literal;
 *  - `no-address` temporary (4.4.3): MX hosts exist but none of them has an
 *                address (each NXDOMAIN/NODATA). Kept temporary because it is
 *                typically a DNS edit in progress; the queue ttl bounds it;
 *  - `tempfail`  temporary (4.4.3), never a bounce: the server failed,
 *                refused, timed out or could not be reached, for the MX
 *                query, or for the implicit lookup when it found no address,
 *                or for every MX host when none resolved.
 *
 * node:dns (c-ares) error codes → meaning here:
 *   ENOTFOUND   NXDOMAIN (rcode 3)                 → name does not exist (permanent)
 *   ENODATA     NOERROR without records (NODATA)   → no record of that type
 *   (empty [])  NOERROR, only a CNAME in the answer → same as ENODATA
 *   EBADNAME    name c-ares cannot query           → invalid name (permanent)
 *   ESERVFAIL   rcode 2                            → temporary
 *   EREFUSED    rcode 5                            → temporary (a resolver policy,
 *                                                     not a statement about the domain)
 *   ETIMEOUT    no answer after `tries`            → temporary
 *   ECONNREFUSED ICMP port unreachable / no server → temporary
 *   EFORMERR, ENOTIMP, EBADRESP, EBADFAMILY, EOF, ECANCELLED, EDESTRUCTION,
 *   ENOMEM, anything unknown                       → temporary
 * Only ENOTFOUND, ENODATA and EBADNAME ever lead to a permanent result.
 *
 * Time bound: each lookup uses its own c-ares channel (`timeout` =
 * `maxTimeout` = timeoutMs, so retries do not back off beyond it, and
 * `tries`), and is also cut off by a timer after tries × timeoutMs + 200 ms
 * (c-ares' timer granularity), which cancels it (→ ETIMEOUT here).
 * `resolve()` makes at most two rounds of parallel lookups (MX, then
 * addresses), so it settles within about 2 × tries × timeoutMs.
 *
 * Server: `config.resolver` (`resolver HOST:PORT`) as `server`; an IPv6
 * server is given to c-ares as `[::1]:PORT`. Without one, the system's
 * resolv.conf. Not done here: RFC 5321 §5.1's "drop our own host and every
 * MX of equal or worse preference" — the caller knows its own names.
 */
import { Resolver } from 'node:dns/promises';
import { isIP, isIPv4, isIPv6 } from 'node:net';
import { domainToASCII } from 'node:url';

export interface MxHost {
  /** A DNS name (as in the MX record, lowercased), or a bare IP address for a literal or an IP-address MX. */
  readonly host: string;
  readonly preference: number;
  /** IPv6 first, then IPv4; never empty in a `hosts` result. */
  readonly addresses: readonly string[];
}

export type MxResult =
  | { kind: 'hosts'; hosts: MxHost[]; implicit: boolean }
  | { kind: 'null-mx' }
  | { kind: 'nxdomain' }
  | { kind: 'no-address' }
  | { kind: 'tempfail'; error: string };

export interface MxResolverOptions {
  /** `config.resolver`; default: the system's resolvers. */
  readonly server?: { readonly host: string; readonly port: number };
  /** Per try, ms (default 2000). */
  readonly timeoutMs?: number;
  /** Tries per lookup (default 2). */
  readonly tries?: number;
  /** For shuffling equal preferences (default Math.random). */
  readonly random?: () => number;
  /** Log-worthy oddities that do not change the outcome (IP-address MX, null MX mixed with hosts, skipped hosts). */
  readonly warn?: (detail: Readonly<Record<string, unknown>>, message: string) => void;
}

type Family = 'AAAA' | 'A';

/** How a lookup ended. */
type Lookup =
  | { readonly ok: true; readonly values: readonly string[] }
  | { readonly ok: false; readonly kind: 'nxdomain' | 'nodata' | 'badname' | 'temp'; readonly code: string };

interface MxLookup {
  readonly ok: true;
  readonly records: readonly { readonly exchange: string; readonly priority: number }[];
}

const PERMANENT: Readonly<Record<string, 'nxdomain' | 'nodata' | 'badname'>> = {
  ENOTFOUND: 'nxdomain',
  ENODATA: 'nodata',
  EBADNAME: 'badname',
};

const DEADLINE_SLACK_MS = 200;

function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : err instanceof Error ? err.message : String(err);
}

function classify(err: unknown): Exclude<Lookup, { ok: true }> {
  const code = errorCode(err);
  return { ok: false, kind: PERMANENT[code] ?? 'temp', code };
}

/** `[1.2.3.4]`, `[IPv6:…]` → the address; another bracketed form → null (invalid); not a literal → undefined. */
export function parseDomainLiteral(domain: string): string | null | undefined {
  if (!domain.startsWith('[')) return undefined;
  if (!domain.endsWith(']')) return null;
  const inner = domain.slice(1, -1);
  if (isIPv4(inner)) return inner;
  const m = /^ipv6:(.+)$/i.exec(inner);
  if (m && isIPv6(m[1]!) && !m[1]!.includes('%')) return m[1]!.toLowerCase();
  return null;
}

/** Lowercased A-label form without the trailing dot, or null when it is not a usable DNS name. */
export function normalizeDomain(domain: string): string | null {
  let d = domain.trim().toLowerCase();
  if (d.endsWith('.')) d = d.slice(0, -1);
  if (/[^\x00-\x7f]/.test(d)) d = domainToASCII(d);
  if (d === '' || d.length > 253) return null;
  for (const label of d.split('.')) {
    if (label.length === 0 || label.length > 63) return null;
    if (!/^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/.test(label)) return null;
  }
  return d;
}

export class MxResolver {
  readonly #server: string | undefined;
  readonly #timeoutMs: number;
  readonly #tries: number;
  readonly #random: () => number;
  readonly #warn: (detail: Readonly<Record<string, unknown>>, message: string) => void;

  constructor(opts: MxResolverOptions = {}) {
    this.#timeoutMs = Math.max(1, Math.floor(opts.timeoutMs ?? 2000));
    this.#tries = Math.max(1, Math.floor(opts.tries ?? 2));
    this.#random = opts.random ?? Math.random;
    this.#warn = opts.warn ?? (() => {});
    if (opts.server) {
      const host = opts.server.host.replace(/^\[(.*)\]$/, '$1');
      const port = opts.server.port;
      if (!isIP(host)) throw new TypeError(`resolver: ${opts.server.host} is not an IP address`);
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`resolver: bad port ${port}`);
      this.#server = isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
      this.#channel(); // setServers validates now, not at the first delivery
    }
  }

  async resolve(domain: string): Promise<MxResult> {
    const literal = parseDomainLiteral(domain.trim());
    if (literal === null) return { kind: 'nxdomain' };
    if (literal !== undefined) return { kind: 'hosts', hosts: [{ host: literal, preference: 0, addresses: [literal] }], implicit: true };

    const name = normalizeDomain(domain);
    if (name === null) return { kind: 'nxdomain' };

    const mx = await this.#mx(name);
    if (!mx.ok) {
      if (mx.kind === 'nxdomain' || mx.kind === 'badname') return { kind: 'nxdomain' };
      if (mx.kind === 'temp') return { kind: 'tempfail', error: `MX lookup for ${name}: ${mx.code}` };
    }
    const records = mx.ok ? mx.records : [];
    if (records.length === 0) return this.#implicit(name);

    const real = records.filter((r) => r.exchange !== '' && r.exchange !== '.');
    if (real.length === 0) return { kind: 'null-mx' };
    if (real.length < records.length) this.#warn({ domain: name }, 'null MX published together with other MX records; null MX ignored');

    const best = new Map<string, number>();
    for (const r of real) {
      const host = r.exchange.toLowerCase().replace(/\.$/, '');
      const pref = best.get(host);
      if (pref === undefined || r.priority < pref) best.set(host, r.priority);
    }
    const ordered = this.#order([...best].map(([host, preference]) => ({ host, preference })));

    const resolved = await Promise.all(ordered.map((h) => this.#hostAddresses(name, h.host)));
    const hosts: MxHost[] = [];
    const temp: string[] = [];
    ordered.forEach((h, i) => {
      const r = resolved[i]!;
      if (r.addresses.length) hosts.push({ host: h.host, preference: h.preference, addresses: r.addresses });
      else if (r.temp) {
        temp.push(`${h.host}: ${r.temp}`);
        this.#warn({ domain: name, mx: h.host, error: r.temp }, 'MX host skipped: address lookup failed');
      }
    });
    if (hosts.length) return { kind: 'hosts', hosts, implicit: false };
    if (temp.length) return { kind: 'tempfail', error: `address lookup for the MX hosts of ${name}: ${temp.join(', ')}` };
    return { kind: 'no-address' };
  }

  /** Sorted by preference, equal preferences shuffled. */
  #order<T extends { preference: number }>(items: T[]): T[] {
    items.sort((a, b) => a.preference - b.preference);
    for (let start = 0; start < items.length; ) {
      let end = start + 1;
      while (end < items.length && items[end]!.preference === items[start]!.preference) end++;
      for (let i = end - 1; i > start; i--) {
        const j = start + Math.min(i - start, Math.floor(this.#random() * (i - start + 1)));
        [items[i], items[j]] = [items[j]!, items[i]!];
      }
      start = end;
    }
    return items;
  }

  async #implicit(name: string): Promise<MxResult> {
    const [v6, v4] = await Promise.all([this.#address(name, 'AAAA'), this.#address(name, 'A')]);
    const addresses = [...new Set([...(v6.ok ? v6.values : []), ...(v4.ok ? v4.values : [])])];
    if (addresses.length) return { kind: 'hosts', hosts: [{ host: name, preference: 0, addresses }], implicit: true };
    const failed = [v6, v4].filter((r): r is Exclude<Lookup, { ok: true }> => !r.ok);
    const temp = failed.find((r) => r.kind === 'temp');
    if (temp) return { kind: 'tempfail', error: `no MX for ${name}; address lookup: ${temp.code}` };
    return { kind: 'nxdomain' };
  }

  async #hostAddresses(domain: string, host: string): Promise<{ addresses: string[]; temp?: string }> {
    if (isIP(host)) {
      this.#warn({ domain, mx: host }, 'MX record names an IP address instead of a host name; used as is');
      return { addresses: [host] };
    }
    const [v6, v4] = await Promise.all([this.#address(host, 'AAAA'), this.#address(host, 'A')]);
    const addresses = [...new Set([...(v6.ok ? v6.values : []), ...(v4.ok ? v4.values : [])])];
    const temp = [v6, v4].find((r): r is Exclude<Lookup, { ok: true }> => !r.ok && r.kind === 'temp');
    return temp ? { addresses, temp: temp.code } : { addresses };
  }

  #channel(): Resolver {
    const r = new Resolver({ timeout: this.#timeoutMs, maxTimeout: this.#timeoutMs, tries: this.#tries });
    if (this.#server) r.setServers([this.#server]);
    return r;
  }

  /** One query on its own channel, cut off (cancelled) at the deadline. */
  async #query<T>(run: (r: Resolver) => Promise<T>): Promise<T> {
    const r = this.#channel();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        r.cancel();
        reject(Object.assign(new Error('DNS lookup deadline'), { code: 'ETIMEOUT' }));
      }, this.#timeoutMs * this.#tries + DEADLINE_SLACK_MS);
    });
    try {
      return await Promise.race([run(r), deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  async #mx(name: string): Promise<MxLookup | Exclude<Lookup, { ok: true }>> {
    try {
      return { ok: true, records: await this.#query((r) => r.resolveMx(name)) };
    } catch (err) {
      return classify(err);
    }
  }

  async #address(name: string, family: Family): Promise<Lookup> {
    try {
      const values = await this.#query((r) => (family === 'AAAA' ? r.resolve6(name) : r.resolve4(name)));
      return values.length ? { ok: true, values } : { ok: false, kind: 'nodata', code: 'ENODATA' };
    } catch (err) {
      return classify(err);
    }
  }
}
