/**
 * Faults, end to end against the built appliance: wrong passwords, a sender
 * the user does not own, over-long lines, NUL bytes and bare LFs in DATA, a
 * client that stalls or vanishes mid-DATA, 500 connections at once, an
 * unwritable Maildir, duplicate mailboxes in one transaction, and SIGTERM
 * with a session open. (SIZE exceeded mid-stream is in inbound.test.ts.)
 *
 * Behaviours documented here (what the appliance does, on purpose):
 * - A command line over smtp-server's 16 KB limit: "421 Command line too
 *   long" and the connection is closed; the server carries on.
 * - A 100 KB line inside DATA: accepted and stored byte for byte (RFC 5321's
 *   998-octet line limit is not enforced on receipt; the message is kept
 *   as sent rather than cut).
 * - NUL bytes in DATA: accepted and stored byte for byte.
 * - Bare LF in DATA: kept as is, not rewritten to CRLF; only CRLF.CRLF ends
 *   DATA, so "\n.\n", "\r\n.\n" and "\n.\r\n" are message content (no SMTP
 *   smuggling of a second transaction through a bare-LF terminator).
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { MAIN, USERS, startAppliance, writeConfig } from '../helpers/appliance.ts';
import { RawSmtp, dataBlock, transaction } from '../helpers/smtp-client.ts';

const run = promisify(execFile);
// Six appliances, one of them waiting out the 10 s close deadline: more than the default 30 s.
t.setTimeout(120_000);
const [ALICE, BOB] = [USERS[0]!, USERS[1]!];

function maildirFiles(dataDir: string, user: string): string[] {
  const dir = join(dataDir, 'mail', 'example.test', user, 'new');
  return existsSync(dir) ? readdirSync(dir).map((f) => join(dir, f)) : [];
}

function spoolFiles(dataDir: string): string[] {
  const dir = join(dataDir, 'spool');
  return existsSync(dir) ? readdirSync(dir) : [];
}

interface QueueEntry {
  id: string;
  sender: string;
  recipients: { address: string; state: string; attempts: number; last_error: string | null }[];
}

async function queueShow(configPath: string): Promise<QueueEntry[]> {
  const { stdout } = await run(process.execPath, [MAIN, 'queue', 'show', '--json', '-c', configPath], { timeout: 20_000 });
  return JSON.parse(stdout) as QueueEntry[];
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `p`, or `fallback` after `ms` (the timer is cleared either way: no timer outlives the test). */
async function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** A fresh session, EHLO done (plain MX unless told otherwise). */
async function session(port: number, opts: { starttls?: boolean; implicitTls?: boolean } = {}): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port, { implicitTls: opts.implicitTls ?? false });
  const g = await c.greeting();
  if (g.code !== 220) throw new Error(`greeting: ${g.last}`);
  await c.ehlo();
  if (opts.starttls) await c.starttls();
  return c;
}

/** The server still works: a new session delivers a message to alice. */
async function stillServes(t: Test, port: number, dataDir: string, label: string): Promise<void> {
  const before = maildirFiles(dataDir, 'alice').length;
  const c = await session(port);
  const r = await transaction(c, 'check@example.net', [ALICE.address], dataBlock({ Subject: `still serving after ${label}` }, 'ok'));
  t.match(r.end?.last ?? '', /^250 2\.0\.0 Ok: queued as \w+/, `after ${label}: a new session is served`);
  await c.quit();
  t.equal(maildirFiles(dataDir, 'alice').length, before + 1, `after ${label}: and its message delivered`);
}

