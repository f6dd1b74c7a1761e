/**
 * What every benchmark asks of the machine: programs on the PATH, users,
 * the processes of a server (by session id, since Postfix's master and
 * Dovecot call setsid()), their memory, and free loopback ports.
 */
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join } from 'node:path';

export const LOOPBACK = '127.0.0.1';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The absolute path of a program, searching PATH and the sbin directories (peers live there). */
export function which(cmd: string): string | null {
  const dirs = (process.env.PATH ?? '').split(':').concat(['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']);
  for (const dir of dirs) {
    if (!dir) continue;
    const p = join(dir, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

export function userOf(name: string): { uid: number; gid: number } | null {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name) return { uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

export function sessionOf(pid: number): number {
  const st = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[3]);
}

/** Pids whose session id is `sid` (a server and every process it forked). */
export function sessionPids(sid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (name.charCodeAt(0) < 48 || name.charCodeAt(0) > 57) continue;
    try {
      if (sessionOf(Number(name)) === sid) out.push(Number(name));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** RSS and PSS of one process, KiB. */
export function memOf(pid: number): { rss: number; pss: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1');
    const rss = /^Rss:\s+(\d+)/m.exec(text);
    const pss = /^Pss:\s+(\d+)/m.exec(text);
    return rss && pss ? { rss: Number(rss[1]), pss: Number(pss[1]) } : null;
  } catch {
    return null;
  }
}

/** The summed RSS and PSS (KiB) of a session's processes, now. */
export function memoryOfSession(sid: number): { rss: number; pss: number; procs: number } {
  let rss = 0;
  let pss = 0;
  let procs = 0;
  for (const pid of sessionPids(sid)) {
    const m = memOf(pid);
    if (!m) continue;
    rss += m.rss;
    pss += m.pss;
    procs++;
  }
  return { rss, pss, procs };
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, LOOPBACK, () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolvePort(port));
    });
  });
}

/**
 * Waits until 127.0.0.1:port (or host:port) sends a greeting line starting with `expect`
 * (`220` for SMTP, `* OK` for IMAP), then hangs up politely.
 */
export async function waitForGreeting(port: number, timeoutMs: number, opts: { alive?: () => boolean; expect?: string; quit?: string; host?: string } = {}): Promise<void> {
  const expect = opts.expect ?? '220';
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((res) => {
      const s = connect({ host: opts.host ?? LOOPBACK, port });
      let buf = '';
      const t = setTimeout(() => {
        s.destroy();
        res(false);
      }, 3000);
      s.on('data', (d) => {
        buf += d.toString('latin1');
        if (buf.includes('\r\n')) {
          clearTimeout(t);
          s.end(opts.quit ?? 'QUIT\r\n');
          res(buf.startsWith(expect));
        }
      });
      s.on('error', () => {
        clearTimeout(t);
        res(false);
      });
    });
    if (ok) return;
    if (opts.alive && !opts.alive()) throw new Error('the server exited before it answered');
    if (Date.now() > until) throw new Error(`no greeting on ${opts.host ?? LOOPBACK}:${port} within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}
