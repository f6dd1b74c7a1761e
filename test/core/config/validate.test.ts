/**
 * `appliance check` errors: each with its line, all of them at once, exact
 * messages where users read them.
 */
import t from 'tap';
import { brief, fixture, parse, parseErrors, parseOk } from './helpers.ts';
import { authenticatedTags, isLoopbackListener, isOpenRelay } from '../../../core/config/validate.ts';

const OPEN_RELAY =
  'open relay: this rule relays mail for any destination from any client without authentication; restrict it with auth, from local, from src <table> or the tag of an auth listener';
const CLEAR_AUTH =
  'listen: auth on a listener without TLS would send passwords in clear; add tls, tls-require or smtps (only loopback listeners may omit it)';

t.test('one config with twenty mistakes gives twenty errors, each on its line', async (t) => {
  const text = fixture('broken/twenty-mistakes.conf');
  const r = parse(text);
  t.notOk(r.ok, 'check fails (exit 2)');
  if (r.ok) return;
  const marked = text
    .split('\n')
    .flatMap((l, i) => (/#\s*\d+\s/.test(l.replace(/^#.*/, '')) ? [i + 1] : []));
  t.equal(marked.length, 20, 'the fixture marks twenty lines');
  t.equal(r.errors.length, 20);
  t.same(r.errors.map((e) => e.pos.line), marked, 'one error per marked line, in order');
  t.ok(r.errors.every((e) => e.pos.file === '/etc/appliance/appliance.conf'));
  const at = (needle: string) => {
    const line = text.split('\n').findIndex((l) => l.includes(needle)) + 1;
    return r.errors.find((e) => e.pos.line === line)?.message;
  };
  t.equal(at('listne on'), 'unknown keyword "listne"; did you mean "listen"?');
  t.equal(at('action "locl"'), 'undefined action "locl"; did you mean "local"?');
  t.equal(at('auth <usres>'), 'undefined table <usres>; did you mean "users"?');
  t.equal(at('pki nope'), 'undefined pki "nope"');
  t.equal(at('table domains { example.com }'), 'table domains is defined twice (first at line 6)');
  t.equal(at('relay host smtp+tls://relay.example.net'), 'action "out" is defined twice (first at line 20)');
  t.equal(at('port 70000'), 'port 70000 is out of range (1-65535)');
  t.equal(at('port 2587'), 'listen: tls-require needs a certificate: add pki NAME');
  t.equal(at('port 2588'), CLEAR_AUTH);
  t.equal(at('!for domain'), OPEN_RELAY);
  t.equal(at('# 14 open relay'), OPEN_RELAY);
  t.equal(at('# 15 unreachable'), 'unreachable rule: the rule at line 26 matches every message first');
  t.equal(at('hostname "mail'), 'unterminated quoted string');
  t.equal(at('35Q'), 'max-message-size: invalid size "35Q" (use K, M or G, as in 35M)');
  t.equal(at('queue ttl 4x'), 'queue ttl: invalid delay "4x" (use s, m, h or d, as in 4h)');
  t.equal(at('sqlite:'), 'sqlite tables are not supported; use db (embedded), file: or ldap:');
  t.equal(at('alias <domains>'), 'alias <domains>: a list cannot answer alias lookups; write key = value entries, as in { postmaster = alice@example.org }');
  t.equal(at('table late'), "'{' is never closed");
});

/** [what, config, expected `LINE:COL: message` errors] */
const corpus: [string, string, string[]][] = [
  ['unknown keyword', 'listne on 0.0.0.0 port 25\n', ['1:1: unknown keyword "listne"; did you mean "listen"?']],
  ['unknown keyword, no near miss', 'frobnicate\n', ['1:1: unknown keyword "frobnicate"']],
  ['undefined table, with a near miss', 'table users db\nlisten on lo auth <user>\n', ['2:19: undefined table <user>; did you mean "users"?']],
  ['undefined action', 'action "out" relay\nmatch from local for any action "ot"\n', ['2:33: undefined action "ot"; did you mean "out"?']],
  ['undefined pki', 'pki mx self-signed\nlisten on lo tls pki m\n', ['2:22: undefined pki "m"; did you mean "mx"?']],
  ['undefined pki of a relay', 'action "r" relay pki nope\nmatch from local for any action "r"\n', ['1:8: undefined pki "nope"']],
  ['duplicate table', 'table a { x }\ntable a { y }\nmatch for domain <a> reject\n', ['2:7: table a is defined twice (first at line 1)']],
  ['duplicate action', 'action "r" relay\naction "r" relay\nmatch from local for any action "r"\n', ['2:8: action "r" is defined twice (first at line 1)']],
  ['port 0', 'listen on lo port 0\n', ['1:19: port 0 is out of range (1-65535)']],
  ['port 65536', 'listen on lo port 65536\n', ['1:19: port 65536 is out of range (1-65535)']],
  ['port in use twice', 'listen on lo port 25\nlisten on lo port smtp\n', ['2:1: listen: lo port 25 is already used at line 1']],
  ['tls-require without pki', 'listen on lo tls-require\n', ['1:1: listen: tls-require needs a certificate: add pki NAME']],
  ['smtps without pki', 'listen on lo smtps\n', ['1:1: listen: smtps needs a certificate: add pki NAME']],
  ['auth on a non-TLS listener', 'table u db\nlisten on 0.0.0.0 port 587 auth <u>\n', [`2:1: ${CLEAR_AUTH}`]],
  ['auth-optional on a non-TLS interface', 'table u db\nlisten on eth0 port 587 auth-optional <u>\n', [`2:1: ${CLEAR_AUTH}`]],
  ['auth on a non-TLS imap listener', 'table u db\nimap listen on 0.0.0.0 auth <u>\n', [`2:6: imap ${CLEAR_AUTH}`]],
  ['imap listener without auth', 'imap listen on lo\n', ['1:6: imap listen: needs auth <table> (the users who may log in)']],
  ['senders without auth', 'pki p self-signed\nlisten on lo tls pki p senders { a = b }\n', ["2:32: listen: senders needs auth (it checks the authenticated user's addresses)"]],
  ['unreachable after a catch-all', 'match from any for any reject\nmatch from local for any reject\n', ['2:1: unreachable rule: the rule at line 1 matches every message first']],
  [
    'unreachable: same conditions',
    'match from any for domain a.example reject\nmatch for domain a.example from any reject\n',
    ['2:1: unreachable rule: the rule at line 1 has the same conditions and matches first'],
  ],
  ['open relay', 'action "out" relay\nmatch from any for any action "out"\n', [`2:1: ${OPEN_RELAY}`]],
  ['open relay via !for domain', 'action "out" relay\nmatch from any !for domain example.org action "out"\n', [`2:1: ${OPEN_RELAY}`]],
  ['open relay despite !from local', 'action "out" relay\nmatch !from local for any action "out"\n', [`2:1: ${OPEN_RELAY}`]],
  ['open relay with !auth', 'action "out" relay\nmatch from any for any !auth action "out"\n', [`2:1: ${OPEN_RELAY}`]],
  ['unterminated quote', 'hostname "a.example\n', ['1:10: unterminated quoted string']],
  ['unclosed {', 'table a { x,\n  y\n', ["1:9: '{' is never closed"]],
  ['bad size', 'smtp max-message-size 35MB5\n', ['1:23: max-message-size: invalid size "35MB5" (use K, M or G, as in 35M)']],
  ['authentication-results needs yes or no', 'smtp authentication-results maybe\n', ['1:29: unknown authentication-results value (yes or no) "maybe"']],
  ['bad delay', 'bounce warn-interval 4h, 1y\n', ['1:26: warn-interval: invalid delay "1y" (use s, m, h or d, as in 4h)']],
  ['sqlite backend', 'table t sqlite:/etc/mail/t.conf\n', ['1:9: sqlite tables are not supported; use db (embedded), file: or ldap:']],
  ['postgres backend', 'table t postgres:/etc/mail/t.conf\n', ['1:9: postgres tables are not supported; use db (embedded), file: or ldap:']],
  ['unknown backend', 'table t redis2:x\n', ['1:9: unknown table backend "redis2:"; use file:, db or ldap:']],
  [
    'list table used for alias',
    'table users db\ntable a { x, y }\naction "l" maildir alias <a> userbase <users>\nmatch for local action "l"\n',
    ['3:26: alias <a>: a list cannot answer alias lookups; write key = value entries, as in { postmaster = alice@example.org }'],
  ],
  [
    'inline list used for virtual',
    'table users db\naction "l" maildir virtual { x } userbase <users>\nmatch for local action "l"\n',
    ['2:28: virtual table: a list cannot answer alias lookups; write key = value entries, as in { postmaster = alice@example.org }'],
  ],
  ['map used as netaddr', 'match from src { a = b } for local reject\n', ['1:16: from src table: a key = value table cannot list network addresses; write { 192.0.2.0/24, ::1 }']],
  ['maildir without users', 'action "l" maildir\nmatch for local action "l"\n', [
    '1:8: action "l": maildir without userbase, and the listeners use no auth tables, so the users it delivers to are unknown; add userbase <table>',
  ]],
  ['forward-only without tables', 'action "f" forward-only\nmatch for local action "f"\n', ['1:8: action "f": forward-only needs alias or virtual <table>']],
  ['relay auth without host', 'table c { l = x }\naction "r" relay auth <c>\nmatch from local for any action "r"\n', [
    '2:23: action "r": relay auth needs a relay host (host smtp+tls://label@host:port)',
  ]],
  ['relay label missing from credentials', 'table c { l = x }\naction "r" relay host smtp+tls://other@h.example auth <c>\nmatch from local for any action "r"\n', [
    '2:55: relay credentials "other" are not in table c',
  ]],
  ['pki cert without key', 'pki p cert /x.pem\n', ['1:5: pki p: cert without key']],
  ['acme without challenge listener', 'pki p acme\n', ['1:5: pki p uses acme, but there is no "acme challenge http-01 listen on ADDRESS port N"']],
  ['acme contact', 'acme contact admin@example.org\n', ['1:14: acme contact must be a mailto: URL, as in "mailto:admin@example.org"']],
  ['unknown log level', 'log level verbose\n', ['1:11: unknown log level "verbose"']],
  ['special-use flag', 'imap mailbox Spam special-use \\Spam\n', ['1:31: unknown special-use flag "\\Spam" (RFC 6154: \\All \\Archive \\Drafts \\Flagged \\Junk \\Sent \\Trash \\Important)']],
  ['unsupported delivery', 'action "m" mbox\n', ['1:12: delivery method "mbox" is not supported: appliance delivers to Maildir (maildir), relays (relay) or forwards (forward-only)']],
  ['missing decision', 'match from any for any\n', ['1:23: expected match option (from, for, tag, auth, tls, helo, …) at end of line']],
  ['trailing words', 'hostname a.example b.example\n', ['1:20: unexpected "b.example"']],
];

t.test('broken configs', async (t) => {
  for (const [what, text, expected] of corpus) {
    const r = parse(text);
    t.notOk(r.ok, `${what}: fails`);
    if (!r.ok) t.same(brief(r.errors), expected, what);
  }
});

t.test('every error at once, sorted by position', async (t) => {
  const errors = parseErrors('log level x\nlistne on lo\nqueue ttl 1y\n');
  t.same(errors.map((e) => e.pos.line), [1, 2, 3]);
});

t.test('auth on a loopback listener without TLS is allowed', async (t) => {
  for (const addr of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', 'lo', 'lo0']) {
    const r = parse(`table u db\nlisten on ${addr} port 587 auth <u>\n`);
    t.ok(r.ok, `listen on ${addr} … auth`);
  }
  t.ok(parse('table u db\nimap listen on 127.0.0.1 auth <u>\n').ok, 'imap listen on 127.0.0.1 … auth');
  const { config } = parseOk('listen on 127.0.0.1\nlisten on eth0 port 26\nlisten on 0.0.0.0 port 27\nlisten on ::1 port 28\n');
  t.same(config.listeners.map(isLoopbackListener), [true, false, false, true]);
});

t.test('open relay analysis', async (t) => {
  const prelude = [
    'pki p self-signed',
    'table users db',
    'table nets { 192.0.2.0/24 }',
    'listen on 0.0.0.0 port 25 tls pki p tag MX',
    'listen on 0.0.0.0 port 587 tls-require pki p auth <users> tag SUBMIT',
    'listen on 0.0.0.0 port 465 smtps pki p auth <users> tag SUBMIT',
    'listen on 0.0.0.0 port 2525 smtps pki p auth-optional <users> tag OPTIONAL',
    'listen on 0.0.0.0 port 2526 smtps pki p auth <users> tag MIXED',
    'listen on 0.0.0.0 port 2527 tls pki p tag MIXED',
    'action "out" relay',
    'action "local" maildir userbase <users>',
  ].join('\n');
  const rule = (r: string) => parse(`${prelude}\n${r}\nmatch from any for domain example.org action "local"\n`);
  const open = (r: string) => {
    const res = rule(r);
    return !res.ok && res.errors.some((e) => e.message === OPEN_RELAY);
  };
  const cases: [string, boolean][] = [
    ['match from any for any action "out"', true],
    ['match from any !for domain example.org action "out"', true],
    ['match from any !for local action "out"', true],
    ['match from any for any tag MX action "out"', true],
    ['match from any for any !tag SUBMIT action "out"', true],
    ['match from rdns for any action "out"', true],
    ['match from any for any tls action "out"', true],
    ['match from any tag OPTIONAL for any action "out"', true],
    ['match from any tag MIXED for any action "out"', true],
    ['match from src <nets> for any action "out"', false],
    ['match from src 192.0.2.25 for any action "out"', false],
    ['match from any for any auth action "out"', false],
    ['match from auth for any action "out"', false],
    ['match from auth <users> for any action "out"', false],
    ['match from local for any action "out"', false],
    ['match from socket for any action "out"', false],
    ['match for any action "out"', false],
    ['match tag SUBMIT for any action "out"', false],
    ['match from any tag SUBMIT for any action "out"', false],
    ['match from any for domain example.org action "out"', false],
    ['match from any for rcpt-to { a@example.org } action "out"', false],
    ['match from any for any reject', false],
  ];
  for (const [r, expected] of cases) t.equal(open(r), expected, `${expected ? 'open' : 'not open'}: ${r}`);
  t.ok(rule('match from any tag SUBMIT for any action "out"').ok, 'the SPEC\'s submission rule is valid');

  const { config } = parseOk(`${prelude}\nmatch from local for any action "out"\nmatch from any for domain example.org action "local"\n`);
  t.same([...authenticatedTags(config)].sort(), ['SUBMIT'], 'auth-optional and mixed tags do not count as authenticated');
  t.notOk(isOpenRelay(config.rules[0]!, authenticatedTags(config)));
});

t.test('warnings do not fail the check', async (t) => {
  const r = parse('table unused { a }\naction "spare" relay\nmatch from any for domain example.org tag NOPE reject\npki p self-signed\nlisten on lo pki p\n');
  t.ok(r.ok);
  t.same(brief(r.warnings), [
    '1:7: table unused is not used',
    '2:8: action "spare" is not used by any match rule',
    '3:39: no listener sets tag "NOPE"',
    '5:18: listen: pki is given but TLS is not enabled (add tls, tls-require or smtps)',
  ]);
  t.ok(r.warnings.every((w) => w.severity === 'warning'));
  t.same(brief(parse('listen on lo\n').warnings), ['1:1: no match rules: every recipient will be rejected']);
});

t.test('a tag or auth rule without "from" is "from local": check warns', async (t) => {
  const { parseConfigText, formatDiagnostic } = await import('../../../core/config/index.ts');
  const base = `table users { alice = "$2b$10$abcdefghijklmnopqrstuu5A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5" }
pki p self-signed
listen on 0.0.0.0 port 587 tls-require pki p auth <users> tag SUBMIT
action "out" relay
`;
  const implicit = parseConfigText(`${base}match tag SUBMIT for any action "out"\n`, '/etc/appliance/appliance.conf');
  t.ok(implicit.ok);
  t.same(implicit.warnings.map(formatDiagnostic), [
    '/etc/appliance/appliance.conf:5:1: warning: this rule names no "from", which means "from local": remote clients of the tagged or authenticated sessions will not match; write "from any" if that is meant',
  ]);
  const explicit = parseConfigText(`${base}match from any tag SUBMIT for any action "out"\n`, '/etc/appliance/appliance.conf');
  t.same(explicit.warnings, [], 'no warning when from is written');
  const local = parseConfigText(`${base}match from local tag SUBMIT for any action "out"\n`, '/etc/appliance/appliance.conf');
  t.same(local.warnings, [], 'no warning for an explicit from local');
});
