import t from 'tap';
import {
  addressKey,
  formatAddress,
  ipInCidr,
  isIpAddress,
  isLoopbackAddress,
  isValidDomain,
  normalizeDomain,
  parseAddress,
  parsePath,
  stripSubaddress,
  type MailAddress,
} from '../../core/address.ts';

/** A test name for an input: JSON-quoted, with line separators escaped (TAP is line-based). */
const q = (s: string): string =>
  JSON.stringify(s).replace(/[\u2028\u2029\u0085]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

type Expect = { local: string; domain: string } | RegExp;

const addressCases: Array<[input: string, expect: Expect, opts?: { allowUtf8?: boolean }]> = [
  // plain
  ['user@example.org', { local: 'user', domain: 'example.org' }],
  ['first.last@example.org', { local: 'first.last', domain: 'example.org' }],
  ['User.Name@Example.ORG', { local: 'User.Name', domain: 'example.org' }],
  ['user@Example.ORG.', { local: 'user', domain: 'example.org' }],
  ['user@localhost', { local: 'user', domain: 'localhost' }],
  ['postmaster@mail-1.example-2.org', { local: 'postmaster', domain: 'mail-1.example-2.org' }],
  ["o'hara+x=y/z{}~|`^?#$&*!_-@example.org", { local: "o'hara+x=y/z{}~|`^?#$&*!_-", domain: 'example.org' }],
  ['user+tag@example.org', { local: 'user+tag', domain: 'example.org' }],
  ['a@xn--bcher-kva.example', { local: 'a', domain: 'xn--bcher-kva.example' }],
  ['a@123.example.org', { local: 'a', domain: '123.example.org' }],
  ['x'.repeat(64) + '@example.org', { local: 'x'.repeat(64), domain: 'example.org' }],
  // open-relay tricks: local parts of our domain, not routing
  ['user%external.org@ourdomain', { local: 'user%external.org', domain: 'ourdomain' }],
  ['external.org!user@ourdomain', { local: 'external.org!user', domain: 'ourdomain' }],
  ['"user@external.org"@ourdomain', { local: 'user@external.org', domain: 'ourdomain' }],
  ['"user%external.org"@ourdomain.', { local: 'user%external.org', domain: 'ourdomain' }],
  ['user@external.org@ourdomain', /unquoted '@' in local part/],
  ['@external.org@ourdomain', /unquoted '@' in local part/],
  // quoted local parts
  ['"john doe"@x.org', { local: 'john doe', domain: 'x.org' }],
  ['"john"@x.org', { local: 'john', domain: 'x.org' }],
  ['"a\\"b"@x.org', { local: 'a"b', domain: 'x.org' }],
  ['"a\\\\b"@x.org', { local: 'a\\b', domain: 'x.org' }],
  ['"\\a\\ b"@x.org', { local: 'a b', domain: 'x.org' }],
  ['"a..b."@x.org', { local: 'a..b.', domain: 'x.org' }],
  ['"<>,;:()[]"@x.org', { local: '<>,;:()[]', domain: 'x.org' }],
  ['"jöhn doe"@x.org', { local: 'jöhn doe', domain: 'x.org' }],
  ['"jöhn"@x.org', /non-ASCII local part requires SMTPUTF8/, { allowUtf8: false }],
  ['""@x.org', /empty local part/],
  ['"abc@x.org', /unterminated quoted local part/],
  ['"abc\\"@x.org', /unterminated quoted local part/],
  ['"abc\\', /unterminated quoted local part/],
  ['"abc"x@x.org', /unexpected text after quoted local part/],
  ['"abc" @x.org', /unexpected text after quoted local part/],
  ['"abc"', /missing @/],
  ['"a\tb"@x.org', /control character U\+0009/],
  ['"a\\\u0001"@x.org', /control character/],
  ['"' + 'x'.repeat(63) + '"@x.org', /local part longer than 64 octets/],
  // address literals
  ['user@[1.2.3.4]', { local: 'user', domain: '[1.2.3.4]' }],
  ['user@[255.255.255.255]', { local: 'user', domain: '[255.255.255.255]' }],
  ['user@[IPv6:2001:db8::1]', { local: 'user', domain: '[IPv6:2001:db8::1]' }],
  ['user@[IPv6:2001:DB8::1]', { local: 'user', domain: '[IPv6:2001:db8::1]' }],
  ['user@[ipv6:::1]', { local: 'user', domain: '[IPv6:::1]' }],
  ['user@[IPv6:::ffff:192.0.2.1]', { local: 'user', domain: '[IPv6:::ffff:192.0.2.1]' }],
  ['user@[IPv6:1:2:3:4:5:6:7:8]', { local: 'user', domain: '[IPv6:1:2:3:4:5:6:7:8]' }],
  ['user@[IPv6:1:2:3:4:5:6:192.0.2.1]', { local: 'user', domain: '[IPv6:1:2:3:4:5:6:192.0.2.1]' }],
  ['user@[1.2.3]', /invalid address literal/],
  ['user@[256.1.1.1]', /invalid address literal/],
  ['user@[01.2.3.4]', /invalid address literal/],
  ['user@[1.2.3.4', /invalid address literal/],
  ['user@[1.2.3.4].', /invalid address literal/],
  ['user@[IPv6:1.2.3.4]', /invalid IPv6 address literal/],
  ['user@[IPv6:1:2:3:4:5:6:7:8:9]', /invalid IPv6 address literal/],
  ['user@[IPv6:1::2::3]', /invalid IPv6 address literal/],
  ['user@[IPv6:fe80::1%eth0]', /invalid IPv6 address literal/],
  ['user@[IPv6:12345::1]', /invalid IPv6 address literal/],
  ['user@[x-foo:bar]', /unsupported address literal/],
  ['user@1.2.3.4', /must be written as an address literal \[1\.2\.3\.4\]/],
  // UTF-8 (RFC 6531)
  ['jöhn@example.org', { local: 'jöhn', domain: 'example.org' }],
  ['用户@例子.广告', { local: '用户', domain: '例子.广告' }],
  ['JÖHN@BÜCHER.Example', { local: 'JÖHN', domain: 'bücher.example' }],
  ['user@bu\u0308cher.example', { local: 'user', domain: 'bücher.example' }], // NFD -> NFC
  ['δοκιμή@παράδειγμα.δοκιμή', { local: 'δοκιμή', domain: 'παράδειγμα.δοκιμή' }],
  ['jöhn@example.org', /non-ASCII local part requires SMTPUTF8/, { allowUtf8: false }],
  ['user@bücher.example', /non-ASCII domain requires SMTPUTF8/, { allowUtf8: false }],
  ['user@xn--bcher-kva.example', { local: 'user', domain: 'xn--bcher-kva.example' }, { allowUtf8: false }],
  ['a\u00a0b@x.org', /space in unquoted local part/],
  ['a\u0085b@x.org', /control character U\+0085/],
  ['a\ud800b@x.org', /invalid character U\+D800/],
  ['a\ud800b@x.org', /invalid character U\+D800/, { allowUtf8: false }],
  ['user@\u0301a.example', /not a valid internationalized domain name/],
  ['user@ex\u2028ample.org', /^invalid domain 'ex<U\+2028>ample\.org': invalid character U\+2028$/],
  ['user@ex\u200bample.org', /invalid character U\+200B/],
  ['"\\ü"@x.org', /invalid quoted-pair 'ü'/],
  ['"a\ud800"@x.org', /invalid character U\+D800/],
  ['user@例え。テスト', /invalid character/],
  ['ü'.repeat(33) + '@x.org', /local part longer than 64 octets/], // 66 octets
  ['ü'.repeat(32) + '@x.org', { local: 'ü'.repeat(32), domain: 'x.org' }],
  // invalid
  ['', /empty address/],
  ['user', /missing @/],
  ['user.example.org', /missing @/],
  ['@example.org', /empty local part/],
  ['user@', /empty domain/],
  ['user@.', /invalid domain '\.'/],
  ['.user@x.org', /leading dot/],
  ['user.@x.org', /trailing dot/],
  ['us..er@x.org', /consecutive dots/],
  ['us er@x.org', /space in unquoted local part/],
  [' user@x.org', /space in unquoted local part/],
  ['user@x.org ', /invalid domain 'x\.org '/],
  ['user@ex ample.org', /invalid domain/],
  ['us\u0000er@x.org', /NUL character/],
  ['user@x.org\u0000', /NUL character/],
  ['us\ter@x.org', /control character U\+0009/],
  ['us\r\ner@x.org', /control character/],
  ['us\u007fer@x.org', /control character U\+007F/],
  ['a"b@x.org', /invalid character '"' in local part/],
  ['a."b"@x.org', /invalid character '"' in local part/],
  ['a\\@b@x.org', /invalid character '\\' in local part/],
  ['a(comment)@x.org', /invalid character '\(' in local part/],
  ['<user@x.org>', /invalid character '<' in local part/],
  ['a,b@x.org', /invalid character ','/],
  ['x'.repeat(65) + '@example.org', /local part longer than 64 octets/],
  ['user@x..org', /invalid domain 'x\.\.org': empty label/],
  ['user@.x.org', /empty label/],
  ['user@x.org..', /empty label/],
  ['user@-x.org', /starts or ends with '-'/],
  ['user@x-.org', /starts or ends with '-'/],
  ['user@x.-org', /starts or ends with '-'/],
  ['user@a_b.org', /invalid domain 'a_b\.org': invalid character '_'/],
  ['user@x.org:25', /invalid character ':'/],
  ['user@x/y.org', /invalid character '\/'/],
  ['user@x.123', /top-level label is numeric/],
  ['user@' + 'a'.repeat(100) + '.org', /^invalid domain 'a{77}\.\.\.': label longer than 63 octets$/],
  ['user@' + 'a'.repeat(64) + '.org', /label longer than 63 octets/],
  ['user@' + 'a'.repeat(63) + '.org', { local: 'user', domain: 'a'.repeat(63) + '.org' }],
  ['user@' + 'ü'.repeat(60) + '.org', /label longer than 63 octets/],
  ['user@' + Array(64).fill('abc').join('.') + '.a', /domain longer than 255 octets/],
  ['user@' + Array(64).fill('abc').join('.'), { local: 'user', domain: Array(64).fill('abc').join('.') }], // 255
  ['user@' + 'ü'.repeat(40) + '.org', { local: 'user', domain: 'ü'.repeat(40) + '.org' }], // 80 octets, A-label under 63
  ['user@' + Array(36).fill('üüü').join('.'), /domain longer than 255 octets/], // 251 octets, A-label form 359
  ['user@' + Array(63).fill('abc').join('.') + '.ab', { local: 'user', domain: Array(63).fill('abc').join('.') + '.ab' }],
  ['user@' + Array(63).fill('abc').join('.') + '.ab.', { local: 'user', domain: Array(63).fill('abc').join('.') + '.ab' }],
];

t.test('parseAddress table', async (t) => {
  for (const [input, expect, opts] of addressCases) {
    const r = parseAddress(input, opts);
    const name = `${q(input)}${opts ? ' ' + JSON.stringify(opts) : ''}`;
    if (expect instanceof RegExp) {
      t.equal(r.ok, false, `${name} is invalid`);
      if (!r.ok) t.match(r.reason, expect, `${name}: ${r.reason}`);
    } else {
      t.same(r, { ok: true, address: expect }, `${name} parses`);
    }
  }
});

t.test('parsePath', async (t) => {
  const cases: Array<[string, Expect | null]> = [
    ['<>', null],
    ['', null],
    ['<user@example.org>', { local: 'user', domain: 'example.org' }],
    ['user@example.org', { local: 'user', domain: 'example.org' }],
    ['<User@EXAMPLE.org.>', { local: 'User', domain: 'example.org' }],
    ['<"john doe"@x.org>', { local: 'john doe', domain: 'x.org' }],
    ['<"a>b"@x.org>', { local: 'a>b', domain: 'x.org' }],
    // source routes are dropped (RFC 5321 §3.3, appendix C)
    ['<@ours.org:user@external.org>', { local: 'user', domain: 'external.org' }],
    ['@ours.org:user@external.org', { local: 'user', domain: 'external.org' }],
    ['<@a.example,@b.example:user@c.example>', { local: 'user', domain: 'c.example' }],
    ['<@[192.0.2.1],@[IPv6:2001:db8::1]:user@c.example>', { local: 'user', domain: 'c.example' }],
    ['<@a.example:"x@y"@c.example>', { local: 'x@y', domain: 'c.example' }],
    ['<@a.example:>', /empty address/],
    ['<@:user@x.org>', /invalid domain '' in source route/],
    ['<@a\u0001b.example:user@x.org>', /invalid domain 'a<U\+0001>b\.example' in source route/],
    ['<@a_b.example:user@x.org>', /invalid domain 'a_b\.example' in source route/],
    ['<@a.example,user@x.org>', /source route/],
    ['<@a.example>', /source route/],
    ['<@a.example;@b:user@x.org>', /source route/],
    ['<@[1.2.3.4:user@x.org>', /source route/],
    ['<user@x.org', /unbalanced angle brackets/],
    ['user@x.org>', /unbalanced angle brackets/],
    ['<', /unbalanced angle brackets/],
    ['>', /unbalanced angle brackets/],
    ['<<>>', /missing @/],
    ['<<a@x.org>>', /invalid character '<'/],
    ['< user@x.org>', /space/],
    ['<user@external.org@ourdomain>', /unquoted '@'/],
    ['<user>', /missing @/],
  ];
  for (const [input, expect] of cases) {
    const r = parsePath(input);
    if (expect === null) {
      t.same(r, { ok: true, address: null }, `${q(input)} is the null path`);
    } else if (expect instanceof RegExp) {
      t.equal(r.ok, false, `${q(input)} is invalid`);
      if (!r.ok) t.match(r.reason, expect, `${q(input)}: ${r.reason}`);
    } else {
      t.same(r, { ok: true, address: expect }, `${q(input)} parses`);
    }
  }
  const utf = parsePath('<jöhn@example.org>', { allowUtf8: false });
  t.equal(utf.ok, false, 'parsePath passes allowUtf8 on');
  t.same(parsePath('<@bücher.example:user@x.org>', { allowUtf8: false }), {
    ok: false,
    reason: "invalid domain 'bücher.example' in source route",
  });
  t.same(parsePath('<@bücher.example:user@x.org>'), { ok: true, address: { local: 'user', domain: 'x.org' } });
});

t.test('formatAddress', async (t) => {
  const cases: Array<[MailAddress, string]> = [
    [{ local: 'user', domain: 'example.org' }, 'user@example.org'],
    [{ local: 'first.last', domain: 'x.org' }, 'first.last@x.org'],
    [{ local: 'john doe', domain: 'x.org' }, '"john doe"@x.org'],
    [{ local: 'a"b', domain: 'x.org' }, '"a\\"b"@x.org'],
    [{ local: 'a\\b', domain: 'x.org' }, '"a\\\\b"@x.org'],
    [{ local: 'user@external.org', domain: 'ourdomain' }, '"user@external.org"@ourdomain'],
    [{ local: 'user%external.org', domain: 'ourdomain' }, 'user%external.org@ourdomain'],
    [{ local: '.a', domain: 'x.org' }, '".a"@x.org'],
    [{ local: 'a.', domain: 'x.org' }, '"a."@x.org'],
    [{ local: 'a..b', domain: 'x.org' }, '"a..b"@x.org'],
    [{ local: 'a\u00a0b', domain: 'x.org' }, '"a\u00a0b"@x.org'],
    [{ local: 'jöhn', domain: 'bücher.example' }, 'jöhn@bücher.example'],
    [{ local: 'user', domain: '[IPv6:2001:db8::1]' }, 'user@[IPv6:2001:db8::1]'],
  ];
  t.equal(formatAddress({ local: '', domain: 'x.org' }), '""@x.org', 'empty local part is quoted');
  for (const [a, s] of cases) {
    t.equal(formatAddress(a), s, `formats ${s}`);
    t.same(parseAddress(s), { ok: true, address: a }, `round-trips ${s}`);
  }
  // every valid case of the table round-trips through formatAddress
  for (const [input, expect, opts] of addressCases) {
    if (expect instanceof RegExp) continue;
    const r = parseAddress(input, opts);
    if (!r.ok) continue;
    t.same(parseAddress(formatAddress(r.address), opts), r, `round-trip of ${q(input)}`);
  }
});

t.test('stripSubaddress', async (t) => {
  const d = 'example.org';
  const cases: Array<[string, string, string, string | null]> = [
    ['user+tag', '+', 'user', 'tag'],
    ['user', '+', 'user', null],
    ['user+tag+more', '+', 'user', 'tag+more'],
    ['user+', '+', 'user', ''],
    ['+tag', '+', '+tag', null],
    ['user-tag', '-', 'user', 'tag'],
    ['user+tag', '-', 'user+tag', null],
    ['user+tag', '', 'user+tag', null],
    ['first.last+news', '+', 'first.last', 'news'],
    ['jöhn+ü', '+', 'jöhn', 'ü'],
    ['user=tag', '=', 'user', 'tag'],
  ];
  for (const [local, delim, base, detail] of cases) {
    t.same(
      stripSubaddress({ local, domain: d }, delim),
      { base: { local: base, domain: d }, detail },
      `${local} with ${JSON.stringify(delim)}`,
    );
  }
});

t.test('addressKey and normalizeDomain', async (t) => {
  t.equal(addressKey({ local: 'User.Name', domain: 'example.org' }), 'user.name@example.org');
  t.equal(addressKey({ local: 'JÖHN', domain: 'bücher.example' }), 'jöhn@bücher.example');
  t.equal(addressKey({ local: 'jo\u0308hn', domain: 'x.org' }), 'jöhn@x.org', 'NFC');
  t.equal(addressKey({ local: 'u', domain: 'Example.ORG.' }), 'u@example.org', 'domain normalised again');
  const a = parseAddress('John@Example.ORG');
  const b = parseAddress('john@example.org.');
  t.ok(a.ok && b.ok && addressKey(a.address) === addressKey(b.address), 'same key');

  t.equal(normalizeDomain('Example.ORG.'), 'example.org');
  t.equal(normalizeDomain('example.org..'), 'example.org.', 'only one dot stripped');
  t.equal(normalizeDomain('BÜCHER.example'), 'bücher.example');
  t.equal(normalizeDomain('bu\u0308cher.example'), 'bücher.example');
  t.equal(normalizeDomain('[ipv6:2001:DB8::1]'), '[IPv6:2001:db8::1]');
  t.equal(normalizeDomain('[1.2.3.4]'), '[1.2.3.4]');
  t.equal(normalizeDomain(''), '');
});

t.test('isValidDomain', async (t) => {
  for (const d of ['example.org', 'Example.ORG.', 'localhost', 'a-b.c-d.example', 'xn--bcher-kva.example', 'bücher.example', '例え.テスト', '1.example', 'a'.repeat(63) + '.org', Array(64).fill('abc').join('.') + '.']) {
    t.ok(isValidDomain(d), `${d} valid`);
  }
  for (const d of ['', '.', 'example..org', '.example.org', 'example.org..', '-a.org', 'a-.org', 'a_b.org', 'a b.org', 'a.b.c.123', '1.2.3.4', '[1.2.3.4]', 'user@example.org', 'a'.repeat(64) + '.org', 'exa\u0000mple.org', 'x.org\n', 'ex\u2028ample.org', Array(64).fill('abc').join('.') + '.a']) {
    t.notOk(isValidDomain(d), `${q(d)} invalid`);
  }
});

t.test('isIpAddress', async (t) => {
  const cases: Array<[string, 0 | 4 | 6]> = [
    ['1.2.3.4', 4],
    ['0.0.0.0', 4],
    ['255.255.255.255', 4],
    ['256.1.1.1', 0],
    ['1.2.3', 0],
    ['1.2.3.4.5', 0],
    ['01.2.3.4', 0],
    ['1.2.3.4 ', 0],
    ['::', 6],
    ['::1', 6],
    ['2001:db8::1', 6],
    ['2001:DB8:0:0:0:0:0:1', 6],
    ['1:2:3:4:5:6:7::', 6],
    ['::2:3:4:5:6:7:8', 6],
    ['1::2:3:4:5:6:7', 6],
    ['::ffff:1.2.3.4', 6],
    ['::1.2.3.4', 6],
    ['1:2:3:4:5:6:1.2.3.4', 6],
    ['1:2:3:4:5:6:7:1.2.3.4', 0],
    ['1:2:3:4:5:6:7:8:9', 0],
    ['1::2:3:4:5:6:7:8', 0],
    ['1:2:3:4::5:6:7:1.2.3.4', 0],
    ['1:2:3:4:5:6:7', 0],
    ['1::2::3', 0],
    [':::', 0],
    [':1::', 0],
    ['1:', 0],
    ['12345::', 0],
    ['g::1', 0],
    ['::ffff:1.2.3', 0],
    ['fe80::1%eth0', 0],
    ['[::1]', 0],
    ['', 0],
    ['localhost', 0],
  ];
  for (const [s, v] of cases) t.equal(isIpAddress(s), v, `${JSON.stringify(s)} -> ${v}`);
});

t.test('ipInCidr', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    // IPv4
    ['192.0.2.1', '192.0.2.0/24', true],
    ['192.0.2.255', '192.0.2.0/24', true],
    ['192.0.3.1', '192.0.2.0/24', false],
    ['10.1.2.3', '10.0.0.0/8', true],
    ['11.1.2.3', '10.0.0.0/8', false],
    ['10.1.2.3', '10.1.2.3/32', true],
    ['10.1.2.4', '10.1.2.3/32', false],
    ['10.1.2.3', '10.1.2.3', true],
    ['10.1.2.4', '10.1.2.3', false],
    ['1.2.3.4', '0.0.0.0/0', true],
    ['255.255.255.255', '0.0.0.0/0', true],
    ['172.16.0.1', '172.16.0.0/12', true],
    ['172.31.255.255', '172.16.0.0/12', true],
    ['172.32.0.0', '172.16.0.0/12', false],
    ['10.0.0.1', '10.0.0.77/8', true], // host bits in the network are ignored
    ['192.168.1.129', '192.168.1.128/25', true],
    ['192.168.1.127', '192.168.1.128/25', false],
    // IPv6
    ['2001:db8::1', '2001:db8::/32', true],
    ['2001:db9::1', '2001:db8::/32', false],
    ['2001:DB8:0:0::1', '2001:db8::1', true],
    ['2001:db8::1', '2001:db8::1/128', true],
    ['2001:db8::2', '2001:db8::1/128', false],
    ['2001:db8::1', '::/0', true],
    ['fe80::1%eth0', 'fe80::/10', true],
    ['febf::1', 'fe80::/10', true],
    ['fec0::1', 'fe80::/10', false],
    ['2001:db8:0:1::1', '2001:db8::/63', true],
    ['2001:db8:0:2::1', '2001:db8::/63', false],
    // families do not mix
    ['1.2.3.4', '::/0', false],
    ['2001:db8::1', '0.0.0.0/0', false],
    ['::1', '127.0.0.1', false],
    // IPv4-mapped IPv6 is IPv4
    ['::ffff:192.0.2.1', '192.0.2.0/24', true],
    ['::ffff:c000:0201', '192.0.2.0/24', true],
    ['::ffff:192.0.3.1', '192.0.2.0/24', false],
    ['::ffff:1.2.3.4', '0.0.0.0/0', true],
    ['::ffff:1.2.3.4', '::/0', false],
    ['192.0.2.1', '::ffff:192.0.2.0/120', true],
    ['192.0.3.1', '::ffff:192.0.2.0/120', false],
    ['::ffff:192.0.2.1', '::ffff:192.0.2.1', true],
    ['10.9.8.7', '::ffff:0:0/96', true],
    ['2001:db8::1', '::ffff:0:0/96', false],
    ['::1.2.3.4', '1.2.3.4', false], // IPv4-compatible is not mapped
    // malformed -> false
    ['1.2.3.4', '1.2.3.0/33', false],
    ['1.2.3.4', '1.2.3.0/', false],
    ['1.2.3.4', '1.2.3.0/-1', false],
    ['1.2.3.4', '1.2.3.0/+8', false],
    ['1.2.3.4', '1.2.3.0/8/8', false],
    ['1.2.3.4', '1.2.3.0/x', false],
    ['1.2.3.4', '1.2.3/24', false],
    ['1.2.3.4', '/24', false],
    ['1.2.3.4', '', false],
    ['2001:db8::1', '2001:db8::/129', false],
    ['::ffff:1.2.3.4', '::ffff:0:0/129', false],
    ['', '0.0.0.0/0', false],
    ['1.2.3', '0.0.0.0/0', false],
    ['not an ip', '::/0', false],
    ['1.2.3.4%eth0', '0.0.0.0/0', false],
    ['fe80::1%', 'fe80::/10', false],
    ['[::1]', '::/0', false],
    ['1.2.3.4', 'localhost', false],
  ];
  for (const [ip, cidr, expect] of cases) {
    t.equal(ipInCidr(ip, cidr), expect, `${ip} in ${cidr}: ${expect}`);
  }
  t.doesNotThrow(() => ipInCidr(undefined as unknown as string, null as unknown as string));
  t.equal(ipInCidr(undefined as unknown as string, '0.0.0.0/0'), false);
});

t.test('isLoopbackAddress', async (t) => {
  for (const ip of ['127.0.0.1', '127.1.2.3', '127.255.255.255', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1', '::FFFF:127.9.9.9', '::ffff:7f00:1']) {
    t.ok(isLoopbackAddress(ip), `${ip} is loopback`);
  }
  for (const ip of ['128.0.0.1', '126.255.255.255', '10.0.0.1', '::2', '::', '::ffff:128.0.0.1', '::127.0.0.1', '2001:db8::1', '', 'localhost']) {
    t.notOk(isLoopbackAddress(ip), `${JSON.stringify(ip)} is not loopback`);
  }
});
