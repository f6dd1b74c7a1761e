/**
 * The durable queue (store/queue.ts): round trips, ids, group commit, the
 * retry clock, outcomes, operator commands, restart and kill -9.
 */
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Store } from '../../store/db.ts';
import {
  CHUNK_SIZE,
  Queue,
  nextRetryDelay,
  toQueueShowEntry,
  type NewRecipient,
  type QueueOptions,
  type QueuedMessage,
} from '../../store/queue.ts';
import { crashBody } from './queue-crash-child.ts';

const MIN = 60_000;
const HOUR = 60 * MIN;

const rcpt = (address: string, transport: 'local' | 'relay' = 'relay'): NewRecipient =>
  transport === 'local'
    ? { address, transport, action: 'local', route: `/var/lib/appliance/mail/${address}` }
    : { address, transport, action: 'out' };

/** Opens, and closes at teardown unless closed before. */
async function open(t: Test, dir: string, opts: QueueOptions = {}) {
  const store = await Store.open(dir);
  const queue = Queue.open(store, opts);
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await queue.close();
    await store.close();
  };
  t.teardown(close);
  return { store, queue, close };
}

async function readBody(queue: Queue, id: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of queue.body(id)) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Raw body chunk keys and sizes of a message, straight from LevelDB. */
async function rawChunks(store: Store, id: string): Promise<{ key: string; size: number }[]> {
  const bodies = store.level.sublevel<string, Buffer>(['queue', 'b'], { valueEncoding: 'buffer' });
  const out: { key: string; size: number }[] = [];
  for await (const [key, value] of bodies.iterator({ gte: `${id}/`, lt: `${id}0` })) out.push({ key, size: value.length });
  return out;
}

async function* pieces(buf: Buffer, sizes: number[]): AsyncGenerator<Buffer> {
  let off = 0;
  for (let i = 0; off < buf.length; i++) {
    const n = sizes[i % sizes.length]!;
    yield buf.subarray(off, off + n);
    off += n;
  }
}

t.test('enqueue, get, list, body: a small message round trip', async (t) => {
  const clock = { now: 1_750_000_000_000 };
  const { queue } = await open(t, t.testdir(), { now: () => clock.now });
  const body = Buffer.from('Subject: hi\r\n\r\nhello \u00e9\r\n');
  const m = await queue.enqueue({
    sender: 'alice@example.org',
    recipients: [rcpt('bob@example.net'), rcpt('carol@example.org', 'local')],
    body,
    meta: { helo: 'client.example', auth: 'alice' },
  });
  t.match(m.id, /^[0-9A-HJKMNP-TV-Z]{18}$/);
  t.same(m, {
    id: m.id,
    created: clock.now,
    sender: 'alice@example.org',
    size: body.length,
    recipients: [
      { address: 'bob@example.net', state: 'pending', attempts: 0, nextAttempt: clock.now, transport: 'relay', action: 'out' },
      {
        address: 'carol@example.org',
        state: 'pending',
        attempts: 0,
        nextAttempt: clock.now,
        transport: 'local',
        action: 'local',
        route: '/var/lib/appliance/mail/carol@example.org',
      },
    ],
    meta: { helo: 'client.example', auth: 'alice' },
  });
  t.same(await queue.get(m.id), m);
  t.same(await collect(queue.list()), [m]);
  t.equal(await queue.count(), 1);
  t.ok((await readBody(queue, m.id)).equals(body));
  t.equal(await queue.get('01ZZZZZZZZZZZZZZZZ'), undefined);

  const n = await queue.enqueue({ sender: '', recipients: [rcpt('x@example.net')], body: Buffer.alloc(0) });
  t.equal(n.sender, '', 'null sender');
  t.equal(n.size, 0);
  t.equal((await readBody(queue, n.id)).length, 0, 'empty body');
  t.equal(n.meta, undefined);

  t.same(toQueueShowEntry(m), {
    id: m.id,
    created: new Date(clock.now).toISOString(),
    sender: 'alice@example.org',
    size: body.length,
    recipients: [
      { address: 'bob@example.net', state: 'pending', attempts: 0, next_attempt: new Date(clock.now).toISOString(), last_error: null },
      { address: 'carol@example.org', state: 'pending', attempts: 0, next_attempt: new Date(clock.now).toISOString(), last_error: null },
    ],
  });

  await t.rejects(collect(queue.body('01ZZZZZZZZZZZZZZZZ')), { name: 'QueueEntryNotFoundError' });
  await t.rejects(queue.enqueue({ sender: 'a@b.c', recipients: [], body }), TypeError);
  await t.rejects(queue.enqueue({ sender: 'a@b.c', recipients: [rcpt('x@y.z'), rcpt('x@y.z')], body }), /twice/);
  t.equal(await queue.count(), 2, 'refused messages left nothing');
});

