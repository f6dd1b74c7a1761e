/**
 * smtp/mx.ts against test/helpers/dns-server.ts on loopback (PEERS.md: no
 * DNS server is reachable here). Short timeouts keep the failure cases fast.
 */
import { Resolver } from 'node:dns/promises';
import t from 'tap';
import { MxResolver, normalizeDomain, parseDomainLiteral, type MxResult } from '../../smtp/mx.ts';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.ts';

const TIMEOUT_MS = 150;
const TRIES = 2;

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const A = (address: string) => ({ type: 'A', address }) as const;
const AAAA = (address: string) => ({ type: 'AAAA', address }) as const;
const MX = (preference: number, exchange: string) => ({ type: 'MX', preference, exchange }) as const;

let dns: DnsServer;
const warnings: { detail: Readonly<Record<string, unknown>>; message: string }[] = [];

function resolver(opts: { random?: () => number; server?: { host: string; port: number } } = {}): MxResolver {
  return new MxResolver({
    server: opts.server ?? { host: dns.host, port: dns.port },
    timeoutMs: TIMEOUT_MS,
    tries: TRIES,
    ...(opts.random ? { random: opts.random } : {}),
    warn: (detail, message) => warnings.push({ detail, message }),
  });
}

function hostNames(r: MxResult): string[] {
  return r.kind === 'hosts' ? r.hosts.map((h) => h.host) : [`<${r.kind}>`];
}

t.before(async () => {
  dns = await startDnsServer({
    // ordering: two groups of equal preference
    'order.test': [MX(20, 'c.order.test'), MX(10, 'a1.order.test'), MX(10, 'a2.order.test'), MX(10, 'a3.order.test'), MX(30, 'd.order.test'), MX(20, 'c2.order.test')],
    'a1.order.test': [A('127.0.1.1')],
    'a2.order.test': [A('127.0.1.2')],
    'a3.order.test': [A('127.0.1.3')],
    'c.order.test': [A('127.0.1.4')],
    'c2.order.test': [A('127.0.1.5')],
    'd.order.test': [A('127.0.1.6')],
    // implicit MX
    'implicit.test': [A('127.0.2.1'), AAAA('::1'), A('127.0.2.2')],
    'v4only.test': [A('127.0.2.3')],
    // null MX
    'null.test': [MX(0, '.')],
    'halfnull.test': [MX(0, '.'), MX(10, 'mx.halfnull.test')],
    'mx.halfnull.test': [A('127.0.3.1')],
    // exists, but neither MX nor address
    'txtonly.test': [{ type: 'TXT', strings: 'v=spf1 -all' }],
    'leaf.ent.test': [A('127.0.4.1')],
    // MX hosts without addresses
    'noaddr.test': [MX(10, 'gone.noaddr.test'), MX(20, 'empty.noaddr.test')],
    'empty.noaddr.test': [{ type: 'TXT', strings: 'nothing here' }],
    'partial.test': [MX(10, 'gone.partial.test'), MX(20, 'mx.partial.test')],
    'mx.partial.test': [A('127.0.5.1')],
    // dual stack, duplicates
    'dual.test': [MX(10, 'mx.dual.test'), MX(20, 'mx.dual.test')],
    'mx.dual.test': [A('127.0.6.1'), AAAA('2001:db8::1'), A('127.0.6.2'), AAAA('::ffff:127.0.6.1'), A('127.0.6.1')],
    // CNAMEs
    'cnamed.test': [MX(10, 'alias.cnamed.test')],
    'alias.cnamed.test': [{ type: 'CNAME', target: 'real.cnamed.test' }],
    'real.cnamed.test': [A('127.0.7.1'), AAAA('fd00::7:1')],
    'mailalias.test': [{ type: 'CNAME', target: 'order.test' }],
    'hostalias.test': [{ type: 'CNAME', target: 'v4only.test' }],
    // an IP address as exchange
    'ipmx.test': [MX(10, '127.0.8.1')],
    // failures (switched on in the tests)
    'servfail.test': [MX(10, 'mx.servfail.test')],
    'refused.test': [MX(10, 'mx.refused.test')],
    'dropped.test': [MX(10, 'mx.dropped.test')],
    'slowhost.test': [MX(10, 'mx.slowhost.test')],
    'mx.slowhost.test': [A('127.0.9.1')],
    'implicitfail.test': [A('127.0.9.2')],
    'hostfail.test': [MX(10, 'a.hostfail.test'), MX(20, 'b.hostfail.test')],
    'a.hostfail.test': [A('127.0.10.1')],
    'b.hostfail.test': [A('127.0.10.2')],
    // IDN
    'xn--bcher-kva.test': [MX(10, 'mx.xn--bcher-kva.test')],
    'mx.xn--bcher-kva.test': [A('127.0.11.1')],
    'change.test': [MX(10, 'one.change.test')],
    'one.change.test': [A('127.0.12.1')],
    'two.change.test': [A('127.0.12.2')],
    // the server's own features
    'dkim._domainkey.txt.test': [{ type: 'TXT', strings: `v=DKIM1; k=rsa; p=${'A'.repeat(400)}` }],
    'multi.txt.test': [{ type: 'TXT', strings: ['v=spf1', ' ip4:127.0.0.1', ' -all'] }],
  });
});

