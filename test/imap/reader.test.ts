/** Framing: lines, literals with and without continuation, limits, split at every byte. */
import t from 'tap';
import { CommandReader, type ReaderEvent } from '../../imap/protocol/reader.ts';

const limits = { maxLine: 100, maxLiteral: 50, maxCommand: 200 };

function run(chunks: (string | Buffer)[], l = limits): ReaderEvent[] {
  const events: ReaderEvent[] = [];
  const r = new CommandReader(l, (e) => events.push(e));
  for (const c of chunks) r.push(typeof c === 'string' ? Buffer.from(c, 'latin1') : c);
  return events;
}

function show(events: ReaderEvent[]): string[] {
  return events.map((e) => (e.kind === 'command' ? `cmd:${e.bytes.toString('latin1')}` : e.kind === 'refused' ? `refused:${e.tag}:${e.reason}:${e.command}` : e.kind));
}

t.test('lines and pipelining', async (t) => {
  t.same(show(run(['a NOOP\r\nb CAPABILITY\r\n', 'c LOGOUT\r\n'])), ['cmd:a NOOP', 'cmd:b CAPABILITY', 'cmd:c LOGOUT']);
  t.same(show(run(['a NOOP\n'])), ['cmd:a NOOP'], 'bare LF tolerated');
  t.same(show(run(['\r\n', 'a NOOP\r\n'])), ['cmd:a NOOP'], 'empty line ignored');
});

t.test('synchronising and non-synchronising literals', async (t) => {
  t.same(show(run(['a LOGIN {5}\r\n', 'alice {6+}\r\nsecret\r\n'])), ['continue', 'cmd:a LOGIN {5}\r\nalice {6+}\r\nsecret']);
  t.same(show(run(['a APPEND x {3}\r\n', 'a\r\n', '\r\n'])), ['continue', 'cmd:a APPEND x {3}\r\na\r\n'], 'literal may hold CRLF');
  t.same(show(run(['a LOGIN {0}\r\n {0}\r\n\r\n'])), ['continue', 'continue', 'cmd:a LOGIN {0}\r\n {0}\r\n']);
});

t.test('every split point gives the same result', async (t) => {
  const whole = Buffer.from('x1 LOGIN {5}\r\nalice "pw"\r\nx2 APPEND INBOX {10+}\r\n0123456789\r\nx3 NOOP\r\n');
  const expected = show(run([whole]));
  for (let i = 1; i < whole.length; i++) {
    t.same(show(run([whole.subarray(0, i), whole.subarray(i)])), expected, `split at ${i}`);
  }
  t.same(show(run([...whole].map((b) => Buffer.from([b])))), expected, 'byte by byte');
});

t.test('line too long: refused with its tag, then reading goes on', async (t) => {
  const long = `a7 SEARCH ${'1:*,'.repeat(100)}1\r\n`;
  t.same(show(run([long, 'b NOOP\r\n'])), ['refused:a7:line-too-long:SEARCH', 'cmd:b NOOP']);
  // in pieces, without ever holding the whole line
  const pieces = [`a8 FETCH `, ...Array.from({ length: 1000 }, () => '1,'.repeat(50)), '1 FLAGS\r\n', 'c NOOP\r\n'];
  t.same(show(run(pieces)), ['refused:a8:line-too-long:FETCH', 'cmd:c NOOP']);
});

t.test('literal over the limit', async (t) => {
  t.same(show(run(['a APPEND INBOX {4294967295}\r\n', 'b NOOP\r\n'])), ['refused:a:literal-too-big:APPEND', 'cmd:b NOOP'], 'sync: refused before any byte');
  t.same(show(run(['a APPEND INBOX {51}\r\n'])), ['refused:a:literal-too-big:APPEND']);
  t.same(show(run(['a APPEND INBOX {99999999999999999999}\r\n'])), ['refused:a:literal-too-big:APPEND'], '20 digits');
  t.same(show(run(['a APPEND INBOX {51+}\r\n', 'x'.repeat(51)])), ['fatal'], 'non-sync: connection ends');
  t.same(show(run(['a X {40}\r\n', 'y'.repeat(40), ' {40}\r\n', 'y'.repeat(40), ' {40}\r\n', 'y'.repeat(40), ' {40}\r\n', 'y'.repeat(40), ' {40}\r\n'])), ['continue', 'continue', 'continue', 'continue', 'refused:a:command-too-big:X'], 'whole command bounded');
});

t.test('garbage without a tag', async (t) => {
  const e = run([Buffer.from([0, 1, 2, 0xff, 0x0d, 0x0a])]);
  t.equal(e.length, 1);
  t.equal(e[0]!.kind, 'command', 'handed on; the parser answers BAD');
});
