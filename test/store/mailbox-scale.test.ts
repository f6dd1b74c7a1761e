/**
 * A 10,000-message mailbox: opening it reads no message bodies (sizes come
 * from `,S=`/`,W=` in the names, dates from stat) and keeps memory bounded;
 * the LevelDB index makes the second open cheap, and deleting the index gives
 * back the same UIDs. Messages named with `,S=` only (as SMTP delivers them)
 * are read once, then served from the index. No timing assertions.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import t from 'tap';
import { Store } from '../../store/db.ts';
import { openMailStoreService } from '../../store/mailbox/index.ts';

const log = pino({ level: 'silent' });
const COUNT = 10_000;
const PLAIN = 200;

function message(i: number): Buffer {
  return Buffer.from(`From: sender${i}@example.test\r\nTo: alice@example.test\r\nSubject: message ${i}\r\nMessage-ID: <${i}@example.test>\r\n\r\n${'body line\r\n'.repeat(20)}`);
}

t.test('10,000 messages open without reading bodies, with bounded memory; the index is rebuilt with the same UIDs', async (t) => {
  const dir = t.testdir();
  const root = join(dir, 'mail', 'alice');
  for (const d of ['cur', 'new', 'tmp']) mkdirSync(join(root, d), { recursive: true });
  for (let i = 0; i < COUNT; i++) {
    const m = message(i);
    const flags = i % 3 === 0 ? 'S' : i % 3 === 1 ? 'RS' : '';
    writeFileSync(join(root, 'cur', `${1700000000 + i}.M${i}P1.gen,S=${m.length},W=${m.length}:2,${flags}`), m);
  }
  for (let i = 0; i < PLAIN; i++) writeFileSync(join(root, 'new', `${1800000000 + i}.M${i}P2.smtp,S=${message(i).length}`), message(COUNT + i));

  const dataDir = join(dir, 'data');
  let store = await Store.open(dataDir);
  let svc = openMailStoreService({ store, log, hostname: 'h' });
  global.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  let view = await svc.forRoot(root).open('INBOX', { readOnly: true });
  const heapAfter = process.memoryUsage().heapUsed;
  t.equal(view.messages.length, COUNT + PLAIN);
  t.equal(svc.counters.bodyReads, PLAIN, 'only the messages without ,W= were read (once each)');
  t.ok(heapAfter - heapBefore < 64 * 1024 * 1024, `heap grew by ${Math.round((heapAfter - heapBefore) / 1024 / 1024)} MiB for ${COUNT} messages`);
  t.equal(view.messages[0]!.size, message(0).length);
  t.same(view.messages[1]!.flags, ['\\Answered', '\\Seen']);
  t.equal(view.recentUids.size, PLAIN, 'messages in new/ are \\Recent');
  const snapshot = view.messages.map((m) => `${m.uid} ${m.flags.join(',')} ${m.size} ${m.internalDate.getTime()}`);
  const uidValidity = view.uidValidity;
  t.equal((await view.summary(COUNT + 1)).envelope.subject, `message ${COUNT}`, 'summary of a delivered message from the index');
  t.equal(svc.counters.bodyReads, PLAIN);
  await view.close();
  await svc.close();
  await store.close();

  // Second open: everything from the index.
  store = await Store.open(dataDir);
  svc = openMailStoreService({ store, log, hostname: 'h' });
  view = await svc.forRoot(root).open('INBOX', { readOnly: true });
  t.equal(svc.counters.bodyReads, 0, 'warm open reads no message');
  t.same(view.messages.map((m) => `${m.uid} ${m.flags.join(',')} ${m.size} ${m.internalDate.getTime()}`), snapshot);
  await view.close();
  await svc.close();
  await store.close();

  // The index deleted: rebuilt, same UIDs.
  rmSync(dataDir, { recursive: true, force: true });
  store = await Store.open(dataDir);
  svc = openMailStoreService({ store, log, hostname: 'h' });
  view = await svc.forRoot(root).open('INBOX', { readOnly: false });
  t.equal(view.uidValidity, uidValidity);
  t.same(view.messages.map((m) => `${m.uid} ${m.flags.join(',')} ${m.size} ${m.internalDate.getTime()}`), snapshot, 'same UIDs, flags, sizes and dates');
  t.equal(svc.counters.bodyReads, PLAIN, 'the rebuild reads only what the names do not say');
  // A header-only pass over the whole mailbox parses each message once, then never again.
  for (const m of view.messages.slice(0, 500)) await view.summary(m.uid);
  const reads = svc.counters.bodyReads;
  for (const m of view.messages.slice(0, 500)) await view.summary(m.uid);
  t.equal(svc.counters.bodyReads, reads, 'summaries come from the index the second time');
  await view.close();
  await svc.close();
  await store.close();
});