t.test('a 5 MB body, from a Buffer and from a stream, in chunks of at most CHUNK_SIZE', async (t) => {
  const { store, queue } = await open(t, t.testdir());
  const body = randomBytes(5 * 1024 * 1024 + 12_345);
  const a = await queue.enqueue({ sender: 'a@example.org', recipients: [rcpt('b@example.net')], body });
  const b = await queue.enqueue({
    sender: 'a@example.org',
    recipients: [rcpt('b@example.net')],
    body: pieces(body, [1, 65_536, 300_000, 7, CHUNK_SIZE, 1_000_003]),
  });
  const c = await queue.enqueue({ sender: 'a@example.org', recipients: [rcpt('b@example.net')], body: pieces(Buffer.from('x'.repeat(5000)), [10]) });
  for (const m of [a, b]) {
    t.equal(m.size, body.length);
    t.ok((await readBody(queue, m.id)).equals(body), `${m.id} byte for byte`);
    const chunks = await rawChunks(store, m.id);
    t.equal(chunks.length, Math.ceil(body.length / CHUNK_SIZE));
    t.ok(chunks.every((ch) => ch.size <= CHUNK_SIZE));
    t.same(
      chunks.map((ch) => ch.size),
      [...Array(chunks.length - 1).fill(CHUNK_SIZE), body.length % CHUNK_SIZE],
    );
  }
  t.equal((await readBody(queue, c.id)).toString(), 'x'.repeat(5000));
  // the stream is chunked on the way out as well
  const sizes: number[] = [];
  for await (const chunk of queue.body(a.id)) sizes.push((chunk as Buffer).length);
  t.ok(sizes.length > 1 && Math.max(...sizes) <= CHUNK_SIZE);
});

t.test('bodyOf: the whole body in one read, the same bytes as body(); gone after remove', async (t) => {
  const { queue } = await open(t, t.testdir());
  const big = randomBytes(3 * CHUNK_SIZE + 777);
  const cases = [
    Buffer.alloc(0),
    Buffer.from('Subject: hi\r\n\r\nhello\r\n'),
    randomBytes(CHUNK_SIZE),
    big,
  ];
  for (const body of cases) {
    const m = await queue.enqueue({ sender: 'a@example.org', recipients: [rcpt('b@example.net')], body });
    const got = await queue.bodyOf(m);
    t.ok(got.equals(body), `${body.length} bytes`);
    t.ok(got.equals(await readBody(queue, m.id)), `${body.length} bytes: as body() streams it`);
  }
  // From a stream cut at odd sizes, chunks are still CHUNK_SIZE but the last.
  const s = await queue.enqueue({ sender: 'a@example.org', recipients: [rcpt('b@example.net')], body: pieces(big, [1, 65_536, 300_000, 7]) });
  t.ok((await queue.bodyOf(s)).equals(big), 'a streamed body');
  t.ok(await queue.remove(s.id));
  await t.rejects(queue.bodyOf(s), { name: 'QueueEntryNotFoundError' }, 'removed: not found');
  const empty = await queue.enqueue({ sender: 'a@example.org', recipients: [rcpt('b@example.net')], body: Buffer.alloc(0) });
  t.ok(await queue.remove(empty.id));
  await t.rejects(queue.bodyOf(empty), { name: 'QueueEntryNotFoundError' }, 'removed empty body: not found');
});

