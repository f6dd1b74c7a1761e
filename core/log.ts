/**
 * Logging: pino JSON lines to stdout, pretty when stdout is a terminal.
 * Components get children (`{ component, cid, user, qid }`). Secrets never
 * reach a log line: the redact paths cover the fields that could hold them.
 */
import pino, { type Logger } from 'pino';
import type { LogLevel } from './config/types.ts';

export type { Logger } from 'pino';

export const redactPaths = ['password', '*.password', 'pass', '*.pass', 'secret', '*.secret', 'auth.credentials', 'authorization'];

export interface LoggerOptions {
  readonly level: LogLevel;
  /** Default: pretty when stdout is a TTY. */
  readonly pretty?: boolean;
  /** Write here instead of stdout (tests). */
  readonly destination?: NodeJS.WritableStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const pretty = options.pretty ?? (process.stdout.isTTY === true && options.destination === undefined);
  const base = { level: options.level, redact: { paths: redactPaths, censor: '[redacted]' }, base: { pid: process.pid } };
  if (pretty) {
    return pino({ ...base, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:standard', ignore: 'pid,hostname' } } });
  }
  return options.destination ? pino(base, options.destination) : pino(base);
}
