/** `appliance reload`: the running appliance re-reads its config and file tables (also on SIGHUP). */
import { connectControl } from '../control/client.ts';
import { loadConfigOrThrow } from '../load.ts';
import { CommandError, configPath, parse } from '../usage.ts';

export const reloadHelp = `usage: appliance reload [-c CONFIG]

Asks the running appliance to re-read its config and file tables, all or
nothing: a config with errors is refused and the running one stays (the
errors are printed here first). Open sessions are not dropped.`;

export async function reloadCommand(args: string[]): Promise<number> {
  const { values } = parse(args, {});
  if (values.help) {
    process.stdout.write(`${reloadHelp}\n`);
    return 0;
  }
  const config = loadConfigOrThrow(configPath(values));
  const client = await connectControl(config.control.socket);
  if (!client) throw new CommandError(`the appliance is not running (no answer on ${config.control.socket})`);
  try {
    const r = await client.request('reload', {});
    if (!r.reloaded) throw new CommandError(r.error ?? 'the appliance refused the new config; see its log');
    process.stdout.write('reloaded\n');
    return 0;
  } finally {
    client.close();
  }
}
