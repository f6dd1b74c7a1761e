/**
 * One conformance suite for every key → value table backend (inline, file,
 * db): the same entries are loaded into each, and every lookup kind must
 * answer the same thing whatever the storage (SPEC §tables, OpenSMTPD's
 * table services).
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TableDecl } from '../../../core/config/types.ts';
import { openTable } from '../../../core/tables/registry.ts';
import type { LookupKind, LookupResult, Table, TableEntry } from '../../../core/tables/types.ts';
import { Store } from '../../../store/db.ts';

/** Real hashes (fixtures of test/core/auth): htpasswd bcrypt, Drepper's SHA512-CRYPT vector. */
const BCRYPT = '$2y$05$mgHH6CWzGILwvD77XuxQpu.amXFzaAKEgw7MwWaoNLkOfssZXJkhK';
const SHA512 =
  '$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1';

type Dataset =
  | { readonly form: 'list'; readonly keys: readonly string[] }
  | { readonly form: 'map'; readonly entries: readonly (readonly [string, string])[]; readonly colon?: boolean };

/** The entries every backend is loaded with, one table each. Keys are written with mixed case on purpose. */
const datasets = {
  domains: { form: 'list', keys: ['example.org', 'Example.NET', '*.wild.example.com'] },
  senders: { form: 'list', keys: ['alice@example.org', '@example.net', 'bob', 'Carol@Example.ORG'] },
  nets: {
    form: 'list',
    keys: ['192.0.2.0/24', '10.1.2.3', '2001:DB8::/32', '::1', '::ffff:198.51.100.0/120', 'fd00:1:2::'],
  },
  aliases: {
    form: 'map',
    colon: true,
    entries: [
      ['postmaster', 'alice'],
      ['Team', 'alice, bob@example.net,carol'],
      ['@example.net', 'catchall'],
      ['info@example.org', 'alice@example.org'],
    ],
  },
  creds: {
    form: 'map',
    entries: [
      ['alice@example.org', BCRYPT],
      ['Bob', SHA512],
    ],
  },
  users: {
    form: 'map',
    entries: [
      ['alice', '1000:1000:/home/alice'],
      ['bob', '/srv/mail/bob'],
      ['carol@example.org', BCRYPT],
    ],
  },
  userlist: { form: 'list', keys: ['dave', 'Erin@Example.org'] },
  sendmap: {
    form: 'map',
    entries: [
      ['alice@example.org', 'alice@example.org, @Example.NET, Alice.Smith@example.org'],
      ['Bob@Example.org', BCRYPT],
    ],
  },
} as const satisfies Record<string, Dataset>;
type DatasetName = keyof typeof datasets;

/** [table, kind, key, expected value or null for not found] */
type Case = readonly [DatasetName, LookupKind, string, unknown];

