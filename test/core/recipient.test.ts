/**
 * The decision for one RCPT (SPEC §config `action … maildir`, `match`;
 * §tables aliases and sub-addressing): rules, then alias/virtual expansion
 * down to mailboxes of the userbase or relayed addresses. Each case is a
 * recipient and what must come of it: the destinations, or the SMTP code.
 *
 * The open-relay traps come last: from an unauthenticated MX session, no
 * recipient spelling may ever produce a relay destination.
 */
import t, { type Test } from 'tap';
import { resolve as resolvePath } from 'node:path';
import { parseAddress, parsePath, type MailAddress } from '../../core/address.ts';
import { formatDiagnostic, parseConfigText, type Config } from '../../core/config/index.ts';
import { maildirPath, pathComponent, resolveRecipient, type RecipientDecision } from '../../core/recipient.ts';
import type { SessionFacts } from '../../core/rules.ts';
import { openTable } from '../../core/tables/registry.ts';
import { found, notFound, tempfail, type LookupKind, type LookupResult, type LookupValues, type Table } from '../../core/tables/types.ts';
import { Store } from '../../store/db.ts';

const HASH = '$2y$05$mgHH6CWzGILwvD77XuxQpu.amXFzaAKEgw7MwWaoNLkOfssZXJkhK';
const DATA = '/var/lib/appliance';
const MAIL = `${DATA}/mail`;

const HEADER = `
hostname mail.example.org
data-dir "${DATA}"
pki mx cert "/etc/ssl/mx.pem"
pki mx key "/etc/ssl/mx.key"
table domains { example.org, example.net }
table users db
table aliases db
table virtual { info@example.net = alice@example.org, sales@example.org = bob, @example.net = catchall, erin@example.net = erin@example.net }
listen on 0.0.0.0 port 25 tls pki mx tag MX
listen on 0.0.0.0 port 587 tls-require pki mx auth <users> tag SUBMIT
action "out" relay
`;

/** The SPEC's rules, with the submission rule spelled for remote clients. */
const RULES = `
match from any for domain <domains> action "local"
match from any tag SUBMIT for any action "out"
match from any for any reject
`;

/** The same, plus forwarding of expanded addresses (mail from the machine itself). */
const RULES_FORWARD = `
match from any for domain <domains> action "local"
match from any tag SUBMIT for any action "out"
match from local for any action "out"
match from any for any reject
`;

const LOCAL = 'action "local" maildir alias <aliases> virtual <virtual> userbase <users>\n';

function config(body: string): Config {
  const r = parseConfigText(HEADER + body, '/etc/appliance/appliance.conf');
  if (!r.ok) throw new Error(`config does not parse:\n${r.errors.map(formatDiagnostic).join('\n')}`);
  return r.config;
}

const USERS: [string, string][] = [
  ['alice', HASH],
  ['bob', HASH],
  ['carol@example.org', HASH],
  ['dave', '1000:1000:/home/dave'],
  ['catchall', HASH],
  ['Erin', ''],
];

const CHAIN: [string, string][] = Array.from({ length: 12 }, (_, i) => [`c${i}`, `c${i + 1}@example.org`] as [string, string]);

const ALIASES: [string, string][] = [
  ['postmaster', 'alice'],
  ['team', 'alice, bob'],
  ['all', 'team@example.org, bob, alice@example.org, ALICE'],
  ['ops', 'postmaster@example.org, team@example.org'],
  ['dave', 'dave@example.org, alice'],
  ['loop-a', 'loop-b@example.org'],
  ['loop-b', 'loop-a@example.org'],
  ['loopy', 'loopy2@example.org, alice'],
  ['loopy2', 'loopy@example.org'],
  ...CHAIN,
  ['c12', 'alice'],
  ['fwd', 'friend@external.org'],
  ['fwdmix', 'friend@external.org, alice'],
  ['help@example.org', 'friend@external.org'],
  ['ghost', 'nosuchuser'],
  ['gone', 'error:550 5.1.1 this address is gone'],
  ['busy', 'error:450 4.2.1 mailbox busy'],
];

const store = await Store.open(t.testdir());
t.teardown(() => store.close());

/** The config's tables: users and aliases in the db, the rest inline; `extra` replaces by name. */
async function tablesOf(c: Config, extra: Record<string, Table> = {}): Promise<Map<string, Table>> {
  const m = new Map<string, Table>();
  for (const d of c.tables.values()) m.set(d.name, openTable(d, { kv: (name) => store.tableStore(name) }));
  for (const [name, table] of Object.entries(extra)) m.set(name, table);
  return m;
}

