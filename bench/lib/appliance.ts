/**
 * The appliance under benchmark: `dist/cli/main.js start` on a config made
 * by the benchmark (data directory, control socket and listeners in its temp
 * directory, `user root` unless told otherwise), detached in its own session,
 * ready when its log says so.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Started, stopChild } from './processes.ts';
import { sleep } from './system.ts';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const MAIN = join(ROOT, 'dist/cli/main.js');
export const NODE = process.execPath;

export interface ApplianceInstance {
  readonly dir: string;
  readonly conf: string;
  readonly dataDir: string;
  readonly version: string;
  readonly child: ChildProcess;
  /** Its session id (it was started detached: its pid). */
  readonly sid: number;
  readonly log: string;
  stop(): Promise<void>;
}

/**
 * `config` gets the lines after hostname, data-dir, user (default root: nothing to chown), control socket
 * and `smtp authentication-results no`: the peers benchmarked (stock Postfix, OpenSMTPD) verify no
 * SPF/DKIM/DMARC, and the bench machine has no DNS, so like for like it is off unless `config` says yes.
 * `nodeArgs` go before the script (e.g. `--cpu-prof --cpu-prof-dir DIR`).
 */
export async function startAppliance(o: { dir: string; config: readonly string[]; started: Started; user?: string; nodeArgs?: readonly string[] }): Promise<ApplianceInstance> {
  mkdirSync(o.dir, { recursive: true });
  const conf = join(o.dir, 'appliance.conf');
  const dataDir = join(o.dir, 'data');
  writeFileSync(
    conf,
    ['hostname mail.example.test', `data-dir "${dataDir}"`, `user ${o.user ?? 'root'}`, `control socket "${join(o.dir, 'control.sock')}"`, 'smtp authentication-results no', ...o.config, ''].join('\n'),
  );
  const log = join(o.dir, 'appliance.log');
  const fd = openSync(log, 'a');
  const child = o.started.track(spawn(NODE, [...(o.nodeArgs ?? []), MAIN, 'start', '-c', conf], { stdio: ['ignore', fd, fd], detached: true, env: { ...process.env, APPLIANCE_CONFIG: '' } }));
  closeSync(fd);
  const until = Date.now() + 20_000;
  while (!readFileSync(log, 'utf8').includes('"appliance ready"')) {
    if (child.exitCode !== null) throw new Error(`appliance exited (${child.exitCode}): ${readFileSync(log, 'utf8').slice(-500)}`);
    if (Date.now() > until) throw new Error('appliance not ready within 20 s');
    await sleep(50);
  }
  const stop = (): Promise<void> => stopChild(child, 15_000);
  o.started.onStop(stop);
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  return { dir: o.dir, conf, dataDir, version, child, sid: child.pid!, log, stop };
}