t.test('claimDue: 300 due messages claimed in order with far fewer synced writes than claims', async (t) => {
  let now = 1_000_000;
  const { queue } = await open(t, t.testdir(), { now: () => now, random: () => 0.5 });
  const ids: string[] = [];
  for (let i = 0; i < 300; i++) ids.push((await queue.enqueue({ sender: 'a@example.org', recipients: [rcpt(`r${i}@d${i % 7}.example`)], body: Buffer.from(`m ${i}`) })).id);
  now += 1000;
  const before = queue.writeStats;
  const claimed = await collect(queue.claimDue(now));
  const after = queue.writeStats;
  t.same(claimed.map((g) => g.message.id), ids, 'every message, oldest first');
  t.ok(claimed.every((g) => g.recipients.length === 1 && g.recipients[0]!.attempts === 1 && g.recipients[0]!.nextAttempt === now + nextRetryDelay(1, () => 0.5)));
  t.equal(after.commits - before.commits, 300, 'one commit per claim');
  t.ok(after.batches - before.batches <= 30, `${after.batches - before.batches} synced writes for 300 claims`);
  t.same(await collect(queue.claimDue(now)), [], 'claimed: nothing due any more');
  for (const id of ids) t.equal((await queue.get(id))!.recipients[0]!.attempts, 1, 'recorded');
});

t.test('ids: unique and sortable over 1000 enqueues', async (t) => {
  const clock = { now: 1_750_000_000_000 };
  const root = t.testdir();
  const { queue } = await open(t, join(root, 'fake-clock'), { now: () => clock.now });
  const ids: string[] = [];
  const body = Buffer.from('x');
  // the clock mostly stands still, sometimes moves on, sometimes goes back
  for (let i = 0; i < 1000; i++) {
    if (i % 100 === 99) clock.now += 1;
    if (i === 500) clock.now -= 5000;
    ids.push((await queue.enqueue({ sender: 'a@b.example', recipients: [rcpt('c@d.example')], body })).id);
  }
  t.equal(new Set(ids).size, 1000, 'unique');
  t.ok(
    ids.every((id, i) => i === 0 || id > ids[i - 1]!),
    'each id sorts after the one before',
  );
  t.same(
    (await collect(queue.list())).map((m) => m.id),
    ids,
    'list() is oldest first',
  );

  // a real clock across a restart: later ids still sort later
  const dir = join(root, 'real-clock');
  const first = await open(t, dir);
  const before = await first.queue.enqueue({ sender: '', recipients: [rcpt('c@d.example')], body });
  await first.close();
  await new Promise((r) => setTimeout(r, 5));
  const second = await open(t, dir);
  const after = await second.queue.enqueue({ sender: '', recipients: [rcpt('c@d.example')], body });
  t.ok(after.id > before.id);
});

t.test('group commit: 100 concurrent enqueues share synced writes and all survive a reopen', async (t) => {
  const dir = t.testdir();
  const first = await open(t, dir);
  const bodies = Array.from({ length: 100 }, (_, i) => Buffer.alloc(1000 + i * 3000, `body ${i} `));
  const messages = await Promise.all(
    bodies.map((body, i) => first.queue.enqueue({ sender: `s${i}@example.org`, recipients: [rcpt(`r${i}@example.net`)], body })),
  );
  const stats = first.queue.writeStats;
  t.equal(stats.commits, 100);
  t.ok(stats.batches < 100, `${stats.batches} synced batches for 100 enqueues (largest group ${stats.largestGroup})`);
  t.ok(stats.largestGroup > 1);
  t.equal(new Set(messages.map((m) => m.id)).size, 100);
  await first.close();

  const second = await open(t, dir);
  t.equal(await second.queue.count(), 100);
  for (const [i, m] of messages.entries()) {
    t.same(await second.queue.get(m.id), m);
    t.ok((await readBody(second.queue, m.id)).equals(bodies[i]!), `body ${i}`);
  }
});

