/**
 * Loading the config for a command: every error printed as
 * `PATH:LINE:COL: message`, exit 2; warnings go to stderr and do not stop.
 */
import { existsSync } from 'node:fs';
import { formatDiagnostic, loadConfig } from '../core/config/index.ts';
import type { Config } from '../core/config/types.ts';
import { UsageError } from './usage.ts';

export class ConfigErrors extends UsageError {
  readonly lines: readonly string[];
  constructor(lines: readonly string[]) {
    super(lines.join('\n'));
    this.name = 'ConfigErrors';
    this.lines = lines;
  }
}

export function loadConfigOrThrow(path: string, opts: { warnings?: boolean } = {}): Config {
  if (!existsSync(path)) {
    throw new UsageError(`${path}: no such config file (create one with: appliance init -c ${path})`);
  }
  const r = loadConfig(path);
  if (opts.warnings !== false) for (const w of r.warnings) process.stderr.write(`${formatDiagnostic(w)}\n`);
  if (!r.ok) throw new ConfigErrors(r.errors.map(formatDiagnostic));
  return r.config;
}