t.teardown(() => dns.close());
t.beforeEach(() => {
  warnings.length = 0;
});

t.test('MX hosts sorted by preference, equal preferences shuffled', async (t) => {
  // random() = 0: Fisher–Yates on [a1, a2, a3] swaps 2↔0 then 1↔0 → [a2, a3, a1]; [c, c2] → [c2, c].
  const zero = await resolver({ random: () => 0 }).resolve('order.test');
  t.same(hostNames(zero), ['a2.order.test', 'a3.order.test', 'a1.order.test', 'c2.order.test', 'c.order.test', 'd.order.test']);
  t.same(zero.kind === 'hosts' && zero.hosts.map((h) => h.preference), [10, 10, 10, 20, 20, 30]);
  t.same(zero.kind === 'hosts' && zero.hosts[0], { host: 'a2.order.test', preference: 10, addresses: ['127.0.1.2'] });
  t.equal(zero.kind === 'hosts' && zero.implicit, false);
  // random() just below 1: every j = i, nothing moves (the server's order)
  const top = await resolver({ random: () => 0.9999999 }).resolve('order.test');
  t.same(hostNames(top), ['a1.order.test', 'a2.order.test', 'a3.order.test', 'c.order.test', 'c2.order.test', 'd.order.test']);
  // a random() of exactly 1 (a bad injected source) stays in range
  t.same(hostNames(await resolver({ random: () => 1 }).resolve('order.test')), hostNames(top));

  // a seeded source: every permutation of the first group shows up, groups never mix
  const rnd = mulberry32(42);
  const r = resolver({ random: rnd });
  const seen = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const names = hostNames(await r.resolve('order.test'));
    t.same(new Set(names.slice(0, 3)), new Set(['a1.order.test', 'a2.order.test', 'a3.order.test']));
    t.same(new Set(names.slice(3, 5)), new Set(['c.order.test', 'c2.order.test']));
    t.equal(names[5], 'd.order.test');
    seen.add(names.slice(0, 3).join(','));
  }
  t.equal(seen.size, 6, 'all 6 orders of the equal-preference group');
});

t.test('no MX: the domain itself (implicit MX), AAAA before A', async (t) => {
  t.same(await resolver().resolve('implicit.test'), {
    kind: 'hosts',
    implicit: true,
    hosts: [{ host: 'implicit.test', preference: 0, addresses: ['::1', '127.0.2.1', '127.0.2.2'] }],
  });
  t.same(await resolver().resolve('v4only.test'), { kind: 'hosts', implicit: true, hosts: [{ host: 'v4only.test', preference: 0, addresses: ['127.0.2.3'] }] });
  // a CNAME at the domain: no MX behind it → the target's addresses
  t.same(await resolver().resolve('hostalias.test'), { kind: 'hosts', implicit: true, hosts: [{ host: 'hostalias.test', preference: 0, addresses: ['127.0.2.3'] }] });
});

