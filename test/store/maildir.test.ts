/**
 * Maildir++ delivery (SPEC §store): the body spooled once under a size limit
 * enforced while streaming, then tmp/ → fsync → new/ → fsync of new/ for each
 * target, hard links between targets, per-target failures that leave nothing
 * in new/ and do not touch the other targets, unique names under concurrency,
 * and names and folders Dovecot reads (checked with doveadm when installed).
 *
 * Tests run as root, so permissions stop nothing: real failures are made with
 * a file where a directory should be, a dangling symlink, a name too long and
 * a spool on another filesystem (/dev/shm); ENOSPC, EDQUOT, EIO and EACCES are
 * injected through the MaildirFs layer.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import {
  MessageTooLargeError,
  SpooledMessage,
  deliverToMaildirs,
  encodeMailboxName,
  ensureMaildir,
  maildirFolderPath,
  nodeMaildirFs,
  sweepSpool,
  uniqueName,
  type MaildirFs,
  type MaildirTarget,
} from '../../store/maildir.ts';

const run = promisify(execFile);
const MODULE = fileURLToPath(new URL('../../store/maildir.ts', import.meta.url));

const PREFIX = Buffer.from('Received: from client.example.net ([192.0.2.1])\r\n\tby mail.example.test (appliance) with ESMTP id 4Xy;\r\n\tSun, 22 Nov 2026 03:00:00 +0000\r\n');
const BODY = Buffer.from('From: <a@example.net>\r\nTo: <b@example.test>\r\nSubject: caf\u00e9\r\n\r\nLine one\r\n.Line two\r\n\u00e9t\u00e9\r\n');
/** Dovecot's reading of a name in new/: base, then `,S=`, and no `:2,` info. */
const NAME = /^(\d+)\.M(\d+)P(\d+)Q(\d+)R([0-9a-f]{16})\.([^/:,]+),S=(\d+)$/;

function newFiles(maildir: string): string[] {
  const dir = join(maildir, 'new');
  return existsSync(dir) ? readdirSync(dir).map((f) => join(dir, f)) : [];
}
function tmpFiles(maildir: string): string[] {
  const dir = join(maildir, 'tmp');
  return existsSync(dir) && statSync(dir).isDirectory() ? readdirSync(dir) : [];
}
function spoolDir(root: string): string {
  const dir = join(root, 'spool');
  mkdirSync(dir, { recursive: true });
  return dir;
}
function chunked(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}
async function spool(root: string, body: Buffer = BODY, prefix: Buffer | undefined = PREFIX): Promise<SpooledMessage> {
  return SpooledMessage.write(spoolDir(root), Readable.from(chunked(body, 7)), { maxBytes: 1 << 20, ...(prefix ? { prefix } : {}) });
}
function errno(code: string, op: string, path: string): Error {
  return Object.assign(new Error(`${code}: injected, ${op} '${path}'`), { code });
}
/** nodeMaildirFs, with `fail(op, path)` returning an errno code to throw instead. */
function faultyFs(fail: (op: string, path: string) => string | undefined): MaildirFs {
  const check = (op: string, path: string): void => {
    const code = fail(op, path);
    if (code) throw errno(code, op, path);
  };
  return {
    async mkdir(p, o) { check('mkdir', p); return nodeMaildirFs.mkdir(p, o); },
    async stat(p) { check('stat', p); return nodeMaildirFs.stat(p); },
    async link(a, b) { check('link', b); return nodeMaildirFs.link(a, b); },
    async copyFile(a, b, m) { check('copyFile', b); return nodeMaildirFs.copyFile(a, b, m); },
    async rename(a, b) { check('rename', b); return nodeMaildirFs.rename(a, b); },
    async unlink(p) { check('unlink', p); return nodeMaildirFs.unlink(p); },
    async writeFile(p, d, o) { check('writeFile', p); return nodeMaildirFs.writeFile(p, d, o); },
    async fsync(p) { check('fsync', p); return nodeMaildirFs.fsync(p); },
  };
}

