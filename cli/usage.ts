/**
 * Command-line plumbing shared by the verbs: the error that means "bad usage
 * or bad config" (exit 2), option parsing with clear messages, and where the
 * config file is.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** An operational failure (exit 1) with a one-line message. */
export class CommandError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandError';
  }
}

export const DEFAULT_CONFIG = '/etc/appliance/appliance.conf';

export const commonOptions = {
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

export function configPath(values: { config?: string | undefined }): string {
  return values.config ?? process.env.APPLIANCE_CONFIG ?? DEFAULT_CONFIG;
}

export function parse<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O) {
  try {
    return parseArgs({ args, options: { ...commonOptions, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/, ''));
  }
}
