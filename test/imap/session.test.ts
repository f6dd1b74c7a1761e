/**
 * Commands over a real socket against the in-memory store double:
 * transcripts in the order a client would send them.
 */
import t from 'tap';
import { Client, startHarness, tagged, type Harness } from './harness.ts';

const MSG1 = [
  'Return-Path: <bob@example.org>',
  'Date: Mon, 7 Feb 1994 21:52:25 -0800',
  'From: Fred Foobar <foobar@Blurdybloop.example>',
  'Subject: =?utf-8?q?caf=C3=A9?= meeting',
  'To: mooch@owatagu.siam.edu.example, "A, B" <ab@x.example>',
  'Message-Id: <B27397-0100000@Blurdybloop.example>',
  'X-Note: folded',
  '  line',
  '',
  'Hello Joe, do you think we can meet at 3:30 tomorrow?',
  '',
].join('\r\n');

const MSG2 = [
  'From: alice@example.test',
  'To: undisclosed-recipients:;',
  'Subject: parts',
  'Content-Type: multipart/mixed; boundary="b1"',
  '',
  '--b1',
  'Content-Type: text/plain; charset=utf-8',
  'Content-Transfer-Encoding: base64',
  '',
  Buffer.from('Grüße aus Köln\r\n').toString('base64'),
  '--b1',
  'Content-Type: application/octet-stream',
  'Content-Transfer-Encoding: base64',
  '',
  Buffer.from([0, 1, 2, 3, 255]).toString('base64'),
  '--b1--',
  '',
].join('\r\n');

let h: Harness;
t.before(async () => {
  h = await startHarness();
});
t.teardown(async () => h.close());

async function seeded(): Promise<Client> {
  const { client } = await Client.open(h.port);
  await client.login();
  const store = h.mail.forRoot('/mail/alice@example.test');
  const inbox = store.boxes.get('INBOX')!;
  if (inbox.msgs.length === 0) {
    await store.append('INBOX', { content: Buffer.from(MSG1), flags: ['\\Seen'], internalDate: new Date('1994-02-08T05:52:25Z') });
    await store.append('INBOX', { content: Buffer.from(MSG2), internalDate: new Date('2020-03-03T10:00:00Z') });
  }
  return client;
}

