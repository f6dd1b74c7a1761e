/**
 * The real appliance with imapflow (what many Node mail clients use):
 * login, special-use mailboxes, APPEND/FETCH/STORE/MOVE/SEARCH, and a
 * message delivered over SMTP arriving in IDLE as EXISTS. Also STARTTLS on
 * a tls-require listener, implicit TLS, `appliance who` and `kick`.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import t from 'tap';
import { MAIN, startAppliance } from '../helpers/appliance.ts';
import { RawImap, writeImapConfig } from '../helpers/imap.ts';

const run = promisify(execFile);

function client(port: number, opts: { secure?: boolean; tls?: boolean } = {}): ImapFlow {
  return new ImapFlow({
    host: '127.0.0.1',
    port,
    secure: opts.secure ?? false,
    ...(opts.tls === false ? { doSTARTTLS: false } : {}),
    tls: { rejectUnauthorized: false },
    auth: { user: 'alice@example.test', pass: 'alice-secret' },
    logger: false,
    connectionTimeout: 10_000,
  });
}

// Real servers and clients: generous under a loaded CI machine (the default is 30 s).
t.setTimeout(120_000);

t.test('imapflow against the appliance', async (t) => {
  const dir = t.testdir();
  const cfg = await writeImapConfig(dir);
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());

  const c = client(cfg.imap.plain, { tls: false });
  await c.connect();
  t.teardown(() => c.close());
  const boxes = await c.list();
  const byUse = Object.fromEntries(boxes.filter((b) => b.specialUse && b.path !== 'INBOX').map((b) => [b.specialUse, b.path]));
  t.same(byUse, { '\\Drafts': 'Drafts', '\\Sent': 'Sent', '\\Junk': 'Junk', '\\Trash': 'Trash' }, 'special mailboxes created at first login');
  t.ok(boxes.find((b) => b.path === 'Sent')?.subscribed, 'and subscribed');

  const msg = (n: number) => `From: Bob <bob@example.net>\r\nTo: alice@example.test\r\nSubject: note ${n}\r\nMessage-ID: <n${n}@example.net>\r\nDate: Tue, 3 Mar 2026 10:00:00 +0000\r\n\r\nbody ${n}\r\n`;
  const appended = [];
  for (let i = 1; i <= 5; i++) appended.push(await c.append('INBOX', msg(i), i === 1 ? ['\\Seen'] : []));
  t.same(appended.map((a) => (typeof a === 'object' ? a.uid : a)), [1, 2, 3, 4, 5], 'APPENDUID');

  const lock = await c.getMailboxLock('INBOX');
  try {
    t.equal((c.mailbox as { exists: number }).exists, 5);
    const got = [];
    for await (const m of c.fetch('1:*', { uid: true, flags: true, envelope: true, bodyStructure: true, size: true, internalDate: true })) got.push(m);
    t.equal(got.length, 5);
    t.equal(got[0]!.envelope?.subject, 'note 1');
    t.same(got[0]!.envelope?.from, [{ name: 'Bob', address: 'bob@example.net' }]);
    t.equal(got[0]!.bodyStructure?.type, 'text/plain');
    t.ok(got[0]!.flags?.has('\\Seen'));
    const one = await c.fetchOne('2', { source: true });
    t.equal(one && one.source?.toString(), msg(2), 'BODY[] byte for byte');
    await c.messageFlagsAdd('2:3', ['\\Flagged', '$Forwarded']);
    const flagged = await c.search({ flagged: true });
    t.same(flagged, [2, 3]);
    t.same(await c.search({ subject: 'note 4' }), [4]);
    t.same(await c.search({ body: 'body 5' }), [5]);
    const moved = await c.messageMove('4', 'Junk');
    t.ok(moved && moved.uidMap && moved.uidMap.get(4), 'MOVE with COPYUID');
    t.equal((c.mailbox as { exists: number }).exists, 4, 'EXPUNGE of the moved message');
    await c.messageDelete('5', { uid: true });
    t.equal((c.mailbox as { exists: number }).exists, 3);
  } finally {
    lock.release();
  }
  const status = await c.status('Junk', { messages: true, unseen: true, uidNext: true });
  t.equal(status && status.messages, 1);

  // Flags survive a restart (they are in the file names, keywords in dovecot-keywords).
  await c.logout();
  t.equal(await app.stop(), 0);
  const app2 = await startAppliance(cfg.path, dir, 'appliance2');
  t.teardown(() => app2.kill9());
  const c2 = client(cfg.imap.plain, { tls: false });
  await c2.connect();
  t.teardown(() => c2.close());
  await c2.mailboxOpen('INBOX');
  const after = [];
  for await (const m of c2.fetch('1:*', { uid: true, flags: true })) after.push([m.uid, [...(m.flags ?? [])].sort()]);
  t.same(after, [[1, ['\\Seen']], [2, ['$Forwarded', '\\Flagged']], [3, ['$Forwarded', '\\Flagged']]], 'same UIDs and flags after a restart');

  // IDLE: a message delivered over SMTP shows up as EXISTS.
  const exists = new Promise<number>((resolve) => c2.on('exists', (d: { count: number }) => resolve(d.count)));
  const idling = c2.idle();
  await new Promise((r) => setTimeout(r, 200));
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: cfg.ports.mx, secure: false, tls: { rejectUnauthorized: false } });
  await transport.sendMail({ envelope: { from: 'carol@example.net', to: ['alice@example.test'] }, raw: msg(6) });
  const count = await Promise.race([exists, new Promise<number>((_, reject) => setTimeout(() => reject(new Error('no EXISTS within 10 s')), 10_000))]);
  t.equal(count, 4, 'EXISTS pushed during IDLE');
  void idling;
  const six = await c2.fetchOne('4', { envelope: true });
  t.equal(six && six.envelope?.subject, 'note 6');

  // who / kick over the control socket
  const who = await run(process.execPath, [MAIN, 'who', '--json', '-c', cfg.path]);
  const sessions = JSON.parse(who.stdout) as { protocol: string; user: string; address: string; mailbox: string | null }[];
  t.match(sessions, [{ protocol: 'imap', user: 'alice@example.test', address: '127.0.0.1', mailbox: 'INBOX' }]);
  // A submission session (smtplib, AUTH over implicit TLS) is listed too, and kicked with the rest.
  const smtp = spawn('python3', ['-c', `
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP_SSL('127.0.0.1', ${cfg.ports.smtps}, context=ctx, timeout=20)
s.login('alice@example.test', 'alice-secret')
print('in', flush=True)
sys.stdin.readline()
try:
    s.noop(); print('still open', flush=True)
except Exception:
    print('closed', flush=True)
`], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.teardown(() => smtp.kill());
  let smtpOut = '';
  smtp.stdout!.on('data', (d: Buffer) => (smtpOut += d.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('smtplib did not log in')), 20_000);
    smtp.stdout!.on('data', () => smtpOut.includes('in') && (clearTimeout(timer), resolve()));
  });
  const who2 = JSON.parse((await run(process.execPath, [MAIN, 'who', '--json', '-c', cfg.path])).stdout) as { protocol: string; user: string }[];
  t.same(who2.map((x) => x.protocol).sort(), ['imap', 'submission'], 'who lists IMAP and submission sessions');
  const closed = new Promise<void>((resolve) => c2.on('close', () => resolve()));
  const kick = await run(process.execPath, [MAIN, 'kick', 'alice@example.test', '127.0.0.0/8', '-c', cfg.path]);
  t.match(kick.stdout, /^2 sessions closed/);
  smtp.stdin!.end('\n');
  await new Promise((resolve) => smtp.once('exit', resolve));
  t.match(smtpOut, /closed/, 'the submission connection was closed');
  await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('not closed by kick')), 10_000))]);
  t.equal(await app2.stop(), 0);
});

t.test('TLS: LOGIN refused on plaintext of a tls-require listener, fine after STARTTLS; implicit TLS', async (t) => {
  const dir = t.testdir();
  const cfg = await writeImapConfig(dir);
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const raw = await RawImap.connect(cfg.imap.tlsRequire);
  t.teardown(() => raw.close());
  const greeting = await raw.expect(/\r\n/);
  t.match(greeting, /STARTTLS/);
  t.match(greeting, /LOGINDISABLED/);
  t.notMatch(greeting, /AUTH=PLAIN/);
  t.match(await raw.cmd('a1', 'LOGIN alice@example.test alice-secret'), /a1 NO \[PRIVACYREQUIRED\]/);
  t.match(await raw.cmd('a2', `AUTHENTICATE PLAIN ${Buffer.from('\0alice@example.test\0alice-secret').toString('base64')}`), /a2 NO \[PRIVACYREQUIRED\]/);
  const starttls = client(cfg.imap.tlsRequire);
  await starttls.connect();
  t.ok(starttls.secureConnection || starttls.usable, 'logged in after STARTTLS');
  t.ok((await starttls.list()).length >= 5);
  await starttls.logout();
  const implicit = client(cfg.imap.imaps, { secure: true });
  await implicit.connect();
  t.ok(implicit.usable);
  await implicit.logout();
  t.equal(await app.stop(), 0);
});
