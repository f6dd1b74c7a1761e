/**
 * File tables (SPEC §tables): `key value[, value]` lines, the aliases(5)
 * `key: value` form with continuation lines, lists, `#` comments; malformed
 * files named by line; reload, and changes on disk picked up by the watcher
 * with a malformed new version refused while the old contents stay.
 */
import t from 'tap';
import { renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileTable, parseTableFile, TableFileError } from '../../../core/tables/file.ts';
import { openTable, TableOpenError } from '../../../core/tables/registry.ts';
import type { LookupKind, Table, TableEntry } from '../../../core/tables/types.ts';

const P = '/etc/appliance/aliases';

async function value(table: Table, kind: LookupKind, key: string): Promise<unknown> {
  const r = await table.lookup(kind, key);
  if (r.kind === 'tempfail') return { tempfail: r.error.message };
  return r.kind === 'found' ? r.value : null;
}

async function entriesOf(table: Table): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for await (const e of table.entries!() as AsyncIterable<TableEntry>) out.push([e.key, e.value]);
  return out;
}

/** Polls `check` until it holds; fails after `ms`. */
async function waitFor(check: () => boolean | Promise<boolean>, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

t.test('map form: key value, aliases(5) key: value, comments', async (t) => {
  const text = [
    '# aliases for example.org',
    '',
    'postmaster   alice',
    'abuse: alice, bob',
    'Team: alice,bob@example.net , carol,   # trailing comment',
    'hashy  a#b        # a # inside a value stays',
    '"quoted key"  dave',
    '"quoted colon": erin',
    '@example.net catchall',
    '   # an indented comment line',
    'ipv6ish 2001:db8::1',
  ].join('\n');
  const p = parseTableFile(text, P);
  t.equal(p.form, 'map');
  t.same(p.entries, [
    ['postmaster', 'alice'],
    ['abuse', 'alice, bob'],
    ['Team', 'alice,bob@example.net , carol'],
    ['hashy', 'a#b'],
    ['quoted key', 'dave'],
    ['quoted colon', 'erin'],
    ['@example.net', 'catchall'],
    ['ipv6ish', '2001:db8::1'],
  ]);
});

t.test('CRLF line ends and a missing final newline', async (t) => {
  const p = parseTableFile('a 1\r\nb 2\r\nc 3', P);
  t.same(p.entries, [['a', '1'], ['b', '2'], ['c', '3']]);
});

t.test('list form, IPv6 keys ending in ":" stay keys', async (t) => {
  const text = ['# networks', '192.0.2.0/24', '2001:db8::', 'fe80::', '::', '::1', '2001:db8:1::/48', 'example.org'].join('\n');
  const p = parseTableFile(text, P);
  t.equal(p.form, 'list');
  t.same(p.entries.map(([k]) => k), ['192.0.2.0/24', '2001:db8::', 'fe80::', '::', '::1', '2001:db8:1::/48', 'example.org']);
  t.ok(p.entries.every(([, v]) => v === ''), 'list entries have the empty value');
});

t.test('an empty file (or only comments) is an empty list', async (t) => {
  t.same(parseTableFile('', P), { form: 'list', entries: [] });
  t.same(parseTableFile('# nothing\n\n   \n', P), { form: 'list', entries: [] });
});

t.test('continuation lines (aliases(5))', async (t) => {
  const text = [
    'team: alice,',
    '      bob',
    '\tcarol, dave',
    '  # a comment between continuation lines',
    '  , erin,',
    'solo frank',
    '  grace',
    'late:',
    '  heidi, ivan',
  ].join('\n');
  const p = parseTableFile(text, P);
  t.same(p.entries, [
    ['team', 'alice, bob, carol, dave, erin'],
    ['solo', 'frank, grace'],
    ['late', 'heidi, ivan'],
  ]);
});

t.test('malformed lines are named by line number, with exact messages', async (t) => {
  const cases: [string, string, string][] = [
    ['duplicate key (case-insensitive)', 'alice a@x\nbob b@x\nALICE c@x\n', `${P}:3: duplicate key "ALICE" (first at line 1)`],
    ['duplicate key in a list', '# list\nexample.org\nexample.net\nExample.Org\n', `${P}:4: duplicate key "Example.Org" (first at line 2)`],
    ['duplicate between the two map forms', 'alice: a@x\nalice b@x\n', `${P}:2: duplicate key "alice" (first at line 1)`],
    ['key: with no value', 'postmaster: alice\nteam:\nabuse: bob\n', `${P}:2: "team:" has no value`],
    ['key: with no value at the end', 'postmaster: alice\n# then\nteam:   # nothing\n', `${P}:3: "team:" has no value`],
    ['list line after map lines', 'postmaster alice\nabuse bob\nexample.org\n', `${P}:3: mixes list entries (a key alone) with key-value entries (first such line: 1)`],
    ['map line after list lines', '# domains\nexample.org\nexample.net\npostmaster alice\n', `${P}:4: mixes list entries (a key alone) with key-value entries (first such line: 2)`],
    ['continuation on the first line', '  alice\n', `${P}:1: continuation line without an entry to continue`],
    ['continuation after comments only', '# header\n\n\tbob\n', `${P}:3: continuation line without an entry to continue`],
    ['continuation of a list entry', 'example.org\n  example.net\n', `${P}:2: continuation line without an entry to continue`],
    ['NUL byte', 'a b\nc d\u0000e\n', `${P}:2: NUL byte`],
  ];
  for (const [name, text, message] of cases) {
    t.throws(() => parseTableFile(text, P), { name: 'TableFileError', message }, name);
    try {
      parseTableFile(text, P);
    } catch (err) {
      t.ok(err instanceof TableFileError, `${name}: a TableFileError`);
      t.equal((err as TableFileError).path, P);
      t.equal((err as TableFileError).line, Number(message.slice(P.length + 1).split(':')[0]));
    }
  }
});

t.test('FileTable lookups over a file, form decides services', async (t) => {
  const dir = t.testdir({
    aliases: 'postmaster: alice\nteam: alice,\n  bob@example.net\n',
    nets: '192.0.2.0/24\n2001:db8::\n',
  });
  const aliases = new FileTable('aliases', join(dir, 'aliases'), { watch: false });
  const nets = new FileTable('nets', join(dir, 'nets'), { watch: false });
  t.teardown(async () => {
    await aliases.close();
    await nets.close();
  });
  t.equal(aliases.backend, 'file');
  t.same(await value(aliases, 'alias', 'TEAM'), ['alice', 'bob@example.net']);
  t.same(await value(aliases, 'alias', 'nobody'), null);
  t.ok(aliases.services().has('alias'));
  t.notOk(aliases.services().has('netaddr'));
  t.same(await value(nets, 'netaddr', '192.0.2.4'), true);
  t.same(await value(nets, 'netaddr', '2001:db8::'), true);
  t.same(await value(nets, 'netaddr', '2001:db8::1'), null);
  t.ok(nets.services().has('netaddr'));
  t.notOk(nets.services().has('alias'));
});

t.test('opening: a malformed or missing file is a TableOpenError naming the table', async (t) => {
  const dir = t.testdir({ bad: 'a b\na c\n' });
  const pos = { file: '/etc/appliance/appliance.conf', line: 1, col: 1 };
  const bad = join(dir, 'bad');
  t.throws(() => openTable({ name: 'aliases', source: { type: 'file', path: bad }, anonymous: false, pos }, { file: { watch: false } }), {
    name: 'TableOpenError',
    message: `table aliases: ${bad}:2: duplicate key "a" (first at line 1)`,
  });
  const missing = join(dir, 'missing');
  t.throws(() => openTable({ name: 'aliases', source: { type: 'file', path: missing }, anonymous: false, pos }, { file: { watch: false } }), {
    name: 'TableOpenError',
    message: `table aliases: cannot read ${missing}: no such file`,
  });
  t.ok(new TableOpenError('x') instanceof Error);
  t.throws(() => new FileTable('x', bad, { watch: false }), TableFileError, 'the constructor throws the parse error itself');
});

t.test('reload(): new contents replace the old; a malformed file is refused and the old stays', async (t) => {
  const dir = t.testdir({ aliases: 'postmaster: alice\n' });
  const path = join(dir, 'aliases');
  const reloads: number[] = [];
  const table = new FileTable('aliases', path, { watch: false, onReload: (n) => reloads.push(n) });
  t.teardown(() => table.close());
  t.same(await value(table, 'alias', 'postmaster'), ['alice']);

  writeFileSync(path, 'postmaster: bob\nabuse: bob\n');
  await table.reload();
  t.same(await value(table, 'alias', 'postmaster'), ['bob']);
  t.same(await value(table, 'alias', 'abuse'), ['bob']);
  t.same(reloads, [2]);

  writeFileSync(path, 'postmaster: carol\nabuse: carol\nPostmaster: eve\n');
  await t.rejects(table.reload(), { name: 'TableFileError', message: `${path}:3: duplicate key "Postmaster" (first at line 1)` });
  t.same(await value(table, 'alias', 'postmaster'), ['bob'], 'old contents still served');
  t.same(await entriesOf(table), [['postmaster', 'bob'], ['abuse', 'bob']]);
  t.same(reloads, [2], 'no reload reported for the refused file');

  unlinkSync(path);
  await t.rejects(table.reload(), { code: 'ENOENT' }, 'a removed file is an error');
  t.same(await value(table, 'alias', 'abuse'), ['bob'], 'old contents still served');

  writeFileSync(path, 'example.org\nexample.net\n');
  await table.reload();
  t.same(await value(table, 'domain', 'example.net'), true, 'the form may change on reload');
  t.ok(table.services().has('netaddr'));
  t.same(await value(table, 'alias', 'postmaster'), null);
});

t.test('watching: a change on disk is picked up, a malformed one refused', async (t) => {
  const dir = t.testdir({ aliases: 'postmaster: alice\n' });
  const path = join(dir, 'aliases');
  const errors: Error[] = [];
  let reloads = 0;
  const table = new FileTable('aliases', path, {
    watchIntervalMs: 20,
    onReload: () => reloads++,
    onReloadError: (err) => errors.push(err),
  });
  t.teardown(() => table.close());
  await sleep(100); // the watcher's first stat

  // 1. an edit in place
  writeFileSync(path, 'postmaster: bob\nabuse: bob\n');
  t.ok(await waitFor(async () => (await value(table, 'alias', 'abuse')) !== null), 'the change is picked up');
  t.same(await value(table, 'alias', 'postmaster'), ['bob']);
  t.equal(reloads, 1);

  // 2. a malformed version: refused, reported, old contents stay
  writeFileSync(path, 'postmaster: carol\nteam:\n');
  t.ok(await waitFor(() => errors.length > 0), 'the refusal is reported');
  t.equal(errors[0]!.name, 'TableFileError');
  t.equal(errors[0]!.message, `${path}:2: "team:" has no value`);
  t.same(await value(table, 'alias', 'postmaster'), ['bob'], 'old contents still served');
  t.same(await value(table, 'alias', 'abuse'), ['bob']);
  t.equal(reloads, 1);

  // 3. the file fixed by an atomic rename (editors, config management)
  writeFileSync(join(dir, 'aliases.tmp'), 'postmaster: dave\n');
  renameSync(join(dir, 'aliases.tmp'), path);
  t.ok(await waitFor(async () => JSON.stringify(await value(table, 'alias', 'postmaster')) === '["dave"]'), 'the replaced file is picked up');
  t.same(await value(table, 'alias', 'abuse'), null);
  t.equal(errors.length, 1);

  // 4. removed: keep serving, no error; back again: picked up
  unlinkSync(path);
  await sleep(150);
  t.same(await value(table, 'alias', 'postmaster'), ['dave'], 'a removed file keeps the old contents');
  t.equal(errors.length, 1, 'removal is not reported as a malformed file');
  writeFileSync(path, 'postmaster: erin\n');
  t.ok(await waitFor(async () => JSON.stringify(await value(table, 'alias', 'postmaster')) === '["erin"]'), 'the file back is picked up');

  // 5. closed: no more reloads
  await table.close();
  const before = reloads;
  writeFileSync(path, 'postmaster: frank, and more\n');
  await sleep(150);
  t.equal(reloads, before, 'no reload after close');
  t.same(await value(table, 'alias', 'postmaster'), ['erin']);
});