t.test('null MX (RFC 7505)', async (t) => {
  t.same(await resolver().resolve('null.test'), { kind: 'null-mx' });
  // mixed with a real MX: the null MX is ignored, with a warning
  t.same(hostNames(await resolver().resolve('halfnull.test')), ['mx.halfnull.test']);
  t.match(warnings, [{ detail: { domain: 'halfnull.test' }, message: /null MX/ }]);
});

t.test('NXDOMAIN, and a domain with neither MX nor address: permanent', async (t) => {
  t.same(await resolver().resolve('nope.test'), { kind: 'nxdomain' });
  t.same(await resolver().resolve('txtonly.test'), { kind: 'nxdomain' }, 'NODATA for MX, AAAA and A');
  t.same(await resolver().resolve('ent.test'), { kind: 'nxdomain' }, 'empty non-terminal');
  const before = dns.queries.length;
  for (const bad of ['', '.', 'a..b.test', `${'a'.repeat(64)}.test`, `${'abcdefghi.'.repeat(26)}test`, '-bad.test', 'sp ace.test']) {
    t.same(await resolver().resolve(bad), { kind: 'nxdomain' }, JSON.stringify(bad));
  }
  t.equal(dns.queries.length, before, 'invalid names are not queried');
});

t.test('SERVFAIL, REFUSED, ECONNREFUSED: tempfail, never a bounce', async (t) => {
  dns.fail('servfail.test', 'SERVFAIL');
  dns.fail('refused.test', 'REFUSED');
  t.teardown(() => {
    dns.fail('servfail.test', null);
    dns.fail('refused.test', null);
  });
  t.match(await resolver().resolve('servfail.test'), { kind: 'tempfail', error: /ESERVFAIL/ });
  t.match(await resolver().resolve('refused.test'), { kind: 'tempfail', error: /EREFUSED/ });

  // no MX, and the A lookup fails while AAAA is NODATA: temporary
  dns.fail('implicitfail.test', 'SERVFAIL', 'A');
  t.match(await resolver().resolve('implicitfail.test'), { kind: 'tempfail', error: /ESERVFAIL/ });
  dns.fail('implicitfail.test', null, 'A');
  t.same(hostNames(await resolver().resolve('implicitfail.test')), ['implicitfail.test']);

  // nobody listening on the configured server
  const gone = await startDnsServer({});
  const port = gone.port;
  await gone.close();
  t.match(await resolver({ server: { host: '127.0.0.1', port } }).resolve('order.test'), { kind: 'tempfail', error: /ECONNREFUSED|ETIMEOUT/ });
});

t.test('a dropped query: tempfail within the timeout bound', async (t) => {
  const bound = TIMEOUT_MS * TRIES + 200;
  dns.fail('dropped.test', 'drop');
  t.teardown(() => dns.fail('dropped.test', null));
  let t0 = Date.now();
  t.match(await resolver().resolve('dropped.test'), { kind: 'tempfail', error: /ETIMEOUT/ });
  let took = Date.now() - t0;
  t.ok(took >= TIMEOUT_MS, `waited for the timeout (${took} ms)`);
  t.ok(took <= bound + 300, `one round: ${took} ms ≤ ${bound} ms (+ scheduling slack)`);

  // the MX answers, its host's address queries are dropped: two rounds at most
  dns.fail('mx.slowhost.test', 'drop');
  t.teardown(() => dns.fail('mx.slowhost.test', null));
  t0 = Date.now();
  t.match(await resolver().resolve('slowhost.test'), { kind: 'tempfail', error: /mx\.slowhost\.test: ETIMEOUT/ });
  took = Date.now() - t0;
  t.ok(took <= 2 * bound + 300, `two rounds: ${took} ms`);
});