t.test('wrong passwords: each failure after the 1 s delay; after 5, the right password gets 454 4.7.0', async (t) => {
  const dir = t.testdir();
  const cfg = await writeConfig(dir);
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const c = await session(cfg.ports.submission, { starttls: true });
  t.teardown(() => c.destroy());
  for (let i = 1; i <= 5; i++) {
    const started = performance.now();
    const r = await c.authPlain(ALICE.address, `wrong-${i}`, 15_000);
    const ms = performance.now() - started;
    t.equal(`${r.code} ${r.enhanced}`, '535 5.7.8', `failure ${i}: 535 5.7.8 (${r.last})`);
    t.ok(ms >= 900, `failure ${i} answered after ${Math.round(ms)} ms (auth failure-delay 1s)`);
  }
  const started = performance.now();
  const locked = await c.authPlain(ALICE.address, ALICE.password, 15_000);
  t.equal(`${locked.code} ${locked.enhanced}`, '454 4.7.0', `6th attempt, right password: locked out (${locked.last})`);
  t.ok(performance.now() - started < 900, 'the lockout is answered without the delay');
  const mail = await c.cmd(`MAIL FROM:<${ALICE.address}>`);
  t.equal(mail.code, 530, 'still not authenticated');
  await c.quit();
  // The lockout is per client address: a new connection from it is locked out too, on smtps as well.
  const c2 = await session(cfg.ports.smtps, { implicitTls: true });
  t.teardown(() => c2.destroy());
  const again = await c2.authPlain(BOB.address, BOB.password);
  t.equal(`${again.code} ${again.enhanced}`, '454 4.7.0', 'another listener, another user, same client address: 454 4.7.0');
  await c2.quit();
  t.match(app.log(), /"msg":"auth failed"/, 'failures are logged');
  t.notMatch(app.log(), /wrong-[1-5]|alice-secret/, 'passwords never reach the log');
  t.equal(await app.stop(), 0);
});