const cases: readonly Case[] = [
  // domain: case-insensitive, one trailing dot, `*.` wildcards match subdomains only
  ['domains', 'domain', 'example.org', true],
  ['domains', 'domain', 'EXAMPLE.ORG', true],
  ['domains', 'domain', 'example.org.', true],
  ['domains', 'domain', 'example.net', true],
  ['domains', 'domain', 'Example.Net.', true],
  ['domains', 'domain', 'a.wild.example.com', true],
  ['domains', 'domain', 'a.b.wild.example.com', true],
  ['domains', 'domain', 'A.WILD.EXAMPLE.COM.', true],
  ['domains', 'domain', 'wild.example.com', null],
  ['domains', 'domain', 'example.com', null],
  ['domains', 'domain', 'sub.example.org', null],
  ['domains', 'domain', 'xexample.org', null],
  ['domains', 'domain', 'example.org.evil.test', null],
  ['domains', 'domain', '', null],
  // mailaddr: `user@domain`, `@domain`, `user`
  ['senders', 'mailaddr', 'alice@example.org', true],
  ['senders', 'mailaddr', 'ALICE@Example.ORG', true],
  ['senders', 'mailaddr', 'alice@example.com', null],
  ['senders', 'mailaddr', 'anyone@example.net', true],
  ['senders', 'mailaddr', 'anyone@sub.example.net', null],
  ['senders', 'mailaddr', 'bob@anywhere.test', true],
  ['senders', 'mailaddr', 'bob', true],
  ['senders', 'mailaddr', 'bobby@example.org', null],
  ['senders', 'mailaddr', 'carol@example.org', true],
  ['senders', 'mailaddr', 'carol@example.com', null],
  ['senders', 'mailaddr', 'nobody', null],
  // netaddr: IPv4/IPv6 addresses and CIDR ranges, v4-mapped on either side
  ['nets', 'netaddr', '192.0.2.77', true],
  ['nets', 'netaddr', '192.0.2.0', true],
  ['nets', 'netaddr', '192.0.3.1', null],
  ['nets', 'netaddr', '10.1.2.3', true],
  ['nets', 'netaddr', '10.1.2.4', null],
  ['nets', 'netaddr', '2001:db8:1::5', true],
  ['nets', 'netaddr', '2001:DB8:FFFF::1', true],
  ['nets', 'netaddr', '2001:db9::1', null],
  ['nets', 'netaddr', '::1', true],
  ['nets', 'netaddr', '::2', null],
  ['nets', 'netaddr', '::ffff:192.0.2.9', true],
  ['nets', 'netaddr', '::ffff:192.0.3.9', null],
  ['nets', 'netaddr', '198.51.100.7', true],
  ['nets', 'netaddr', '::ffff:198.51.100.7', true],
  ['nets', 'netaddr', '198.51.101.7', null],
  ['nets', 'netaddr', 'fd00:1:2::', true],
  ['nets', 'netaddr', 'fd00:1:2::1', null],
  ['nets', 'netaddr', '127.0.0.1', null],
  ['nets', 'netaddr', 'not-an-ip', null],
  ['nets', 'netaddr', '192.0.2.0/24', null],
  // alias: comma lists, case-insensitive keys, `@domain` keys looked up as such
  ['aliases', 'alias', 'postmaster', ['alice']],
  ['aliases', 'alias', 'POSTMASTER', ['alice']],
  ['aliases', 'alias', 'team', ['alice', 'bob@example.net', 'carol']],
  ['aliases', 'alias', '@example.net', ['catchall']],
  ['aliases', 'alias', 'info@example.org', ['alice@example.org']],
  ['aliases', 'alias', 'info', null],
  ['aliases', 'alias', 'nobody', null],
  ['domains', 'alias', 'example.org', null],
  // credentials: the value is the hash; the username is the key as written in the table
  ['creds', 'credentials', 'alice@example.org', { username: 'alice@example.org', hash: BCRYPT }],
  ['creds', 'credentials', 'ALICE@example.org', { username: 'alice@example.org', hash: BCRYPT }],
  ['creds', 'credentials', 'bob', { username: 'Bob', hash: SHA512 }],
  ['creds', 'credentials', ' BOB ', { username: 'Bob', hash: SHA512 }],
  ['creds', 'credentials', 'carol', null],
  ['userlist', 'credentials', 'dave', null],
  // userinfo: `uid:gid:/dir`, `/dir`, a hash or a list entry → default Maildir
  ['users', 'userinfo', 'alice', { username: 'alice', uid: 1000, gid: 1000, directory: '/home/alice' }],
  ['users', 'userinfo', 'bob', { username: 'bob', directory: '/srv/mail/bob' }],
  ['users', 'userinfo', 'carol@example.org', { username: 'carol@example.org' }],
  ['users', 'userinfo', 'nobody', null],
  ['creds', 'userinfo', 'alice@example.org', { username: 'alice@example.org' }],
  ['userlist', 'userinfo', 'dave', { username: 'dave' }],
  ['userlist', 'userinfo', 'erin@example.org', { username: 'Erin@Example.org' }],
  ['userlist', 'userinfo', 'erin', null],
  // mailaddrmap: explicit lists (lower-cased); a hash or a list entry → the user's own address
  ['sendmap', 'mailaddrmap', 'alice@example.org', ['alice@example.org', '@example.net', 'alice.smith@example.org']],
  ['sendmap', 'mailaddrmap', 'bob@example.org', ['bob@example.org']],
  ['sendmap', 'mailaddrmap', 'BOB@example.ORG', ['bob@example.org']],
  ['sendmap', 'mailaddrmap', 'zed@example.org', null],
  ['creds', 'mailaddrmap', 'alice@example.org', ['alice@example.org']],
  ['userlist', 'mailaddrmap', 'Erin@Example.org', ['erin@example.org']],
  // source: the value as a list
  ['aliases', 'source', 'team', ['alice', 'bob@example.net', 'carol']],
  ['aliases', 'source', 'nobody', null],
];

function entriesOf(d: Dataset): [string, string][] {
  return d.form === 'list' ? d.keys.map((k) => [k, '']) : d.entries.map(([k, v]) => [k, v]);
}

const pos = { file: '/etc/appliance/appliance.conf', line: 1, col: 1 };

