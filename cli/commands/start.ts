/**
 * `appliance start`: runs everything in one process, in the foreground
 * (systemd Type=simple, Docker). SIGTERM/SIGINT stop it cleanly (exit 0),
 * SIGHUP reloads the config and the file tables.
 */
import { createLogger } from '../../core/log.ts';
import { loadConfigOrThrow } from '../load.ts';
import { Appliance } from '../serve.ts';
import { configPath, parse } from '../usage.ts';
import { version } from '../version.ts';

export const startHelp = `usage: appliance start [-c CONFIG] [--foreground]

Runs the appliance in this process and stays in the foreground (as systemd
and Docker expect; --foreground is accepted for familiarity). Logs are JSON
lines on stdout, pretty on a terminal. SIGTERM or SIGINT stop it; SIGHUP
re-reads the config and the file tables.`;

export async function startCommand(args: string[]): Promise<number> {
  const { values } = parse(args, { foreground: { type: 'boolean', short: 'f' } });
  if (values.help) {
    process.stdout.write(`${startHelp}\n`);
    return 0;
  }
  const config = loadConfigOrThrow(configPath(values));
  const log = createLogger({ level: config.log.level });
  const app = await Appliance.start(config, log);
  log.info(
    {
      version,
      config: config.path,
      dataDir: config.dataDir,
      tables: [...config.tables.values()].filter((t) => !t.anonymous).length,
      control: config.control.socket,
      smtp: app.smtpListeners.map((l) => `${l.address}:${l.port}`),
    },
    'appliance ready',
  );
  // Keep the event loop alive while serving (the control server is unref'd).
  const keepAlive = setInterval(() => undefined, 1 << 30);
  return new Promise<number>((resolve) => {
    const done = (code: number) => {
      clearInterval(keepAlive);
      // Should a library still hold a handle, do not hang after a clean stop.
      setTimeout(() => process.exit(code), 2000).unref();
      resolve(code);
    };
    const stop = (signal: string) => {
      log.info({ signal }, 'stopping');
      app.stop().then(
        () => {
          log.info('stopped');
          done(0);
        },
        (err: unknown) => {
          log.error({ err }, 'error while stopping');
          done(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => void app.reload());
  });
}