t.test('protocol abuse on one appliance: sender mismatch, long lines, NUL, bare LF, stalls, 500 connections', async (t) => {
  const dir = t.testdir();
  const cfg = await writeConfig(dir, { extra: 'smtp limit idle-timeout 2s' });
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());

  await t.test('sender-login mismatch: 553 5.7.1 on submission and smtps', async (t) => {
    for (const [port, opts, user, other] of [
      [cfg.ports.submission, { starttls: true }, ALICE, BOB],
      [cfg.ports.smtps, { implicitTls: true }, BOB, ALICE],
    ] as const) {
      const c = await session(port, opts);
      t.teardown(() => c.destroy());
      t.equal((await c.authPlain(user.address, user.password)).code, 235);
      const mail = await c.cmd(`MAIL FROM:<${other.address}>`);
      t.equal(`${mail.code} ${mail.enhanced}`, '553 5.7.1', `${user.address} may not send as ${other.address} (${mail.last})`);
      const own = await c.cmd(`MAIL FROM:<${user.address.toUpperCase()}>`);
      t.equal(own.code, 250, 'its own address, any case, is fine');
      await c.quit();
    }
  });

  await t.test('a 100 KB command line: 421 and closed; the server carries on', async (t) => {
    const c = await session(cfg.ports.mx);
    t.teardown(() => c.destroy());
    await c.write(`NOOP ${'a'.repeat(100_000)}\r\n`);
    const r = await c.replyOrClose(10_000);
    if (r) t.match(r.last, /^421 /, `answered ${r.last}`);
    t.equal(await within(c.closed.then(() => 'closed'), 10_000, 'still open'), 'closed', 'the connection is closed');
    // Also as a MAIL FROM address and in the middle of a transaction.
    const c2 = await session(cfg.ports.mx);
    t.teardown(() => c2.destroy());
    t.equal((await c2.cmd('MAIL FROM:<someone@example.net>')).code, 250);
    await c2.write(`RCPT TO:<${'b'.repeat(100_000)}@example.test>\r\n`);
    const r2 = await c2.replyOrClose(10_000);
    t.ok(r2 === null || r2.code >= 400, `an over-long RCPT is refused (${r2?.last ?? 'closed'})`);
    c2.destroy();
    await stillServes(t, cfg.ports.mx, cfg.dataDir, 'the long command lines');
    t.equal(app.child.exitCode, null, 'the appliance is running');
  });

  await t.test('a 100 KB line in DATA: accepted and stored byte for byte', async (t) => {
    const c = await session(cfg.ports.mx);
    t.teardown(() => c.destroy());
    const long = 'x'.repeat(100_000);
    const before = new Set(maildirFiles(cfg.dataDir, 'bob'));
    const r = await transaction(c, 'someone@example.net', [BOB.address], dataBlock({ Subject: 'long line' }, `${long}\r\nshort`));
    t.match(r.end?.last ?? '', /^250 2\.0\.0 /, 'accepted');
    const files = maildirFiles(cfg.dataDir, 'bob').filter((f) => !before.has(f));
    t.equal(files.length, 1);
    const text = readFileSync(files[0]!, 'latin1');
    t.ok(text.endsWith(`Subject: long line\r\n\r\n${long}\r\nshort\r\n`), 'the long line is intact');
    await c.quit();
  });

  await t.test('NUL bytes in DATA: accepted and stored byte for byte', async (t) => {
    const c = await session(cfg.ports.mx);
    t.teardown(() => c.destroy());
    const before = new Set(maildirFiles(cfg.dataDir, 'bob'));
    const body = Buffer.from('Subject: nul\0inside\r\n\r\nab\0cd\r\n\0\r\n.\r\n', 'latin1');
    const mail = await c.cmd('MAIL FROM:<someone@example.net>');
    const rcpt = await c.cmd(`RCPT TO:<${BOB.address}>`);
    const data = await c.cmd('DATA');
    t.same([mail.code, rcpt.code, data.code], [250, 250, 354]);
    await c.write(body);
    const end = await c.reply(20_000);
    t.match(end.last, /^250 2\.0\.0 /, `accepted (${end.last})`);
    const files = maildirFiles(cfg.dataDir, 'bob').filter((f) => !before.has(f));
    t.equal(files.length, 1);
    const stored = readFileSync(files[0]!);
    const expected = body.subarray(0, body.length - '.\r\n'.length);
    t.ok(stored.subarray(stored.length - expected.length).equals(expected), 'the NUL bytes are stored as sent');
    await c.quit();
  });

  await t.test('bare LF in DATA: kept as is; only CRLF.CRLF ends DATA (no smuggling)', async (t) => {
    const c = await session(cfg.ports.mx);
    t.teardown(() => c.destroy());
    const beforeAlice = new Set(maildirFiles(cfg.dataDir, 'alice'));
    const beforeBob = maildirFiles(cfg.dataDir, 'bob').length;
    const content =
      'Subject: bare lf\n\nline1\nline2\n.\nafter a bare-LF dot line\r\n.\n' +
      'MAIL FROM:<smuggler@example.net>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nsmuggled\n.\r\n' +
      'end of the one message';
    const mail = await c.cmd('MAIL FROM:<someone@example.net>');
    const rcpt = await c.cmd(`RCPT TO:<${ALICE.address}>`);
    const data = await c.cmd('DATA');
    t.same([mail.code, rcpt.code, data.code], [250, 250, 354]);
    await c.write(`${content}\r\n.\r\n`);
    const end = await c.reply(20_000);
    t.match(end.last, /^250 2\.0\.0 /, 'one reply: the whole thing is one message');
    const noop = await c.cmd('NOOP');
    t.match(noop.last, /^250 /, 'the next reply answers NOOP: nothing was read as commands');
    const files = maildirFiles(cfg.dataDir, 'alice').filter((f) => !beforeAlice.has(f));
    t.equal(files.length, 1);
    const text = readFileSync(files[0]!, 'latin1');
    t.ok(text.endsWith(`${content}\r\n`), 'stored verbatim, bare LFs not rewritten');
    t.equal(maildirFiles(cfg.dataDir, 'bob').length, beforeBob, 'nothing smuggled to bob');
    await c.quit();
  });

  await t.test('a client that stalls mid-DATA is closed after idle-timeout; nothing delivered, no spool file left', async (t) => {
    const c = await session(cfg.ports.mx);
    t.teardown(() => c.destroy());
    const beforeBob = maildirFiles(cfg.dataDir, 'bob').length;
    t.equal((await c.cmd('MAIL FROM:<staller@example.net>')).code, 250);
    t.equal((await c.cmd(`RCPT TO:<${BOB.address}>`)).code, 250);
    t.equal((await c.cmd('DATA')).code, 354);
    await c.write('Subject: stall\r\n\r\nhalf a messa');
    await waitFor('a spool file for the message in progress', () => spoolFiles(cfg.dataDir).length > 0, 5_000);
    const started = Date.now();
    const r = await c.replyOrClose(10_000);
    const waited = Date.now() - started;
    if (r) t.match(r.last, /^421 4\.4\.2 /, `told why (${r.last})`);
    t.equal(await within(c.closed.then(() => 'closed'), 10_000, 'still open'), 'closed', 'the connection is closed');
    t.ok(waited >= 1500 && waited < 8000, `closed after about 2 s of silence (${waited} ms)`);
    await waitFor('the spool to be emptied', () => spoolFiles(cfg.dataDir).length === 0, 5_000);
    t.same(spoolFiles(cfg.dataDir), [], 'no spool file left');
    t.equal(maildirFiles(cfg.dataDir, 'bob').length, beforeBob, 'nothing delivered');
    t.same(await queueShow(cfg.path), [], 'nothing queued');
  });

  await t.test('a client that disconnects mid-DATA: nothing delivered, no spool file left', async (t) => {
    const c = await session(cfg.ports.mx);
    const beforeBob = maildirFiles(cfg.dataDir, 'bob').length;
    t.equal((await c.cmd('MAIL FROM:<quitter@example.net>')).code, 250);
    t.equal((await c.cmd(`RCPT TO:<${BOB.address}>`)).code, 250);
    t.equal((await c.cmd('DATA')).code, 354);
    await c.write(`Subject: gone\r\n\r\n${'y'.repeat(200_000)}`);
    await waitFor('a spool file for the message in progress', () => spoolFiles(cfg.dataDir).length > 0, 5_000);
    c.destroy();
    await waitFor('the spool to be emptied', () => spoolFiles(cfg.dataDir).length === 0, 5_000);
    t.pass('spool emptied');
    t.equal(maildirFiles(cfg.dataDir, 'bob').length, beforeBob, 'nothing delivered');
    t.same(await queueShow(cfg.path), [], 'nothing queued');
  });

  await t.test('500 connections from one address at once: every one greeted, the appliance stays up', async (t) => {
    const N = 500;
    const WIDTH = 100;
    const sockets: Socket[] = [];
    t.teardown(() => sockets.forEach((s) => s.destroy()));
    let greeted = 0;
    let failed = 0;
    const openOne = () =>
      new Promise<void>((resolve) => {
        const s = netConnect({ host: '127.0.0.1', port: cfg.ports.mx });
        sockets.push(s);
        let buf = '';
        const timer = setTimeout(() => finish(false), 15_000);
        const finish = (ok: boolean) => {
          clearTimeout(timer);
          if (ok) greeted++;
          else failed++;
          s.removeAllListeners('data');
          resolve();
        };
        s.on('data', (d: Buffer) => {
          buf += d.toString('latin1');
          if (buf.includes('\n')) finish(/^220 /.test(buf));
        });
        s.on('error', () => finish(false));
      });
    // Bounded: WIDTH at a time, N in all; every socket stays open until all N were greeted.
    for (let i = 0; i < N; i += WIDTH) await Promise.all(Array.from({ length: Math.min(WIDTH, N - i) }, openOne));
    t.equal(greeted, N, `${N} concurrent sessions greeted with 220 (loopback is exempt from connections-per-ip)`);
    t.equal(failed, 0);
    t.equal(app.child.exitCode, null, 'the appliance is running');
    await stillServes(t, cfg.ports.mx, cfg.dataDir, `${N} open connections`);
    for (const s of sockets) s.destroy();
    await stillServes(t, cfg.ports.mx, cfg.dataDir, `${N} connections dropped at once`);
  });

  t.notMatch(app.log(), /"level":60/, 'no fatal log line');
  t.equal(await app.stop(), 0, 'and it stops cleanly');
});

