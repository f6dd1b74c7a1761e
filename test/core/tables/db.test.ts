/**
 * `table NAME db` over the data directory's LevelDB (SPEC §tables, §store):
 * keys kept as written, looked up case-insensitively; one process owns the
 * database; entries survive a close and reopen; a failing store is a
 * temporary failure, never "not found".
 */
import t from 'tap';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { DbTable, type KeyValueStore } from '../../../core/tables/db.ts';
import type { LookupKind, Table } from '../../../core/tables/types.ts';
import { DatabaseLockedError, Store } from '../../../store/db.ts';

const HASH = '$2y$05$mgHH6CWzGILwvD77XuxQpu.amXFzaAKEgw7MwWaoNLkOfssZXJkhK';

async function value(table: Table, kind: LookupKind, key: string): Promise<unknown> {
  const r = await table.lookup(kind, key);
  if (r.kind === 'tempfail') return { tempfail: true };
  return r.kind === 'found' ? r.value : null;
}

async function entries(table: Table): Promise<[string, string][]> {
  const out: [string, string][] = [];
  for await (const e of table.entries!()) out.push([e.key, e.value]);
  return out;
}

t.test('put/del/entries keep the key as written; lookups ignore case', async (t) => {
  const store = await Store.open(t.testdir());
  t.teardown(() => store.close());
  const users = new DbTable('users', store.tableStore('users'));
  t.equal(users.backend, 'db');

  await users.put('Alice@Example.ORG', HASH);
  await users.put('bob', '/srv/mail/bob');
  t.same(await entries(users), [['Alice@Example.ORG', HASH], ['bob', '/srv/mail/bob']]);

  t.same(await value(users, 'credentials', 'alice@example.org'), { username: 'Alice@Example.ORG', hash: HASH });
  t.same(await value(users, 'credentials', 'ALICE@EXAMPLE.ORG'), { username: 'Alice@Example.ORG', hash: HASH });
  t.same(await value(users, 'userinfo', 'BOB'), { username: 'bob', directory: '/srv/mail/bob' });
  t.same(await value(users, 'mailaddr', 'alice@example.org'), true);
  t.same(await value(users, 'credentials', 'carol'), null);

  // replacing under another spelling: one entry, spelled as last written
  await users.put('ALICE@example.org', '/home/alice');
  t.same(await entries(users), [['ALICE@example.org', '/home/alice'], ['bob', '/srv/mail/bob']]);
  t.same(await value(users, 'userinfo', 'alice@example.org'), { username: 'ALICE@example.org', directory: '/home/alice' });

  t.equal(await users.del('alice@EXAMPLE.org'), true, 'del ignores case');
  t.equal(await users.del('alice@example.org'), false, 'del of a missing key says so');
  t.same(await entries(users), [['bob', '/srv/mail/bob']]);
  t.same(await value(users, 'userinfo', 'alice@example.org'), null);

  // list entries (empty value) and keys with odd characters
  await users.put('  Spaced  ', '');
  await users.put('a!b', '');
  t.same(await value(users, 'userinfo', 'spaced'), { username: '  Spaced  ' });
  t.same(await value(users, 'mailaddr', 'A!B'), true);
  t.same(await value(users, 'credentials', 'spaced'), null, 'a list entry has no password');
});

t.test('tables are separate sublevels', async (t) => {
  const store = await Store.open(t.testdir());
  t.teardown(() => store.close());
  const a = new DbTable('a', store.tableStore('a'));
  const b = new DbTable('b', store.tableStore('b'));
  await a.put('key', 'in a');
  await b.put('key', 'in b');
  await b.put('other', 'only b');
  t.same(await value(a, 'alias', 'key'), ['in a']);
  t.same(await value(b, 'alias', 'key'), ['in b']);
  t.same(await value(a, 'alias', 'other'), null);
  t.same(await entries(a), [['key', 'in a']]);
  const raw = store.tableStore('a');
  t.equal(await raw.get('missing'), undefined, 'a missing key is undefined');
});

