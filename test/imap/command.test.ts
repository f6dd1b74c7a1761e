/** The command parser, table-driven from the examples of RFC 3501 §6 / RFC 9051 §6 and the extension RFCs. */
import t from 'tap';
import { parseCommand, parseDateTime, type Command } from '../../imap/protocol/command.ts';

function parse(s: string) {
  return parseCommand(Buffer.from(s, 'latin1'));
}

const good: [string, Partial<Record<string, unknown>> & { name: Command['name'] }][] = [
  ['a001 CAPABILITY', { name: 'CAPABILITY' }],
  ['a002 NOOP', { name: 'NOOP' }],
  ['A023 LOGOUT', { name: 'LOGOUT' }],
  ['a001 login SMITH SESAME', { name: 'LOGIN', username: 'SMITH', password: 'SESAME' }],
  ['a001 LOGIN "fred@example.org" "pass \\"word\\""', { name: 'LOGIN', username: 'fred@example.org', password: 'pass "word"' }],
  ['a001 LOGIN {4}\r\nfred {3+}\r\nabc', { name: 'LOGIN', username: 'fred', password: 'abc' }],
  ['A001 AUTHENTICATE PLAIN', { name: 'AUTHENTICATE', mechanism: 'PLAIN' }],
  ['A001 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==', { name: 'AUTHENTICATE', mechanism: 'PLAIN', initial: 'AGFsaWNlAHNlY3JldA==' }],
  ['A142 SELECT INBOX', { name: 'SELECT', mailbox: 'INBOX' }],
  ['A142 SELECT inbox', { name: 'SELECT', mailbox: 'INBOX' }],
  ['A932 EXAMINE blurdybloop', { name: 'EXAMINE', mailbox: 'blurdybloop' }],
  ['A003 CREATE owatagusiam/', { name: 'CREATE', mailbox: 'owatagusiam/' }],
  ['t1 CREATE "Important Messages" (USE (\\Important))', { name: 'CREATE', mailbox: 'Important Messages', specialUse: '\\Important' }],
  ['A683 DELETE blurdybloop', { name: 'DELETE', mailbox: 'blurdybloop' }],
  ['A683 RENAME blurdybloop sarasoop', { name: 'RENAME', from: 'blurdybloop', to: 'sarasoop' }],
  ['A002 SUBSCRIBE #news.comp.mail.mime', { name: 'SUBSCRIBE', mailbox: '#news.comp.mail.mime' }],
  ['A042 STATUS blurdybloop (UIDNEXT MESSAGES)', { name: 'STATUS', mailbox: 'blurdybloop', items: ['UIDNEXT', 'MESSAGES'] }],
  ['a SELECT "&ZeVnLIqe-"', { name: 'SELECT', mailbox: '日本語' }],
  ['a SELECT "Entw&APw-rfe"', { name: 'SELECT', mailbox: 'Entwürfe' }],
  ['a SELECT "A&-B"', { name: 'SELECT', mailbox: 'A&B' }],
  ['A202 EXPUNGE', { name: 'EXPUNGE' }],
  ['A341 CLOSE', { name: 'CLOSE' }],
  ['a IDLE', { name: 'IDLE' }],
  ['A654 FETCH 2:4 (FLAGS BODY[HEADER.FIELDS (DATE FROM)])', { name: 'FETCH', uid: false }],
  ['A999 UID FETCH 4827313:4828442 FLAGS', { name: 'FETCH', uid: true }],
  ['A003 STORE 2:4 +FLAGS (\\Deleted)', { name: 'STORE', op: 'add', silent: false, flags: ['\\Deleted'] }],
  ['A003 STORE 1 -FLAGS.SILENT \\Seen $Junk', { name: 'STORE', op: 'remove', silent: true, flags: ['\\Seen', '$Junk'] }],
  ['A003 UID STORE 1:* FLAGS ()', { name: 'STORE', uid: true, op: 'replace', flags: [] }],
  ['A003 COPY 2:4 MEETING', { name: 'COPY', mailbox: 'MEETING', uid: false }],
  ['a UID MOVE 42:69 foo', { name: 'MOVE', mailbox: 'foo', uid: true }],
  ['a UID EXPUNGE 3000:3002', { name: 'UID EXPUNGE' }],
  ['A282 SEARCH FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"', { name: 'SEARCH', uid: false }],
  ['A284 SEARCH CHARSET UTF-8 TEXT {6+}\r\nXXXXXX', { name: 'SEARCH', charset: 'UTF-8' }],
  ['a ID ("name" "sodr" "version" "19.34")', { name: 'ID', params: [['name', 'sodr'], ['version', '19.34']] }],
  ['a ID NIL', { name: 'ID', params: null }],
  ['a ENABLE CONDSTORE X-GOOD-IDEA', { name: 'ENABLE', capabilities: ['CONDSTORE', 'X-GOOD-IDEA'] }],
  ['A82 LIST "" *', { name: 'LIST', reference: '', patterns: ['*'] }],
  ['A83 LIST "" ""', { name: 'LIST', patterns: [''] }],
  ['A002 LSUB "#news." "comp.mail.*"', { name: 'LSUB', reference: '#news.', pattern: 'comp.mail.*' }],
  ['A02 LIST (SUBSCRIBED) "" "*"', { name: 'LIST' }],
  ['A03 LIST () "" "%" RETURN (CHILDREN)', { name: 'LIST' }],
  ['A04 LIST "" % RETURN (STATUS (MESSAGES UNSEEN))', { name: 'LIST' }],
  ['t1 LIST "" "*" RETURN (SPECIAL-USE)', { name: 'LIST' }],
  ['A05 LIST "" ("INBOX" "Drafts" "Sent/%")', { name: 'LIST', patterns: ['INBOX', 'Drafts', 'Sent/%'] }],
  ['a NAMESPACE', { name: 'NAMESPACE' }],
  ['a UNSELECT', { name: 'UNSELECT' }],
  ['a STARTTLS', { name: 'STARTTLS' }],
];