{
  const c = config(LOCAL + RULES);
  const tables = await tablesOf(c);
  for (const [k, v] of USERS) await tables.get('users')!.put!(k, v);
  for (const [k, v] of ALIASES) await tables.get('aliases')!.put!(k, v);
}

/** A table that cannot answer, for every kind. */
class FlakyTable implements Table {
  readonly backend = 'ldap' as const;
  readonly name = 'flaky';
  services(): ReadonlySet<LookupKind> {
    return new Set(['domain', 'alias', 'userinfo', 'mailaddr']);
  }
  async lookup<K extends LookupKind>(): Promise<LookupResult<LookupValues[K]>> {
    return tempfail(new Error('directory restarting'));
  }
}

/** A userbase that knows every name (a permissive directory), to reach the path code with any local part. */
class AnyoneTable implements Table {
  readonly backend = 'ldap' as const;
  readonly name = 'anyone';
  readonly username: ((key: string) => string) | undefined;
  constructor(username?: (key: string) => string) {
    this.username = username;
  }
  services(): ReadonlySet<LookupKind> {
    return new Set(['userinfo']);
  }
  async lookup<K extends LookupKind>(kind: K, key: string): Promise<LookupResult<LookupValues[K]>> {
    if (kind !== 'userinfo') return notFound;
    return found({ username: this.username ? this.username(key) : key }) as LookupResult<LookupValues[K]>;
  }
}

const mx: SessionFacts = Object.freeze({ local: false, remoteAddress: '198.51.100.20', tag: 'MX', tls: true, rdns: null });
const submit: SessionFacts = Object.freeze({ local: false, remoteAddress: '203.0.113.7', tag: 'SUBMIT', tls: true, authUser: 'alice' });

function rcpt(s: string): MailAddress {
  const r = s.startsWith('<') ? parsePath(s) : parseAddress(s);
  if (!r.ok || !r.address) throw new Error(`bad recipient ${s}: ${r.ok ? 'null path' : r.reason}`);
  return r.address;
}

/** Destinations as `mailbox:PATH` / `relay:ACTION:ADDRESS` (sorted), or `SMTP ENHANCED` for a refusal. */
function summary(d: RecipientDecision): string[] | string {
  if (d.kind === 'accept') {
    return d.destinations
      .map((x) => (x.kind === 'mailbox' ? `mailbox:${x.path}` : `relay:${x.action.name}:${x.address.local}@${x.address.domain}`))
      .sort();
  }
  return `${d.error.spec.smtp} ${d.error.spec.enhanced}`;
}

const mbox = (domain: string, user: string) => `mailbox:${MAIL}/${domain}/${user}`;

/** [recipient, expected] with the recipient in `<path>` form or bare. */
type Case = readonly [string, string[] | string];

async function check(t: Test, c: Config, tables: Map<string, Table>, session: SessionFacts, cases: readonly Case[], from: string | null = 'sender@remote.example'): Promise<void> {
  for (const [to, expected] of cases) {
    const d = await resolveRecipient(c, tables, session, { mailFrom: from === null ? null : rcpt(from), rcptTo: rcpt(to) });
    t.same(summary(d), typeof expected === 'string' ? expected : [...expected].sort(), `${session.tag} ${to}`);
    // the kind and the code agree: a tempfail is a 4xx, a rejection a 5xx
    if (d.kind !== 'accept') t.equal(d.error.temporary, d.kind === 'tempfail', `${session.tag} ${to}: ${d.kind} with ${d.error.spec.smtp}`);
  }
}

