/**
 * `appliance queue show [--json]` (smtpctl show queue): through the running
 * appliance, or straight from the data directory when it is stopped.
 */
import type { QueuedMessage } from '../../store/queue.ts';
import { Queue, toQueueShowEntry } from '../../store/queue.ts';
import { Store } from '../../store/db.ts';
import { connectControl } from '../control/client.ts';
import { loadConfigOrThrow } from '../load.ts';
import { CommandError, UsageError, configPath, parse } from '../usage.ts';

export const queueHelp = `usage: appliance queue show [--json]
       appliance queue flush
       appliance queue remove|hold|release <id>
       (all take -c CONFIG)

show lists the queued messages: id, age, sender, size and each recipient's
state (pending, deferred, held, delivered, failed), attempts, next attempt
and last error. Remote mail waits here; so does local mail whose delivery
failed for a while (disk full, permissions) until it is retried.
flush makes everything due now and retries local deliveries at once;
remove deletes a message; hold stops its delivery until release.
Everything but show needs the appliance running.`;

export async function queueCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (values.help) {
    process.stdout.write(`${queueHelp}\n`);
    return 0;
  }
  const [verb, ...rest] = positionals;
  if (verb === undefined) throw new UsageError(queueHelp);
  const config = loadConfigOrThrow(configPath(values), { warnings: false });
  if (verb === 'flush' || verb === 'remove' || verb === 'hold' || verb === 'release') {
    return queueControl(config.control.socket, verb, rest);
  }
  if (verb !== 'show' || rest.length > 0) throw new UsageError(`unknown queue command "${positionals.join(' ')}" (show, flush, remove, hold, release)`);
  const messages = await listQueue(config.control.socket, config.dataDir);
  if (values.json) {
    process.stdout.write(`${JSON.stringify(messages.map(toQueueShowEntry), null, 2)}\n`);
    return 0;
  }
  if (messages.length === 0) {
    process.stdout.write('queue is empty\n');
    return 0;
  }
  const now = Date.now();
  for (const m of messages) {
    process.stdout.write(`${m.id}  ${age(now - m.created)}  <${m.sender}>  ${m.size} bytes\n`);
    for (const r of m.recipients) {
      const next = r.state === 'deferred' ? `  next ${new Date(r.nextAttempt).toISOString()}` : '';
      process.stdout.write(`    ${r.address}  ${r.state}  attempts ${r.attempts}${next}${r.lastError ? `  (${r.lastError})` : ''}\n`);
    }
  }
  return 0;
}

async function queueControl(socket: string, verb: 'flush' | 'remove' | 'hold' | 'release', args: string[]): Promise<number> {
  if (verb === 'flush' ? args.length !== 0 : args.length !== 1) throw new UsageError(`usage: appliance queue ${verb}${verb === 'flush' ? '' : ' <id>'}`);
  const client = await connectControl(socket);
  if (!client) throw new CommandError(`the appliance is not running (no answer on ${socket}); queue ${verb} needs it`);
  try {
    if (verb === 'flush') {
      const r = await client.request('queue.flush', {}, (p) => process.stderr.write(`${p}\n`));
      process.stdout.write(`flushed: ${r.scheduled} scheduled, ${r.remaining} still queued\n`);
      return 0;
    }
    const r = await client.request(`queue.${verb}`, { id: args[0]! });
    if (!r.done) throw new CommandError(`no message ${args[0]} in the queue`);
    process.stdout.write(`${args[0]}: ${verb === 'remove' ? 'removed' : verb === 'hold' ? 'held' : 'released'}\n`);
    return 0;
  } finally {
    client.close();
  }
}

async function listQueue(socket: string, dataDir: string): Promise<QueuedMessage[]> {
  const client = await connectControl(socket);
  if (client) {
    try {
      return (await client.request('queue.show', {})).messages;
    } finally {
      client.close();
    }
  }
  const store = await Store.open(dataDir);
  try {
    const out: QueuedMessage[] = [];
    for await (const m of Queue.open(store).list()) out.push(m);
    return out;
  } finally {
    await store.close();
  }
}

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}
