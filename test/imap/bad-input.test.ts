/**
 * The bad-input list of the IMAP issue, each against the real appliance:
 * the client gets BAD/NO (or BYE and a closed connection), the process
 * never crashes, and nothing is created where it should not be.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startAppliance } from '../helpers/appliance.ts';
import { RawImap, writeImapConfig } from '../helpers/imap.ts';

// Real servers and clients: generous under a loaded CI machine (the default is 30 s).
t.setTimeout(120_000);

t.test('bad input', async (t) => {
  const dir = t.testdir();
  // A short idle timeout so the silent-client case ends within the test.
  const cfg = await writeImapConfig(dir, { extra: 'imap limit idle-timeout 5s\nimap limit connections-per-user-ip 10' });
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const port = cfg.imap.plain;

  async function session(): Promise<RawImap> {
    const c = await RawImap.connect(port);
    await c.expect(/^\* OK [^\r]*\r\n/);
    t.match(await c.cmd('l', 'LOGIN alice@example.test alice-secret'), /l OK/);
    return c;
  }

  t.test('commands in the wrong state', async (t) => {
    const c = await RawImap.connect(port);
    t.teardown(() => c.close());
    await c.expect(/\r\n/);
    t.match(await c.cmd('a1', 'SELECT INBOX'), /a1 BAD/);
    t.match(await c.cmd('a2', 'FETCH 1:* FLAGS'), /a2 BAD/);
    t.match(await c.cmd('a3', 'APPEND INBOX {3+}\r\nabc'), /a3 BAD/);
    t.match(await c.cmd('a4', 'LOGIN alice@example.test alice-secret'), /a4 OK/);
    t.match(await c.cmd('a5', 'EXPUNGE'), /a5 BAD/);
    t.match(await c.cmd('a6', 'STARTTLS'), /a6 BAD/);
    t.match(await c.cmd('a7', 'LOGIN alice@example.test alice-secret'), /a7 BAD/);
  });

  t.test('{4294967295} literal and a literal over APPENDLIMIT', async (t) => {
    const c = await session();
    t.teardown(() => c.close());
    const caps = await c.cmd('c', 'CAPABILITY');
    const limit = Number(/APPENDLIMIT=(\d+)/.exec(caps)?.[1]);
    t.equal(limit, 1024 * 1024, 'APPENDLIMIT is the configured size');
    t.match(await c.cmd('a1', 'APPEND INBOX {4294967295}'), /a1 NO \[TOOBIG\]/);
    t.match(await c.cmd('a2', `APPEND INBOX {${limit + 1}}`), /a2 NO \[TOOBIG\]/);
    t.match(await c.cmd('a3', 'NOOP'), /a3 OK/, 'the session goes on');
    c.write(`a4 APPEND INBOX {${limit + 1}+}\r\n`);
    t.match(await c.expect(/\* BYE [^\r]*\r\n/), /BYE/, 'a non-synchronising literal over the limit ends the session');
    t.ok(await c.closedWithin(5000));
  });

  t.test('100,000-deep parentheses and a 1 MB sequence set', async (t) => {
    const c = await session();
    t.teardown(() => c.close());
    t.match(await c.cmd('s', 'SELECT INBOX'), /s OK/);
    t.match(await c.cmd('a1', `SEARCH ${'('.repeat(100_000)}ALL${')'.repeat(100_000)}`), /a1 BAD/);
    t.match(await c.cmd('a2', `FETCH ${'1:*,'.repeat(262_144)}1 FLAGS`), /a2 BAD Command line too long/);
    t.match(await c.cmd('a3', `UID SEARCH UID ${'1:*,'.repeat(262_144)}1`), /a3 BAD Command line too long/);
    t.match(await c.cmd('a4', 'NOOP'), /a4 OK/);
  });

  t.test('mailbox names: ../../etc, /, .., NUL, invalid modified UTF-7; DELETE INBOX', async (t) => {
    const c = await session();
    t.teardown(() => c.close());
    t.match(await c.cmd('a1', 'SELECT ../../etc'), /a1 NO \[CANNOT\]/);
    t.match(await c.cmd('a2', 'CREATE ../../etc'), /a2 NO \[CANNOT\]/);
    t.match(await c.cmd('a3', 'CREATE "/abs"'), /a3 NO \[CANNOT\]/);
    t.match(await c.cmd('a4', 'CREATE "a/../../b"'), /a4 NO \[CANNOT\]/);
    t.match(await c.cmd('a5', 'CREATE {3+}\r\na\0b'), /a5 (BAD|NO)/);
    t.match(await c.cmd('a6', 'CREATE "&Jjo"'), /a6 BAD/);
    t.match(await c.cmd('a7', 'RENAME INBOX ../x'), /a7 NO \[CANNOT\]/);
    t.match(await c.cmd('a8', 'DELETE INBOX'), /a8 NO/);
    t.match(await c.cmd('a9', 'APPEND ../../etc {3+}\r\nabc'), /a9 NO \[CANNOT\]/);
    t.match(await c.cmd('b1', 'CREATE "a/b"'), /b1 OK/, 'a real hierarchy is fine');
    t.match(await c.cmd('b2', 'LIST "" "a/*"'), /"a\/b"/);
    const maildir = join(cfg.dataDir, 'mail', 'example.test', 'alice');
    t.notOk(existsSync(join(cfg.dataDir, 'etc')) || existsSync(join(cfg.dataDir, 'mail', 'etc')), 'nothing outside the Maildir');
    t.same(readdirSync(maildir).filter((f) => f.startsWith('.') && /\.\.|\0|\//.test(f.slice(1))), [], 'no odd folder in the Maildir');
    t.ok(existsSync(join(maildir, 'cur')), 'INBOX still there');
  });

  t.test('garbage before a tag', async (t) => {
    const c = await RawImap.connect(port);
    t.teardown(() => c.close());
    await c.expect(/\r\n/);
    c.write(Buffer.from([0, 0xff, 0xfe, 0x0d, 0x0a]));
    t.match(await c.expect(/\r\n/), /^\* BAD/);
    for (let i = 0; i < 10; i++) c.write('\u0001\r\n');
    t.match(await c.expect(/\* BYE[^\r]*\r\n/), /BYE/, 'repeated garbage closes the connection');
  });

  t.test('50 parallel connections for one user from one IP', async (t) => {
    const clients = await Promise.all(Array.from({ length: 50 }, () => RawImap.connect(port)));
    t.teardown(() => clients.forEach((c) => c.close()));
    await Promise.all(clients.map((c) => c.expect(/\r\n/)));
    const results = await Promise.all(clients.map((c, i) => c.cmd(`p${i}`, 'LOGIN alice@example.test alice-secret', 30_000)));
    const ok = results.filter((r) => / OK /.test(r)).length;
    const limited = results.filter((r) => /NO \[LIMIT\]/.test(r)).length;
    t.ok(ok <= 10 && ok >= 1, `at most 10 logged in (${ok})`);
    t.equal(ok + limited, 50, 'the others are refused with NO [LIMIT]');
  });

  t.test('half a literal, then silence: closed at the idle timeout', async (t) => {
    const c = await session();
    t.teardown(() => c.close());
    c.write('a1 APPEND INBOX {1000}\r\n');
    await c.expect(/^\+ [^\r]*\r\n/);
    c.write('x'.repeat(400));
    t.ok(await c.closedWithin(30_000), 'the server closed the connection');
    const d = await session();
    t.match(await d.cmd('n', 'NOOP'), /n OK/, 'others are served');
    d.close();
  });

  t.test('a 27th keyword: NO [LIMIT], nothing changed', async (t) => {
    const c = await session();
    t.teardown(() => c.close());
    t.match(await c.cmd('c', 'CREATE Keywords'), /c OK/);
    t.match(await c.cmd('a', 'APPEND Keywords {21+}\r\nSubject: kw\r\n\r\nbody\r\n'), /a OK/);
    t.match(await c.cmd('s', 'SELECT Keywords'), /s OK/);
    const kws = Array.from({ length: 26 }, (_, i) => `k${i}`).join(' ');
    t.match(await c.cmd('f1', `STORE 1 +FLAGS.SILENT (${kws})`), /f1 OK/, '26 keywords fit');
    t.match(await c.cmd('f2', 'STORE 1 +FLAGS (\\Seen k26)'), /f2 NO \[LIMIT\]/, 'the 27th is refused');
    const flags = await c.cmd('f3', 'FETCH 1 FLAGS');
    t.notMatch(flags, /\\Seen|k26/, 'not even \\Seen was set: the STORE changed nothing');
    t.match(flags, /k25/);
  });

  t.test('the process survived all of it', async (t) => {
    t.equal(app.child.exitCode, null, 'still running');
    t.equal(await app.stop(), 0, 'and stops cleanly');
  });
});
