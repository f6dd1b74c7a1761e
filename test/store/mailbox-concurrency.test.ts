/**
 * Several processes writing one Maildir at once (the appliance, Dovecot, a
 * second appliance process on a shared volume): APPENDs from three processes
 * interleave under the dovecot-uidlist dotlock, every message gets one UID,
 * no UID is given twice, keywords from every writer survive in
 * dovecot-keywords, and a fresh reader sees exactly what each writer was told.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
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
