/**
 * A private Postfix instance as a receiving MTA peer (PEERS.md): its own
 * main.cf/master.cf, queue and data directories in a temp directory, smtpd
 * on HOST:25 only (root binds port 25 on 127.0.0.x), STARTTLS offered with a
 * self-signed certificate, `virtual` delivery to Maildirs for one domain,
 * everything else to `error:` so nothing leaves the machine. Logs to
 * DIR/maillog (postlogd). `available()` says whether Debian's postfix is
 * installed; tests say so with a comment rather than failing.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { selfSignedCert } from './smtp-receiver.ts';

const POSTFIX = '/usr/sbin/postfix';
const NOBODY = 65534;

export function postfixAvailable(): boolean {
  return existsSync(POSTFIX) && existsSync('/usr/lib/postfix/sbin/master') && spawnSync('id', ['postfix'], { stdio: 'ignore' }).status === 0;
}

export interface PostfixPeer {
  readonly dir: string;
  /** Files of user@domain's Maildir new/ (full paths, sorted). */
  maildir(user: string): string[];
  log(): string;
  stop(): Promise<void>;
}

function run(args: string[], logPath: string): number {
  // Output to a file, never a pipe: master daemonizes and would keep a pipe open (PEERS.md).
  const fd = openSync(logPath, 'a');
  try {
    const r = spawnSync(POSTFIX, args, { stdio: ['ignore', fd, fd], timeout: 30_000 });
    return r.status ?? -1;
  } finally {
    closeSync(fd);
  }
}

async function listening(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host, port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
      s.setTimeout(1_000, () => {
        s.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`postfix: nothing listens on ${host}:${port} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Starts postfix for `domain` with these mailboxes (local parts), smtpd on
 * host:25. `dir` must be new and empty; it is made world-traversable, as
 * postfix's daemons (user postfix) and `virtual` (uid nobody) need — its
 * parents must be traversable too (mkdtemp makes 0700 directories).
 */
export async function startPostfix(dir: string, opts: { host: string; domain: string; users: readonly string[] }): Promise<PostfixPeer> {
  const conf = join(dir, 'conf');
  const queue = join(dir, 'queue');
  const data = join(dir, 'data');
  const mail = join(dir, 'mail');
  for (const d of [conf, queue, data, mail]) mkdirSync(d, { recursive: true });
  chmodSync(dir, 0o755);
  const pw = spawnSync('id', ['-u', 'postfix'], { encoding: 'utf8' });
  const postfixUid = Number(pw.stdout.trim());
  chownSync(data, postfixUid, 0);
  chownSync(mail, NOBODY, NOBODY);
  const pem = await selfSignedCert(`mx.${opts.domain}`);
  writeFileSync(join(conf, 'cert.pem'), pem.cert);
  writeFileSync(join(conf, 'key.pem'), pem.key, { mode: 0o600 });
  writeFileSync(join(conf, 'vmailbox'), opts.users.map((u) => `${u}@${opts.domain} ${opts.domain}/${u}/\n`).join(''));
  const maillog = join(dir, 'maillog');
  writeFileSync(
    join(conf, 'main.cf'),
    `compatibility_level = 3.6
queue_directory = ${queue}
data_directory = ${data}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.${opts.domain}
mydomain = ${opts.domain}
myorigin = ${opts.domain}
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
default_transport = error:no remote delivery from this test peer
relay_transport = error:no remote delivery from this test peer
local_transport = error:no local delivery in this test peer
alias_maps =
alias_database =
biff = no
virtual_mailbox_domains = ${opts.domain}
virtual_mailbox_base = ${mail}
virtual_mailbox_maps = texthash:${join(conf, 'vmailbox')}
virtual_uid_maps = static:${NOBODY}
virtual_gid_maps = static:${NOBODY}
message_size_limit = 10240000
virtual_mailbox_limit = 0
mailbox_size_limit = 0
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = reject_unauth_destination
smtpd_tls_security_level = may
smtpd_tls_cert_file = ${join(conf, 'cert.pem')}
smtpd_tls_key_file = ${join(conf, 'key.pem')}
smtpd_tls_received_header = yes
smtputf8_enable = yes
maillog_file = ${maillog}
maillog_file_prefixes = ${dir}
`,
  );
  // chroot "n" everywhere: no copies of /etc in the queue directory.
  writeFileSync(
    join(conf, 'master.cf'),
    `${opts.host}:25 inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`,
  );
  const out = join(dir, 'postfix-command.log');
  const status = run(['-c', conf, 'start'], out);
  const log = () => (existsSync(maillog) ? readFileSync(maillog, 'utf8') : '');
  if (status !== 0) throw new Error(`postfix -c ${conf} start: exit ${status}\n${readFileSync(out, 'utf8')}\n${log()}`);
  const pidFile = join(queue, 'pid', 'master.pid');
  const masterPid = (): number | undefined => {
    try {
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      return pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  };
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      const pid = masterPid();
      run(['-c', conf, 'stop'], out);
      const deadline = Date.now() + 10_000;
      while (pid !== undefined && alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL'); // the master we started, by its pid
    })());
  try {
    await listening(opts.host, 25, 15_000);
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${readFileSync(out, 'utf8')}\n${log()}`);
  }
  return {
    dir,
    maildir(user) {
      const d = join(mail, opts.domain, user, 'new');
      return existsSync(d) ? readdirSync(d).sort().map((f) => join(d, f)) : [];
    },
    log,
    stop,
  };
}