for (const [input, expected] of good) {
  t.test(input.replace(/\r\n/g, '⏎'), async (t) => {
    const r = parse(input);
    t.ok(r.ok, r.ok ? 'parsed' : r.message);
    if (r.ok) t.match(r.command, expected);
  });
}

t.test('APPEND with flags, date and literal (RFC 3501 §6.3.11)', async (t) => {
  const msg = 'Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nSubject: afternoon meeting\r\n\r\nHello Joe\r\n';
  const r = parse(`A003 APPEND saved-messages (\\Seen $Forwarded) " 7-Feb-1994 21:52:25 -0800" {${msg.length}}\r\n${msg}`);
  t.ok(r.ok);
  if (!r.ok || r.command.name !== 'APPEND') return;
  t.same(r.command.flags, ['\\Seen', '$Forwarded']);
  t.equal(r.command.date?.toISOString(), '1994-02-08T05:52:25.000Z');
  t.equal(r.command.content.toString(), msg);
});

t.test('fetch items, sections and partials', async (t) => {
  const r = parse('a FETCH 1:* (UID BODY.PEEK[1.2.MIME] BODY[]<0.2048> BODY[HEADER.FIELDS.NOT (Received)] BINARY.PEEK[1]<10.20> BINARY.SIZE[2] RFC822.SIZE)');
  t.ok(r.ok, r.ok ? '' : r.message);
  if (!r.ok || r.command.name !== 'FETCH') return;
  t.same(r.command.items, [
    { kind: 'UID' },
    { kind: 'BODY[]', peek: true, section: { part: [1, 2], text: 'MIME' } },
    { kind: 'BODY[]', peek: false, section: { part: [] }, partial: { offset: 0, length: 2048 } },
    { kind: 'BODY[]', peek: false, section: { part: [], text: 'HEADER.FIELDS.NOT', fields: ['Received'] } },
    { kind: 'BINARY[]', peek: true, part: [1], partial: { offset: 10, length: 20 } },
    { kind: 'BINARY.SIZE', part: [2] },
    { kind: 'RFC822.SIZE' },
  ]);
  const all = parse('a FETCH 1 ALL');
  t.ok(all.ok && all.command.name === 'FETCH' && all.command.items.length === 4);
  const full = parse('a fetch 1 full');
  t.ok(full.ok && full.command.name === 'FETCH' && full.command.items.some((i) => i.kind === 'BODY'));
  const sec = parse('a FETCH 1 BODY[1.TEXT]');
  t.ok(sec.ok && sec.command.name === 'FETCH' && sec.command.items[0]!.kind === 'BODY[]');
});

