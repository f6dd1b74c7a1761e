/**
 * Dropping root: started as root, the appliance binds what needs root, then
 * runs as the config's `user` (SPEC §ops). Node has no getpwnam, so the
 * passwd database is read from /etc/passwd (where system users live).
 */
import { chownSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CommandError } from './usage.ts';

export interface SystemUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
}

export function findUser(name: string, passwd = '/etc/passwd'): SystemUser | null {
  let text: string;
  try {
    text = readFileSync(passwd, 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f.length >= 4) return { name, uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Resolves the run-as user when started as root; null when not root (no switch). */
export function runAsUser(name: string, dataDir: string): SystemUser | null {
  if (!isRoot()) return null;
  const user = findUser(name);
  if (!user) {
    throw new CommandError(
      `started as root, but the user "${name}" (config "user") does not exist; create it with: ` +
        `useradd --system --home-dir ${dataDir} --shell /usr/sbin/nologin ${name}`,
    );
  }
  // Configured to run as root itself: nothing to switch.
  return user.uid === 0 ? null : user;
}

/** Gives the data directory and what root may have created in it to the user. */
export function chownDataDir(dataDir: string, user: SystemUser): void {
  chownSync(dataDir, user.uid, user.gid);
  // The database and the generated certificates may predate the switch (a run as root).
  for (const sub of ['db', 'tls', 'spool', 'acme']) {
    const dir = join(dataDir, sub);
    try {
      if (statSync(dir).isDirectory()) {
        chownSync(dir, user.uid, user.gid);
        for (const f of readdirSync(dir)) chownSync(join(dir, f), user.uid, user.gid);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

export function dropPrivileges(user: SystemUser): void {
  (process as { initgroups?: (user: string, gid: number) => void }).initgroups?.(user.name, user.gid);
  process.setgid?.(user.gid);
  process.setuid?.(user.uid);
}
