/**
 * Unix socket paths are limited to about 107 bytes (sun_path). A data
 * directory deep in a file system would make its control socket unusable, so
 * long paths are reached through the directory's descriptor:
 * /proc/self/fd/N/control.sock names the same file in a few bytes (Linux).
 */
import { closeSync, openSync } from 'node:fs';
import { basename, dirname } from 'node:path';

const SUN_PATH_MAX = 100;

/** Runs `use` with a path that binds/connects to `path`; the short form lives until `done` is called. */
export function withSocketPath<T>(path: string, use: (address: string, done: () => void) => T): T {
  if (Buffer.byteLength(path) <= SUN_PATH_MAX) return use(path, () => undefined);
  let fd: number;
  try {
    fd = openSync(dirname(path), 'r');
  } catch {
    return use(path, () => undefined);
  }
  let closed = false;
  return use(`/proc/self/fd/${fd}/${basename(path)}`, () => {
    if (!closed) closeSync(fd);
    closed = true;
  });
}