t.test('Store.open: DATA-DIR/db; a second open while open is DatabaseLockedError', async (t) => {
  const dir = t.testdir();
  const store = await Store.open(dir);
  t.equal(store.path, join(dir, 'db'));
  await t.rejects(Store.open(dir), DatabaseLockedError);
  try {
    await Store.open(dir);
    t.fail('second open succeeded');
  } catch (err) {
    t.equal((err as Error).name, 'DatabaseLockedError');
    t.match((err as Error).message, join(dir, 'db'), 'the message names the database');
    t.match((err as Error).message, /control socket/);
  }
  // the first handle still works
  const users = new DbTable('users', store.tableStore('users'));
  await users.put('alice', HASH);
  t.same(await value(users, 'credentials', 'alice'), { username: 'alice', hash: HASH });
  await store.close();
  // once closed, it can be opened again
  const again = await Store.open(dir);
  await again.close();
});

t.test('another process gets DatabaseLockedError while the store is open', async (t) => {
  const dir = t.testdir();
  const store = await Store.open(dir);
  t.teardown(() => store.close());
  const storeUrl = pathToFileURL(join(import.meta.dirname, '../../../store/db.ts')).href;
  const script = `
    const { Store } = await import(${JSON.stringify(storeUrl)});
    try { await Store.open(${JSON.stringify(dir)}); console.log('opened'); }
    catch (err) { console.log(err.name); }`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
  t.equal(stdout.trim(), 'DatabaseLockedError');
});

t.test('data survives close and reopen', async (t) => {
  const dir = t.testdir();
  let store = await Store.open(dir);
  let users = new DbTable('users', store.tableStore('users'));
  await users.put('Alice', HASH);
  await users.put('bob', '1000:1000:/home/bob');
  await users.put('carol', '');
  await users.del('carol');
  await store.close();

  store = await Store.open(dir);
  t.teardown(() => store.close());
  users = new DbTable('users', store.tableStore('users'));
  t.same(await entries(users), [['Alice', HASH], ['bob', '1000:1000:/home/bob']]);
  t.same(await value(users, 'credentials', 'alice'), { username: 'Alice', hash: HASH });
  t.same(await value(users, 'userinfo', 'bob'), { username: 'bob', uid: 1000, gid: 1000, directory: '/home/bob' });
  t.same(await value(users, 'userinfo', 'carol'), null);
});

t.test('a failing store is tempfail, never "not found"', async (t) => {
  const store = await Store.open(t.testdir());
  const users = new DbTable('users', store.tableStore('users'));
  await users.put('alice', HASH);
  await store.close();
  for (const kind of ['credentials', 'userinfo', 'domain', 'mailaddr', 'alias', 'mailaddrmap', 'netaddr', 'source'] as const) {
    const key = kind === 'netaddr' ? '192.0.2.1' : 'alice';
    t.equal((await users.lookup(kind, key)).kind, 'tempfail', `${kind} on a closed database`);
  }
  await t.rejects(users.put('bob', HASH), 'put on a closed database fails');

  const broken: KeyValueStore = {
    get: async () => {
      throw new Error('disk on fire');
    },
    put: async () => {},
    del: async () => {},
    entries: async function* () {
      yield* [];
      throw new Error('disk on fire');
    },
  };
  const table = new DbTable('broken', broken);
  const r = await table.lookup('credentials', 'alice');
  t.equal(r.kind, 'tempfail');
  t.equal(r.kind === 'tempfail' && r.error.message, 'disk on fire');
  t.equal((await table.lookup('netaddr', '192.0.2.1')).kind, 'tempfail');

  const garbage: KeyValueStore = { ...broken, get: async () => 'not json', entries: async function* () {} };
  t.equal((await new DbTable('garbage', garbage).lookup('alias', 'x')).kind, 'tempfail', 'a corrupt value is tempfail');
});
