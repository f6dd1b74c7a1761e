/** `appliance check`: parse and validate, print the normalised config (smtpd -n). */
import { printConfig } from '../../core/config/printer.ts';
import { formatDiagnostic } from '../../core/config/diagnostics.ts';
import { checkFileTables, checkLdapTables } from '../../core/tables/registry.ts';
import { ConfigErrors, loadConfigOrThrow } from '../load.ts';
import { configPath, parse } from '../usage.ts';

export const checkHelp = `usage: appliance check [-c CONFIG] [--quiet]

Parses and validates the config and prints it back normalised: macros
expanded, includes inlined, defaults shown, legacy rules in modern form.
File tables and ldap.conf files are read too (no server is contacted): a
missing file or a malformed line is an error.
Every error is printed as PATH:LINE:COL: message; exit status 2 if any.`;

export async function checkCommand(args: string[]): Promise<number> {
  const { values } = parse(args, { quiet: { type: 'boolean', short: 'q' } });
  if (values.help) {
    process.stdout.write(`${checkHelp}\n`);
    return 0;
  }
  const config = loadConfigOrThrow(configPath(values));
  const tableErrors = [...checkFileTables(config), ...checkLdapTables(config)];
  if (tableErrors.length > 0) throw new ConfigErrors(tableErrors.map(formatDiagnostic));
  if (!values.quiet) process.stdout.write(printConfig(config));
  return 0;
}