t.test('a failed batch rejects its callers and writes nothing of theirs', async (t) => {
  const { queue, store } = await open(t, t.testdir());
  const ok = await queue.enqueue({ sender: '', recipients: [rcpt('a@b.example')], body: Buffer.from('x') });
  const level = store.level as unknown as { batch: (...args: unknown[]) => Promise<void> };
  const real = level.batch;
  level.batch = async () => {
    throw new Error('disk full');
  };
  await t.rejects(queue.enqueue({ sender: '', recipients: [rcpt('a@b.example')], body: Buffer.from('y') }), /disk full/);
  level.batch = real;
  t.equal(await queue.count(), 1);
  t.ok(await queue.get(ok.id));
  await queue.enqueue({ sender: '', recipients: [rcpt('a@b.example')], body: Buffer.from('z') });
  t.equal(await queue.count(), 2, 'the writer goes on after a failure');
});

t.test('due, claim and update follow an injected clock', async (t) => {
  const clock = { now: 1_750_000_000_000 };
  const T0 = clock.now;
  const { queue } = await open(t, t.testdir(), { now: () => clock.now, random: () => 0.5 });
  const m = await queue.enqueue({
    sender: 'a@example.org',
    recipients: [rcpt('x@example.net'), rcpt('y@example.net'), rcpt('z@example.org', 'local')],
    body: Buffer.from('hi'),
  });

  let due = await collect(queue.due());
  t.equal(due.length, 1);
  t.same(
    due[0]!.recipients.map((r) => r.address),
    ['x@example.net', 'y@example.net', 'z@example.org'],
  );
  t.same(
    (await collect(queue.due(undefined, (r) => r.transport === 'local'))).map((g) => g.recipients.map((r) => r.address)),
    [['z@example.org']],
    'filter',
  );
  t.same(await collect(queue.due(T0 - 1)), [], 'not due before it was queued');
  t.same((await queue.get(m.id))!.recipients.map((r) => r.attempts), [0, 0, 0], 'due() marks nothing');

  // claim records the attempt and the next retry before dialling
  const claimed = await queue.claim(m.id, ['x@example.net', 'y@example.net']);
  t.same(
    claimed!.recipients.map((r) => [r.address, r.state, r.attempts, r.nextAttempt]),
    [
      ['x@example.net', 'pending', 1, T0 + MIN],
      ['y@example.net', 'pending', 1, T0 + MIN],
    ],
  );
  t.equal(await queue.claim(m.id, ['x@example.net']), undefined, 'a claimed recipient cannot be claimed twice');
  due = await collect(queue.due());
  t.same(
    due.map((g) => g.recipients.map((r) => r.address)),
    [['z@example.org']],
    'claimed recipients are not due, the others are',
  );

  // outcomes: x delivered, y deferred (retry time from claim), z is claimed then deferred with an explicit time
  await queue.update(m.id, [
    { address: 'x@example.net', state: 'delivered' },
    { address: 'y@example.net', state: 'deferred', lastError: '421 4.7.0 try later' },
  ]);
  await queue.claim(m.id, ['z@example.org']);
  await queue.update(m.id, [{ address: 'z@example.org', state: 'deferred', lastError: 'disk full', nextAttempt: T0 + 30 * MIN }]);
  let got = await queue.get(m.id);
  t.same(
    got!.recipients.map((r) => [r.state, r.attempts, r.nextAttempt, r.lastError]),
    [
      ['delivered', 1, T0 + MIN, undefined],
      ['deferred', 1, T0 + MIN, '421 4.7.0 try later'],
      ['deferred', 1, T0 + 30 * MIN, 'disk full'],
    ],
  );
  t.same(await collect(queue.due()), []);

  // one minute later y is due, z is not
  clock.now = T0 + MIN;
  const claimedDue = await collect(queue.claimDue());
  t.same(
    claimedDue.map((g) => g.recipients.map((r) => [r.address, r.attempts, r.nextAttempt])),
    [[['y@example.net', 2, T0 + MIN + 5 * MIN]]],
    'second attempt: 5 minutes',
  );
  t.same(await collect(queue.claimDue()), [], 'claimDue claims once');

  // a deferral without a time, of a recipient that was not claimed, gets the backoff from now
  clock.now = T0 + 10 * MIN;
  await queue.update(m.id, [{ address: 'y@example.net', state: 'deferred' }]);
  got = await queue.get(m.id);
  t.equal(got!.recipients[1]!.nextAttempt, T0 + 10 * MIN + 5 * MIN);

  // a delivered recipient stays delivered
  await queue.update(m.id, [{ address: 'x@example.net', state: 'failed', lastError: 'late' }]);
  t.equal((await queue.get(m.id))!.recipients[0]!.state, 'delivered');

  // flush: everything active becomes due now
  t.ok(await queue.schedule(m.id));
  t.same(
    (await collect(queue.due())).map((g) => g.recipients.map((r) => r.address)),
    [['y@example.net', 'z@example.org']],
  );
  t.notOk(await queue.schedule('01ZZZZZZZZZZZZZZZZ'));
});

