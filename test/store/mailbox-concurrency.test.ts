/**
 * Several processes writing one Maildir at once (the appliance, Dovecot, a
 * second appliance process on a shared volume): APPENDs from three processes
 * interleave under the dovecot-uidlist dotlock, every message gets one UID,
 * no UID is given twice, keywords from every writer survive in
 * dovecot-keywords, and a fresh reader sees exactly what each writer was told.
 */
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pino from 'pino';
import t from 'tap';
import { openMailStoreService } from '../../store/mailbox/index.ts';
import { parseUidlist } from '../../store/mailbox/uidlist.ts';

const run = promisify(execFile);
const CHILD = fileURLToPath(new URL('./mailbox-writer-child.ts', import.meta.url));
const PER_WRITER = 40;

t.test('three processes append to one mailbox: unique UIDs, consistent uidlist and keywords', async (t) => {
  const root = join(t.testdir(), 'mail', 'alice');
  const svc = openMailStoreService({ log: pino({ level: 'silent' }), hostname: 'parent' });
  const store = svc.forRoot(root);
  await store.list(); // creates the Maildir
  const children = ['a', 'b'].map((tag) => run(process.execPath, [CHILD, root, tag, String(PER_WRITER)], { timeout: 120_000 }));
  const mine: [string, number][] = [];
  for (let i = 0; i < PER_WRITER; i++) {
    const subject = `p-${i}`;
    const { uid } = await store.append('INBOX', { content: Buffer.from(`Subject: ${subject}\r\n\r\n${subject}\r\n`), flags: i % 2 ? ['kw-p'] : [] });
    mine.push([subject, uid]);
  }
  const all = [...mine];
  for (const c of children) all.push(...(JSON.parse((await c).stdout) as [string, number][]));
  t.equal(all.length, 3 * PER_WRITER);
  t.equal(new Set(all.map(([, uid]) => uid)).size, all.length, 'no UID given twice');

  const ul = parseUidlist(readFileSync(join(root, 'dovecot-uidlist'), 'utf8'));
  t.equal(ul.records.length, all.length, 'one uidlist record per message');
  t.same(readFileSync(join(root, 'dovecot-keywords'), 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ')[1]).sort(), ['kw-a', 'kw-b', 'kw-p']);

  const reader = openMailStoreService({ log: pino({ level: 'silent' }), hostname: 'reader' });
  const view = await reader.forRoot(root).open('INBOX', { readOnly: true });
  t.equal(view.messages.length, all.length);
  const byUid = new Map(all.map(([s, uid]) => [uid, s]));
  let mismatched = 0;
  for (const m of view.messages) {
    const subject = (await view.summary(m.uid)).envelope.subject;
    if (byUid.get(m.uid) !== subject) mismatched++;
    const n = Number(subject!.split('-')[1]);
    const want = n % 2 ? [`kw-${subject!.split('-')[0]}`] : [];
    if (m.flags.join() !== want.join()) mismatched++;
  }
  t.equal(mismatched, 0, 'each UID holds the message its writer was told, with its keyword');
  await view.close();
});

t.test('another program renaming files (flag changes) while we sync: no false expunge, no UID change', async (t) => {
  const root = join(t.testdir(), 'mail', 'bob');
  const svc = openMailStoreService({ log: pino({ level: 'silent' }), hostname: 'h' });
  const store = svc.forRoot(root);
  await store.list();
  // Enough files that readdir needs several getdents calls (the window where a rename can hide a file).
  for (let i = 0; i < 3000; i++) {
    const body = `Subject: r${i}\r\n\r\nx\r\n`;
    writeFileSync(join(root, 'cur', `${1700000000 + i}.M${i}P7.renamer-test-host-with-a-long-name,S=${body.length},W=${body.length}:2,`), body);
  }
  const view = await store.open('INBOX', { readOnly: false });
  const uids = view.messages.map((m) => m.uid);
  // A mutt-like program toggling \Seen by renames, bounded in count and time.
  const script = `
    const fs = require('node:fs'); const path = require('node:path');
    const cur = ${JSON.stringify(join(root, 'cur'))};
    const until = Date.now() + 2000; let n = 0;
    while (Date.now() < until && n < 200000) {
      for (const f of fs.readdirSync(cur)) {
        const to = f.endsWith(':2,S') ? f.slice(0, -1) : f.endsWith(':2,') ? f + 'S' : null;
        if (to) { try { fs.renameSync(path.join(cur, f), path.join(cur, to)); n++; } catch {} }
      }
    }
    process.stdout.write(String(n));`;
  const child = run(process.execPath, ['-e', script], { timeout: 30_000 });
  let expunged = 0;
  let added = 0;
  let syncs = 0;
  const done = child.then(() => undefined);
  let finished = false;
  void done.then(() => (finished = true));
  while (!finished && syncs < 10_000) {
    const ch = await view.sync();
    expunged += ch.expunged.length;
    added += ch.added.length;
    syncs++;
  }
  const renames = Number((await child).stdout);
  t.ok(renames > 0, `${renames} renames by the other program during ${syncs} syncs`);
  t.equal(expunged, 0, 'no message reported expunged');
  t.equal(added, 0, 'no message got a new UID');
  const final = await view.sync();
  t.same(final.expunged, []);
  t.same(view.messages.map((m) => m.uid), uids);
  const names = readdirSync(join(root, 'cur'));
  const seen = names.filter((n) => n.endsWith(':2,S')).length;
  t.equal(view.messages.filter((m) => m.flags.includes('\\Seen')).length, seen, 'flags agree with the file names at rest');
  await view.close();
});