t.test('greeting, capabilities, state checks', async (t) => {
  const { client, greeting } = await Client.open(h.port);
  t.match(greeting, /^\* OK \[CAPABILITY IMAP4rev1 .*AUTH=PLAIN.*\] /);
  t.notMatch(greeting, /LOGINDISABLED|STARTTLS/, 'loopback on a plain listener: login allowed, no TLS to offer');
  t.match(tagged(await client.cmd('SELECT INBOX')), /^a1 BAD /, 'SELECT before login');
  t.match(tagged(await client.cmd('FETCH 1 FLAGS')), /^a2 BAD /);
  t.match(await client.cmd('LOGIN alice@example.test wrong'), /a3 NO \[AUTHENTICATIONFAILED\]/);
  const ok = await client.cmd('LOGIN alice@example.test secret');
  t.match(ok, /a4 OK \[CAPABILITY IMAP4rev1 .*UIDPLUS.*MOVE.*SPECIAL-USE.*LIST-EXTENDED.*LIST-STATUS.*\] Logged in/);
  t.match(tagged(await client.cmd('LOGIN alice@example.test secret')), /BAD/, 'LOGIN twice');
  t.match(tagged(await client.cmd('FETCH 1 FLAGS')), /BAD No mailbox selected/);
  t.match(await client.cmd('ID ("name" "test")'), /\* ID \("name" "appliance" "version" "[^"]+"\)/);
  t.match(await client.cmd('NAMESPACE'), /\* NAMESPACE \(\("" "\/"\)\) NIL NIL/);
  t.match(await client.cmd('ENABLE UTF8=ACCEPT'), /\* ENABLED\r\n/);
  t.match(await client.cmd('LOGOUT'), /\* BYE .*\r\na\d+ OK/);
  client.close();
});

t.test('AUTHENTICATE PLAIN with and without initial response', async (t) => {
  const ir = Buffer.from('\0alice@example.test\0secret').toString('base64');
  const a = (await Client.open(h.port)).client;
  t.match(tagged(await a.cmd(`AUTHENTICATE PLAIN ${ir}`)), /OK/);
  a.close();
  const b = (await Client.open(h.port)).client;
  b.write('x AUTHENTICATE PLAIN\r\n');
  t.match(await b.until((s) => s.includes('\r\n')), /^\+ /);
  b.write(`${Buffer.from('\0alice@example.test\0wrong').toString('base64')}\r\n`);
  t.match(await b.until((s) => /x (OK|NO)/.test(s)), /x NO \[AUTHENTICATIONFAILED\]/);
  b.write('y AUTHENTICATE PLAIN\r\n');
  await b.until((s) => s.includes('\r\n'));
  b.write('*\r\n');
  t.match(await b.until((s) => /y (OK|NO|BAD)/.test(s)), /y BAD .*cancel/i);
  b.close();
});

t.test('special mailboxes on first login, LIST, STATUS, CREATE/RENAME/DELETE', async (t) => {
  const c = await seeded();
  const list = await c.cmd('LIST "" "*"');
  t.match(list, /\* LIST \(\\HasNoChildren\) "\/" "INBOX"/);
  t.match(list, /\* LIST \(\\HasNoChildren \\Sent\) "\/" "Sent"/);
  t.match(list, /\\Trash\) "\/" "Trash"/);
  t.match(await c.cmd('LSUB "" "*"'), /\* LSUB \(\) "\/" "Sent"/);
  t.notMatch(await c.cmd('LSUB "" "*"'), /Trash/, 'auto create does not subscribe');
  t.match(await c.cmd('LIST "" ""'), /\* LIST \(\\Noselect\) "\/" ""/);
  t.match(tagged(await c.cmd('CREATE "Entw&APw-rfe"')), /OK/);
  t.match(await c.cmd('LIST "" "Entw*"'), /"Entw&APw-rfe"/, 'names go back in modified UTF-7');
  t.match(tagged(await c.cmd('CREATE Work/Projects/')), /OK/);
  t.match(await c.cmd('LIST "" "Work/%"'), /"Work\/Projects"/);
  t.match(tagged(await c.cmd('CREATE Work/Projects')), /NO \[ALREADYEXISTS\]/);
  t.match(tagged(await c.cmd('RENAME Work/Projects Work/Old')), /OK/);
  t.match(tagged(await c.cmd('DELETE Work/Old')), /OK/);
  t.match(tagged(await c.cmd('DELETE Work/Old')), /NO \[NONEXISTENT\]/);
  t.match(tagged(await c.cmd('DELETE INBOX')), /NO/);
  t.match(await c.cmd('STATUS INBOX (MESSAGES UNSEEN UIDNEXT UIDVALIDITY)'), /\* STATUS "INBOX" \(MESSAGES 2 UNSEEN 1 UIDNEXT 3 UIDVALIDITY 1000\)/);
  t.match(await c.cmd('LIST (SPECIAL-USE) "" "*" RETURN (STATUS (MESSAGES))'), /\* LIST \(\\HasNoChildren \\Sent\) "\/" "Sent"\r\n\* STATUS "Sent" \(MESSAGES 0\)/);
  t.match(await c.cmd('LIST (SUBSCRIBED) "" "*"'), /\\Subscribed \\Sent\) "\/" "Sent"/);
  t.match(tagged(await c.cmd('CREATE Empty')), /OK/);
  t.match(await c.cmd('SELECT Empty'), /\* 0 EXISTS/);
  t.match(await c.cmd('FETCH 1:* FLAGS'), /^a\d+ OK/, 'FETCH 1:* of an empty mailbox answers nothing');
  t.match(await c.cmd('SEARCH ALL'), /^\* SEARCH\r\n/);
  c.close();
});

t.test('bad mailbox names', async (t) => {
  const c = await seeded();
  for (const name of ['../../etc', '"/etc"', '"a//b"', '"a/../b"', '{3}\r\na\0b', '".hidden"', '"a*"']) {
    const r = tagged(await c.cmd(`SELECT ${name}`));
    // A NUL is refused already by the name's syntax (modified UTF-7 is printable ASCII): BAD.
    t.match(r, / (NO \[(CANNOT|NONEXISTENT)\]|BAD mailbox name)/, `SELECT ${JSON.stringify(name)}`);
    t.match(tagged(await c.cmd(`CREATE ${name}`)), / (NO \[CANNOT\]|BAD mailbox name)/, `CREATE ${JSON.stringify(name)}`);
  }
  t.match(tagged(await c.cmd('CREATE "&Jjo"')), / BAD .*UTF-7/);
  t.match(tagged(await c.cmd('CREATE "&AGE-"')), / BAD .*UTF-7/, 'ASCII in base64 does not round-trip');
  t.equal([...h.mail.forRoot('/mail/alice@example.test').boxes.keys()].some((k) => k.includes('..') || k.includes('\0')), false, 'nothing created');
  c.close();
});