t.test('an unwritable Maildir: 250, the other recipient delivered, the failed one queued, delivered once on flush', async (t) => {
  const dir = t.testdir();
  const cfg = await writeConfig(dir);
  // bob's Maildir cannot be created, even by root: its tmp/ is a regular file.
  const bobDir = join(cfg.dataDir, 'mail', 'example.test', 'bob');
  mkdirSync(bobDir, { recursive: true });
  writeFileSync(join(bobDir, 'tmp'), 'not a directory\n');
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const c = await session(cfg.ports.mx);
  t.teardown(() => c.destroy());
  const r = await transaction(c, 'sender@example.net', [ALICE.address, BOB.address], dataBlock({ Subject: 'disk trouble' }, 'one body, two mailboxes'));
  t.same(r.rcpt.map((x) => x.code), [250, 250]);
  t.match(r.end?.last ?? '', /^250 2\.0\.0 /, 'the client gets 250: the failed mailbox is queued, nothing lost');
  await c.quit();
  t.equal(maildirFiles(cfg.dataDir, 'alice').length, 1, 'alice delivered at once');
  t.equal(maildirFiles(cfg.dataDir, 'bob').length, 0, 'bob not');
  const queued = await queueShow(cfg.path);
  t.equal(queued.length, 1, 'one message in the queue');
  t.equal(queued[0]?.sender, 'sender@example.net');
  t.same(
    queued[0]?.recipients.map((x) => [x.address, x.state]),
    [[BOB.address, 'deferred']],
    'only bob, as a deferred local recipient',
  );
  t.match(queued[0]?.recipients[0]?.last_error ?? '', /bob.*tmp|tmp.*(EEXIST|ENOTDIR|not a directory|exists)/i, `last_error says why (${queued[0]?.recipients[0]?.last_error})`);
  t.match(app.log(), /local delivery failed; queued for retry/);

  // Fixed: the file goes, `queue flush` retries local deliveries now.
  rmSync(join(bobDir, 'tmp'));
  const flush = await run(process.execPath, [MAIN, 'queue', 'flush', '-c', cfg.path], { timeout: 20_000 });
  t.match(flush.stdout, /0 still queued/, `flush: ${flush.stdout.trim()}`);
  const bobFiles = maildirFiles(cfg.dataDir, 'bob');
  t.equal(bobFiles.length, 1, 'bob delivered exactly once');
  t.same(await queueShow(cfg.path), [], 'the queue is empty');
  const aliceFiles = maildirFiles(cfg.dataDir, 'alice');
  t.equal(aliceFiles.length, 1, 'alice still has exactly one copy');
  t.ok(readFileSync(bobFiles[0]!).equals(readFileSync(aliceFiles[0]!)), "bob's copy is byte for byte alice's (same Received header)");
  // A second flush does nothing more.
  await run(process.execPath, [MAIN, 'queue', 'flush', '-c', cfg.path], { timeout: 20_000 });
  t.equal(maildirFiles(cfg.dataDir, 'bob').length, 1, 'a second flush delivers nothing again');
  t.equal(await app.stop(), 0);
});