t.test('update: all recipients done deletes the message and its body chunks', async (t) => {
  const { queue, store } = await open(t, t.testdir());
  const body = randomBytes(3 * CHUNK_SIZE + 5);
  const m = await queue.enqueue({ sender: 'a@example.org', recipients: [rcpt('x@example.net'), rcpt('y@example.net')], body });
  const other = await queue.enqueue({ sender: 'a@example.org', recipients: [rcpt('x@example.net')], body });
  t.equal((await rawChunks(store, m.id)).length, 4);

  await queue.update(m.id, [{ address: 'x@example.net', state: 'delivered' }]);
  t.ok(await queue.get(m.id), 'still there while one recipient is left');
  await queue.update(m.id, [
    { address: 'y@example.net', state: 'failed', lastError: '550 5.1.1 no such user' },
    { address: 'nobody@example.net', state: 'failed' },
  ]);
  t.equal(await queue.get(m.id), undefined, 'gone');
  t.same(await rawChunks(store, m.id), [], 'body chunks gone');
  t.equal(await queue.count(), 1);
  t.ok((await readBody(queue, other.id)).equals(body), 'the other message is untouched');

  // a concurrent remove: updates of a vanished message are no-ops
  await queue.update(m.id, [{ address: 'x@example.net', state: 'delivered' }]);
  await queue.update('01ZZZZZZZZZZZZZZZZ', [{ address: 'x@example.net', state: 'delivered' }]);
  t.equal(await queue.claim(m.id, ['x@example.net']), undefined);

  // concurrent updates of one message do not lose each other
  const many = await queue.enqueue({
    sender: '',
    recipients: Array.from({ length: 20 }, (_, i) => rcpt(`r${i}@example.net`)),
    body: Buffer.from('x'),
  });
  await Promise.all(
    Array.from({ length: 19 }, (_, i) => queue.update(many.id, [{ address: `r${i}@example.net`, state: 'delivered' }])),
  );
  const left = await queue.get(many.id);
  t.same(
    left!.recipients.filter((r) => r.state !== 'delivered').map((r) => r.address),
    ['r19@example.net'],
  );
  await queue.update(many.id, [{ address: 'r19@example.net', state: 'delivered' }]);
  t.equal(await queue.get(many.id), undefined);
});

