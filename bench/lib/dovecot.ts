/**
 * A private Dovecot (Debian's dovecot-imapd) for IMAP benchmarks (PEERS.md):
 * its own config, base_dir and log in a temp directory, a passwd-file user,
 * plaintext IMAP on loopback, serving an existing Maildir with its index in
 * a directory of its own (`INDEX=`) so the tree is shared but not its cache.
 * Mail is read as `user` (Dovecot refuses uid 0), so the tree must be that
 * user's. Runs in the foreground (`-F`) in its own session.
 */
import { spawn } from 'node:child_process';
import { chownSync, closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { type Started, stopChild } from './processes.ts';
import { LOOPBACK, userOf, waitForGreeting, which } from './system.ts';

export interface DovecotInstance {
  readonly port: number;
  readonly version: string;
  readonly sid: number;
  readonly log: string;
  readonly indexDir: string;
  stop(): Promise<void>;
}

export interface DovecotOptions {
  readonly dir: string;
  readonly port: number;
  /** The Maildir (INBOX) to serve. */
  readonly maildir: string;
  readonly user: string;
  readonly password: string;
  /** The system user mail is accessed as (owner of the tree). */
  readonly systemUser: string;
  /** Start with no index (cold). */
  readonly fresh: boolean;
  readonly started: Started;
}

export async function startDovecot(o: DovecotOptions): Promise<DovecotInstance> {
  const dovecot = which('dovecot');
  if (!dovecot) throw new Error('dovecot is not installed (apt-get install -y dovecot-imapd)');
  const sys = userOf(o.systemUser);
  if (!sys) throw new Error(`no system user ${o.systemUser}`);
  const group = spawnSync('id', ['-gn', o.systemUser], { encoding: 'utf8' }).stdout.trim();
  const indexDir = join(o.dir, 'index');
  if (o.fresh) rmSync(indexDir, { recursive: true, force: true });
  mkdirSync(indexDir, { recursive: true });
  chownSync(indexDir, sys.uid, sys.gid);
  mkdirSync(join(o.dir, 'run'), { recursive: true });
  mkdirSync(join(o.dir, 'state'), { recursive: true });
  const log = join(o.dir, 'dovecot.log');
  writeFileSync(join(o.dir, 'users'), `${o.user}:{PLAIN}${o.password}\n`);
  const conf = join(o.dir, 'dovecot.conf');
  writeFileSync(
    conf,
    [
      `base_dir = ${o.dir}/run`,
      `state_dir = ${o.dir}/state`,
      `log_path = ${log}`,
      'protocols = imap',
      `listen = ${LOOPBACK}`,
      'ssl = no',
      'disable_plaintext_auth = no',
      'auth_mechanisms = plain login',
      `mail_uid = ${o.systemUser}`,
      `mail_gid = ${group}`,
      'default_login_user = dovenull',
      'default_internal_user = dovecot',
      `mail_location = maildir:${o.maildir}:INDEX=${indexDir}`,
      'mail_max_userip_connections = 100',
      'passdb {',
      '  driver = passwd-file',
      `  args = scheme=PLAIN ${o.dir}/users`,
      '}',
      'userdb {',
      '  driver = static',
      `  args = uid=${o.systemUser} gid=${group} home=${o.dir}/home/%u`,
      '}',
      'service imap-login {',
      '  inet_listener imap {',
      `    address = ${LOOPBACK}`,
      `    port = ${o.port}`,
      '  }',
      '  inet_listener imaps {',
      '    port = 0',
      '  }',
      '  chroot =',
      '}',
      'service anvil {',
      '  chroot =',
      '}',
      '',
    ].join('\n'),
  );
  const version = spawnSync(dovecot, ['--version'], { encoding: 'utf8' }).stdout.trim().split(' ')[0] ?? 'unknown';
  const fd = openSync(join(o.dir, 'stdout.log'), 'a');
  const child = o.started.track(spawn(dovecot, ['-F', '-c', conf], { stdio: ['ignore', fd, fd], detached: true }));
  closeSync(fd);
  const stop = (): Promise<void> => stopChild(child, 10_000);
  o.started.onStop(stop);
  await waitForGreeting(o.port, 15_000, { alive: () => child.exitCode === null, expect: '* OK', quit: 'a LOGOUT\r\n' }).catch((err: Error) => {
    let tail = '';
    try {
      tail = readFileSync(log, 'utf8').slice(-400);
    } catch {
      /* no log yet */
    }
    throw new Error(`${err.message}: ${tail}`);
  });
  return { port: o.port, version, sid: child.pid!, log, indexDir, stop };
}