t.test('one copy per mailbox: alice and postmaster (her alias), and an alias list naming both', async (t) => {
  const dir = t.testdir();
  const cfg = await writeConfig(dir);
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const c = await session(cfg.ports.mx);
  t.teardown(() => c.destroy());
  const r = await transaction(c, 'sender@example.net', [ALICE.address, 'postmaster@example.test'], dataBlock({ Subject: 'twice?' }, 'once'));
  t.same(r.rcpt.map((x) => x.code), [250, 250], 'both recipients accepted');
  t.match(r.end?.last ?? '', /^250 2\.0\.0 /);
  t.equal(maildirFiles(cfg.dataDir, 'alice').length, 1, 'one file for alice');
  const r2 = await transaction(c, 'sender@example.net', ['both@example.test', 'Postmaster@Example.Test', 'alice+tag@example.test'], dataBlock({ Subject: 'thrice?' }, 'once'));
  t.same(r2.rcpt.map((x) => x.code), [250, 250, 250]);
  t.match(r2.end?.last ?? '', /^250 2\.0\.0 /);
  t.equal(maildirFiles(cfg.dataDir, 'alice').length, 2, 'one more file for alice, not three');
  await c.quit();
  t.same(await queueShow(cfg.path), [], 'nothing queued');
  t.equal(await app.stop(), 0);
});