t.test('uniqueName: the Maildir spec format, escaped host, unique in a tight loop', async (t) => {
  const now = new Date(Date.UTC(2026, 10, 22, 3, 0, 0, 123));
  const name = uniqueName(4242, 'mail.example.test', now);
  const m = NAME.exec(name);
  t.ok(m, name);
  t.equal(m![1], String(Math.floor(now.getTime() / 1000)), 'seconds');
  t.equal(m![2], '123000', 'microseconds of the given clock');
  t.equal(m![3], String(process.pid));
  t.equal(m![6], 'mail.example.test');
  t.equal(m![7], '4242');
  t.match(uniqueName(1, 'a/b:c,d'), /\.a\\057b\\072c\\054d,S=1$/, "'/' → \\057 and ':' → \\072 (spec), ',' → \\054");
  t.notOk(uniqueName(1, 'h').includes(':'), 'no info part');
  const names = new Set<string>();
  for (let i = 0; i < 100_000; i++) names.add(uniqueName(10, 'h', now));
  t.equal(names.size, 100_000, 'same clock reading, still unique');
});

t.test('uniqueName: unique across processes started at the same time', async (t) => {
  const script = `import { uniqueName } from ${JSON.stringify(MODULE)};
const now = new Date(1795000000000); const out = [];
for (let i = 0; i < 5000; i++) out.push(uniqueName(1, 'h', now));
process.stdout.write(out.join('\\n'));`;
  const outs = await Promise.all([0, 1, 2, 3].map(() => run(process.execPath, ['--input-type=module', '-e', script], { maxBuffer: 1 << 24 })));
  const all = outs.flatMap((o) => o.stdout.split('\n'));
  t.equal(all.length, 20_000);
  t.equal(new Set(all).size, 20_000);
});

t.test('SpooledMessage: prefix + streamed body, size, read back, remove', async (t) => {
  const root = t.testdir();
  const s = await spool(root);
  t.equal(s.size, PREFIX.length + BODY.length);
  t.same(readFileSync(s.path), Buffer.concat([PREFIX, BODY]));
  t.equal(statSync(s.path).mode & 0o777, 0o600);
  const back: Buffer[] = [];
  for await (const c of s.stream()) back.push(c as Buffer);
  t.same(Buffer.concat(back), Buffer.concat([PREFIX, BODY]), 'stream() gives the same bytes');
  await s.remove();
  await s.remove();
  t.notOk(existsSync(s.path), 'removed, idempotently');

  const exact = await SpooledMessage.write(spoolDir(root), [Buffer.alloc(1000, 'a')], { maxBytes: 1000 });
  t.equal(exact.size, 1000, 'exactly the limit passes; strings, Uint8Arrays and async iterables are accepted');
  await exact.remove();
  const mixed = await SpooledMessage.write(spoolDir(root), (async function* () { yield 'ab'; yield new Uint8Array([0x63]); })(), { maxBytes: 10 });
  t.equal(readFileSync(mixed.path, 'latin1'), 'abc');
  await mixed.remove();
});