t.test('users of the userbase', async (t) => {
  const c = config(LOCAL + RULES);
  await check(t, c, await tablesOf(c), mx, [
    ['alice@example.org', [mbox('example.org', 'alice')]],
    ['ALICE@EXAMPLE.ORG.', [mbox('example.org', 'alice')]],
    ['<Alice@Example.Org>', [mbox('example.org', 'alice')]],
    ['alice+news@example.org', [mbox('example.org', 'alice')]],
    ['alice+a+b@example.org', [mbox('example.org', 'alice')]],
    ['carol@example.org', [mbox('example.org', 'carol')]],
    ['erin@example.org', [mbox('example.org', 'erin')]],
    ['nobody@example.org', '550 5.1.1'],
    ['nobody+alice@example.org', '550 5.1.1'],
    ['+alice@example.org', '550 5.1.1'],
    ['carol@example.com', '554 5.7.1'],
  ]);
  const d = await resolveRecipient(c, await tablesOf(c), mx, { mailFrom: null, rcptTo: rcpt('Alice+x@example.org') });
  t.equal(d.kind, 'accept');
  if (d.kind === 'accept') {
    const dest = d.destinations[0]!;
    t.equal(dest.kind, 'mailbox');
    t.same(dest.address, { local: 'Alice', domain: 'example.org' }, 'the final address, sub-address removed');
    t.equal(dest.kind === 'mailbox' && dest.user.username, 'alice');
    t.equal(d.rule, c.rules[0]);
  }
});

t.test('aliases: bare local parts, sub-addresses, fan-out counted once per mailbox', async (t) => {
  const c = config(LOCAL + RULES);
  await check(t, c, await tablesOf(c), mx, [
    ['postmaster@example.org', [mbox('example.org', 'alice')]],
    ['PostMaster+urgent@Example.Org', [mbox('example.org', 'alice')]],
    ['team@example.org', [mbox('example.org', 'alice'), mbox('example.org', 'bob')]],
    ['team+x@example.org', [mbox('example.org', 'alice'), mbox('example.org', 'bob')]],
    // alice named four ways (through team, by address, by name twice), bob twice
    ['all@example.org', [mbox('example.org', 'alice'), mbox('example.org', 'bob')]],
    // alice through two different aliases
    ['ops@example.org', [mbox('example.org', 'alice'), mbox('example.org', 'bob')]],
    // an alias on a real user that keeps a copy (user@x: user@x, other)
    ['dave@example.org', [mbox('example.org', 'dave'), mbox('example.org', 'alice')]],
    ['ghost@example.org', '550 5.1.1'],
    ['gone@example.org', '550 5.1.1'],
    ['busy@example.org', '451 4.3.0'],
  ]);
});

t.test('virtual: full addresses, @domain catch-all, before alias bare names', async (t) => {
  const c = config(LOCAL + RULES);
  await check(t, c, await tablesOf(c), mx, [
    ['info@example.net', [mbox('example.org', 'alice')]],
    ['info+x@example.net', [mbox('example.org', 'alice')]],
    ['sales@example.org', [mbox('example.org', 'bob')]],
    ['whoever@example.net', [mbox('example.net', 'catchall')]],
    ['postmaster@example.net', [mbox('example.net', 'catchall')]],
    ['erin@example.net', [mbox('example.net', 'erin')]],
    ['Erin+tag@EXAMPLE.NET', [mbox('example.net', 'erin')]],
  ]);
});

t.test('alias loops and deep chains: 550 5.4.6', async (t) => {
  const c = config(LOCAL + RULES);
  await check(t, c, await tablesOf(c), mx, [
    ['loop-a@example.org', '550 5.4.6'],
    ['loop-b@example.org', '550 5.4.6'],
    // a loop beside a real destination: the destination gets its copy
    ['loopy@example.org', [mbox('example.org', 'alice')]],
    // c2 → c3 → … → c12 → alice: 10 address hops, the bound
    ['c2@example.org', [mbox('example.org', 'alice')]],
    ['c1@example.org', '550 5.4.6'],
    ['c0@example.org', '550 5.4.6'],
  ]);
});

t.test('forwarding to an outside address needs a "from local" rule', async (t) => {
  const without = config(LOCAL + RULES);
  await check(t, without, await tablesOf(without), mx, [
    ['fwd@example.org', '550 5.1.1'],
    ['fwdmix@example.org', [mbox('example.org', 'alice')]],
    ['help@example.org', '550 5.1.1'],
  ]);
  const withRule = config(LOCAL + RULES_FORWARD);
  await check(t, withRule, await tablesOf(withRule), mx, [
    ['fwd@example.org', ['relay:out:friend@external.org']],
    ['fwd+x@example.org', ['relay:out:friend@external.org']],
    ['fwdmix@example.org', ['relay:out:friend@external.org', mbox('example.org', 'alice')]],
    ['help@example.org', ['relay:out:friend@external.org']],
  ]);
  await check(t, withRule, await tablesOf(withRule), mx, [['fwd@example.org', ['relay:out:friend@external.org']]], null);
});