/*
 * Drain, as smtp-server does it: after SIGTERM the listening socket is
 * closed at once; a message being transferred is received to its end and
 * answered (its 250 means delivered, as always); any further command of an
 * open session gets "421 4.4.2 Server shutting down" and the connection is
 * closed (a 4xx: the client retries later, nothing is lost); a session
 * that says nothing is closed with 421 at the 10 s close deadline.
 */
t.test('SIGTERM mid-DATA: the message in transfer is accepted, then 421; new connections refused; exit 0', async (t) => {
  const dir = t.testdir();
  const cfg = await writeConfig(dir);
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const exited = new Promise<number | null>((resolve) => app.child.once('exit', (code) => resolve(code)));
  const c = await session(cfg.ports.mx);
  t.teardown(() => c.destroy());
  t.equal((await c.cmd('MAIL FROM:<sender@example.net>')).code, 250);
  t.equal((await c.cmd(`RCPT TO:<${ALICE.address}>`)).code, 250);
  t.equal((await c.cmd('DATA')).code, 354);
  await c.write('Subject: during shutdown\r\n\r\nfirst half, ');
  const started = Date.now();
  app.child.kill('SIGTERM');
  await waitFor('"stopping" in the log', () => app.log().includes('"msg":"stopping"'), 5_000);
  const refused = await new Promise<string>((resolve) => {
    const s = netConnect({ host: '127.0.0.1', port: cfg.ports.mx });
    const timer = setTimeout(() => {
      resolve('no answer');
      s.destroy();
    }, 5_000);
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(err.code ?? err.message);
    });
    s.once('data', (d: Buffer) => {
      clearTimeout(timer);
      resolve(d.toString('latin1').trim());
      s.destroy();
    });
  });
  t.ok(refused === 'ECONNREFUSED' || /^421 /.test(refused), `a new connection after SIGTERM is refused (${refused})`);
  await c.write('second half\r\n.\r\n');
  const end = await c.reply(10_000);
  t.match(end.last, /^250 2\.0\.0 /, `the message in transfer is accepted (${end.last})`);
  t.equal(maildirFiles(cfg.dataDir, 'alice').length, 1, 'and delivered');
  t.ok(readFileSync(maildirFiles(cfg.dataDir, 'alice')[0]!, 'latin1').endsWith('first half, second half\r\n'), 'whole');
  const next = await c.replyOrClose(100).catch(() => null);
  t.equal(next, null, 'no unsolicited reply');
  const mail = await c.cmd('MAIL FROM:<sender@example.net>').catch(() => null);
  t.match(mail?.last ?? '', /^421 4\.[34]\.2 /, `a new transaction is refused with 421 (${mail?.last})`);
  t.equal(await within(c.closed.then(() => 'closed'), 5_000, 'still open'), 'closed', 'and the connection closed');
  const code = await within(exited, 15_000, 'timeout');
  t.equal(code, 0, 'exit 0');
  t.ok(Date.now() - started < 10_000, `before the close deadline, as the last session is gone (${Date.now() - started} ms)`);
});

t.test('SIGTERM with an idle session that never quits: closed with 421 at the deadline, exit 0', async (t) => {
  const dir = t.testdir();
  const cfg = await writeConfig(dir);
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const exited = new Promise<number | null>((resolve) => app.child.once('exit', (code) => resolve(code)));
  const c = await session(cfg.ports.submission);
  t.teardown(() => c.destroy());
  const started = Date.now();
  app.child.kill('SIGTERM');
  const last = await c.replyOrClose(15_000);
  t.ok(last === null || /^421 /.test(last.last), `the idle session is told 421 or closed (${last?.last ?? 'closed'})`);
  const code = await within(exited, 15_000, 'timeout');
  const ms = Date.now() - started;
  t.equal(code, 0, 'exit 0');
  t.ok(ms < 13_000, `exited within the 10 s close deadline plus margin (${ms} ms)`);
});