t.test('size limit enforced mid-stream: source 10× the limit is not consumed, spool removed', async (t) => {
  const root = t.testdir();
  const dir = spoolDir(root);
  const limit = 1 << 20;
  const chunk = 16 * 1024;
  let pulled = 0;
  async function* huge(): AsyncGenerator<Buffer> {
    for (let i = 0; i < (10 * limit) / chunk; i++) {
      pulled++;
      yield Buffer.alloc(chunk, 0x78);
    }
  }
  const err = await SpooledMessage.write(dir, huge(), { maxBytes: limit, prefix: PREFIX }).catch((e: unknown) => e);
  t.ok(err instanceof MessageTooLargeError, 'MessageTooLargeError');
  t.equal((err as MessageTooLargeError).limit, limit);
  t.equal((err as MessageTooLargeError).size, limit + chunk, 'stopped at the first chunk over the limit');
  t.equal(pulled, limit / chunk + 1, `pulled ${pulled} of ${(10 * limit) / chunk} chunks: the rest was never read`);
  t.same(readdirSync(dir), [], 'the spool file is removed');

  // An SMTP DATA stream must stay readable so the session can drain it and answer 552.
  let produced = 0;
  const total = 10 * limit;
  const stream = new Readable({
    highWaterMark: chunk,
    read() {
      if (produced >= total) return void this.push(null);
      produced += chunk;
      this.push(Buffer.alloc(chunk, 0x79));
    },
  });
  const err2 = await SpooledMessage.write(dir, stream, { maxBytes: limit }).catch((e: unknown) => e);
  t.ok(err2 instanceof MessageTooLargeError);
  t.ok(produced < 2 * limit, `the Readable produced ${produced} bytes before the stop, far from ${total}`);
  t.notOk(stream.destroyed, 'the Readable is not destroyed');
  let drained = 0;
  await new Promise<void>((resolve, reject) => {
    stream.on('data', (c: Buffer) => (drained += c.length));
    stream.on('end', resolve);
    stream.on('error', reject);
    stream.resume();
  });
  t.equal(drained + (err2 as MessageTooLargeError).size, total, 'the caller drained the rest');
  t.same(readdirSync(dir), []);
});

t.test('a failing source removes the spool file and passes the error on', async (t) => {
  const dir = spoolDir(t.testdir());
  async function* broken(): AsyncGenerator<Buffer> {
    yield Buffer.from('Subject: x\r\n');
    throw new Error('connection reset');
  }
  await t.rejects(SpooledMessage.write(dir, broken(), { maxBytes: 1000 }), /connection reset/);
  t.same(readdirSync(dir), []);
});

t.test('sweepSpool removes leftovers of a crash', async (t) => {
  const dir = spoolDir(t.testdir());
  const s = await SpooledMessage.write(dir, [Buffer.from('x')], { maxBytes: 10 });
  writeFileSync(join(dir, 'not-ours'), '');
  t.equal(await sweepSpool(dir, 60_000), 0, 'a fresh spool file is kept');
  t.equal(await sweepSpool(dir), 1);
  t.notOk(existsSync(s.path));
  t.ok(existsSync(join(dir, 'not-ours')));
  t.equal(await sweepSpool(join(dir, 'missing')), 0);
});

t.test('ensureMaildir: cur/new/tmp 0700 with parents, idempotent, concurrent; a file in the way is ENOTDIR', async (t) => {
  const root = t.testdir();
  const md = join(root, 'mail', 'example.test', 'alice');
  await Promise.all([ensureMaildir(md), ensureMaildir(md), ensureMaildir(md)]);
  await ensureMaildir(md);
  for (const sub of ['cur', 'new', 'tmp']) {
    const st = statSync(join(md, sub));
    t.ok(st.isDirectory(), sub);
    t.equal(st.mode & 0o777, 0o700, `${sub} is 0700`);
  }
  t.equal(statSync(md).mode & 0o777, 0o700);
  const bad = join(root, 'bad');
  mkdirSync(bad);
  writeFileSync(join(bad, 'new'), 'not a directory');
  await t.rejects(ensureMaildir(bad), { code: 'ENOTDIR' });
  await ensureMaildir(join(md, '.Junk'), { folder: true });
  t.ok(existsSync(join(md, '.Junk', 'maildirfolder')), 'Maildir++ folder marker');
});

t.test('delivery to one Maildir: byte for byte with the prefix, in new/ only, ,S= is the size', async (t) => {
  const root = t.testdir();
  const md = join(root, 'mail', 'example.test', 'alice');
  const s = await spool(root);
  const now = new Date(Date.UTC(2026, 10, 22, 3, 4, 5));
  const r = await deliverToMaildirs(s, [{ path: md }], { hostname: 'mail.example.test', now: () => now });
  await s.remove();
  t.same(r.failed, []);
  t.equal(r.delivered.length, 1);
  const d = r.delivered[0]!;
  t.equal(d.path, md);
  t.same(newFiles(md), [d.file], 'the file is in new/');
  t.same(tmpFiles(md), [], 'nothing left in tmp/');
  t.same(readdirSync(join(md, 'cur')), []);
  const content = readFileSync(d.file);
  t.same(content, Buffer.concat([PREFIX, BODY]), 'byte for byte, prefix first');
  const m = NAME.exec(basename(d.file));
  t.ok(m, `Dovecot-readable name: ${basename(d.file)}`);
  t.equal(Number(m![7]), content.length, ',S= is the file size');
  t.equal(Number(m![7]), statSync(d.file).size);
  t.equal(m![1], String(now.getTime() / 1000), 'time from the injected clock');
  t.equal(statSync(d.file).mode & 0o777, 0o600);
  t.equal(statSync(d.file).nlink, 1, 'once the spool is gone, the mailbox holds the only link');
});