function inlineDecl(name: string, d: Dataset): TableDecl {
  const source = d.form === 'list'
    ? { type: 'inline' as const, form: 'list' as const, values: [...d.keys] }
    : { type: 'inline' as const, form: 'map' as const, entries: d.entries.map(([k, v]) => [k, v] as const) };
  return { name, source, anonymous: false, pos };
}

/** The file form: `key value` lines, `key: value` (aliases(5)) when asked, a key alone for lists. */
function fileText(d: Dataset): string {
  const lines = ['# written by the conformance suite', ''];
  for (const [k, v] of entriesOf(d)) {
    if (v === '') lines.push(k);
    else lines.push(d.form === 'map' && d.colon ? `${k}: ${v}` : `${k}\t${v}`);
  }
  return lines.join('\n') + '\n';
}

type Backend = {
  readonly name: 'inline' | 'file' | 'db';
  /** `testdir` makes a fresh empty directory for this backend. */
  open(testdir: () => string): Promise<{ tables: Map<DatasetName, Table>; close(): Promise<void> }>;
};

const names = Object.keys(datasets) as DatasetName[];

const backends: readonly Backend[] = [
  {
    name: 'inline',
    async open() {
      const tables = new Map(names.map((n) => [n, openTable(inlineDecl(n, datasets[n]), {})] as const));
      return { tables, close: async () => {} };
    },
  },
  {
    name: 'file',
    async open(testdir) {
      const dir = testdir();
      const tables = new Map<DatasetName, Table>();
      for (const n of names) {
        const path = join(dir, n);
        writeFileSync(path, fileText(datasets[n]));
        tables.set(n, openTable({ name: n, source: { type: 'file', path }, anonymous: false, pos }, { file: { watch: false } }));
      }
      return { tables, close: async () => { for (const tb of tables.values()) await tb.close?.(); } };
    },
  },
  {
    name: 'db',
    async open(testdir) {
      const store = await Store.open(testdir());
      const tables = new Map<DatasetName, Table>();
      for (const n of names) {
        const table = openTable({ name: n, source: { type: 'db' }, anonymous: false, pos }, { kv: (name) => store.tableStore(name) });
        for (const [k, v] of entriesOf(datasets[n])) await table.put!(k, v);
        tables.set(n, table);
      }
      return { tables, close: () => store.close() };
    },
  },
];

function valueOf(r: LookupResult<unknown>): unknown {
  if (r.kind === 'tempfail') return { tempfail: r.error.message };
  return r.kind === 'found' ? r.value : null;
}

async function collect(it: AsyncIterable<TableEntry>): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for await (const e of it) out.push([e.key, e.value]);
  return out;
}

for (const backend of backends) {
  t.test(`${backend.name} tables`, async (t) => {
    const { tables, close } = await backend.open(() => t.testdir());
    t.teardown(close);

    t.test('backend', async (t) => {
      for (const [n, tb] of tables) {
        t.equal(tb.backend, backend.name, `${n} is a ${backend.name} table`);
        t.equal(tb.name, n);
      }
    });

    t.test('lookups', async (t) => {
      for (const [table, kind, key, expected] of cases) {
        const r = await tables.get(table)!.lookup(kind, key);
        t.same(valueOf(r), expected, `${table} ${kind} ${JSON.stringify(key)}`);
        if (expected === null) t.equal(r.kind, 'none', `${table} ${kind} ${JSON.stringify(key)} is "none", not tempfail`);
      }
    });

    t.test('services cover every kind that finds something', async (t) => {
      for (const [table, kind, , expected] of cases) {
        if (expected === null) continue;
        t.ok(tables.get(table)!.services().has(kind), `${table} serves ${kind}`);
      }
    });

    t.test('entries keep keys and values as written', async (t) => {
      for (const n of names) {
        const got = await collect(tables.get(n)!.entries!());
        const want = entriesOf(datasets[n]);
        // db iterates in key order; the others in file order
        const sort = (l: [string, string][]) => [...l].sort(([a], [b]) => (a.toLowerCase() < b.toLowerCase() ? -1 : 1));
        t.same(sort(got), sort(want), n);
      }
    });
  });
}

t.test('the suite covers every kind and every backend', async (t) => {
  const kinds = new Set(cases.map(([, k]) => k));
  for (const k of ['domain', 'mailaddr', 'netaddr', 'alias', 'credentials', 'userinfo', 'mailaddrmap', 'source'] as const) {
    t.ok(kinds.has(k), k);
  }
  t.same(backends.map((b) => b.name), ['inline', 'file', 'db']);
});