t.test('Maildir paths: the default and the templates', async (t) => {
  const plain = config(LOCAL + RULES);
  const tables = await tablesOf(plain);
  await check(t, plain, tables, mx, [['Dave+x@Example.ORG', [mbox('example.org', 'dave'), mbox('example.org', 'alice')]]]);

  const templated = config(`action "local" maildir "/srv/vmail/%{dest.domain}/%{dest.user}/Maildir" alias <aliases> userbase <users>\n` + RULES);
  await check(t, templated, await tablesOf(templated), mx, [
    ['Alice+x@Example.ORG', ['mailbox:/srv/vmail/example.org/alice/Maildir']],
    ['team@example.net', ['mailbox:/srv/vmail/example.net/alice/Maildir', 'mailbox:/srv/vmail/example.net/bob/Maildir']],
  ]);

  const home = config(`action "local" maildir "%{user.directory}/mailbox" userbase <users>\n` + RULES);
  await check(t, home, await tablesOf(home), mx, [
    ['dave@example.org', ['mailbox:/home/dave/mailbox']],
    ['alice@example.org', [`mailbox:${MAIL}/example.org/alice/mailbox`]],
  ]);

  const byName = config(`action "local" maildir "/srv/mail/%{user.username}" userbase <users>\n` + RULES);
  await check(t, byName, await tablesOf(byName), mx, [
    ['erin@example.net', ['mailbox:/srv/mail/erin']],
    ['carol@example.org', ['mailbox:/srv/mail/carol@example.org']],
  ]);
});

t.test('path safety: a local part never escapes the mail directory', async (t) => {
  const c = config(`action "local" maildir userbase <users>\n` + RULES);
  const tables = await tablesOf(c, { users: new AnyoneTable() });
  const evil = [
    '<"../../etc"@example.org>',
    '<"../.."@example.org>',
    '<".."@example.org>',
    '<"."@example.org>',
    '<".hidden"@example.org>',
    '<".ssh/authorized_keys"@example.org>',
    '<a/b@example.org>',
    '<a/../../b@example.org>',
    '<"/etc/passwd"@example.org>',
    '<"a\\\\..\\\\b"@example.org>',
    '<"x/../../../root"@example.org>',
    '<"a b/c"@example.org>',
  ];
  for (const s of evil) {
    const r = parsePath(s);
    if (!r.ok || !r.address) {
      t.pass(`${s} does not even parse`);
      continue;
    }
    const d = await resolveRecipient(c, tables, mx, { mailFrom: null, rcptTo: r.address });
    t.equal(d.kind, 'accept', `${s} is a user of the permissive userbase`);
    if (d.kind !== 'accept') continue;
    const dest = d.destinations[0]!;
    if (dest.kind !== 'mailbox') {
      t.fail(`${s}: not a mailbox`);
      continue;
    }
    const prefix = `${MAIL}/example.org/`;
    t.ok(dest.path.startsWith(prefix), `${s} → ${dest.path}`);
    const last = dest.path.slice(prefix.length);
    t.notOk(last.includes('/'), `${s}: one path component`);
    t.notOk(last.startsWith('.'), `${s}: not hidden, not . or ..`);
    t.equal(resolvePath(dest.path), dest.path, `${s}: the path is already normal`);
  }

  // values from the userbase go through the same filter (user.username), except user.directory
  const byName = config(`action "local" maildir "/srv/mail/%{user.username}/Maildir" userbase <users>\n` + RULES);
  const evilNames = await tablesOf(byName, { users: new AnyoneTable(() => '../../root') });
  const d = await resolveRecipient(byName, evilNames, mx, { mailFrom: null, rcptTo: rcpt('x@example.org') });
  t.same(summary(d), ['mailbox:/srv/mail/_._.._root/Maildir']);

  t.equal(pathComponent('..'), '_.');
  t.equal(pathComponent(''), '_');
  t.equal(pathComponent('a\0b'), 'a_b');
  const m = byName.actions.get('local')!.method;
  if (m.type === 'maildir') {
    t.equal(maildirPath(byName, m, { local: '../x', domain: 'example.org' }, { username: '/abs' }), '/srv/mail/_abs/Maildir');
  }
});