t.test('delivery to three Maildirs: one inode, hard-linked, each byte for byte', async (t) => {
  const root = t.testdir();
  const paths = ['alice', 'bob', 'carol'].map((u) => join(root, 'mail', 'example.test', u));
  const s = await spool(root);
  const r = await deliverToMaildirs(s, paths.map((path) => ({ path })), { hostname: 'mx' });
  t.same(r.failed, []);
  t.same(r.delivered.map((d) => d.path), paths, 'in target order');
  const inodes = new Set(r.delivered.map((d) => statSync(d.file).ino));
  t.equal(inodes.size, 1, 'one body on disk');
  t.equal(statSync(s.path).nlink, 4, 'spool + 3 links');
  await s.remove();
  for (const [i, p] of paths.entries()) {
    const files = newFiles(p);
    t.equal(files.length, 1, `${p}: one file`);
    t.same(readFileSync(files[0]!), Buffer.concat([PREFIX, BODY]));
    t.equal(Number(NAME.exec(basename(files[0]!))![7]), statSync(files[0]!).size);
    t.equal(files[0], r.delivered[i]!.file);
    t.same(tmpFiles(p), []);
  }
  t.equal(new Set(r.delivered.map((d) => basename(d.file))).size, 3, 'each mailbox gets its own name');
});

t.test('1000 concurrent deliveries into one Maildir: 1000 distinct complete files', async (t) => {
  const root = t.testdir();
  const md = join(root, 'mail', 'example.test', 'alice');
  const spools = await Promise.all(Array.from({ length: 20 }, (_, i) => spool(root, Buffer.from(`Subject: ${i}\r\n\r\n${'x'.repeat(i * 37)}\r\n`))));
  const results = await Promise.all(Array.from({ length: 1000 }, (_, i) => deliverToMaildirs(spools[i % 20]!, [{ path: md }, { path: md, folder: 'Junk' }], { hostname: 'mx' })));
  t.equal(results.flatMap((r) => r.failed).length, 0, 'no failure');
  const files = newFiles(md);
  t.equal(files.length, 1000);
  t.equal(new Set(files).size, 1000);
  t.equal(newFiles(join(md, '.Junk')).length, 1000);
  let sizesOk = 0;
  for (const f of files) if (Number(NAME.exec(basename(f))![7]) === statSync(f).size) sizesOk++;
  t.equal(sizesOk, 1000, 'every ,S= matches its file');
  t.same(tmpFiles(md), []);
  await Promise.all(spools.map((s) => s.remove()));
});

