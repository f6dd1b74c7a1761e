/**
 * Child process of the queue crash-safety test (queue.test.ts): enqueues in
 * a loop, several at a time, and prints `ID N` for each message only after
 * its enqueue resolved. The parent kills it with SIGKILL and checks that
 * every printed id is found again, complete.
 *
 * Usage: node queue-crash-child.ts DATA-DIR [MAX-COUNT] [MAX-MS]
 */
import { pathToFileURL } from 'node:url';
import { Store } from '../../store/db.ts';
import { Queue } from '../../store/queue.ts';

/** The body of message N: its size and bytes follow from N (the parent checks them). */
export function crashBody(n: number): Buffer {
  const size = 1 + ((n * 7919) % 600_000);
  return Buffer.alloc(size, `message ${n}; `);
}

async function main(): Promise<void> {
  const [dir, maxCountArg, maxMsArg] = process.argv.slice(2);
  if (!dir) throw new Error('usage: queue-crash-child.ts DATA-DIR [MAX-COUNT] [MAX-MS]');
  const maxCount = Number(maxCountArg ?? 20_000);
  const deadline = Date.now() + Number(maxMsArg ?? 10_000);
  const store = await Store.open(dir);
  const queue = Queue.open(store);
  process.stdout.write('ready\n');
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < maxCount && Date.now() < deadline) {
      const n = next++;
      const m = await queue.enqueue({
        sender: `sender${n}@example.org`,
        recipients: [
          { address: `a${n}@example.net`, transport: 'relay', action: 'out' },
          { address: `b${n}@example.org`, transport: 'local', action: 'local', route: `/mail/b${n}` },
        ],
        body: crashBody(n),
        meta: { n: String(n) },
      });
      process.stdout.write(`${m.id} ${n}\n`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  await queue.close();
  await store.close();
  process.stdout.write('done\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
