/** Response encoding, ENVELOPE address parsing and BODYSTRUCTURE formatting (RFC 3501 §7.4.2), modified UTF-7, sequence sets. */
import t from 'tap';
import { encodeString, formatInternalDate, piecesText } from '../../imap/protocol/encode.ts';
import { formatSequence, parseSequenceSet, selectIndexes } from '../../imap/protocol/sequence.ts';
import { Cursor } from '../../imap/protocol/cursor.ts';
import { formatBodyStructure, formatEnvelope, parseAddressList, resolvePart } from '../../imap/protocol/structure.ts';
import { decodeMailboxName, encodeMailboxName } from '../../imap/protocol/utf7.ts';
import type { MimePart } from '../../store/mailbox/types.ts';

t.test('strings: quoted when possible, literal otherwise', async (t) => {
  t.equal(piecesText(encodeString('hello world')), '"hello world"');
  t.equal(piecesText(encodeString('say "hi" \\o/')), '"say \\"hi\\" \\\\o/"');
  t.equal(piecesText(encodeString('caf\u00e9')), '{5}\r\ncafé'.replace('é', '\u00c3\u00a9'), 'UTF-8 as a literal');
  t.equal(piecesText(encodeString('a\r\nb')), '{4}\r\na\r\nb');
  t.equal(piecesText(encodeString(Buffer.from([0x61, 0x00]))), '{2}\r\na\0');
  t.equal(piecesText(encodeString('')), '""');
  t.equal(piecesText(encodeString('x'.repeat(2000))).slice(0, 8), '{2000}\r\n', 'long strings as literals');
  t.equal(formatInternalDate(new Date('1996-07-17T09:44:25Z')), '"17-Jul-1996 09:44:25 +0000"');
});

t.test('modified UTF-7 (RFC 3501 §5.1.3)', async (t) => {
  const cases: [string, string][] = [
    ['~peter/mail/台北/日本語', '~peter/mail/&U,BTFw-/&ZeVnLIqe-'],
    ['Entwürfe', 'Entw&APw-rfe'],
    ['A&B', 'A&-B'],
    ['😀', '&2D3eAA-'],
    ['plain', 'plain'],
  ];
  for (const [utf8, utf7] of cases) {
    t.equal(encodeMailboxName(utf8), utf7);
    t.equal(decodeMailboxName(Buffer.from(utf7)), utf8);
  }
  for (const bad of ['&', '&U,BTFw', '&AGE-', '&U,BTFw-&ZeVnLIqe-', 'a\u0001', '&2D3e-']) t.equal(decodeMailboxName(Buffer.from(bad, 'latin1')), null, JSON.stringify(bad));
});

t.test('sequence sets', async (t) => {
  const set = (s: string) => parseSequenceSet(new Cursor(Buffer.from(s)));
  const uids = [2, 4, 5, 9, 10];
  t.same(selectIndexes(set('1:*'), uids, 10), [0, 1, 2, 3, 4]);
  t.same(selectIndexes(set('4:5,10'), uids, 10), [1, 2, 4]);
  t.same(selectIndexes(set('*'), uids, 10), [4]);
  t.same(selectIndexes(set('11:*'), uids, 10), [4], 'RFC 3501: n:* with n above the largest is the largest');
  t.same(selectIndexes(set(Array(10_000).fill('1:*').join(',')), uids, 10), [0, 1, 2, 3, 4], 'repeated ranges merge');
  t.equal(formatSequence([1, 2, 3, 5, 7, 8]), '1:3,5,7:8');
});

t.test('address lists', async (t) => {
  t.same(parseAddressList('Terry Gray <gray@cac.washington.edu>'), [{ name: 'Terry Gray', mailbox: 'gray', host: 'cac.washington.edu' }]);
  t.same(parseAddressList('"Gray, Terry" <gray@cac.washington.edu>, imap@cac.washington.edu'), [
    { name: 'Gray, Terry', mailbox: 'gray', host: 'cac.washington.edu' },
    { name: null, mailbox: 'imap', host: 'cac.washington.edu' },
  ]);
  t.same(parseAddressList('minutes@CNRI.Reston.VA.US (Minutes)'), [{ name: 'Minutes', mailbox: 'minutes', host: 'CNRI.Reston.VA.US' }]);
  t.same(parseAddressList('A Group:Ed Jones <c@a.test>,joe@where.test;, me@here'), [
    { name: null, mailbox: 'A Group', host: null },
    { name: 'Ed Jones', mailbox: 'c', host: 'a.test' },
    { name: null, mailbox: 'joe', host: 'where.test' },
    { name: null, mailbox: null, host: null },
    { name: null, mailbox: 'me', host: 'here' },
  ]);
  t.same(parseAddressList('=?utf-8?q?Zo=C3=AB?= <zoe@x.test>'), [{ name: '=?utf-8?q?Zo=C3=AB?=', mailbox: 'zoe', host: 'x.test' }], 'encoded words stay raw');
  t.same(parseAddressList('<@route.test:user@x.test>'), [{ name: null, mailbox: 'user', host: 'x.test' }]);
  t.same(parseAddressList(''), []);
  // The fast path (no quotes, comments or groups) agrees with the full tokenizer (an empty comment forces it).
  for (const raw of ['a@b.test', 'Alice  Smith <alice@x.test>, bob@y.test', '  <c@d.test> ,e@f', 'Zoë <z@x.test>', 'x', 'A.B. Cee <a.b@c.test>', '=?utf-8?q?Zo=C3=AB?= <zoe@x.test>, , ', '"Sender 5" <s5@x.test>, "Bob B." <b@y.test>', '"a" <"odd"@x.test>']) {
    t.same(parseAddressList(raw), parseAddressList(`${raw} ()`), `fast path: ${raw}`);
  }
});

