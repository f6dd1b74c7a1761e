/** `senders … masquerade`: the From: header becomes the allowed envelope sender, display name kept. */
import { Readable } from 'node:stream';
import t from 'tap';
import { FromRewriter, MAX_HEADER_BYTES, rewriteFrom } from '../../smtp/masquerade.ts';

async function through(input: Buffer[], sender: string): Promise<string> {
  const out: Buffer[] = [];
  for await (const c of Readable.from(input).pipe(new FromRewriter(sender))) out.push(c as Buffer);
  return Buffer.concat(out).toString('latin1');
}

t.test('rewriteFrom', async (t) => {
  const cases: [string, string][] = [
    ['From: Alice <other@example.org>\r\nTo: x\r\n', 'From: Alice <alice@example.test>\r\nTo: x\r\n'],
    ['From: "A, B" <other@example.org>\r\n', 'From: "A, B" <alice@example.test>\r\n'],
    ['From: other@example.org\r\n', 'From: <alice@example.test>\r\n'],
    ['Subject: s\r\nFROM:\r\n =?utf-8?q?Al=C3=AFce?=\r\n <other@example.org>\r\n', 'Subject: s\r\nFrom: =?utf-8?q?Al=C3=AFce?= <alice@example.test>\r\n'],
    ['Subject: no from\r\n', 'From: <alice@example.test>\r\nSubject: no from\r\n'],
    ['From: a@b\nTo: c\n', 'From: <alice@example.test>\nTo: c\n'],
  ];
  for (const [input, want] of cases) t.equal(rewriteFrom(Buffer.from(input, 'latin1'), 'alice@example.test').toString('latin1'), want, JSON.stringify(input));
});

t.test('streaming: headers split across chunks, body untouched', async (t) => {
  const body = 'From: in the body stays\r\n'.repeat(3);
  const out = await through([Buffer.from('Subject: hi\r\nFr'), Buffer.from('om: Mallory <m@evil.example>\r\n'), Buffer.from('\r\n'), Buffer.from(body)], 'alice@example.test');
  t.equal(out, `Subject: hi\r\nFrom: Mallory <alice@example.test>\r\n\r\n${body}`);
});

t.test('a header block over the bound passes through unchanged', async (t) => {
  const big = `X-Big: ${'a'.repeat(MAX_HEADER_BYTES + 10)}\r\nFrom: m@evil.example\r\n\r\nbody`;
  const out = await through([Buffer.from(big)], 'alice@example.test');
  t.equal(out, big);
});
