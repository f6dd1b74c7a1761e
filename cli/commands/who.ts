/**
 * `appliance who [--json]` and `appliance kick <user> [cidr]` (doveadm who /
 * kick): the logged-in IMAP and submission sessions of the running
 * appliance, and closing a user's sessions. Both need the appliance running.
 */
import type { SessionView } from '../control/protocol.ts';
import { connectControl } from '../control/client.ts';
import { loadConfigOrThrow } from '../load.ts';
import { CommandError, UsageError, configPath, parse } from '../usage.ts';

export const whoHelp = `usage: appliance who [--json] [-c CONFIG]

Lists the logged-in IMAP and submission sessions: protocol, user, client
address, since when, selected mailbox (IMAP).
--json prints [{protocol, user, address, since, mailbox}].`;

export const kickHelp = `usage: appliance kick <user> [cidr] [-c CONFIG]

Closes the user's IMAP and submission sessions (those from addresses in
CIDR only, when given, e.g. 192.0.2.0/24 or one address). Prints how many
were closed.`;

async function control(socketPath: string) {
  const client = await connectControl(socketPath);
  if (!client) throw new CommandError(`the appliance is not running (no answer on ${socketPath})`);
  return client;
}

export async function whoCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (values.help) {
    process.stdout.write(`${whoHelp}\n`);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(whoHelp);
  const config = loadConfigOrThrow(configPath(values), { warnings: false });
  const client = await control(config.control.socket);
  let sessions: SessionView[];
  try {
    sessions = (await client.request('who', {})).sessions;
  } finally {
    client.close();
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify(sessions, null, 2)}\n`);
    return 0;
  }
  if (sessions.length === 0) {
    process.stdout.write('no sessions\n');
    return 0;
  }
  const rows = [['protocol', 'user', 'address', 'since', 'mailbox'], ...sessions.map((x) => [x.protocol, x.user, x.address, x.since, x.mailbox ?? '-'])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
  return 0;
}

export async function kickCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, {});
  if (values.help) {
    process.stdout.write(`${kickHelp}\n`);
    return 0;
  }
  const [user, cidr, ...extra] = positionals;
  if (user === undefined || extra.length > 0) throw new UsageError(kickHelp);
  const config = loadConfigOrThrow(configPath(values), { warnings: false });
  const client = await control(config.control.socket);
  try {
    const r = await client.request('kick', cidr === undefined ? { user } : { user, cidr });
    process.stdout.write(`${r.kicked} session${r.kicked === 1 ? '' : 's'} closed\n`);
    return 0;
  } finally {
    client.close();
  }
}
