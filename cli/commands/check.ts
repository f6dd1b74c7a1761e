/** `appliance check`: parse and validate, print the normalised config (smtpd -n). */
import { printConfig } from '../../core/config/printer.ts';
import { loadConfigOrThrow } from '../load.ts';
import { configPath, parse } from '../usage.ts';

export const checkHelp = `usage: appliance check [-c CONFIG] [--quiet]

Parses and validates the config and prints it back normalised: macros
expanded, includes inlined, defaults shown, legacy rules in modern form.
Every error is printed as PATH:LINE:COL: message; exit status 2 if any.`;

export async function checkCommand(args: string[]): Promise<number> {
  const { values } = parse(args, { quiet: { type: 'boolean', short: 'q' } });
  if (values.help) {
    process.stdout.write(`${checkHelp}\n`);
    return 0;
  }
  const config = loadConfigOrThrow(configPath(values));
  if (!values.quiet) process.stdout.write(printConfig(config));
  return 0;
}
