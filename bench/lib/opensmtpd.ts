/**
 * A private OpenSMTPD for benchmarks (PEERS.md): Debian's package, unpacked
 * (it conflicts with postfix, so it is not installed), run in the foreground
 * inside `unshare -m` with its compiled-in paths bind-mounted on private
 * tmpfs (the host is not changed) and a resolv.conf that answers from
 * /etc/hosts, so its reverse lookups never leave the machine.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type Started, stopChild } from './processes.ts';
import { LOOPBACK, sessionPids, userOf, waitForGreeting, which } from './system.ts';

/** The unpacked package (fetched with `apt-get download` into a cache directory when missing), or OPENSMTPD_ROOT. */
export function opensmtpdPackage(note: (message: string) => void): { root: string; version: string } {
  const cache = process.env.OPENSMTPD_ROOT ? dirname(process.env.OPENSMTPD_ROOT) : join(tmpdir(), 'appliance-bench-opensmtpd');
  const root = process.env.OPENSMTPD_ROOT ?? join(cache, 'root');
  const debs = () => (existsSync(cache) ? readdirSync(cache).filter((f) => /^opensmtpd_.*\.deb$/.test(f)) : []);
  if (!existsSync(join(root, 'usr/sbin/smtpd'))) {
    mkdirSync(cache, { recursive: true });
    if (debs().length === 0) {
      note(`fetching OpenSMTPD with "apt-get download opensmtpd" into ${cache}`);
      const r = spawnSync('apt-get', ['download', 'opensmtpd'], { cwd: cache, encoding: 'utf8', timeout: 120_000 });
      if (debs().length === 0) throw new Error(`apt-get download opensmtpd failed: ${(r.stderr ?? '').slice(-300)}`);
    }
    const x = spawnSync('dpkg-deb', ['-x', join(cache, debs()[0]!), root], { encoding: 'utf8', timeout: 60_000 });
    if (x.status !== 0) throw new Error(`dpkg-deb -x failed: ${x.stderr}`);
  }
  const deb = debs()[0];
  return { root, version: deb ? deb.split('_')[1]! : 'unknown (OPENSMTPD_ROOT)' };
}

export interface OpenSmtpdInstance {
  readonly dir: string;
  readonly port: number;
  readonly version: string;
  readonly spool: string;
  readonly sid: number;
  readonly log: string;
  /** smtpctl, setgid opensmtpq as it expects, inside smtpd's mount namespace. */
  smtpctl(...args: string[]): { status: number | null; stdout: string; stderr: string };
  stop(): Promise<void>;
}

export interface OpenSmtpdOptions {
  readonly dir: string;
  readonly port: number;
  /** smtpd.conf lines after the `listen on` line. */
  readonly config: readonly string[];
  readonly started: Started;
  readonly note: (message: string) => void;
}

export async function startOpenSmtpd(o: OpenSmtpdOptions): Promise<OpenSmtpdInstance> {
  const unshare = which('unshare');
  if (!unshare) throw new Error('needs unshare (util-linux)');
  const pkg = opensmtpdPackage(o.note);
  for (const u of ['opensmtpd', 'opensmtpq']) {
    if (userOf(u)) continue;
    o.note(`creating the system user ${u} that OpenSMTPD's privilege separation needs`);
    const r = spawnSync('useradd', ['--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', u], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`useradd ${u}: ${r.stderr}`);
  }
  const spool = join(o.dir, 'spool');
  mkdirSync(spool, { recursive: true });
  chmodSync(spool, 0o711);
  const conf = join(o.dir, 'smtpd.conf');
  writeFileSync(conf, [`listen on ${LOOPBACK} port ${o.port}`, ...o.config, ''].join('\n'));
  writeFileSync(join(o.dir, 'resolv.conf'), `nameserver ${LOOPBACK}\nlookup file bind\n`);
  const q = (s: string) => `'${s.replace(/'/g, "'\\''")}'`;
  writeFileSync(
    join(o.dir, 'run.sh'),
    [
      'set -e',
      'mount -t tmpfs -o size=1m,mode=755 tmpfs /var/spool',
      'mkdir /var/spool/smtpd',
      `mount --bind ${q(spool)} /var/spool/smtpd`,
      'mount -t tmpfs -o size=1m,mode=755 tmpfs /usr/libexec',
      'mkdir /usr/libexec/opensmtpd',
      `mount --bind ${q(join(pkg.root, 'usr/libexec/opensmtpd'))} /usr/libexec/opensmtpd`,
      'mount -t tmpfs -o size=1m,mode=755 tmpfs /var/lib',
      'mkdir -p /var/lib/opensmtpd/empty',
      'mount -t tmpfs -o size=1m,mode=755 tmpfs /run',
      `mount --bind ${q(join(o.dir, 'resolv.conf'))} /etc/resolv.conf`,
      `exec ${q(join(pkg.root, 'usr/sbin/smtpd'))} -d -f ${q(conf)}`,
      '',
    ].join('\n'),
  );
  const log = join(o.dir, 'smtpd.log');
  const fd = openSync(log, 'a');
  const child: ChildProcess = o.started.track(spawn(unshare, ['-m', '--propagation', 'private', 'sh', join(o.dir, 'run.sh')], { stdio: ['ignore', fd, fd], detached: true }));
  closeSync(fd);
  const sid = child.pid!;
  const stop = async (): Promise<void> => {
    await stopChild(child, 10_000);
    // Its privilege-separated children leave with it; anything left in its session is ours too.
    for (const pid of sessionPids(sid)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
  };
  o.started.onStop(stop);
  await waitForGreeting(o.port, 15_000, { alive: () => child.exitCode === null }).catch((err: Error) => {
    throw new Error(`${err.message}: ${readFileSync(log, 'utf8').slice(-400)}`);
  });
  const smtpctl = (...args: string[]) =>
    // dpkg-deb -x keeps no setgid bit: root with group opensmtpq, in smtpd's mount namespace.
    spawnSync('nsenter', ['-t', String(child.pid), '-m', 'setpriv', `--regid=${userOf('opensmtpq')!.gid}`, '--clear-groups', join(pkg.root, 'usr/sbin/smtpctl'), ...args], {
      encoding: 'utf8',
      timeout: 60_000,
    });
  return { dir: o.dir, port: o.port, version: pkg.version, spool, sid, log, smtpctl, stop };
}
