/**
 * The queue's due index (store/queue.ts): whatever happens to messages, a
 * pass over what is due finds exactly what a scan of every envelope would
 * find, at any clock time; a queue written without the index is indexed on
 * first use; an index entry without its envelope does nothing.
 */
import t from 'tap';
import { Store } from '../../store/db.ts';
import { Queue, type QueuedMessage } from '../../store/queue.ts';

const MIN = 60_000;

/** Seeded PRNG: a failing sequence can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

/** What is due at `now`, from every envelope: the index must agree with this. */
function scan(all: readonly QueuedMessage[], now: number): string[] {
  return all
    .flatMap((m) => m.recipients.filter((r) => (r.state === 'pending' || r.state === 'deferred') && r.nextAttempt <= now).map((r) => `${m.id} ${r.address}`))
    .sort();
}

async function viaIndex(queue: Queue, now: number): Promise<string[]> {
  const out: string[] = [];
  for await (const g of queue.due(now)) for (const r of g.recipients) out.push(`${g.message.id} ${r.address}`);
  return out.sort();
}

async function listAll(queue: Queue): Promise<QueuedMessage[]> {
  const out: QueuedMessage[] = [];
  for await (const m of queue.list()) out.push(m);
  return out;
}

t.test('the index agrees with a full scan after any sequence of operations', async (t) => {
  const dir = t.testdir();
  const store = await Store.open(dir);
  t.teardown(() => store.close());
  let clock = Date.UTC(2026, 0, 1);
  const rnd = prng(42);
  const queue = Queue.open(store, { now: () => clock, random: rnd });
  const ids: string[] = [];
  const pick = (): string | undefined => ids[Math.floor(rnd() * ids.length)];
  const checkpoints = [0, 1, 5, 30, 240, 100_000].map((m) => m * MIN);
  let mismatches = 0;
  for (let step = 0; step < 400; step++) {
    const op = rnd();
    const id = pick();
    if (op < 0.25 || !id) {
      const n = 1 + Math.floor(rnd() * 3);
      const m = await queue.enqueue({
        sender: 's@example.test',
        recipients: Array.from({ length: n }, (_, i) => ({ address: `r${i}@d${step % 7}.test`, transport: 'relay' as const, action: 'out' })),
        body: Buffer.from(`message ${step}\r\n`),
      });
      ids.push(m.id);
    } else if (op < 0.45) {
      const m = await queue.get(id);
      if (m) await queue.claim(id, m.recipients.map((r) => r.address));
    } else if (op < 0.65) {
      const m = await queue.get(id);
      if (m) {
        const outcomes = ['delivered', 'deferred', 'failed'] as const;
        await queue.update(
          id,
          m.recipients.map((r) => ({ address: r.address, state: outcomes[Math.floor(rnd() * 3)]!, lastError: 'x', ...(rnd() < 0.5 ? { nextAttempt: clock + Math.floor(rnd() * 600) * MIN } : {}) })),
        );
      }
    } else if (op < 0.72) await queue.hold(id);
    else if (op < 0.8) await queue.release(id);
    else if (op < 0.88) await queue.schedule(id);
    else if (op < 0.93) await queue.remove(id);
    else clock += Math.floor(rnd() * 120) * MIN;

    if (step % 20 === 19) {
      const all = await listAll(queue);
      for (const dt of checkpoints) {
        const want = scan(all, clock + dt);
        const got = await viaIndex(queue, clock + dt);
        if (JSON.stringify(want) !== JSON.stringify(got)) {
          mismatches++;
          t.same(got, want, `step ${step}, now + ${dt / MIN} min`);
        }
      }
    }
  }
  t.equal(mismatches, 0, 'index and scan agreed at every checkpoint');
  t.ok(ids.length > 50, `${ids.length} messages went through`);
});

t.test('a queue without the index (an older version wrote it) is indexed on first use', async (t) => {
  const dir = t.testdir();
  let clock = Date.UTC(2026, 0, 1);
  {
    const store = await Store.open(dir);
    const queue = Queue.open(store, { now: () => clock });
    await queue.enqueue({ sender: '', recipients: [{ address: 'a@x.test', transport: 'relay', action: 'out' }], body: Buffer.from('1') });
    const later = await queue.enqueue({ sender: '', recipients: [{ address: 'b@x.test', transport: 'relay', action: 'out' }], body: Buffer.from('2') });
    await queue.update(later.id, [{ address: 'b@x.test', state: 'deferred', nextAttempt: clock + 60 * MIN }]);
    await queue.close();
    // What an older version leaves: envelopes and bodies, no index, no mark.
    const due = store.level.sublevel<string, string>(['queue', 't'], { valueEncoding: 'utf8' });
    const marks = store.level.sublevel<string, string>(['queue', 'x'], { valueEncoding: 'utf8' });
    await due.clear();
    await marks.clear();
    await store.close();
  }
  const store = await Store.open(dir);
  t.teardown(() => store.close());
  const queue = Queue.open(store, { now: () => clock });
  t.same(await viaIndex(queue, clock), scan(await listAll(queue), clock), 'due now: the pending one');
  t.equal((await viaIndex(queue, clock)).length, 1);
  clock += 61 * MIN;
  t.equal((await viaIndex(queue, clock)).length, 2, 'and the deferred one at its time');
});

t.test('an index entry whose envelope is gone is skipped', async (t) => {
  const dir = t.testdir();
  const store = await Store.open(dir);
  t.teardown(() => store.close());
  const queue = Queue.open(store);
  const m = await queue.enqueue({ sender: '', recipients: [{ address: 'a@x.test', transport: 'relay', action: 'out' }], body: Buffer.from('1') });
  const due = store.level.sublevel<string, string>(['queue', 't'], { valueEncoding: 'utf8' });
  await due.put(`0000000000000001!${'Z'.repeat(18)}`, '');
  const got = await viaIndex(queue, Date.now());
  t.same(got, [`${m.id} a@x.test`]);
});