t.test('MX hosts without addresses', async (t) => {
  t.same(await resolver().resolve('noaddr.test'), { kind: 'no-address' }, 'NXDOMAIN host and NODATA host');
  t.same(await resolver().resolve('partial.test'), { kind: 'hosts', implicit: false, hosts: [{ host: 'mx.partial.test', preference: 20, addresses: ['127.0.5.1'] }] });
  t.same(warnings, [], 'a host that does not exist is not a warning');

  // the primary's lookup fails: the secondary is used, with a warning
  dns.fail('a.hostfail.test', 'SERVFAIL');
  t.teardown(() => {
    dns.fail('a.hostfail.test', null);
    dns.fail('b.hostfail.test', null);
  });
  t.same(hostNames(await resolver().resolve('hostfail.test')), ['b.hostfail.test']);
  t.match(warnings, [{ detail: { mx: 'a.hostfail.test', error: 'ESERVFAIL' } }]);
  // every host's lookup fails: temporary
  dns.fail('b.hostfail.test', 'REFUSED');
  t.match(await resolver().resolve('hostfail.test'), { kind: 'tempfail', error: /a\.hostfail\.test: ESERVFAIL.*b\.hostfail\.test: EREFUSED/ });
});

t.test('AAAA and A: IPv6 first, duplicates merged', async (t) => {
  t.same(await resolver().resolve('dual.test'), {
    kind: 'hosts',
    implicit: false,
    hosts: [{ host: 'mx.dual.test', preference: 10, addresses: ['2001:db8::1', '::ffff:127.0.6.1', '127.0.6.1', '127.0.6.2'] }],
  });
  // only AAAA fails: the A records still count
  dns.fail('mx.dual.test', 'SERVFAIL', 'AAAA');
  t.teardown(() => dns.fail('mx.dual.test', null, 'AAAA'));
  t.same(await resolver().resolve('dual.test'), { kind: 'hosts', implicit: false, hosts: [{ host: 'mx.dual.test', preference: 10, addresses: ['127.0.6.1', '127.0.6.2'] }] });
});

t.test('CNAMEs: a CNAMEd MX host, a CNAMEd domain', async (t) => {
  t.same(await resolver().resolve('cnamed.test'), { kind: 'hosts', implicit: false, hosts: [{ host: 'alias.cnamed.test', preference: 10, addresses: ['fd00::7:1', '127.0.7.1'] }] });
  t.same(new Set(hostNames(await resolver().resolve('mailalias.test'))), new Set(hostNames(await resolver().resolve('order.test'))));
});

t.test('an MX naming an IP address is used, with a warning', async (t) => {
  t.same(await resolver().resolve('ipmx.test'), { kind: 'hosts', implicit: false, hosts: [{ host: '127.0.8.1', preference: 10, addresses: ['127.0.8.1'] }] });
  t.match(warnings, [{ detail: { domain: 'ipmx.test', mx: '127.0.8.1' }, message: /IP address/ }]);
});

t.test('domain literals resolve to themselves, without DNS', async (t) => {
  const before = dns.queries.length;
  const one = (a: string) => ({ kind: 'hosts', implicit: true, hosts: [{ host: a, preference: 0, addresses: [a] }] });
  t.same(await resolver().resolve('[127.0.0.2]'), one('127.0.0.2'));
  t.same(await resolver().resolve('[IPv6:::1]'), one('::1'));
  t.same(await resolver().resolve('[ipv6:2001:DB8::25]'), one('2001:db8::25'));
  t.same(await resolver().resolve('[IPv6:::ffff:192.0.2.1]'), one('::ffff:192.0.2.1'));
  for (const bad of ['[999.1.1.1]', '[127.0.0.1', '[::1]', '[IPv6:127.0.0.1]', '[x-tag:whatever]', '[]', '[IPv6:fe80::1%eth0]']) {
    t.same(await resolver().resolve(bad), { kind: 'nxdomain' }, bad);
  }
  t.equal(dns.queries.length, before);
  t.equal(parseDomainLiteral('example.test'), undefined);
});