t.test('ENVELOPE of the RFC 3501 §7.4.2 example', async (t) => {
  const env = piecesText(
    formatEnvelope({
      date: 'Wed, 17 Jul 1996 02:23:25 -0700 (PDT)',
      subject: 'IMAP4rev1 WG mtg summary and minutes',
      from: 'Terry Gray <gray@cac.washington.edu>',
      to: 'imap@cac.washington.edu',
      cc: 'minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>',
      messageId: '<B27397-0100000@cac.washington.edu>',
    }),
  );
  t.equal(
    env,
    '("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) ((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL "<B27397-0100000@cac.washington.edu>")',
  );
});

function leaf(type: string, subtype: string, extra: Partial<MimePart> = {}): MimePart {
  return { headerStart: 0, bodyStart: 0, bodyEnd: 3028, type, subtype, params: {}, encoding: '7bit', size: 3028, lines: 92, ...extra };
}

t.test('BODYSTRUCTURE and BODY', async (t) => {
  const text = leaf('text', 'plain', { params: { charset: 'US-ASCII' } });
  t.equal(piecesText(formatBodyStructure(text, false)), '("text" "plain" ("charset" "US-ASCII") NIL NIL "7bit" 3028 92)', 'the RFC 3501 §7.4.2 example');
  t.equal(piecesText(formatBodyStructure(text, true)), '("text" "plain" ("charset" "US-ASCII") NIL NIL "7bit" 3028 92 NIL NIL NIL NIL)');
  const att = leaf('application', 'pdf', { encoding: 'base64', disposition: { type: 'attachment', params: { filename: 'Grüße.pdf' } }, language: ['de'], md5: 'abc' });
  const mixed: MimePart = { ...leaf('multipart', 'mixed', { params: { boundary: 'b' } }), children: [text, att] };
  t.equal(
    piecesText(formatBodyStructure(mixed, true)),
    '(("text" "plain" ("charset" "US-ASCII") NIL NIL "7bit" 3028 92 NIL NIL NIL NIL)("application" "pdf" NIL NIL NIL "base64" 3028 "abc" ("attachment" ("filename" {11}\r\nGrüße.pdf)) ("de") NIL) "mixed" ("boundary" "b") NIL NIL NIL)'.replace('Grüße', Buffer.from('Grüße').toString('latin1')),
  );
  const inner = { envelope: { subject: 'inner' }, root: text };
  const rfc822 = leaf('message', 'rfc822', { message: inner, lines: 10 });
  t.match(piecesText(formatBodyStructure(rfc822, false)), /^\("message" "rfc822" NIL NIL NIL "7bit" 3028 \(NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL\) \("text" "plain" .*\) 10\)$/);
  const empty: MimePart = { ...leaf('multipart', 'mixed'), children: [] };
  t.match(piecesText(formatBodyStructure(empty, false)), /^\(\("text" "plain"/, 'a multipart without parts still has one');
  // part numbers (RFC 3501 §6.4.5)
  const summary = { envelope: {}, root: { ...mixed, children: [text, rfc822, att] } };
  t.equal(resolvePart(summary, [1]), text);
  t.equal(resolvePart(summary, [2]), rfc822);
  t.equal(resolvePart(summary, [2, 1]), text, 'inside message/rfc822');
  t.equal(resolvePart(summary, [4]), null);
  t.equal(resolvePart({ envelope: {}, root: text }, [1]), text, 'part 1 of a single-part message is its body');
  t.equal(resolvePart({ envelope: {}, root: text }, [2]), null);
});