t.test('folder targets: Maildir++ .Junk, .A.B, modified UTF-7; invalid names fail permanently', async (t) => {
  const root = t.testdir();
  const md = join(root, 'alice');
  const s = await spool(root);
  const r = await deliverToMaildirs(s, [{ path: md, folder: 'Junk' }, { path: md, folder: 'Archive/2026' }, { path: md, folder: 'Entw\u00fcrfe' }, { path: md, folder: 'INBOX' }, { path: md, folder: 'a.b' }, { path: md, folder: '../../etc' }, { path: 'relative/path' }]);
  await s.remove();
  t.same(r.delivered.map((d) => relative(md, dirname(dirname(d.file)))), ['.Junk', '.Archive.2026', '.Entw&APw-rfe', ''], 'PATH/.Junk, PATH/.Archive.2026, mUTF-7, INBOX = PATH');
  t.ok(existsSync(join(md, 'cur')) && existsSync(join(md, 'tmp')), 'the INBOX Maildir exists too');
  t.ok(existsSync(join(md, '.Junk', 'maildirfolder')), 'maildirfolder marker');
  t.notOk(existsSync(join(md, 'maildirfolder')), 'not on INBOX');
  t.same(readFileSync(r.delivered[0]!.file), Buffer.concat([PREFIX, BODY]));
  t.same(r.failed.map((f) => [f.target.folder ?? f.target.path, f.error.temporary, f.error.code]), [
    ['a.b', false, 'EINVAL'],
    ['../../etc', false, 'EINVAL'],
    ['relative/path', false, 'EINVAL'],
  ]);
  t.equal(encodeMailboxName('&Co'), '&-Co');
  t.equal(encodeMailboxName('\u53f0\u5317'), '&U,BTFw-', 'RFC 3501 §5.1.3 example');
  t.equal(maildirFolderPath('/m', 'inbox'), '/m');
});

