/** The control protocol's line framing: lines across chunks, long answers, the bound. */
import t from 'tap';
import { LineSplitter, MAX_ANSWER_BYTES, MAX_LINE_BYTES } from '../../cli/control/protocol.ts';

t.test('lines split across chunks, several per chunk, blank lines skipped', async (t) => {
  const lines: string[] = [];
  const s = new LineSplitter((l) => lines.push(l));
  for (const chunk of ['{"a":', '1}\n{"b":2}\n\n{"c"', ':3}\n', '{"d":4']) s.push(chunk);
  t.same(lines, ['{"a":1}', '{"b":2}', '{"c":3}']);
});

t.test('a request line over the bound is refused; an answer may be long', async (t) => {
  const req = new LineSplitter(() => undefined);
  t.throws(() => req.push('x'.repeat(MAX_LINE_BYTES + 1)), /control line too long/);
  const got: number[] = [];
  const ans = new LineSplitter((l) => got.push(l.length), MAX_ANSWER_BYTES);
  const piece = 'y'.repeat(64 * 1024);
  for (let i = 0; i < 160; i++) ans.push(piece); // 10 MiB in 64 KiB chunks
  ans.push('\n');
  t.same(got, [160 * piece.length], 'one 10 MiB line');
});