t.test('temporary failures are 451 4.3.0, never 5xx', async (t) => {
  const flaky = new FlakyTable();
  const userbase = config(LOCAL + RULES);
  await check(t, userbase, await tablesOf(userbase, { users: flaky }), mx, [
    ['alice@example.org', '451 4.3.0'],
    ['team@example.org', '451 4.3.0'],
    ['nobody@example.org', '451 4.3.0'],
    ['x@external.org', '554 5.7.1'],
  ]);
  await check(t, userbase, await tablesOf(userbase, { aliases: flaky }), mx, [
    ['alice@example.org', '451 4.3.0'],
    ['info@example.net', '451 4.3.0'],
  ]);
  await check(t, userbase, await tablesOf(userbase, { virtual: flaky }), mx, [['alice@example.org', '451 4.3.0']]);
  await check(t, userbase, await tablesOf(userbase, { domains: flaky }), mx, [
    ['alice@example.org', '451 4.3.0'],
    ['x@external.org', '451 4.3.0'],
  ]);
  // the expansion of an address goes through the rules again: their tempfail counts too
  const forward = config(`table fwd-domains db\n` + LOCAL + `
match from any for domain <domains> action "local"
match from local for domain <fwd-domains> action "out"
match from any for any reject
`);
  await check(t, forward, await tablesOf(forward, { 'fwd-domains': flaky }), mx, [
    ['fwd@example.org', '451 4.3.0'],
    ['alice@example.org', [mbox('example.org', 'alice')]],
  ]);
});

// ------------------------------------------------------------------ open-relay traps

/** Recipients an open-relay tester tries, and what our MX must answer: never a relay. */
const TRAPS: readonly Case[] = [
  // at our domain: plain local parts of ours, unknown users
  ['<user%external.org@example.org>', '550 5.1.1'],
  ['<USER%EXTERNAL.ORG@EXAMPLE.ORG>', '550 5.1.1'],
  ['<user%external.org@example.org.>', '550 5.1.1'],
  ['<"user%external.org"@example.org>', '550 5.1.1'],
  ['<"user@external.org"@example.org>', '550 5.1.1'],
  ['<"user@external.org"@EXAMPLE.ORG.>', '550 5.1.1'],
  ['<"user@external.org."@example.org>', '550 5.1.1'],
  ['<external.org!user@example.org>', '550 5.1.1'],
  ['<EXTERNAL.ORG!USER@Example.Org>', '550 5.1.1'],
  ['<user%external.org+tag@example.org>', '550 5.1.1'],
  ['<alice%external.org@example.org>', '550 5.1.1'],
  // a local part that reads as an address of ours or of a forwarding alias
  ['<"carol@example.org"@example.org>', '550 5.1.1'],
  ['<"help@example.org"@example.org>', '550 5.1.1'],
  ['<"fwd@example.org"@example.org>', '550 5.1.1'],
  // source routes are dropped: the recipient is outside
  ['<@example.org:user@external.org>', '554 5.7.1'],
  ['<@EXAMPLE.ORG,@mail.example.org:USER@EXTERNAL.ORG.>', '554 5.7.1'],
  ['<@[127.0.0.1]:user@external.org>', '554 5.7.1'],
  // outside, however spelled
  ['<user@EXTERNAL.ORG>', '554 5.7.1'],
  ['<user@external.org.>', '554 5.7.1'],
  ['<user@sub.example.org>', '554 5.7.1'],
  ['<user@example.org.external.org>', '554 5.7.1'],
  ['<user@[198.51.100.1]>', '554 5.7.1'],
  ['<user@[IPv6:2001:db8::1]>', '554 5.7.1'],
  ['<user@ｅｘａｍｐｌｅ.org>', '554 5.7.1'],
  // the machine's own names, which no rule accepts from outside
  ['<postmaster@localhost>', '550 5.7.1'],
  ['<user%external.org@mail.example.org>', '550 5.7.1'],
  // at a domain with a catch-all: the catch-all mailbox, still not a relay
  ['<user%external.org@example.net>', [mbox('example.net', 'catchall')]],
  ['<"user@external.org"@example.net>', [mbox('example.net', 'catchall')]],
  ['<external.org!user@EXAMPLE.NET.>', [mbox('example.net', 'catchall')]],
];

/** Spellings the SMTP layer refuses with 501 5.1.3 before any rule runs. */
const UNPARSABLE = [
  '<user@external.org@example.org>',
  '<user@external.org.@example.org>',
  '<"user@external.org">',
  '<user@external.org%example.org>',
  '<user@example.org@>',
  '<@example.org:>',
  '<@example.org,user@external.org>',
  '<user@external.org',
  '<user@example.org..>',
  '<user@.example.org>',
  '<user@external.org\r\nRCPT TO:<x@example.org>>',
];