t.test('SELECT, FETCH attributes and sections', async (t) => {
  const c = await seeded();
  const sel = await c.cmd('SELECT INBOX');
  t.match(sel, /\* FLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft/);
  t.match(sel, /\* 2 EXISTS\r\n/);
  t.match(sel, /\* OK \[UNSEEN 2\]/);
  t.match(sel, /\* OK \[UIDVALIDITY 1000\]/);
  t.match(sel, /\* OK \[UIDNEXT 3\]/);
  t.match(sel, /OK \[READ-WRITE\] SELECT completed/);
  const env = await c.cmd('FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)');
  t.match(env, `* 1 FETCH (FLAGS (\\Seen) INTERNALDATE "08-Feb-1994 05:52:25 +0000" RFC822.SIZE ${Buffer.byteLength(MSG1)} ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800" "=?utf-8?q?caf=C3=A9?= meeting" (("Fred Foobar" NIL "foobar" "Blurdybloop.example")) (("Fred Foobar" NIL "foobar" "Blurdybloop.example")) (("Fred Foobar" NIL "foobar" "Blurdybloop.example")) ((NIL NIL "mooch" "owatagu.siam.edu.example")("A, B" NIL "ab" "x.example")) NIL NIL NIL "<B27397-0100000@Blurdybloop.example>"))`);
  const env2 = await c.cmd('FETCH 2 ENVELOPE');
  t.match(env2, '((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))', 'group syntax');
  const bs = await c.cmd('FETCH 2 BODYSTRUCTURE');
  t.match(bs, /BODYSTRUCTURE \(\("text" "plain" \("charset" "utf-8"\) NIL NIL "base64" \d+ \d+ NIL NIL NIL NIL\)\("application" "octet-stream" NIL NIL NIL "base64" \d+ NIL NIL NIL NIL\) "mixed" \("boundary" "b1"\) NIL NIL NIL\)/);
  t.match(await c.cmd('FETCH 1 BODY'), /BODY \("text" "plain" \("charset" "us-ascii"\) NIL NIL "7bit" \d+ \d+\)/);
  const hdr = await c.cmd('FETCH 1 BODY.PEEK[HEADER.FIELDS (Subject x-note)]');
  t.match(hdr, 'BODY[HEADER.FIELDS (Subject x-note)] {');
  t.match(hdr, 'Subject: =?utf-8?q?caf=C3=A9?= meeting\r\nX-Note: folded\r\n  line\r\n\r\n)');
  t.notMatch(hdr, /FLAGS/, 'PEEK does not set \\Seen');
  const not = await c.cmd('FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (Return-Path Date From Subject To Message-Id)]');
  t.match(not, '{26}\r\nX-Note: folded\r\n  line\r\n\r\n)');
  const part = await c.cmd('FETCH 2 (BODY[1] BODY.PEEK[2.MIME])');
  t.match(part, /\* 2 FETCH \(BODY\[1\] \{\d+\}\r\nR3L/, 'raw part body');
  t.match(part, /BODY\[2\.MIME\] \{\d+\}\r\nContent-Type: application\/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n/);
  t.match(part, /FLAGS \(\\Recent \\Seen\)|FLAGS \(\\Seen( \\Recent)?\)/, 'BODY[] sets \\Seen and reports it');
  const bin = await c.cmd('FETCH 2 (BINARY.PEEK[1] BINARY.SIZE[2] BINARY.PEEK[2])');
  t.match(bin, `BINARY[1] {${Buffer.byteLength('Grüße aus Köln\r\n')}}\r\nGr`);
  t.match(bin, 'BINARY.SIZE[2] 5');
  t.match(bin, 'BINARY[2] ~{5}\r\n\0\u0001\u0002\u0003\u00ff', 'NUL needs literal8');
  const partial = await c.cmd('FETCH 1 BODY.PEEK[]<0.11>');
  t.match(partial, 'BODY[]<0> {11}\r\nReturn-Path)');
  const text = await c.cmd('UID FETCH 1 (RFC822.HEADER RFC822.TEXT)');
  t.match(text, /\* 1 FETCH \(UID 1 RFC822\.HEADER \{\d+\}\r\nReturn-Path/);
  t.match(text, 'RFC822.TEXT {55}\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n');
  t.match(tagged(await c.cmd('FETCH 3 FLAGS')), /BAD Invalid sequence number/);
  t.match(tagged(await c.cmd('UID FETCH 3:9 FLAGS')), /OK/, 'unknown UIDs are no error');
  t.match(await c.cmd('FETCH 1:* FAST'), /\* 1 FETCH \(FLAGS \(\\Seen\) INTERNALDATE "[^"]+" RFC822\.SIZE \d+\)\r\n\* 2 FETCH/);
  c.close();
});

t.test('STORE, SEARCH, COPY, MOVE, EXPUNGE, APPEND', async (t) => {
  const c = await seeded();
  await c.cmd('SELECT INBOX');
  t.match(await c.cmd('STORE 1 +FLAGS ($Forwarded \\Flagged)'), /\* 1 FETCH \(FLAGS \(\$Forwarded \\Flagged \\Seen\)\)/);
  t.match(await c.cmd('UID STORE 1 -FLAGS.SILENT ($Forwarded)'), /^a\d+ OK/);
  t.match(tagged(await c.cmd('STORE 1 +FLAGS (\\Bogus)')), /BAD/);
  t.match(await c.cmd('SEARCH FLAGGED'), /\* SEARCH 1\r\n/);
  t.match(await c.cmd('SEARCH UNSEEN'), /\* SEARCH\r\n|\* SEARCH 2\r\n/);
  t.match(await c.cmd('SEARCH SUBJECT "café"'), /\* SEARCH 1\r\n/, 'decoded encoded word');
  t.match(await c.cmd('SEARCH CHARSET UTF-8 BODY {5}\r\nköln'), /\* SEARCH 2\r\n/, 'decoded base64 body, literal argument');
  t.match(tagged(await c.cmd('SEARCH CHARSET KOI8-R ALL')), /NO \[BADCHARSET/);
  t.match(await c.cmd('SEARCH HEADER X-Note "folded  line"'), /\* SEARCH 1\r\n/);
  t.match(await c.cmd('SEARCH OR FROM fred TO undisclosed'), /\* SEARCH 1 2\r\n/);
  t.match(await c.cmd('SEARCH NOT FROM fred'), /\* SEARCH 2\r\n/);
  t.match(await c.cmd('UID SEARCH SENTBEFORE 1-Jan-2000'), /\* SEARCH 1\r\n/);
  t.match(await c.cmd('SEARCH SINCE 1-Jan-2020 LARGER 10'), /\* SEARCH 2\r\n/);
  t.match(await c.cmd('SEARCH 2:* UID 1:*'), /\* SEARCH 2\r\n/);
  t.match(await c.cmd('SEARCH TEXT joe'), /\* SEARCH 1\r\n/);
  t.match(await c.cmd('SEARCH (SEEN FLAGGED) NOT DELETED'), /\* SEARCH 1\r\n/);
  t.match(await c.cmd('COPY 1:2 Trash'), /OK \[COPYUID 1000 1:2 1:2\] COPY completed/);
  t.match(tagged(await c.cmd('COPY 1 Nowhere')), /NO \[TRYCREATE\]/);
  const mv = await c.cmd('UID MOVE 2 Sent');
  t.match(mv, /\* OK \[COPYUID 1000 2 1\] Moved\r\n\* 2 EXPUNGE\r\na\d+ OK MOVE completed/);
  t.match(await c.cmd('APPEND INBOX (\\Draft) " 3-Mar-2021 10:00:00 +0100" {24}\r\nSubject: new\r\n\r\nbody\r\n\r\n'), /\* 2 EXISTS[\s\S]*OK \[APPENDUID 1000 3\] APPEND completed/);
  t.match(tagged(await c.cmd('APPEND Nowhere {3}\r\nabc')), /NO \[TRYCREATE\]/);
  t.match(await c.cmd('STORE 1:2 +FLAGS.SILENT (\\Deleted)'), /^a\d+ OK/);
  t.match(await c.cmd('EXPUNGE'), /\* 2 EXPUNGE\r\n\* 1 EXPUNGE\r\na\d+ OK/);
  t.match(await c.cmd('SELECT Trash'), /\* 2 EXISTS/);
  t.match(await c.cmd('UID STORE 2 +FLAGS (\\Deleted)'), /\* 2 FETCH \(FLAGS \(\\Deleted[^)]*\) UID 2\)/);
  t.match(await c.cmd('UID EXPUNGE 1'), /^a\d+ OK/, 'UID EXPUNGE only the given UIDs');
  t.match(await c.cmd('UID EXPUNGE 1:*'), /\* 2 EXPUNGE/);
  t.match(await c.cmd('EXAMINE Trash'), /READ-ONLY/);
  t.match(tagged(await c.cmd('STORE 1 +FLAGS (\\Seen)')), /NO \[READ-ONLY\]/);
  t.match(tagged(await c.cmd('CLOSE')), /OK/);
  t.match(tagged(await c.cmd('FETCH 1 FLAGS')), /BAD/);
  c.close();
});

t.test('two sessions: EXISTS, FETCH FLAGS and EXPUNGE at the allowed moments; IDLE', async (t) => {
  const a = await seeded();
  const b = await seeded();
  const store = h.mail.forRoot('/mail/alice@example.test');
  await store.create('Shared');
  await store.append('Shared', { content: Buffer.from('Subject: one\r\n\r\n1\r\n') });
  await store.append('Shared', { content: Buffer.from('Subject: two\r\n\r\n2\r\n') });
  await a.cmd('SELECT Shared');
  await b.cmd('SELECT Shared');
  await b.cmd('STORE 1 +FLAGS (\\Deleted \\Seen)');
  await b.cmd('EXPUNGE');
  const f = await a.cmd('FETCH 1:2 FLAGS');
  t.notMatch(f, /EXPUNGE/, 'no EXPUNGE during FETCH');
  t.match(f, /\* 1 FETCH \(FLAGS/, 'numbers unchanged');
  const n = await a.cmd('NOOP');
  t.match(n, /\* 1 EXPUNGE\r\n/, 'EXPUNGE after NOOP');
  a.write('i1 IDLE\r\n');
  t.match(await a.until((s) => s.includes('\r\n')), /^\+ idling/);
  await store.append('Shared', { content: Buffer.from('Subject: three\r\n\r\n3\r\n') });
  t.match(await a.until((s) => s.includes('EXISTS')), /\* 2 EXISTS/, 'IDLE woken by the change event');
  await b.cmd('STORE 1 +FLAGS ($Junk)');
  t.match(await a.until((s) => s.includes('FETCH')), /\* 1 FETCH \(UID \d+ FLAGS \(\$Junk\)\)/);
  a.write('DONE\r\n');
  t.match(await a.until((s) => /i1 OK/.test(s)), /i1 OK IDLE terminated/);
  t.match(tagged(await a.cmd('NOOP')), /OK/);
  a.close();
  b.close();
});

t.test('bad input', async (t) => {
  const c = await seeded();
  t.match(await c.cmd('APPEND INBOX {4294967295}'), /a\d+ NO \[TOOBIG\]/, 'huge literal refused before any byte');
  const limit = h.runtime.config().imap.limits.maxLiteralSize;
  t.match(await c.cmd(`APPEND INBOX {${limit + 1}}`), /NO \[TOOBIG\]/, 'literal over APPENDLIMIT');
  t.match(await c.cmd(`SEARCH ${'('.repeat(100_000)}ALL${')'.repeat(100_000)}`), /BAD (Command line too long|search key nested too deeply)/);
  t.match(await c.cmd(`FETCH ${'1:*,'.repeat(262_144)}1 FLAGS`), /a\d+ BAD Command line too long/, '1 MB sequence set');
  t.match(await c.cmd(`SEARCH ${'('.repeat(10_000)}ALL${')'.repeat(10_000)}`), /BAD search key nested too deeply/);
  c.write('\0\u0001\u0002 garbage\r\n');
  t.match(await c.until((s) => s.includes('\r\n')), /^\* BAD/, 'garbage without a tag: untagged BAD');
  t.match(tagged(await c.cmd('NOOP')), /OK/, 'session still usable');
  c.close();
});

t.test('connections per user and IP', async (t) => {
  const limit = h.runtime.config().imap.limits.connectionsPerUserIp;
  const clients: Client[] = [];
  const results: string[] = [];
  for (let i = 0; i < 50; i++) {
    const { client } = await Client.open(h.port);
    clients.push(client);
    results.push(tagged(await client.cmd('LOGIN alice@example.test secret')));
  }
  t.equal(results.filter((r) => / OK /.test(r)).length, limit);
  t.equal(results.filter((r) => /NO \[LIMIT\]/.test(r)).length, 50 - limit);
  t.same(h.runtime.sessions.list().filter((s) => s.user === 'alice@example.test').length, limit);
  t.equal(h.runtime.sessions.kick('alice@example.test', '10.0.0.0/8'), 0, 'kick outside the cidr closes nothing');
  t.equal(h.runtime.sessions.kick('alice@example.test', '127.0.0.1'), limit);
  for (const c of clients) c.close();
});
