/**
 * A private Postfix instance for benchmarks (PEERS.md): its own main.cf and
 * master.cf in a temp directory, upstream's master.cf services (chroot off,
 * as upstream ships it; Debian's turns chroot on), started with
 * `postfix -c DIR start` and stopped the same way, then by the master's pid.
 */
import { chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import type { Started } from './processes.ts';
import { LOOPBACK, sessionOf, sleep, userOf, waitForGreeting, which } from './system.ts';

export interface PostfixInstance {
  readonly dir: string;
  readonly port: number;
  readonly version: string;
  /** Session id of the master and every daemon it forks. */
  readonly sid: number;
  readonly log: string;
  stop(): Promise<void>;
}

export interface PostfixOptions {
  /** The instance's config and queue directory (created). */
  readonly dir: string;
  /** smtpd listens on 127.0.0.1:port. */
  readonly port: number;
  /** main.cf lines beyond the common ones (destinations, transports). */
  readonly main: readonly string[];
  /** master.cf lines beyond the common services (`virtual`, `smtp`…). */
  readonly services: readonly string[];
  readonly started: Started;
}

const COMMON_SERVICES = [
  'pickup    unix  n - n 60 1 pickup',
  'cleanup   unix  n - n - 0 cleanup',
  'qmgr      unix  n - n 300 1 qmgr',
  'rewrite   unix  - - n - - trivial-rewrite',
  'bounce    unix  - - n - 0 bounce',
  'defer     unix  - - n - 0 bounce',
  'trace     unix  - - n - 0 bounce',
  'verify    unix  - - n - 1 verify',
  'flush     unix  n - n 1000? 0 flush',
  'proxymap  unix  - - n - - proxymap',
  'showq     unix  n - n - - showq',
  'error     unix  - - n - - error',
  'retry     unix  - - n - - error',
  'discard   unix  - - n - - discard',
  'anvil     unix  - - n - 1 anvil',
  'scache    unix  - - n - 1 scache',
  'postlog   unix-dgram n - n - 1 postlogd',
];

export async function startPostfix(o: PostfixOptions): Promise<PostfixInstance> {
  const postfix = which('postfix');
  const postconf = which('postconf');
  const pfUser = userOf('postfix');
  if (!postfix || !postconf || !pfUser) throw new Error('postfix is not installed (apt-get install -y postfix, debconf "Local only")');
  mkdirSync(join(o.dir, 'queue'), { recursive: true });
  mkdirSync(join(o.dir, 'data'), { recursive: true });
  chownSync(join(o.dir, 'data'), pfUser.uid, pfUser.gid);
  const version = spawnSync(postconf, ['-d', '-h', 'mail_version'], { encoding: 'utf8' }).stdout.trim();
  const log = join(o.dir, 'postfix.log');
  writeFileSync(
    join(o.dir, 'main.cf'),
    [
      'compatibility_level = 3.6',
      `queue_directory = ${o.dir}/queue`,
      `data_directory = ${o.dir}/data`,
      'myhostname = mail.example.test',
      'mydomain = example.test',
      'mydestination =',
      `inet_interfaces = ${LOOPBACK}`,
      'inet_protocols = ipv4',
      'mynetworks = 127.0.0.0/8',
      'alias_maps =',
      'alias_database =',
      `maillog_file = ${log}`,
      `maillog_file_prefixes = ${o.dir}`,
      'biff = no',
      ...o.main,
      '',
    ].join('\n'),
  );
  writeFileSync(join(o.dir, 'master.cf'), [`${LOOPBACK}:${o.port} inet n - n - - smtpd`, ...COMMON_SERVICES, ...o.services, ''].join('\n'));
  const start = spawnSync(postfix, ['-c', o.dir, 'start'], { encoding: 'utf8', timeout: 30_000 });
  const pidFile = join(o.dir, 'queue/pid/master.pid');
  const masterPid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8').trim()) : NaN;
  const stop = async (): Promise<void> => {
    spawnSync(postfix, ['-c', o.dir, 'stop'], { timeout: 30_000 });
    if (Number.isInteger(masterPid)) {
      const until = Date.now() + 10_000;
      while (existsSync(`/proc/${masterPid}`) && Date.now() < until) await sleep(100);
      if (existsSync(`/proc/${masterPid}`)) process.kill(masterPid, 'SIGKILL');
    }
  };
  if (start.status !== 0 || !Number.isInteger(masterPid)) {
    await stop();
    throw new Error(`postfix -c ${o.dir} start failed (${start.status}): ${(start.stderr ?? '').slice(-400)}`);
  }
  o.started.onStop(stop);
  await waitForGreeting(o.port, 15_000, { alive: () => existsSync(`/proc/${masterPid}`) });
  // The master calls setsid(): its session holds smtpd, cleanup, qmgr, virtual/smtp….
  return { dir: o.dir, port: o.port, version, sid: sessionOf(masterPid), log, stop };
}
