/**
 * The on-disk formats of the mailbox store, unit by unit: dovecot-uidlist
 * (v3 and v1), dovecot-keywords, subscriptions (v2, modified UTF-7, tab
 * escapes), Maildir file names and their flag letters, mailbox names (every
 * bad name refused), modified UTF-7, the dotlock with Dovecot's stale-lock
 * rules, and the MIME structure parser (offsets, RFC 2231, defaults, bounds).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { InvalidMailboxNameError } from '../../store/mailbox/errors.ts';
import { LockTimeoutError, withDotlock } from '../../store/mailbox/dotlock.ts';
import { curName, flagsOfInfo, infoOfFlags, parseFileName } from '../../store/mailbox/filename.ts';
import { addKeywords, formatKeywords, parseKeywords, readKeywords } from '../../store/mailbox/keywords.ts';
import { IndexCache, memoryCacheKv } from '../../store/mailbox/index-cache.ts';
import { parseMessage, parseStructuredValue } from '../../store/mailbox/mime.ts';
import { decodeModifiedUtf7, encodeModifiedUtf7, mailboxDir, nameOfFolderDir, parseMailboxName } from '../../store/mailbox/names.ts';
import { formatSubscriptions, parseSubscriptions } from '../../store/mailbox/subscriptions.ts';
import type { MimePart } from '../../store/mailbox/types.ts';
import { UidlistCorruptError, formatUidlist, parseUidlist } from '../../store/mailbox/uidlist.ts';

t.test('dovecot-uidlist v3: header fields, extensions, duplicates, next UID', async (t) => {
  const text = '3 V1700000000 N5 G0123456789abcdef0123456789abcdef X9\n1 :a.host,S=10\n3 W12 S10 :b.host,S=10:2,S\n4 :c\n7 :a.host,S=10\n';
  const u = parseUidlist(text);
  t.equal(u.uidValidity, 1700000000);
  t.equal(u.guid, '0123456789abcdef0123456789abcdef');
  t.same(u.headerExt, ['X9']);
  t.same(u.records.map((r) => [r.uid, r.base, r.ext ?? []]), [[3, 'b.host,S=10', ['W12', 'S10']], [4, 'c', []], [7, 'a.host,S=10', []]], 'a later line for the same file replaces the earlier (Dovecot: moved back after expunge)');
  t.equal(u.nextUid, 8, 'next UID is past the last record even if the header says less');
  t.equal(formatUidlist(u), '3 V1700000000 N8 G0123456789abcdef0123456789abcdef X9\n3 W12 S10 :b.host,S=10\n4 :c\n7 :a.host,S=10\n');
  t.same(parseUidlist('1 42 10\n3 old.name\n').records, [{ uid: 3, base: 'old.name' }], 'version 1 (Courier) read');
  t.same(parseUidlist('3 V1 N1 Gx\n1 :a\n2 :b.par', false).records.map((r) => r.base), ['a'], 'read without the lock, a line being appended is left for later');
  t.same(parseUidlist('3 V1 N1 Gx\n1 :a\n2 :b.par', true).records.map((r) => r.base), ['a', 'b.par']);
  t.throws(() => parseUidlist('3 V1 N2\n2 :a\n1 :b\n'), UidlistCorruptError, 'UIDs out of order');
  t.throws(() => parseUidlist('3 N2\n'), UidlistCorruptError, 'no UIDVALIDITY');
  t.throws(() => parseUidlist('9 V1 N1\n'), UidlistCorruptError, 'unknown version');
  t.throws(() => parseUidlist('3 V1 N1\n1 :a/b\n'), UidlistCorruptError, 'a path in a name');
});

t.test('dovecot-keywords and concurrent additions', async (t) => {
  t.same(parseKeywords('0 $Forwarded\n1 work\n3 later\nbroken\n'), ['$Forwarded', 'work', undefined, 'later']);
  t.equal(formatKeywords(['a', undefined, 'c']), '0 a\n2 c\n');
  const dir = t.testdir();
  const tables = await Promise.all([addKeywords(dir, ['one', 'two']), addKeywords(dir, ['three', 'ONE']), addKeywords(dir, ['four'])]);
  const final = await readKeywords(dir);
  t.same([...final].sort(), ['four', 'one', 'three', 'two'], 'every writer kept the others (and keywords compare case-insensitively)');
  t.same(tables[2], final);
  const many = await addKeywords(dir, Array.from({ length: 40 }, (_v, i) => `k${i}`));
  t.equal(many.length, 26, 'at most 26 keywords get a letter');
  t.notOk(existsSync(join(dir, 'dovecot-keywords.lock')));
});

t.test('subscriptions: Dovecot v2 format, modified UTF-7 levels, tab escapes; v1 read', async (t) => {
  const text = formatSubscriptions(['INBOX', 'Entwürfe/Alt']);
  t.equal(text, 'V\t2\n\nINBOX\nEntw&APw-rfe\tAlt\n');
  t.same(parseSubscriptions(text), ['INBOX', 'Entwürfe/Alt']);
  t.same(parseSubscriptions('V\t2\n\nodd\u0001tname\u00011\n'), ['odd\tname\u0001'], 'tab escapes');
  t.same(parseSubscriptions('INBOX\nWork/Projects\n'), ['INBOX', 'Work/Projects']);
});

t.test('Maildir names and flag letters', async (t) => {
  t.same(parseFileName('123.M4P5.host,S=100,W=104:2,FRSab'), { base: '123.M4P5.host,S=100,W=104', info: 'FRSab', size: 100, vsize: 104 });
  t.same(parseFileName('123.host'), { base: '123.host', info: '' });
  t.same(flagsOfInfo('DFPRSTab', ['$Junk', 'work']), ['$Junk', '\\Answered', '\\Deleted', '\\Draft', '\\Flagged', '\\Seen', 'work']);
  const idx = (k: string): number | undefined => ({ $junk: 0, work: 1 })[k.toLowerCase()];
  t.equal(infoOfFlags(['\\Seen', '\\answered', '$Junk', 'work', 'unknown', '\\Recent'], idx, 'Pz'), 'PRSab', 'sorted letters, P kept, unknown keyword letters dropped');
  t.equal(curName('b', ''), 'b:2,');
});

t.test('mailbox names: valid forms, every bad name refused, paths stay under the root', async (t) => {
  t.same(parseMailboxName('inbox'), { name: 'INBOX', levels: [], isInbox: true });
  t.same(parseMailboxName('Inbox/Sub').levels, ['INBOX', 'Sub']);
  t.equal(mailboxDir('/m', parseMailboxName('Entwürfe/A&B')), '/m/.Entw&APw-rfe.A&-B');
  for (const bad of ['', '/', 'a/', '/a', 'a//b', '.', '..', 'a/..', '../x', 'a.b', 'nul\u0000', 'ctl\u0001', 'del\u007f', 'a*', 'b%', '\ud800', 'é'.repeat(200)]) {
    t.throws(() => parseMailboxName(bad), InvalidMailboxNameError, JSON.stringify(bad));
  }
  t.equal(nameOfFolderDir('.Entw&APw-rfe.Alt'), 'Entwürfe/Alt');
  t.equal(nameOfFolderDir('.inbox.x'), 'INBOX/x');
  for (const notFolder of ['..', '..x', '.a..b', '.&AGE-', '.&Jjo', '.a/b', 'cur']) t.equal(nameOfFolderDir(notFolder), undefined, notFolder);
});

t.test('modified UTF-7 round trip and invalid forms', async (t) => {
  for (const s of ['Entwürfe', '日本語', 'a&b', '~peter/mail/台北/日本語', '😀 emoji']) t.equal(decodeModifiedUtf7(encodeModifiedUtf7(s)), s, s);
  t.equal(encodeModifiedUtf7('~peter/mail/台北/日本語'), '~peter/mail/&U,BTFw-/&ZeVnLIqe-');
  for (const bad of ['&', '&Jjo', '&AGE-', '&Jjo!-', '&2D3-', 'a\u00e9']) t.equal(decodeModifiedUtf7(bad), undefined, bad);
});

t.test('dotlock: exclusive, stale by dead owner or age, bounded wait', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'dovecot-uidlist');
  const order: string[] = [];
  await Promise.all([1, 2, 3].map((i) => withDotlock(target, async () => {
    order.push(`in${i}`);
    await new Promise((r) => setTimeout(r, 5));
    order.push(`out${i}`);
  })));
  t.same(order, ['in1', 'out1', 'in2', 'out2', 'in3', 'out3'], 'one holder at a time');
  const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
  writeFileSync(`${target}.lock`, `${dead}:${hostname()}`);
  t.equal(await withDotlock(target, async () => 'taken'), 'taken', 'a lock of a dead process on this host is stale');
  writeFileSync(`${target}.lock`, 'garbage');
  const old = new Date(Date.now() - 10 * 60_000);
  utimesSync(`${target}.lock`, old, old);
  t.equal(await withDotlock(target, async () => 'taken'), 'taken', 'a lock unchanged for longer than the stale timeout is stale');
  writeFileSync(`${target}.lock`, `${process.ppid}:${hostname()}`);
  await t.rejects(withDotlock(target, async () => 'never', { timeoutMs: 100 }), LockTimeoutError, 'a live lock is waited for, boundedly');
  t.equal(readFileSync(`${target}.lock`, 'utf8'), `${process.ppid}:${hostname()}`, 'and left alone');
});

function flat(p: MimePart, out: MimePart[] = []): MimePart[] {
  out.push(p);
  for (const c of p.children ?? []) flat(c, out);
  if (p.message) flat(p.message.root, out);
  return out;
}

t.test('MIME: structure, offsets in CRLF form, lines, envelope, nested message', async (t) => {
  const lines = [
    'From: "A" <a@example.test>', 'To: b@example.test,', ' c@example.test', 'Subject: =?utf-8?q?caf=C3=A9?=', 'Message-ID: <1@x>',
    'Content-Type: multipart/mixed;', '\tboundary="=_b1"', '', 'preamble', '--=_b1', 'Content-Type: text/plain; charset="utf-8"', 'Content-Transfer-Encoding: Quoted-Printable',
    '', 'caf=C3=A9', 'line2', '', '--=_b1 ', 'Content-Type: message/rfc822', 'Content-Description: fwd', '', 'Subject: inner', 'From: i@example.test', '',
    'inner body', '--=_b1--', 'epilogue',
  ];
  const crlf = Buffer.from(`${lines.join('\r\n')}\r\n`);
  const lf = Buffer.from(`${lines.join('\n')}\n`);
  const r = parseMessage(crlf);
  const rl = parseMessage(lf);
  t.same(rl.summary, r.summary, 'bare-LF file: the same structure with CRLF offsets');
  t.equal(rl.size, crlf.length);
  t.ok(rl.bareLf);
  t.notOk(r.bareLf);
  const root = r.summary.root;
  t.equal(r.summary.envelope.to, 'b@example.test, c@example.test', 'unfolded');
  t.equal(r.summary.envelope.subject, '=?utf-8?q?caf=C3=A9?=', 'raw');
  t.equal(root.type, 'multipart');
  t.equal(root.params.boundary, '=_b1');
  const [text, msg] = root.children!;
  const s = crlf.toString('latin1');
  t.equal(s.slice(text!.bodyStart, text!.bodyEnd), 'caf=C3=A9\r\nline2\r\n');
  t.equal(text!.lines, 2);
  t.equal(text!.encoding, 'quoted-printable');
  t.equal(s.slice(text!.headerStart, text!.bodyStart), 'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\n');
  t.equal(msg!.type, 'message');
  t.equal(msg!.description, 'fwd');
  t.equal(msg!.message!.envelope.subject, 'inner');
  t.equal(s.slice(msg!.bodyStart, msg!.bodyEnd), 'Subject: inner\r\nFrom: i@example.test\r\n\r\ninner body');
  t.equal(msg!.lines, 4);
  t.equal(s.slice(msg!.message!.root.bodyStart, msg!.message!.root.bodyEnd), 'inner body');
  t.equal(root.bodyEnd, crlf.length);
});

t.test('MIME: defaults, RFC 2231, digest, broken input', async (t) => {
  const p = parseStructuredValue(`attachment; filename*0*=utf-8''%E2%82%AC%20rates; filename*1=".txt"; size=10 (comment); title*=iso-8859-1'en'%A3`);
  t.same(p, { value: 'attachment', params: { size: '10', filename: '€ rates.txt', title: '£' } });
  const plain = parseMessage(Buffer.from('Subject: x\r\n\r\nbody'));
  t.same([plain.summary.root.type, plain.summary.root.subtype, plain.summary.root.params], ['text', 'plain', { charset: 'us-ascii' }], 'no Content-Type: text/plain; charset=us-ascii');
  t.equal(plain.summary.root.lines, 1);
  t.same(parseMessage(Buffer.from('Content-Type: garbage\r\n\r\nx')).summary.root.params, { charset: 'us-ascii' });
  const digest = parseMessage(Buffer.from('Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\n1\r\n--d\r\nContent-Type: text/plain\r\n\r\nt\r\n--d--\r\n'));
  const kids = digest.summary.root.children!;
  t.same(kids.map((k) => `${k.type}/${k.subtype}`), ['message/rfc822', 'text/plain'], 'parts of a digest default to message/rfc822');
  t.equal(kids[0]!.message!.envelope.subject, 'one');
  const unterminated = parseMessage(Buffer.from('Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\npart'));
  t.equal(unterminated.summary.root.children!.length, 1, 'no closing boundary: the part runs to the end');
  const headerOnly = parseMessage(Buffer.from('Subject: only headers'));
  t.equal(headerOnly.summary.root.bodyStart, headerOnly.size);
  t.equal(parseMessage(Buffer.alloc(0)).size, 0);
  const noBoundary = parseMessage(Buffer.from('Content-Type: multipart/mixed\r\n\r\n--x\r\n'));
  t.equal(noBoundary.summary.root.children, undefined, 'a multipart without boundary is a leaf');
});

t.test('MIME: bounded on hostile input (deep nesting, huge lines, many parts)', async (t) => {
  let deep = '';
  for (let i = 0; i < 2000; i++) deep += `Content-Type: multipart/mixed; boundary=b${i}\r\n\r\n--b${i}\r\n`;
  const d = parseMessage(Buffer.from(deep));
  let depth = 0;
  for (let p: MimePart | undefined = d.summary.root; p; p = p.children?.[0]) depth++;
  t.ok(depth <= 25, `nesting stopped at ${depth}`);
  let rfc = '';
  for (let i = 0; i < 2000; i++) rfc += 'Content-Type: message/rfc822\r\n\r\n';
  t.ok(flat(parseMessage(Buffer.from(rfc)).summary.root).length <= 25);
  const huge = Buffer.alloc(8 * 1024 * 1024, 0x41);
  const h = parseMessage(Buffer.concat([Buffer.from('Subject: big\r\n\r\n'), huge]));
  t.equal(h.summary.root.size, huge.length);
  const hugeHeader = parseMessage(Buffer.concat([Buffer.from('X-A: '), huge, Buffer.from('\r\nSubject: after\r\n\r\nbody')]));
  t.equal(hugeHeader.summary.root.size, 4, 'a header line longer than the bound is skipped, offsets stay right');
  let many = 'Content-Type: multipart/mixed; boundary=m\r\n\r\n';
  for (let i = 0; i < 10_000; i++) many += '--m\r\n\r\nx\r\n';
  const m = parseMessage(Buffer.from(many));
  t.ok(m.summary.root.children!.length < 4001, `${m.summary.root.children!.length} parts kept`);
});

t.test('index cache: entries round-trip, a broken or foreign value is skipped (recomputed), another UIDVALIDITY drops it all', async (t) => {
  const kv = memoryCacheKv();
  const cache = new IndexCache(kv);
  const e = (base: string) => ({ base, vsize: 123, bareLf: true, mtimeMs: 1700000000123, modseq: 7 });
  await cache.write('g1', { uidValidity: 5, highestModseq: 9 }, new Map([[1, e('a,S=1')], [2, e('b')], [3, e('c')]]), []);
  const key2 = [...kv.map.keys()].find((k) => k.startsWith('g1!r!') && k.endsWith('2'))!;
  kv.map.set(key2, '["old","json"]');
  const { meta, entries } = await cache.load('g1', 5);
  t.same(meta, { uidValidity: 5, highestModseq: 9 });
  t.same([...entries.keys()].sort(), [1, 3]);
  t.same(entries.get(1), e('a,S=1'));
  const other = await cache.load('g1', 6);
  t.equal(other.entries.size, 0);
  t.equal([...kv.map.keys()].filter((k) => k.startsWith('g1!')).length, 0, 'dropped');
});