t.test('hold, release, remove', async (t) => {
  const clock = { now: 1_750_000_000_000 };
  const T0 = clock.now;
  const { queue, store } = await open(t, t.testdir(), { now: () => clock.now, random: () => 0.5 });
  const m = await queue.enqueue({
    sender: 'a@example.org',
    recipients: [rcpt('x@example.net'), rcpt('y@example.net'), rcpt('z@example.net')],
    body: Buffer.alloc(CHUNK_SIZE + 1, 'q'),
  });
  await queue.claim(m.id, ['y@example.net']);
  await queue.update(m.id, [
    { address: 'y@example.net', state: 'deferred', lastError: 'timeout' },
    { address: 'z@example.net', state: 'delivered' },
  ]);

  t.ok(await queue.hold(m.id));
  t.same(
    (await queue.get(m.id))!.recipients.map((r) => r.state),
    ['held', 'held', 'delivered'],
  );
  clock.now = T0 + 10 * HOUR;
  t.same(await collect(queue.due()), [], 'held is never due');
  t.same(await collect(queue.claimDue()), []);
  // an attempt that was running when the hold came in
  await queue.update(m.id, [{ address: 'y@example.net', state: 'deferred', lastError: 'again' }]);
  t.equal((await queue.get(m.id))!.recipients[1]!.state, 'held', 'a deferral keeps it held');

  t.ok(await queue.release(m.id));
  const released = await queue.get(m.id);
  t.same(
    released!.recipients.map((r) => [r.state, r.attempts, r.lastError, r.nextAttempt]),
    [
      ['pending', 0, undefined, T0],
      ['deferred', 1, 'again', T0 + 10 * HOUR + MIN],
      ['delivered', 0, undefined, T0],
    ],
    'released: never tried → pending, tried → deferred until its retry time',
  );
  t.same(
    (await collect(queue.due())).map((g) => g.recipients.map((r) => r.address)),
    [['x@example.net']],
  );
  clock.now += MIN;
  t.same(
    (await collect(queue.due())).map((g) => g.recipients.map((r) => r.address)),
    [['x@example.net', 'y@example.net']],
  );

  t.notOk(await queue.hold('01ZZZZZZZZZZZZZZZZ'));
  t.notOk(await queue.release('01ZZZZZZZZZZZZZZZZ'));
  t.ok(await queue.remove(m.id));
  t.notOk(await queue.remove(m.id), 'removed already');
  t.equal(await queue.get(m.id), undefined);
  t.same(await rawChunks(store, m.id), []);
  t.equal(await queue.count(), 0);
});

t.test('state survives close and reopen', async (t) => {
  const dir = t.testdir();
  const clock = { now: 1_750_000_000_000 };
  const first = await open(t, dir, { now: () => clock.now, random: () => 0.5 });
  const a = await first.queue.enqueue({ sender: 'a@example.org', recipients: [rcpt('x@example.net'), rcpt('y@example.net')], body: Buffer.from('A') });
  const b = await first.queue.enqueue({ sender: '', recipients: [rcpt('z@example.org', 'local')], body: Buffer.from('B'), meta: { bounce: 'yes' } });
  const c = await first.queue.enqueue({ sender: 'c@example.org', recipients: [rcpt('w@example.net')], body: Buffer.from('C') });
  await first.queue.claim(a.id, ['x@example.net']);
  await first.queue.update(a.id, [
    { address: 'x@example.net', state: 'deferred', lastError: '451 greylisted' },
    { address: 'y@example.net', state: 'delivered' },
  ]);
  await first.queue.hold(b.id);
  await first.queue.remove(c.id);
  const before = await collect(first.queue.list());
  await first.close();

  const second = await open(t, dir, { now: () => clock.now });
  t.same(await collect(second.queue.list()), before);
  t.equal(before.length, 2);
  t.same(
    (await second.queue.get(a.id))!.recipients.map((r) => [r.state, r.attempts, r.lastError]),
    [
      ['deferred', 1, '451 greylisted'],
      ['delivered', 0, undefined],
    ],
  );
  t.equal((await second.queue.get(b.id))!.recipients[0]!.state, 'held');
  t.equal((await readBody(second.queue, b.id)).toString(), 'B');
  t.equal(await second.queue.get(c.id), undefined);
});

t.test('nextRetryDelay: 1m, 5m, 15m, 30m, 1h, 2h, 4h…, monotonic, capped, jittered ±10%', async (t) => {
  const mid = () => 0.5;
  t.same(
    [1, 2, 3, 4, 5, 6, 7, 8, 50].map((n) => nextRetryDelay(n, mid)),
    [1 * MIN, 5 * MIN, 15 * MIN, 30 * MIN, HOUR, 2 * HOUR, 4 * HOUR, 4 * HOUR, 4 * HOUR],
  );
  t.equal(nextRetryDelay(0, mid), MIN, 'before any attempt: as after the first');
  for (const r of [0, 0.25, 0.5, 0.75, 0.999999]) {
    let prev = 0;
    for (let n = 1; n <= 30; n++) {
      const d = nextRetryDelay(n, () => r);
      t.ok(d >= prev, `monotonic at ${n} (random ${r})`);
      t.ok(d <= 4 * HOUR, 'capped at 4h');
      prev = d;
    }
  }
  t.equal(nextRetryDelay(1, () => 0), 0.9 * MIN, '-10%');
  t.ok(Math.abs(nextRetryDelay(3, () => 0.999999) - 1.1 * 15 * MIN) < 10, '+10%');
  t.equal(nextRetryDelay(100, () => 0), 0.9 * 4 * HOUR);
  for (let i = 0; i < 200; i++) {
    const d = nextRetryDelay(5);
    t.ok(d >= 0.9 * HOUR && d <= 1.1 * HOUR);
  }
});

