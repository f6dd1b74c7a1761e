/**
 * The mailbox store (store/mailbox): list/create/open/sync/read/summary/
 * append/setFlags/expunge on a real Maildir++ tree, two views on one mailbox,
 * deliveries waking listeners, files changed by hand noticed by sync, the
 * index deleted and rebuilt with the same UIDs, CRLF normalisation.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { SpooledMessage, deliverToMaildirs } from '../../store/maildir.ts';
import { memoryCacheKv } from '../../store/mailbox/index-cache.ts';
import {
  InvalidMailboxNameError,
  KeywordLimitError,
  MailboxExistsError,
  MailboxNotFoundError,
  MessageGoneError,
  NoPermissionError,
  openMailStoreService,
  type MailboxView,
} from '../../store/mailbox/index.ts';

const log = pino({ level: 'silent' });

function msg(subject: string, body = 'Hello\r\n'): Buffer {
  return Buffer.from(`From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: ${subject}\r\nMessage-ID: <${subject}@example.test>\r\n\r\n${body}`);
}

async function text(view: MailboxView, uid: number, start?: number, end?: number): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of await view.read(uid, start, end)) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('latin1');
}

async function deliver(root: string, content: Buffer, folder?: string): Promise<string> {
  const spoolDir = join(root, '..', 'spool');
  mkdirSync(spoolDir, { recursive: true });
  const s = await SpooledMessage.write(spoolDir, [content], { maxBytes: 1e8 });
  try {
    const r = await deliverToMaildirs(s, [{ path: root, ...(folder ? { folder } : {}) }], { hostname: 'mx.example.test' });
    return r.delivered[0]!.file;
  } finally {
    await s.remove();
  }
}

t.test('create, list, append, open, read, summary, flags, expunge', async (t) => {
  const dir = t.testdir();
  const root = join(dir, 'mail', 'alice');
  const svc = openMailStoreService({ log, hostname: 'mail.example.test' });
  const store = svc.forRoot(root);
  t.same((await store.list()).map((m) => m.name), ['INBOX']);
  await store.create('Archive/2026');
  await store.create('Entwürfe', { specialUse: '\\Drafts' });
  await t.rejects(store.create('Archive'), MailboxExistsError);
  await t.rejects(store.create('INBOX'), MailboxExistsError);
  const list = await store.list();
  t.same(list.map((m) => m.name), ['INBOX', 'Archive', 'Archive/2026', 'Entwürfe']);
  t.equal(list.find((m) => m.name === 'Entwürfe')?.specialUse, '\\Drafts');
  t.ok(list.find((m) => m.name === 'Archive')?.hasChildren);
  t.ok(existsSync(join(root, '.Entw&APw-rfe', 'maildirfolder')), 'modified UTF-7 on disk, maildirfolder marker');

  const a1 = await store.append('INBOX', { content: msg('one'), flags: ['\\Seen', '$Forwarded'], internalDate: new Date('2026-01-02T03:04:05Z') });
  const a2 = await store.append('inbox', { content: msg('two') });
  t.equal(a1.uid, 1);
  t.equal(a2.uid, 2);
  t.equal(a1.uidValidity, a2.uidValidity);
  await t.rejects(store.append('Nope', { content: msg('x') }), MailboxNotFoundError);

  const view = await store.open('INBOX', { readOnly: false });
  t.equal(view.uidValidity, a1.uidValidity);
  t.same(view.messages.map((m) => m.uid), [1, 2]);
  t.same(view.messages[0]!.flags, ['$Forwarded', '\\Seen']);
  t.equal(view.messages[0]!.internalDate.toISOString(), '2026-01-02T03:04:05.000Z');
  t.equal(view.messages[0]!.size, msg('one').length);
  t.equal(view.uidNext, 3);
  t.equal(await text(view, 1), msg('one').toString());
  t.equal((await view.readBuffer(1, 6, 11)).toString(), 'Alice');
  const sum = await view.summary(1);
  t.equal(sum.envelope.subject, 'one');
  t.equal(sum.root.type, 'text');
  t.equal(sum.root.lines, 1);

  const curNames = readdirSync(join(root, 'cur'));
  t.ok(curNames.some((n) => /:2,Sa$/.test(n)), 'flags in the file name, keyword letter a');
  t.match(readFileSync(join(root, 'dovecot-keywords'), 'utf8'), /^0 \$Forwarded\n/);

  const recs = await view.setFlags([2], 'add', ['\\Flagged', '\\Deleted', 'work']);
  t.same(recs.map((r) => r.flags), [['\\Deleted', '\\Flagged', 'work']]);
  t.same(view.messages[1]!.flags, ['\\Deleted', '\\Flagged', 'work']);
  t.same(await view.sync(), { added: [], expunged: [], flagsChanged: [] }, 'own change not echoed');
  t.same(await view.expunge(), [2]);
  t.same(view.messages.map((m) => m.uid), [1]);
  await t.rejects(view.read(2), MessageGoneError);
  await store.rename('Entwürfe', 'Drafts');
  t.equal((await store.list()).find((m) => m.name === 'Drafts')?.specialUse, '\\Drafts', 'the special use follows a rename');
  await store.delete('Drafts');
  await store.create('Drafts');
  t.equal((await store.list()).find((m) => m.name === 'Drafts')?.specialUse, undefined, 'and goes with a delete');
  t.throws(() => svc.forRoot('relative/path'), TypeError);
  const st = await store.status('INBOX');
  t.equal(st.messages, 1);
  t.equal(st.unseen, 0);
  t.equal(st.uidNext, 3);

  const ro = await store.open('INBOX', { readOnly: true });
  await t.rejects(ro.setFlags([1], 'add', ['\\Flagged']), NoPermissionError);
  await t.rejects(ro.expunge(), NoPermissionError);
  await ro.close();
  await view.close();

  // uidlist in Dovecot's v3 format
  const ul = readFileSync(join(root, 'dovecot-uidlist'), 'utf8').split('\n');
  t.match(ul[0], new RegExp(`^3 V${a1.uidValidity} N\\d+ G[0-9a-f]{32}$`));
  t.match(ul[1], /^1 :\d+\.M\d+P\d+Q\d+R[0-9a-f]+\.mail\.example\.test,S=\d+,W=\d+$/);
  await svc.close();
});

t.test('invalid names never reach the file system', async (t) => {
  const root = join(t.testdir(), 'u');
  const store = openMailStoreService({ log, hostname: 'h' }).forRoot(root);
  for (const bad of ['', '..', '../../etc', 'a/../b', 'a//b', '/a', 'a/', 'a.b', 'x\u0000y', 'tab\there', 'a*', '%', 'x'.repeat(300)]) {
    await t.rejects(store.create(bad), InvalidMailboxNameError, JSON.stringify(bad));
    await t.rejects(store.open(bad, { readOnly: true }), InvalidMailboxNameError);
  }
  t.same(readdirSync(root).sort(), ['cur', 'new', 'tmp']);
  await t.rejects(store.delete('INBOX'), NoPermissionError);
  await t.rejects(store.open('Missing', { readOnly: false }), MailboxNotFoundError);
});

t.test('two views: flags, expunge and appends reach the other through sync; listeners wake at once', async (t) => {
  const root = join(t.testdir(), 'u');
  const svc = openMailStoreService({ log, hostname: 'h' });
  const store = svc.forRoot(root);
  for (let i = 0; i < 3; i++) await store.append('INBOX', { content: msg(`m${i}`) });
  const a = await store.open('INBOX', { readOnly: false });
  const b = await store.open('INBOX', { readOnly: false });
  let wakes = 0;
  b.onChange(() => wakes++);
  await a.setFlags([1], 'add', ['\\Seen']);
  await a.setFlags([2], 'add', ['\\Deleted']);
  await a.expunge();
  await new Promise((r) => setImmediate(r));
  t.ok(wakes >= 1, 'b heard a');
  t.same(b.messages.map((m) => m.uid), [1, 2, 3], 'b unchanged before sync');
  const ch = await b.sync();
  t.same(ch.expunged, [2]);
  t.same(ch.flagsChanged.map((r) => [r.uid, r.flags]), [[1, ['\\Seen']]]);
  t.same(b.messages.map((m) => m.uid), [1, 3]);

  const before = wakes;
  const file = await deliver(root, msg('delivered'));
  svc.delivered(root);
  await new Promise((r) => setImmediate(r));
  t.equal(wakes, before + 1, 'a delivery wakes the listener');
  const ch2 = await b.sync();
  t.same(ch2.added.map((r) => r.uid), [4]);
  t.ok(b.recentUids.has(4), 'b claimed the new message as \\Recent');
  t.notOk(existsSync(file), 'moved from new/ to cur/');
  const ch3 = await a.sync();
  t.same(ch3.added.map((r) => r.uid), [4]);
  t.notOk(a.recentUids.has(4), 'one session gets \\Recent');
  t.equal(await text(a, 4), msg('delivered').toString());
  await a.close();
  await b.close();
});

t.test('sync notices files added, removed and renamed by another program', async (t) => {
  const root = join(t.testdir(), 'u');
  const store = openMailStoreService({ log, hostname: 'h' }).forRoot(root);
  await store.append('INBOX', { content: msg('a') });
  await store.append('INBOX', { content: msg('b') });
  const v = await store.open('INBOX', { readOnly: false });
  const cur = join(root, 'cur');
  const [n1, n2] = readdirSync(cur).sort();
  renameSync(join(cur, n1!), join(cur, `${n1!.split(':')[0]}:2,FS`));
  unlinkSync(join(cur, n2!));
  writeFileSync(join(cur, '1700000000.M1P1.other:2,S'), 'Subject: by hand\nX: y\n\nbare LF body\n');
  const ch = await v.sync();
  t.same(ch.expunged, [2]);
  t.same(ch.flagsChanged.map((r) => [r.uid, r.flags]), [[1, ['\\Flagged', '\\Seen']]]);
  t.same(ch.added.map((r) => [r.uid, r.flags]), [[3, ['\\Seen']]]);
  const lf = 'Subject: by hand\r\nX: y\r\n\r\nbare LF body\r\n';
  t.equal(ch.added[0]!.size, lf.length, 'size in CRLF form');
  t.equal(await text(v, 3), lf, 'served CRLF-normalised');
  t.equal(await text(v, 3, 10, 20), lf.slice(10, 20));
  t.equal((await v.readBuffer(3, 20)).toString(), lf.slice(20));
  t.equal((await v.summary(3)).envelope.subject, 'by hand');
  t.equal((await v.summary(3)).root.bodyStart, lf.indexOf('bare'));
  await v.close();
});

t.test('the index is a cache: deleted, it is rebuilt with the same UIDs', async (t) => {
  const root = join(t.testdir(), 'u');
  const kv = memoryCacheKv();
  const svc1 = openMailStoreService({ log, hostname: 'h', cacheKv: kv });
  const s1 = svc1.forRoot(root);
  for (let i = 0; i < 5; i++) await s1.append('INBOX', { content: msg(`m${i}`), flags: i % 2 ? ['\\Seen'] : [] });
  const v1 = await s1.open('INBOX', { readOnly: false });
  await v1.setFlags([2], 'add', ['\\Deleted']);
  await v1.expunge();
  const want = v1.messages.map((m) => [m.uid, m.flags, m.size, m.internalDate.getTime()]);
  const uv = v1.uidValidity;
  await v1.close();
  t.ok(kv.map.size > 0);
  kv.map.clear();
  const svc2 = openMailStoreService({ log, hostname: 'h', cacheKv: kv });
  const v2 = await svc2.forRoot(root).open('INBOX', { readOnly: false });
  t.equal(v2.uidValidity, uv);
  t.same(v2.messages.map((m) => [m.uid, m.flags, m.size, m.internalDate.getTime()]), want);
  t.equal(v2.uidNext, 6);
  await v2.close();
});

t.test('copy and move: UIDPLUS pairs, flags kept, source expunged on move', async (t) => {
  const root = join(t.testdir(), 'u');
  const store = openMailStoreService({ log, hostname: 'h' }).forRoot(root);
  await store.create('Archive');
  for (let i = 0; i < 3; i++) await store.append('INBOX', { content: msg(`m${i}`), flags: ['\\Seen', 'tag'] });
  const v = await store.open('INBOX', { readOnly: false });
  const c = await store.copy(v, [1, 3], 'Archive');
  t.same(c.pairs, [[1, 1], [3, 2]]);
  const m = await store.copy(v, [2, 3], 'Archive', { move: true });
  t.same(m.pairs, [[2, 3], [3, 4]]);
  t.same(v.messages.map((x) => x.uid), [1]);
  const arch = await store.open('Archive', { readOnly: true });
  t.equal(arch.uidValidity, c.uidValidity);
  t.same(arch.messages.map((x) => [x.uid, x.flags]), [1, 2, 3, 4].map((u) => [u, ['\\Seen', 'tag']]));
  t.equal(await text(arch, 3), msg('m1').toString());
  await v.close();
  await arch.close();
});

t.test('rename with children, INBOX rename, delete keeps children, subscriptions', async (t) => {
  const root = join(t.testdir(), 'u');
  const store = openMailStoreService({ log, hostname: 'h' }).forRoot(root);
  await store.create('A/B/C');
  await store.append('A/B', { content: msg('ab') });
  await store.subscribe('A/B');
  await store.rename('A', 'X/Y');
  t.same((await store.list()).map((m) => m.name), ['INBOX', 'X', 'X/Y', 'X/Y/B', 'X/Y/B/C']);
  t.same(await store.subscriptions(), ['X/Y/B']);
  t.match(readFileSync(join(root, 'subscriptions'), 'utf8'), 'V\t2\n\nX\tY\tB\n');
  const v = await store.open('X/Y/B', { readOnly: true });
  t.same(v.messages.map((m) => m.uid), [1], 'UIDs follow the rename');
  await v.close();
  await t.rejects(store.rename('X', 'X/Z'), InvalidMailboxNameError);
  await t.rejects(store.rename('Nope', 'Z'), MailboxNotFoundError);
  await t.rejects(store.rename('X', 'X/Y'), MailboxExistsError);

  await store.delete('X/Y');
  const after = await store.list();
  t.same(after.map((m) => [m.name, m.noSelect]), [['INBOX', false], ['X', false], ['X/Y', true], ['X/Y/B', false], ['X/Y/B/C', false]]);
  await t.rejects(store.delete('X/Y'), NoPermissionError);
  await t.rejects(store.open('X/Y', { readOnly: true }), MailboxNotFoundError);

  await store.append('INBOX', { content: msg('i1'), flags: ['\\Seen'] });
  await store.append('INBOX', { content: msg('i2') });
  const inboxBefore = await store.status('INBOX');
  await store.rename('INBOX', 'Old');
  const old = await store.open('Old', { readOnly: true });
  t.same(old.messages.map((m) => [m.uid, m.flags]), [[1, ['\\Seen']], [2, []]]);
  await old.close();
  const inbox = await store.status('INBOX');
  t.equal(inbox.messages, 0);
  t.equal(inbox.uidValidity, inboxBefore.uidValidity);
  t.equal(inbox.uidNext, inboxBefore.uidNext);
});

t.test('special mailboxes are created once, subscribed when asked', async (t) => {
  const root = join(t.testdir(), 'u');
  const store = openMailStoreService({ log, hostname: 'h' }).forRoot(root);
  const cfg = [
    { name: 'Drafts', specialUse: '\\Drafts', auto: 'subscribe' as const },
    { name: 'Junk', specialUse: '\\Junk', auto: 'create' as const },
    { name: 'Archive', specialUse: '\\Archive', auto: 'no' as const },
  ];
  await store.ensureSpecialMailboxes(cfg);
  await store.ensureSpecialMailboxes(cfg);
  const list = await store.list();
  t.same(list.map((m) => [m.name, m.specialUse, m.subscribed]), [['INBOX', undefined, false], ['Drafts', '\\Drafts', true], ['Junk', '\\Junk', false]]);
});

t.test('a corrupt dovecot-uidlist is set aside and replaced (new UIDVALIDITY); a v1 one is upgraded keeping UIDs', async (t) => {
  const root = join(t.testdir(), 'u');
  const svc = openMailStoreService({ log, hostname: 'h' });
  const store = svc.forRoot(root);
  await store.append('INBOX', { content: msg('a') });
  const before = await store.status('INBOX');
  writeFileSync(join(root, 'dovecot-uidlist'), 'garbage\n');
  const v = await store.open('INBOX', { readOnly: false });
  t.not(v.uidValidity, before.uidValidity, 'new UIDVALIDITY: clients must resync');
  t.same(v.messages.map((m) => m.uid), [1]);
  t.ok(existsSync(join(root, 'dovecot-uidlist.broken')));
  await v.close();

  const root2 = join(t.testdir(), 'v1');
  const s2 = svc.forRoot(root2);
  await s2.list();
  writeFileSync(join(root2, 'cur', '100.a:2,S'), 'Subject: v1\r\n\r\n');
  writeFileSync(join(root2, 'dovecot-uidlist'), '1 12345 8\n7 100.a:2,S\n');
  const v2 = await s2.open('INBOX', { readOnly: true });
  t.equal(v2.uidValidity, 12345);
  t.same(v2.messages.map((m) => [m.uid, m.flags]), [[7, ['\\Seen']]]);
  t.equal(v2.uidNext, 8);
  t.match(readFileSync(join(root2, 'dovecot-uidlist'), 'utf8'), /^3 V12345 N8 G[0-9a-f]{32}\n7 :100\.a\n$/);
  await v2.close();
});

t.test('keywords that are not IMAP atoms are not stored', async (t) => {
  const root = join(t.testdir(), 'u');
  const store = openMailStoreService({ log, hostname: 'h' }).forRoot(root);
  await store.append('INBOX', { content: msg('a'), flags: ['ok', 'bad word', 'new\nline', '(x', '\\Unknown', '\\Recent'] });
  const v = await store.open('INBOX', { readOnly: false });
  t.same(v.messages[0]!.flags, ['ok']);
  await v.setFlags([1], 'add', ['"q"', 'fine$1']);
  t.same(v.messages[0]!.flags, ['fine$1', 'ok']);
  t.equal(readFileSync(join(root, 'dovecot-keywords'), 'utf8'), '0 ok\n1 fine$1\n');
  await v.close();
});

t.test('the 27th keyword of a mailbox is refused whole, never dropped', async (t) => {
  const root = join(t.testdir(), 'u');
  const store = openMailStoreService({ log, hostname: 'h' }).forRoot(root);
  await store.create('Other');
  await store.append('INBOX', { content: msg('a') });
  await store.append('Other', { content: msg('b'), flags: ['extra'] });
  const v = await store.open('INBOX', { readOnly: false });
  const first = Array.from({ length: 25 }, (_, i) => `kw${i}`);
  await v.setFlags([1], 'add', first);
  t.equal(v.messages[0]!.flags.length, 25);
  await t.rejects(v.setFlags([1], 'add', ['kw25', 'kw26']), KeywordLimitError, 'two more than the last free letter: refused');
  t.equal(v.messages[0]!.flags.length, 25, 'nothing changed');
  t.notOk(readFileSync(join(root, 'dovecot-keywords'), 'utf8').includes('kw25'), 'no letter taken by the refused change');
  await v.setFlags([1], 'add', ['kw25']);
  t.equal(v.messages[0]!.flags.length, 26, 'the 26th fits');
  await t.rejects(v.setFlags([1], 'replace', ['kw26']), KeywordLimitError, 'a 27th: refused');
  await v.setFlags([1], 'add', ['KW3']);
  t.equal(v.messages[0]!.flags.length, 26, 'a known keyword (any case) still works');
  await t.rejects(store.append('INBOX', { content: msg('c'), flags: ['new-one'] }), KeywordLimitError, 'APPEND with a 27th: refused');
  const other = await store.open('Other', { readOnly: false });
  await t.rejects(store.copy(other, [1], 'INBOX'), KeywordLimitError, 'COPY bringing a 27th: refused');
  t.same(readdirSync(join(root, 'tmp')), [], 'no file left in tmp/');
  await v.sync();
  t.equal(v.messages.length, 1, 'neither APPEND nor COPY added a message');
  await other.close();
  await v.close();
});

t.test('a folder directory that is not a Maildir is listed \\Noselect', async (t) => {
  const root = join(t.testdir(), 'u');
  const store = openMailStoreService({ log, hostname: 'h' }).forRoot(root);
  await store.list();
  mkdirSync(join(root, '.Empty'));
  t.same((await store.list()).map((m) => [m.name, m.noSelect]), [['INBOX', false], ['Empty', true]]);
  await t.rejects(store.open('Empty', { readOnly: true }), MailboxNotFoundError);
  await store.delete('Empty');
  t.same((await store.list()).map((m) => m.name), ['INBOX']);
});

t.test('dovecot-uidlist is compacted once a quarter of its records are expunged; UIDs and UIDNEXT stay', async (t) => {
  const root = join(t.testdir(), 'u');
  const store = openMailStoreService({ log, hostname: 'h' }).forRoot(root);
  for (let i = 0; i < 100; i++) await store.append('INBOX', { content: msg(`m${i}`), flags: i % 2 ? ['\\Deleted'] : [] });
  const v = await store.open('INBOX', { readOnly: false });
  t.equal((await v.expunge()).length, 50);
  const lines = readFileSync(join(root, 'dovecot-uidlist'), 'utf8').trim().split('\n');
  t.equal(lines.length, 51, 'only live records left');
  t.match(lines[0], / N101 /);
  t.same(lines.slice(1).map((l) => Number(l.split(' ')[0])), Array.from({ length: 50 }, (_v, i) => 2 * i + 1));
  const { uid } = await store.append('INBOX', { content: msg('after') });
  t.equal(uid, 101);
  const fresh = await openMailStoreService({ log, hostname: 'h' }).forRoot(root).open('INBOX', { readOnly: true });
  t.same(fresh.messages.map((m) => m.uid), [...Array.from({ length: 50 }, (_v, i) => 2 * i + 1), 101]);
  await fresh.close();
  await v.close();
});

t.test('DELETE under an open view: the view sees everything expunged; a new mailbox of that name is a new one', async (t) => {
  const root = join(t.testdir(), 'u');
  const store = openMailStoreService({ log, hostname: 'h' }).forRoot(root);
  await store.create('A');
  await store.append('A', { content: msg('a1') });
  await store.append('A', { content: msg('a2') });
  const before = await store.status('A');
  const v = await store.open('A', { readOnly: false });
  let woke = 0;
  v.onChange(() => woke++);
  await store.delete('A');
  await new Promise((r) => setImmediate(r));
  t.equal(woke, 1, 'the view is told');
  t.same((await v.sync()).expunged, [1, 2]);
  await t.rejects(v.read(1), MessageGoneError);
  await store.create('A');
  const again = await store.open('A', { readOnly: true });
  t.equal(again.messages.length, 0);
  t.not(again.uidValidity, before.uidValidity);
  await again.close();
  await v.close();
});

t.test('a 35 MB message: APPEND, streamed read, ranges; a 35 MB bare-LF file served CRLF', async (t) => {
  const root = join(t.testdir(), 'u');
  const svc = openMailStoreService({ log, hostname: 'h' });
  const store = svc.forRoot(root);
  await store.list();
  const line = 'abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n';
  const body = line.repeat(Math.ceil((35 * 1024 * 1024) / line.length));
  const big = Buffer.from(`Subject: big\r\nContent-Type: text/plain\r\n\r\n${body}`);
  const { uid } = await store.append('INBOX', { content: big });
  // The same message with bare LF, written by another program.
  const lf = Buffer.from(big.toString('latin1').replace(/\r\n/g, '\n'), 'latin1');
  writeFileSync(join(root, 'cur', '1700000000.M1P1.other:2,'), lf);
  const v = await store.open('INBOX', { readOnly: true });
  const [a, b] = v.messages;
  t.equal(a!.size, big.length);
  t.equal(b!.size, big.length, 'the bare-LF file has the CRLF size');
  for (const m of [a!, b!]) {
    let n = 0;
    let chunks = 0;
    let maxChunk = 0;
    for await (const c of await v.read(m.uid)) {
      n += (c as Buffer).length;
      chunks++;
      maxChunk = Math.max(maxChunk, (c as Buffer).length);
    }
    t.equal(n, big.length, `uid ${m.uid} streamed whole`);
    t.ok(chunks > 100 && maxChunk <= 1024 * 1024, `in ${chunks} chunks of at most ${maxChunk} bytes`);
    const at = 30 * 1024 * 1024 + 7;
    t.equal((await v.readBuffer(m.uid, at, at + 200)).toString('latin1'), big.subarray(at, at + 200).toString('latin1'), 'a range far in');
    const s = await v.summary(m.uid);
    t.equal(s.root.size, Buffer.byteLength(body));
    t.equal(s.root.lines, body.length / line.length);
  }
  t.equal(uid, a!.uid);
  await v.close();
});

t.test('tmp/ files that sat there 36 hours are swept when a mailbox is loaded; an APPEND with an old date is not', async (t) => {
  const root = join(t.testdir(), 'u');
  const base = openMailStoreService({ log, hostname: 'h' }).forRoot(root);
  await base.list();
  writeFileSync(join(root, 'tmp', 'leftover'), 'x');
  await base.append('INBOX', { content: msg('old'), internalDate: new Date('2001-01-01T00:00:00Z') });
  t.ok(existsSync(join(root, 'tmp', 'leftover')), 'not swept at its age');
  const later = openMailStoreService({ log, hostname: 'h', now: () => Date.now() + 37 * 3600 * 1000 }).forRoot(root);
  const v = await later.open('INBOX', { readOnly: true });
  t.notOk(existsSync(join(root, 'tmp', 'leftover')), 'swept 37 hours later');
  t.equal(v.messages[0]!.internalDate.toISOString(), '2001-01-01T00:00:00.000Z');
  await v.close();
});

t.test('structure parsed ahead on a cold index; files that vanish meanwhile fail only whoever asks for them', async (t) => {
  const root = join(t.testdir(), 'u');
  const svc = openMailStoreService({ log, hostname: 'h' });
  const store = svc.forRoot(root);
  await store.list();
  for (let i = 0; i < 20; i++) {
    const body = `Subject: s${i}\r\n\r\nx\r\n`;
    writeFileSync(join(root, 'cur', `${1700000000 + i}.M${i}P1.x,S=${body.length},W=${body.length}:2,`), body);
  }
  const v = await store.open('INBOX', { readOnly: true });
  t.equal(svc.counters.bodyReads, 0);
  const names = readdirSync(join(root, 'cur')).sort();
  for (const n of names.slice(2, 5)) unlinkSync(join(root, 'cur', n));
  t.equal((await v.summary(1)).envelope.subject, 's0');
  await new Promise((r) => setTimeout(r, 50));
  t.ok(svc.counters.bodyReads > 1, `parsed ahead: ${svc.counters.bodyReads} reads`);
  const reads = svc.counters.bodyReads;
  t.equal((await v.summary(2)).envelope.subject, 's1', 'from the window, no new read');
  t.equal(svc.counters.bodyReads, reads);
  await t.rejects(v.summary(3), MessageGoneError);
  for (let uid = 6; uid <= 20; uid++) t.equal((await v.summary(uid)).envelope.subject, `s${uid - 1}`);
  await v.close();
});

t.test('a dovecot-uidlist.lock left by a crashed process does not stop APPEND or a new message from getting its UID', async (t) => {
  const root = join(t.testdir(), 'u');
  const store = openMailStoreService({ log, hostname: 'h' }).forRoot(root);
  await store.append('INBOX', { content: msg('before') });
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
  writeFileSync(join(root, 'dovecot-uidlist.lock'), `${dead}:${hostname()}`);
  t.equal((await store.append('INBOX', { content: msg('after') })).uid, 2);
  t.notOk(existsSync(join(root, 'dovecot-uidlist.lock')), 'the stale lock is gone and ours released');
  writeFileSync(join(root, 'dovecot-uidlist.lock'), `${dead}:${hostname()}`);
  await deliver(root, msg('delivered'));
  const v = await store.open('INBOX', { readOnly: true });
  t.same(v.messages.map((m) => m.uid), [1, 2, 3]);
  await v.close();
});

t.test('a directory or an unreadable entry among the messages is skipped, not fatal', async (t) => {
  const root = join(t.testdir(), 'u');
  const store = openMailStoreService({ log, hostname: 'h' }).forRoot(root);
  await store.append('INBOX', { content: msg('ok') });
  mkdirSync(join(root, 'cur', '1700000000.M1P1.dir:2,S'));
  mkdirSync(join(root, 'new', '1700000001.M1P1.dir'));
  const v = await store.open('INBOX', { readOnly: false });
  t.same(v.messages.map((m) => m.uid), [1]);
  await store.append('INBOX', { content: msg('still fine') });
  t.same((await v.sync()).added.map((m) => m.uid), [4]);
  await v.close();
});

t.test('a delivery into a mailbox kept loaded is indexed at once, not at the next SELECT', async (t) => {
  const root = join(t.testdir(), 'u');
  const svc = openMailStoreService({ log, hostname: 'h' });
  const store = svc.forRoot(root);
  await store.append('INBOX', { content: msg('first') });
  await (await store.open('INBOX', { readOnly: false })).close();
  const before = svc.counters.bodyReads;
  await deliver(root, msg('delivered'));
  svc.delivered(root);
  for (let i = 0; i < 200 && svc.counters.bodyReads === before; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(svc.counters.bodyReads, before + 1, 'read once, at delivery');
  const v = await store.open('INBOX', { readOnly: false });
  t.same(v.messages.map((m) => m.uid), [1, 2]);
  t.ok(v.recentUids.has(2), 'still \\Recent for the first session');
  t.equal((await v.summary(2)).envelope.subject, 'delivered');
  t.equal(svc.counters.bodyReads, before + 1, 'nothing read again');
  await v.close();
});