t.test('open-relay traps from an unauthenticated MX session', async (t) => {
  for (const rules of [RULES, RULES_FORWARD]) {
    const c = config(LOCAL + rules);
    const tables = await tablesOf(c);
    await check(t, c, tables, mx, TRAPS);
    await check(t, c, tables, mx, TRAPS, null);
    await check(t, c, tables, mx, TRAPS, 'alice@example.org');
    for (const [to] of TRAPS) {
      for (const session of [mx, { ...mx, tls: false }, { ...mx, rdns: 'mail.example.org' }, { ...mx, helo: 'mail.example.org' }]) {
        const d = await resolveRecipient(c, tables, session, { mailFrom: rcpt('alice@example.org'), rcptTo: rcpt(to) });
        t.notOk(d.kind === 'accept' && d.destinations.some((x) => x.kind === 'relay'), `never a relay: ${to}`);
      }
    }
  }
});

t.test('unparsable trap spellings fail at the parser (the SMTP layer answers 501 5.1.3)', async (t) => {
  for (const s of UNPARSABLE) {
    const r = parsePath(s);
    t.notOk(r.ok, `${JSON.stringify(s)} is refused${r.ok ? '' : `: ${r.reason}`}`);
  }
  const r = parsePath('<user@external.org@example.org>');
  t.equal(!r.ok && r.reason, "unquoted '@' in local part");
});

t.test('the same outside recipients from an authenticated SUBMIT session are relayed', async (t) => {
  for (const rules of [RULES, RULES_FORWARD]) {
    const c = config(LOCAL + rules);
    const tables = await tablesOf(c);
    const outside = TRAPS.filter(([, expected]) => expected === '554 5.7.1');
    t.ok(outside.length >= 8);
    await check(
      t,
      c,
      tables,
      submit,
      outside.map(([to]) => {
        const a = rcpt(to);
        return [to, [`relay:out:${a.local}@${a.domain}`]] as const;
      }),
      'alice@example.org',
    );
    // the ones at our domains are still ours: no relay, the same answers as on MX
    await check(
      t,
      c,
      tables,
      submit,
      TRAPS.filter(([, expected]) => expected === '550 5.1.1' || typeof expected !== 'string'),
      'alice@example.org',
    );
    await check(t, c, tables, submit, [
      ['<@example.org:user@external.org>', ['relay:out:user@external.org']],
      ['<user@EXTERNAL.ORG.>', ['relay:out:user@external.org']],
      ['alice@example.org', [mbox('example.org', 'alice')]],
    ], 'alice@example.org');
  }
});

t.test('aliases(5): a bare name target is an alias again before it is a user', async (t) => {
  const r = parseConfigText(
    `hostname mail.example.org
data-dir "${DATA}"
table domains { example.org }
table users { alice@example.org = "${HASH}" }
table aliases { postmaster = root, root = alice, loop1 = loop2, loop2 = loop1, @example.org = alice }
listen on 127.0.0.1 port 2525 auth <users> tag MX
action "local" maildir alias <aliases> userbase <users>
match from any for domain <domains> action "local"
`,
    '/etc/appliance/appliance.conf',
  );
  if (!r.ok) throw new Error(r.errors.map(formatDiagnostic).join('\n'));
  const c = r.config;
  const open = new Map([...c.tables.values()].map((d) => [d.name, openTable(d, {})]));
  const tables = { get: (n: string) => open.get(n) };
  const session: SessionFacts = { local: false, remoteAddress: '192.0.2.1', tls: false, tag: 'MX' };
  const to = (a: string) => resolveRecipient(c, tables, session, { mailFrom: null, rcptTo: (parseAddress(a) as { ok: true; address: MailAddress }).address });
  const pm = await to('postmaster@example.org');
  t.equal(pm.kind, 'accept');
  if (pm.kind === 'accept') t.same(pm.destinations.map((d) => d.kind === 'mailbox' && d.path), [`${MAIL}/example.org/alice`], 'postmaster → root → alice');
  const loop = await to('loop1@example.org');
  t.equal(loop.kind, 'reject', `a loop between names is refused, not sent to the catch-all: ${JSON.stringify(loop)}`);
  if (loop.kind === 'reject') t.equal(loop.error.spec.enhanced, '5.4.6');
});