t.test('names: case, trailing dot, U-labels', async (t) => {
  t.equal(normalizeDomain('Example.TEST.'), 'example.test');
  t.equal(normalizeDomain('bücher.test'), 'xn--bcher-kva.test');
  t.equal(normalizeDomain('_dmarc.example.test'), '_dmarc.example.test');
  t.same(hostNames(await resolver().resolve('ORDER.Test.')).length, 6);
  t.same(await resolver().resolve('Bücher.test'), { kind: 'hosts', implicit: false, hosts: [{ host: 'mx.xn--bcher-kva.test', preference: 10, addresses: ['127.0.11.1'] }] });
});

t.test('nothing is cached', async (t) => {
  const r = resolver();
  t.same(hostNames(await r.resolve('change.test')), ['one.change.test']);
  dns.set('change.test', [MX(10, 'two.change.test')]);
  t.same(hostNames(await r.resolve('change.test')), ['two.change.test']);
  dns.set('change.test', null);
  t.same(await r.resolve('change.test'), { kind: 'nxdomain' });
});

t.test('configuration', async (t) => {
  t.throws(() => new MxResolver({ server: { host: 'dns.example', port: 53 } }), /not an IP address/);
  t.throws(() => new MxResolver({ server: { host: '127.0.0.1', port: 0 } }), /bad port/);
  t.doesNotThrow(() => new MxResolver({ server: { host: '[::1]', port: 53 } }));
  t.doesNotThrow(() => new MxResolver());
});

t.test('a DNS server on ::1', async (t) => {
  let v6: DnsServer;
  try {
    v6 = await startDnsServer({ 'six.test': [MX(10, 'mx.six.test')], 'mx.six.test': [AAAA('::1'), A('127.0.0.1')] }, { host: '::1' });
  } catch (err) {
    t.plan(0, `no ::1 here: ${(err as Error).message}`);
    return;
  }
  t.teardown(() => v6.close());
  for (const host of ['::1', '[::1]']) {
    const r = new MxResolver({ server: { host, port: v6.port }, timeoutMs: TIMEOUT_MS, tries: TRIES });
    t.same(await r.resolve('six.test'), { kind: 'hosts', implicit: false, hosts: [{ host: 'mx.six.test', preference: 10, addresses: ['::1', '127.0.0.1'] }] }, host);
  }
});

t.test('dns-server: TXT character-strings, per-type failures, query log', async (t) => {
  const r = new Resolver({ timeout: TIMEOUT_MS, tries: 1 });
  r.setServers([`${dns.host}:${dns.port}`]);
  const [dkim] = await r.resolveTxt('dkim._domainkey.txt.test');
  t.same(dkim!.map((s) => s.length), [255, 400 + 'v=DKIM1; k=rsa; p='.length - 255], 'split at 255 bytes');
  t.equal(dkim!.join(''), `v=DKIM1; k=rsa; p=${'A'.repeat(400)}`);
  t.same(await r.resolveTxt('multi.txt.test'), [['v=spf1', ' ip4:127.0.0.1', ' -all']]);
  t.throws(() => dns.set('toolong.txt.test', [{ type: 'TXT', strings: ['x'.repeat(256)] }]), /255/);
  await t.rejects(r.resolveMx('nope.test'), { code: 'ENOTFOUND' });
  await t.rejects(r.resolveMx('v4only.test'), { code: 'ENODATA' });
  dns.fail('v4only.test', 'NXDOMAIN', 'AAAA');
  t.teardown(() => dns.fail('v4only.test', null, 'AAAA'));
  await t.rejects(r.resolve6('v4only.test'), { code: 'ENOTFOUND' });
  t.same(await r.resolve4('v4only.test'), ['127.0.2.3']);
  t.match(dns.queries.at(-1), { name: 'v4only.test', type: 'A' });
});
