#!/usr/bin/env node
/**
 * `appliance`: the one command. Dispatches to the verbs; maps failures to
 * exit codes (0 ok, 1 operational failure, 2 bad usage or bad config) and
 * prints each as one line on stderr.
 */
import { TableOpenError } from '../core/tables/errors.ts';
import { DatabaseLockedError } from '../store/errors.ts';
import { ControlError } from './control/protocol.ts';
import { CommandError, UsageError } from './usage.ts';
import { version } from './version.ts';

const mainHelp = `usage: appliance <command> [options]      (every command takes -c CONFIG and --help)

  init      write a starter config and create the data directory
  check     validate the config and print it normalised
  start     run the mail server
  table     list, add, del, lookup table entries
  queue     show [--json], flush, remove ID, hold ID, release ID
  reload    make the running appliance re-read its config
  dkim      make a DKIM key (dkim keygen <domain>) and print its DNS record
  cert      certificates: status [--json], renew [NAME] (ACME)
  who       list the logged-in IMAP and submission sessions
  kick      close a user's sessions (kick <user> [cidr])

The config is -c PATH, else $APPLIANCE_CONFIG, else /etc/appliance/appliance.conf.`;

/** Each verb is loaded only when it runs: a short command should not pay for the whole server. */
const commands: Record<string, () => Promise<{ run: (args: string[]) => Promise<number>; help: string }>> = {
  init: async () => import('./commands/init.ts').then((m) => ({ run: m.initCommand, help: m.initHelp })),
  check: async () => import('./commands/check.ts').then((m) => ({ run: m.checkCommand, help: m.checkHelp })),
  start: async () => import('./commands/start.ts').then((m) => ({ run: m.startCommand, help: m.startHelp })),
  table: async () => import('./commands/table.ts').then((m) => ({ run: m.tableCommand, help: m.tableHelp })),
  queue: async () => import('./commands/queue.ts').then((m) => ({ run: m.queueCommand, help: m.queueHelp })),
  reload: async () => import('./commands/reload.ts').then((m) => ({ run: m.reloadCommand, help: m.reloadHelp })),
  dkim: async () => import('./commands/dkim.ts').then((m) => ({ run: m.dkimCommand, help: m.dkimHelp })),
  cert: async () => import('./commands/cert.ts').then((m) => ({ run: m.certCommand, help: m.certHelp })),
  who: async () => import('./commands/who.ts').then((m) => ({ run: m.whoCommand, help: m.whoHelp })),
  kick: async () => import('./commands/who.ts').then((m) => ({ run: m.kickCommand, help: m.kickHelp })),
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '-h' || name === '--help' || name === 'help') {
    const topic = name === 'help' ? rest[0] : undefined;
    const load = topic ? commands[topic] : undefined;
    process.stdout.write(`${load ? (await load()).help : mainHelp}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`appliance ${version}\n`);
    return 0;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`appliance: unknown command "${name}" (${Object.keys(commands).join(', ')}; see appliance --help)\n`);
    return 2;
  }
  try {
    return await (await load()).run(rest);
  } catch (err) {
    return report(err);
  }
}

function report(err: unknown): number {
  if (err instanceof UsageError) {
    process.stderr.write(`${err.message}\n`);
    return 2;
  }
  if (err instanceof ControlError) {
    process.stderr.write(err.code === 'usage' ? `${err.message}\n` : `appliance: ${err.message}\n`);
    return err.code === 'usage' ? 2 : 1;
  }
  if (err instanceof TableOpenError) {
    process.stderr.write(`${err.message}\n`);
    return 2;
  }
  if (err instanceof CommandError || err instanceof DatabaseLockedError) {
    process.stderr.write(`appliance: ${err.message}\n`);
    return 1;
  }
  const e = err as NodeJS.ErrnoException;
  process.stderr.write(`appliance: ${e?.message ?? String(err)}\n`);
  if (process.env.APPLIANCE_DEBUG) process.stderr.write(`${e?.stack ?? ''}\n`);
  return 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`appliance: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
