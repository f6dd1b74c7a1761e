/**
 * `appliance init`: writes a commented starter config and creates the data
 * directory. With --unprivileged the listeners use ports above 1024 so the
 * appliance runs without root (demo, tests, rootless containers).
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { dirname, resolve } from 'node:path';
import { isValidDomain } from '../../core/address.ts';
import { formatDiagnostic, parseConfigText } from '../../core/config/index.ts';
import { starterConfig } from '../starter-config.ts';
import { CommandError, UsageError, configPath, parse } from '../usage.ts';

export const initHelp = `usage: appliance init [-c CONFIG] [--domain D] [--hostname H] [--dir DATA-DIR] [--unprivileged]

Writes a commented starter config at CONFIG (default /etc/appliance/appliance.conf
or $APPLIANCE_CONFIG) and creates the data directory. Refuses to overwrite an
existing config.
  --domain D       the mail domain (default: example.test)
  --hostname H     this server's name (default: mail.D)
  --dir DATA-DIR   where mail, the database and keys live (default /var/lib/appliance)
  --address A      the address the listeners bind (default 0.0.0.0)
  --user NAME      the user to run as when started as root (default: appliance;
                   with --unprivileged: the user running init)
  --unprivileged   listen on ports 2525/2587/2465/2143/2993 instead of 25/587/465/143/993`;

export async function initCommand(args: string[]): Promise<number> {
  const { values } = parse(args, {
    domain: { type: 'string' },
    hostname: { type: 'string' },
    dir: { type: 'string' },
    unprivileged: { type: 'boolean' },
    address: { type: 'string' },
    user: { type: 'string' },
  });
  if (values.help) {
    process.stdout.write(`${initHelp}\n`);
    return 0;
  }
  const path = resolve(configPath(values));
  const domain = (values.domain ?? 'example.test').toLowerCase();
  if (!isValidDomain(domain)) throw new UsageError(`--domain: "${domain}" is not a valid domain`);
  const host = (values.hostname ?? `mail.${domain}`).toLowerCase();
  if (!isValidDomain(host)) throw new UsageError(`--hostname: "${host}" is not a valid host name`);
  const dataDir = resolve(values.dir ?? '/var/lib/appliance');
  if (existsSync(path)) throw new CommandError(`${path} already exists; not overwriting it`);
  const address = values.address ?? '0.0.0.0';
  if (!/^[0-9a-fA-F.:]+$/.test(address)) throw new UsageError(`--address: "${address}" is not an IP address`);
  // Unprivileged setups run as whoever starts them; otherwise root switches to "appliance".
  const user = values.user ?? (values.unprivileged ? userInfo().username : 'appliance');
  if (!/^[a-z_][a-z0-9_.-]*\$?$/i.test(user)) throw new UsageError(`--user: "${user}" is not a valid user name`);
  const text = starterConfig({ domain, hostname: host, dataDir, unprivileged: values.unprivileged === true, address, user });
  // The template must always be a valid config: check it before writing anything.
  const r = parseConfigText(text, path);
  if (!r.ok) throw new CommandError(`internal error: the starter config is invalid: ${r.errors.map(formatDiagnostic).join('; ')}`);
  mkdirSync(dirname(path), { recursive: true });
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  writeFileSync(path, text, { flag: 'wx', mode: 0o640 });
  process.stdout.write(`wrote ${path}\ndata directory ${dataDir}\nnext: appliance table add users alice@${domain} -c ${path}\n      appliance start -c ${path}\n`);
  return 0;
}