t.test('search keys', async (t) => {
  const r = parse('a SEARCH OR (FROM a TO b) NOT (SEEN) 1:3,5 UID 7:* LARGER 100 SENTON "3-Mar-2020" KEYWORD $Junk HEADER X-Foo ""');
  t.ok(r.ok, r.ok ? '' : r.message);
  if (!r.ok || r.command.name !== 'SEARCH') return;
  t.match(r.command.key, { k: 'and', keys: [{ k: 'or', a: { k: 'and' }, b: { k: 'not', key: { k: 'flag', flag: '\\Seen', present: true } } }, { k: 'seq' }, { k: 'uid' }, { k: 'size', op: 'larger', n: 100 }, { k: 'date', which: 'sent', op: 'on' }, { k: 'flag', flag: '$Junk' }, { k: 'header', field: 'x-foo', value: '' }] });
});

const bad: [string, RegExp][] = [
  ['', /invalid tag/],
  ['a', /space/],
  ['+ LOGIN a b', /invalid tag/],
  ['a FROB', /unknown command/],
  ['a LOGIN onlyone', /space/],
  ['a SELECT', /space/],
  ['a FETCH 0 FLAGS', /zero/],
  ['a FETCH 1:x FLAGS', /number/],
  ['a FETCH 1 (FLAGS', /space|"\)"/],
  ['a FETCH 1 BODY[HEADER.FIELDS ()]', /empty list/],
  ['a FETCH 1 BODY[FOO]', /bad section/],
  ['a FETCH 1 BODY[]<5>', /"\."/],
  ['a FETCH 1 MODSEQ', /CONDSTORE/],
  ['a STORE 1 FLAGZ (\\Seen)', /FLAGS/],
  ['a SEARCH FROBNICATE', /unknown search key/],
  ['a SEARCH BEFORE 31-Foo-2020', /bad date/],
  ['a SELECT "unterminated', /unterminated/],
  ['a SELECT "bad\\escape"', /escape/],
  ['a LOGIN {10}\r\nabc', /literal shorter/],
  ['a SELECT "&Jjo"', /modified UTF-7/],
  ['a SELECT "&AGE-"', /modified UTF-7/],
  ['a SELECT &', /modified UTF-7/],
  ['a LIST (RECURSIVEMATCH) "" *', /RECURSIVEMATCH/],
  ['a STATUS INBOX ()', /empty list/],
  ['a STATUS INBOX (FOO)', /unknown status item/],
  ['a NOOP extra', /unexpected/],
  ['a FETCH 99999999999 FLAGS', /too large/],
  ['a UID FROB 1', /unknown command UID/],
];

for (const [input, message] of bad) {
  t.test(`BAD: ${JSON.stringify(input)}`, async (t) => {
    const r = parse(input);
    t.notOk(r.ok);
    if (!r.ok) t.match(r.message, message);
  });
}

t.test('deep nesting is refused, not a stack overflow', async (t) => {
  const r = parse(`a SEARCH ${'('.repeat(100_000)}ALL${')'.repeat(100_000)}`);
  t.notOk(r.ok);
  if (!r.ok) t.match(r.message, /nested too deeply/);
  const n = parse(`a SEARCH ${'NOT '.repeat(10_000)}ALL`);
  t.notOk(n.ok);
});

t.test('date-time', async (t) => {
  t.equal(parseDateTime('17-Jul-1996 02:44:25 -0700')?.toISOString(), '1996-07-17T09:44:25.000Z');
  t.equal(parseDateTime('32-Jul-1996 02:44:25 -0700 x'), null);
  t.equal(parseDateTime('17-Jux-1996 02:44:25 -0700'), null);
});