t.test('real failures as root: one target broken, the others delivered, nothing in its new/', async (t) => {
  const root = t.testdir();
  const good1 = join(root, 'good1');
  const good2 = join(root, 'good2');
  const tmpIsFile = join(root, 'tmp-is-file');
  mkdirSync(join(tmpIsFile, 'new'), { recursive: true });
  mkdirSync(join(tmpIsFile, 'cur'));
  writeFileSync(join(tmpIsFile, 'tmp'), 'a file in place of tmp/');
  const newIsFile = join(root, 'new-is-file');
  mkdirSync(join(newIsFile, 'tmp'), { recursive: true });
  writeFileSync(join(newIsFile, 'new'), 'a file in place of new/');
  writeFileSync(join(root, 'plain-file'), '');
  const underFile = join(root, 'plain-file', 'alice');
  symlinkSync('/nonexistent/appliance-test', join(root, 'dangling'));
  const dangling = join(root, 'dangling', 'alice');
  const tooLong = join(root, 'x'.repeat(300));
  const s = await spool(root);
  const r = await deliverToMaildirs(s, [{ path: good1 }, { path: tmpIsFile }, { path: newIsFile }, { path: underFile }, { path: dangling }, { path: tooLong }, { path: good2 }]);
  await s.remove();
  t.same(r.delivered.map((d) => d.path), [good1, good2], 'the good ones are delivered');
  for (const p of [good1, good2]) t.same(readFileSync(newFiles(p)[0]!), Buffer.concat([PREFIX, BODY]));
  const byPath = new Map(r.failed.map((f) => [f.target.path, f.error]));
  t.equal(byPath.get(tmpIsFile)?.code, 'ENOTDIR');
  t.equal(byPath.get(tmpIsFile)?.temporary, true, 'a Maildir the operator can repair: mail waits');
  t.equal(byPath.get(newIsFile)?.code, 'ENOTDIR');
  t.match(byPath.get(newIsFile)?.message, /rename into new\//);
  t.same(tmpFiles(newIsFile), [], 'its tmp/ file was removed');
  t.equal(readFileSync(join(newIsFile, 'new'), 'utf8'), 'a file in place of new/');
  t.equal(byPath.get(underFile)?.code, 'ENOTDIR', 'a parent that cannot be created');
  t.equal(byPath.get(underFile)?.temporary, true);
  t.ok(byPath.get(dangling)?.code, `a parent that cannot be created (dangling symlink): ${byPath.get(dangling)?.code}`);
  t.equal(byPath.get(dangling)?.temporary, true);
  t.equal(byPath.get(tooLong)?.code, 'ENAMETOOLONG');
  t.equal(byPath.get(tooLong)?.temporary, false, 'no retry makes a name fit');
  t.match(byPath.get(tmpIsFile)?.message, new RegExp(`^maildir ${tmpIsFile}: writing into tmp/ failed: ENOTDIR`));
});

t.test('injected errors: ENOSPC, EACCES, EDQUOT, EIO at each step fail only their target, leave nothing behind', async (t) => {
  const cases: { step: string; op: string; code: string; match: (p: string, bad: string) => boolean }[] = [
    { step: 'mkdir of a new Maildir', op: 'mkdir', code: 'EACCES', match: (p, bad) => p.startsWith(bad) },
    { step: 'link into tmp/', op: 'link', code: 'ENOSPC', match: (p, bad) => p.startsWith(`${bad}/tmp/`) },
    { step: 'rename into new/', op: 'rename', code: 'EDQUOT', match: (p, bad) => p.startsWith(`${bad}/new/`) },
    { step: 'fsync of new/', op: 'fsync', code: 'EIO', match: (p, bad) => p === `${bad}/new` },
    { step: 'fsync of a created parent', op: 'fsync', code: 'EROFS', match: (p, bad) => p === bad },
  ];
  for (const c of cases) {
    await t.test(`${c.code} on ${c.step}`, async (t) => {
      const root = t.testdir();
      const [a, bad, b] = ['a', 'bad', 'b'].map((u) => join(root, u)) as [string, string, string];
      const fs = faultyFs((op, p) => (op === c.op && c.match(p, bad) ? c.code : undefined));
      const s = await spool(root);
      const r = await deliverToMaildirs(s, [{ path: a }, { path: bad }, { path: b }], { fs });
      await s.remove();
      t.same(r.delivered.map((d) => d.path), [a, b]);
      t.equal(r.failed.length, 1);
      t.equal(r.failed[0]!.target.path, bad);
      t.equal(r.failed[0]!.error.code, c.code);
      t.equal(r.failed[0]!.error.temporary, true);
      t.same(newFiles(bad), [], 'nothing in new/');
      t.same(tmpFiles(bad), [], 'nothing in tmp/');
      for (const p of [a, b]) t.same(readFileSync(newFiles(p)[0]!), Buffer.concat([PREFIX, BODY]));
    });
  }

  await t.test('EIO on the fsync of the shared body fails every linked target, cleanly', async (t) => {
    const root = t.testdir();
    const paths = ['a', 'b'].map((u) => join(root, u));
    const s = await spool(root);
    const fs = faultyFs((op, p) => (op === 'fsync' && p === s.path ? 'EIO' : undefined));
    const r = await deliverToMaildirs(s, paths.map((path) => ({ path })), { fs });
    t.same(r.delivered, []);
    t.same(r.failed.map((f) => [f.error.code, f.error.temporary]), [['EIO', true], ['EIO', true]]);
    for (const p of paths) {
      t.same(newFiles(p), []);
      t.same(tmpFiles(p), []);
    }
    const again = await deliverToMaildirs(s, paths.map((path) => ({ path })));
    t.equal(again.delivered.length, 2, 'a retry with the same spool succeeds');
    await s.remove();
  });
});

t.test('EXDEV: a target on another filesystem gets a fsynced copy', async (t) => {
  await t.test('injected EXDEV', async (t) => {
    const root = t.testdir();
    const [a, far] = ['a', 'far'].map((u) => join(root, u)) as [string, string];
    const synced: string[] = [];
    const base = faultyFs((op, p) => (op === 'link' && p.startsWith(far) ? 'EXDEV' : undefined));
    const fs: MaildirFs = { ...base, fsync: async (p) => { synced.push(p); return base.fsync(p); } };
    const s = await spool(root);
    const r = await deliverToMaildirs(s, [{ path: a }, { path: far }], { fs });
    t.same(r.failed, []);
    const [da, dfar] = r.delivered.map((d) => d);
    if (!da || !dfar) return;
    t.equal(statSync(dfar.file).nlink, 1, 'a copy, not a link');
    t.not(statSync(dfar.file).ino, statSync(s.path).ino);
    t.same(readFileSync(dfar.file), readFileSync(da.file));
    t.ok(synced.some((p) => p.startsWith(join(far, 'tmp'))), 'the copy was fsync’d before its rename');
    await s.remove();
  });

  await t.test('spool on tmpfs (/dev/shm), Maildirs on the data disk', async (t) => {
    if (!existsSync('/dev/shm')) return t.plan(0, 'no /dev/shm');
    const shm = mkdtempSync('/dev/shm/appliance-maildir-test-');
    t.teardown(() => rmSync(shm, { recursive: true, force: true }));
    const root = t.testdir();
    if (statSync(shm).dev === statSync(root).dev) return t.plan(0, 'same filesystem');
    const s = await SpooledMessage.write(shm, Readable.from(chunked(BODY, 5)), { maxBytes: 1 << 20, prefix: PREFIX });
    const paths = ['a', 'b'].map((u) => join(root, u));
    const r = await deliverToMaildirs(s, paths.map((path) => ({ path })));
    await s.remove();
    t.same(r.failed, []);
    for (const d of r.delivered) {
      t.same(readFileSync(d.file), Buffer.concat([PREFIX, BODY]));
      t.equal(statSync(d.file).nlink, 1);
    }
  });
});

t.test('Dovecot reads the tree: folders, sizes, subjects (doveadm, when installed)', async (t) => {
  const doveadm = ['/usr/bin/doveadm', '/usr/local/bin/doveadm'].find((p) => existsSync(p));
  if (!doveadm) return t.plan(0, 'doveadm not installed');
  if (process.getuid?.() !== 0) return t.plan(0, 'needs root to hand the tree to an unprivileged mail uid');
  const root = t.testdir();
  const md = join(root, 'mail', 'alice');
  const s = await spool(root);
  const targets: MaildirTarget[] = [{ path: md }, { path: md, folder: 'Junk' }, { path: md, folder: 'Entw\u00fcrfe/Alt' }];
  const r = await deliverToMaildirs(s, targets, { hostname: 'mail.example.test' });
  await s.remove();
  t.same(r.failed, []);
  for (const d of ['index', 'home', 'run', 'state']) mkdirSync(join(root, d));
  writeFileSync(
    join(root, 'dovecot.conf'),
    `base_dir = ${root}/run
state_dir = ${root}/state
log_path = ${root}/dovecot.log
ssl = no
mail_uid = 65534
mail_gid = 65534
mail_location = maildir:${root}/mail/%u:LAYOUT=maildir++:INDEX=${root}/index/%u
namespace inbox {
  inbox = yes
  separator = /
}
`,
  );
  const chownTree = (p: string): void => {
    chownSync(p, 65534, 65534);
    if (statSync(p).isDirectory()) for (const e of readdirSync(p)) chownTree(join(p, e));
  };
  for (const d of ['mail', 'index', 'home']) chownTree(join(root, d));
  const env = { USER: 'alice', HOME: join(root, 'home'), PATH: '/usr/bin:/bin' };
  const conf = join(root, 'dovecot.conf');
  const list = await run(doveadm, ['-c', conf, 'mailbox', 'list'], { env });
  t.same(list.stdout.trim().split('\n').sort(), ['Entw\u00fcrfe', 'Entw\u00fcrfe/Alt', 'INBOX', 'Junk']);
  const fetch = await run(doveadm, ['-c', conf, '-f', 'tab', 'fetch', 'mailbox size.physical guid hdr.subject', 'all'], { env });
  const rows = fetch.stdout.trim().split('\n').slice(1).map((l) => l.split('\t')).sort((x, y) => x[0]!.localeCompare(y[0]!));
  const size = String(PREFIX.length + BODY.length);
  t.same(rows.map((row) => [row[0], row[1]]), [['Entw\u00fcrfe/Alt', size], ['INBOX', size], ['Junk', size]]);
  t.same(new Set(rows.map((row) => row[2])), new Set(r.delivered.map((d) => basename(d.file))), 'Dovecot takes our name (no :2, info in new/) as the GUID');
  t.ok(rows.every((row) => (row[3] ?? '').includes('caf')), 'subject read');
  t.same(readdirSync(join(md, 'new')).length + readdirSync(join(md, 'cur')).length, 1, 'Dovecot kept the one file');
});