t.test('kill -9 while enqueueing: every acknowledged message is found again, complete', async (t) => {
  const dir = t.testdir();
  const child = spawn(process.execPath, [fileURLToPath(new URL('./queue-crash-child.ts', import.meta.url)), dir, '20000', '10000'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  let out = '';
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const ready = new Promise<void>((resolve) =>
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.startsWith('ready\n')) resolve();
    }),
  );
  await Promise.race([ready, exited]);
  await new Promise((r) => setTimeout(r, 300));
  child.kill('SIGKILL');
  const { signal } = await exited;
  t.equal(signal, 'SIGKILL', `killed mid-run (stderr: ${err.trim() || 'none'})`);

  // only whole lines were acknowledged
  const lines = out.slice(0, out.lastIndexOf('\n') + 1).split('\n').filter((l) => l && l !== 'ready');
  t.notOk(lines.includes('done'), 'the child was still running');
  t.ok(lines.length > 0, `${lines.length} messages acknowledged before the kill`);

  const { queue } = await open(t, dir);
  const count = await queue.count();
  t.ok(count >= lines.length, `${count} queued >= ${lines.length} acknowledged`);
  let complete = 0;
  for (const line of lines) {
    const [id, nText] = line.split(' ');
    const n = Number(nText);
    const m: QueuedMessage | undefined = await queue.get(id!);
    const body = crashBody(n);
    if (
      m &&
      m.meta?.n === nText &&
      m.sender === `sender${n}@example.org` &&
      m.recipients.length === 2 &&
      m.size === body.length &&
      (await readBody(queue, id!)).equals(body)
    )
      complete++;
    else t.fail(`message ${id} (${n}) missing or incomplete`);
  }
  t.equal(complete, lines.length, 'all acknowledged messages complete');
  // and nothing half-written: every message there is readable whole
  for await (const m of queue.list()) {
    const b = await readBody(queue, m.id);
    if (b.length !== m.size) t.fail(`${m.id}: body of ${b.length} bytes, size ${m.size}`);
  }
});

t.test('measure: 20 concurrent enqueues of 4 KB, with and without group commit', async (t) => {
  const rounds = Number(process.env.QUEUE_BENCH_ROUNDS ?? 50);
  const body = Buffer.alloc(4096, 'm');
  const results: Record<string, unknown>[] = [];
  const root = t.testdir();
  for (const groupCommit of [true, false]) {
    const { queue } = await open(t, join(root, `group-commit-${groupCommit}`), { groupCommit });
    const start = performance.now();
    for (let r = 0; r < rounds; r++) {
      await Promise.all(
        Array.from({ length: 20 }, (_, i) => queue.enqueue({ sender: 's@example.org', recipients: [rcpt(`r${i}@example.net`)], body })),
      );
    }
    const seconds = (performance.now() - start) / 1000;
    const { batches } = queue.writeStats;
    const enqueues = rounds * 20;
    results.push({
      name: `queue.enqueue 20 concurrent x 4KB, group commit ${groupCommit ? 'on' : 'off'}`,
      'ops/s': Math.round(enqueues / seconds),
      synced_writes: groupCommit ? batches : enqueues,
      'synced_writes/s': Math.round((groupCommit ? batches : enqueues) / seconds),
    });
    t.equal(await queue.count(), enqueues);
  }
  for (const r of results) t.comment(JSON.stringify(r));
});
