/** RFC 3464 / 6522 delivery status notifications, parsed back by hand. */
import t, { type Test } from 'tap';
import {
  buildDsn,
  MAX_ORIGINAL_HEADER_BYTES,
  shouldSendDsn,
  SUBJECT_DELAYED,
  SUBJECT_FAILED,
  utf8AddrXtext,
  type DsnInput,
  type DsnRecipient,
} from '../../smtp/dsn.ts';

const CRLF = '\r\n';
const ORIGINAL_HEADERS = 'Received: from client.example.test\r\n\tby mx.example.test; Tue, 3 Mar 2026 09:59:59 +0000\r\nFrom: Alice <alice@example.test>\r\nTo: bob@example.org\r\nSubject: quarterly numbers\r\nMessage-ID: <orig-1@example.test>\r\n';
const BODY = 'THE SECRET BODY TEXT\r\n';

const failed: DsnRecipient = {
  address: 'bob@example.org',
  action: 'failed',
  status: '5.1.1',
  remoteMta: 'mx.example.org',
  diagnostic: 'smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table',
  lastAttempt: new Date(Date.UTC(2026, 2, 3, 11, 59, 0)),
};
const delayed: DsnRecipient = {
  address: '<carol@example.net>',
  action: 'delayed',
  status: '4.4.1',
  remoteMta: '[192.0.2.7]',
  diagnostic: 'X-Appliance; connect to 192.0.2.7:25: connection timed out',
  lastAttempt: new Date(Date.UTC(2026, 2, 3, 11, 58, 0)),
  willRetryUntil: new Date(Date.UTC(2026, 2, 7, 10, 0, 0)),
};

function input(over: Partial<DsnInput> = {}): DsnInput {
  return {
    reportingMta: 'mx.example.test',
    originalSender: 'alice@example.test',
    queueId: 'Q1A2B3',
    arrival: new Date(Date.UTC(2026, 2, 3, 10, 0, 0)),
    recipients: [failed],
    originalHeaders: Buffer.from(ORIGINAL_HEADERS + CRLF + BODY),
    now: new Date(Date.UTC(2026, 2, 3, 12, 0, 0)),
    id: 'dsn-test-1',
    ...over,
  };
}

// --- a small MIME reader ------------------------------------------------------

interface Parsed {
  readonly headers: Map<string, string[]>;
  readonly body: string;
}

function parseEntity(s: string): Parsed {
  const split = s.indexOf(CRLF + CRLF);
  const head = split === -1 ? s : s.slice(0, split);
  const body = split === -1 ? '' : s.slice(split + 4);
  const headers = new Map<string, string[]>();
  for (const field of head.split(/\r\n(?![ \t])/)) {
    if (field === '') continue;
    const colon = field.indexOf(':');
    const name = field.slice(0, colon).toLowerCase();
    const value = field.slice(colon + 1).replace(/\r\n[ \t]/g, ' ').trim();
    headers.set(name, [...(headers.get(name) ?? []), value]);
  }
  return { headers, body };
}

function one(p: Parsed, name: string): string {
  const v = p.headers.get(name.toLowerCase());
  if (!v || v.length !== 1) throw new Error(`expected one ${name}, got ${JSON.stringify(v)}`);
  return v[0]!;
}

function boundaryOf(p: Parsed): string {
  const m = /boundary="([^"]+)"/.exec(one(p, 'content-type'));
  if (!m) throw new Error('no boundary');
  return m[1]!;
}

function parts(message: string): { top: Parsed; boundary: string; parts: Parsed[]; preamble: string; epilogue: string } {
  const top = parseEntity(message);
  const boundary = boundaryOf(top);
  const pieces = (CRLF + top.body).split(`${CRLF}--${boundary}`);
  const preamble = pieces.shift()!;
  const last = pieces.pop()!;
  if (!last.startsWith('--')) throw new Error('no close delimiter');
  return { top, boundary, preamble, epilogue: last.slice(2), parts: pieces.map((p) => {
    if (!p.startsWith(CRLF)) throw new Error('delimiter not followed by CRLF');
    return parseEntity(p.slice(2));
  }) };
}

/** RFC 3464 fields: blocks separated by empty lines, folded lines unfolded. */
function statusBlocks(body: string): Map<string, string>[] {
  return body
    .split(/\r\n\r\n+/)
    .filter((b) => b.trim() !== '')
    .map((b) => {
      const m = new Map<string, string>();
      for (const f of b.replace(/\r\n$/, '').split(/\r\n(?![ \t])/)) {
        const c = f.indexOf(':');
        m.set(f.slice(0, c), f.slice(c + 1).replace(/\r\n[ \t]/g, ' ').trim());
      }
      return m;
    });
}

function qpDecode(s: string): Buffer {
  const text = s.replace(/=\r\n/g, '');
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '=') {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(text.charCodeAt(i));
  }
  return Buffer.from(bytes);
}

function checkLines(t: Test, message: Buffer, maxLen: number): void {
  const s = message.toString('latin1');
  t.notOk(/[^\r]\n|^\n/.test(s), 'no bare LF');
  t.notOk(/\r(?!\n)/.test(s), 'no bare CR');
  t.ok(s.endsWith(CRLF), 'ends with CRLF');
  const lines = s.slice(0, -2).split(CRLF);
  const longest = Math.max(...lines.map((l) => Buffer.byteLength(l, 'latin1')));
  t.ok(longest <= maxLen, `longest line ${longest} ≤ ${maxLen}`);
}

// --- tests --------------------------------------------------------------------------

t.test('shouldSendDsn: only the null sender is refused', async (t) => {
  t.equal(shouldSendDsn(''), false);
  t.equal(shouldSendDsn('<>'), false);
  t.equal(shouldSendDsn(' < > '), false);
  t.equal(shouldSendDsn('alice@example.test'), true);
  t.equal(shouldSendDsn('<alice@example.test>'), true);
  t.equal(shouldSendDsn('MAILER-DAEMON@example.org'), true, 'a real mailbox; the bounce goes out with MAIL FROM:<>');
  t.throws(() => buildDsn(input({ originalSender: '' })), /null sender/);
  t.throws(() => buildDsn(input({ originalSender: '<>' })), /null sender/);
  t.throws(() => buildDsn(input({ recipients: [] })), /at least one recipient/);
});

t.test('a failure report: envelope, top headers, three parts', async (t) => {
  const dsn = buildDsn(input({ originalSender: '<alice@example.test>' }));
  t.equal(dsn.sender, '');
  t.equal(dsn.recipient, 'alice@example.test');
  const msg = dsn.message.toString('utf8');
  checkLines(t, dsn.message, 78);
  t.ok(/^[\x00-\x7f]*$/.test(msg), 'all 7-bit');

  const { top, parts: ps, boundary, epilogue } = parts(msg);
  t.equal(one(top, 'from'), 'Mail Delivery System <MAILER-DAEMON@mx.example.test>');
  t.equal(one(top, 'to'), '<alice@example.test>');
  t.equal(one(top, 'subject'), SUBJECT_FAILED);
  t.equal(one(top, 'date'), 'Tue, 3 Mar 2026 12:00:00 +0000');
  t.equal(one(top, 'message-id'), '<dsn-test-1@mx.example.test>');
  t.equal(one(top, 'auto-submitted'), 'auto-replied');
  t.equal(one(top, 'mime-version'), '1.0');
  t.match(one(top, 'content-type'), /^multipart\/report; report-type=delivery-status; boundary="[^"]+"$/);
  t.equal(epilogue, CRLF);

  t.equal(ps.length, 3);
  const [text, status, headers] = ps as [Parsed, Parsed, Parsed];
  t.equal(one(text, 'content-type'), 'text/plain; charset=us-ascii');
  t.match(text.body, /This is the mail system at host mx\.example\.test\./);
  t.match(text.body.replace(/\r\n\s*/g, ' '), /<bob@example\.org>: host mx\.example\.org said: 550 5\.1\.1 <bob@example\.org>: Recipient address rejected: User unknown in virtual mailbox table/);
  t.match(text.body, /Q1A2B3/);

  t.equal(one(status, 'content-type'), 'message/delivery-status');
  const [perMessage, perRecipient, ...rest] = statusBlocks(status.body);
  t.same(rest, []);
  t.same(Object.fromEntries(perMessage!), {
    'Reporting-MTA': 'dns; mx.example.test',
    'Arrival-Date': 'Tue, 3 Mar 2026 10:00:00 +0000',
    'X-Queue-ID': 'Q1A2B3',
  });
  t.same(Object.fromEntries(perRecipient!), {
    'Final-Recipient': 'rfc822; bob@example.org',
    Action: 'failed',
    Status: '5.1.1',
    'Remote-MTA': 'dns; mx.example.org',
    'Diagnostic-Code': 'smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table',
    'Last-Attempt-Date': 'Tue, 3 Mar 2026 11:59:00 +0000',
  });
  t.equal([...perRecipient!.keys()].join(','), 'Final-Recipient,Action,Status,Remote-MTA,Diagnostic-Code,Last-Attempt-Date', 'RFC 3464 field order');

  t.equal(one(headers, 'content-type'), 'text/rfc822-headers');
  t.equal(headers.headers.get('content-transfer-encoding'), undefined);
  t.equal(headers.body.replace(/(\r\n)+$/, ''), ORIGINAL_HEADERS.replace(/\r\n$/, ''), 'the original header block, verbatim');
  t.notOk(msg.includes('THE SECRET BODY'), 'never the body');

  // The boundary appears only as the four delimiter lines.
  t.equal(msg.split(boundary).length - 1, 5, 'boundary: Content-Type + 3 delimiters + close');
  t.equal(msg.split(`${CRLF}--${boundary}`).length - 1, 4);
});

t.test('a delay warning: subject and fields', async (t) => {
  const dsn = buildDsn(input({ recipients: [delayed] }));
  const msg = dsn.message.toString();
  checkLines(t, dsn.message, 78);
  const { top, parts: ps } = parts(msg);
  t.equal(one(top, 'subject'), SUBJECT_DELAYED);
  const [, r] = statusBlocks(ps[1]!.body);
  t.same(Object.fromEntries(r!), {
    'Final-Recipient': 'rfc822; carol@example.net',
    Action: 'delayed',
    Status: '4.4.1',
    'Remote-MTA': 'dns; [192.0.2.7]',
    'Diagnostic-Code': 'X-Appliance; connect to 192.0.2.7:25: connection timed out',
    'Last-Attempt-Date': 'Tue, 3 Mar 2026 11:58:00 +0000',
    'Will-Retry-Until': 'Sat, 7 Mar 2026 10:00:00 +0000',
  });
  const text = ps[0]!.body.replace(/\r\n\s*/g, ' ');
  t.match(text, /has been delayed/);
  t.match(text, /keep trying until Sat, 7 Mar 2026 10:00:00 \+0000/);
  t.notMatch(text, /permanent/);
});

t.test('a mixed report: one DSN, each recipient with its own Action', async (t) => {
  const dsn = buildDsn(input({ recipients: [failed, delayed, { ...failed, willRetryUntil: new Date(0) }] }));
  const { top, parts: ps } = parts(dsn.message.toString());
  t.equal(one(top, 'subject'), SUBJECT_FAILED, 'any failure makes it a bounce');
  const [, a, b, c] = statusBlocks(ps[1]!.body);
  t.equal(a!.get('Action'), 'failed');
  t.equal(b!.get('Action'), 'delayed');
  t.equal(c!.get('Action'), 'failed');
  t.notOk(a!.has('Will-Retry-Until'));
  t.notOk(c!.has('Will-Retry-Until'), 'only delayed recipients carry Will-Retry-Until');
  t.ok(b!.has('Will-Retry-Until'));
  const text = ps[0]!.body;
  t.ok(text.indexOf('given up') < text.indexOf('<bob@example.org>'));
  t.ok(text.indexOf('has been delayed') < text.indexOf('<carol@example.net>'));
});

t.test('SMTPUTF8 recipients: the utf-8 address type (RFC 6533), 7-bit xtext form', async (t) => {
  t.equal(utf8AddrXtext('jösé@bücher.example'), 'j\\x{F6}s\\x{E9}@b\\x{FC}cher.example');
  t.equal(utf8AddrXtext('a+b=c\\d e@x'), 'a\\x{2B}b\\x{3D}c\\x{5C}d\\x{20}e@x');
  t.equal(utf8AddrXtext('😀@例え.jp'), '\\x{1F600}@\\x{4F8B}\\x{3048}.jp');

  const dsn = buildDsn(input({ recipients: [{ ...failed, address: 'jösé@bücher.example', diagnostic: '550 5.1.1 unbekannter Empfänger' }] }));
  const msg = dsn.message.toString('utf8');
  t.ok(/^[\x00-\x7f]*$/.test(msg), 'still 7-bit');
  checkLines(t, dsn.message, 78);
  const { parts: ps } = parts(msg);
  const [, r] = statusBlocks(ps[1]!.body);
  t.equal(r!.get('Final-Recipient'), 'utf-8; j\\x{F6}s\\x{E9}@b\\x{FC}cher.example');
  t.equal(r!.get('Diagnostic-Code'), 'smtp; 550 5.1.1 unbekannter Empf?nger', 'a bare reply is typed smtp; non-ASCII replaced');
  t.equal(one(ps[0]!, 'content-type'), 'text/plain; charset=utf-8');
  t.equal(one(ps[0]!, 'content-transfer-encoding'), 'quoted-printable');
  const human = qpDecode(ps[0]!.body).toString('utf8').replace(/\r\n\s*/g, ' ');
  t.match(human, /<jösé@bücher\.example>: host mx\.example\.org said: 550 5\.1\.1 unbekannter Empfänger/);

  const toUtf8 = buildDsn(input({ originalSender: 'ålice@exämple.test' }));
  t.equal(toUtf8.recipient, 'ålice@exämple.test');
  t.equal(parseEntity(toUtf8.message.toString('utf8')).headers.get('to')?.[0], '<ålice@exämple.test>', 'RFC 6532 To: for a UTF-8 sender');
});

t.test('original headers: 8-bit, long lines, LF endings, no body, size cap', async (t) => {
  const utf8 = 'Subject: Grüße aus Köln\r\nFrom: jörg@example.test\r\n';
  let d = buildDsn(input({ originalHeaders: Buffer.from(utf8 + '\r\nbody\r\n') }));
  let p = parts(d.message.toString()).parts[2]!;
  t.equal(one(p, 'content-type'), 'message/global-headers');
  t.equal(one(p, 'content-transfer-encoding'), 'quoted-printable');
  t.equal(qpDecode(p.body).toString('utf8'), utf8);
  checkLines(t, d.message, 78);

  const latin1 = Buffer.from('Subject: caf\xe9\r\n', 'latin1');
  p = parts(buildDsn(input({ originalHeaders: latin1 })).message.toString()).parts[2]!;
  t.equal(one(p, 'content-type'), 'text/rfc822-headers', 'not UTF-8: stays text/rfc822-headers');
  t.same(qpDecode(p.body), latin1);

  const long = `X-Long: ${'y'.repeat(1500)}\r\nSubject: s\r\n`;
  d = buildDsn(input({ originalHeaders: Buffer.from(long) }));
  p = parts(d.message.toString()).parts[2]!;
  t.equal(one(p, 'content-transfer-encoding'), 'quoted-printable', 'a line over 998 octets is encoded');
  t.equal(qpDecode(p.body).toString(), long);
  checkLines(t, d.message, 78);

  d = buildDsn(input({ originalHeaders: Buffer.from('From: a@example.test\nSubject: lf only\n\nbody line\n') }));
  p = parts(d.message.toString()).parts[2]!;
  t.equal(p.body.replace(/(\r\n)+$/, ''), 'From: a@example.test\r\nSubject: lf only');
  t.notOk(d.message.toString().includes('body line'));
  checkLines(t, d.message, 78);

  const many = Array.from({ length: 3000 }, (_, i) => `X-Filler-${i}: ${'z'.repeat(40)}\r\n\tcontinued ${i}\r\n`).join('');
  d = buildDsn(input({ originalHeaders: Buffer.from(many + '\r\nbody') }));
  const ps = parts(d.message.toString()).parts;
  const kept = ps[2]!.body;
  t.ok(kept.length <= MAX_ORIGINAL_HEADER_BYTES + 4, `cut to the cap (${kept.length})`);
  t.match(kept, /\tcontinued \d+\r\n$/, 'cut at a field boundary, not inside a folded field');
  t.match(ps[0]!.body.replace(/\r\n\s*/g, ' '), /cut short/);
  t.ok(d.message.length < 80 * 1024, 'the DSN stays small');
});

t.test('the boundary never occurs in the content', async (t) => {
  const first = buildDsn(input());
  const b1 = parts(first.message.toString()).boundary;
  // Same id, so the same first boundary candidate — but the headers now contain it.
  const hostile = `X-Trap: --${b1}\r\n--${b1}\r\n`;
  const second = buildDsn(input({ originalHeaders: Buffer.from(hostile + 'Subject: x\r\n') }));
  const { boundary: b2, parts: ps } = parts(second.message.toString());
  t.not(b2, b1, 'another boundary chosen');
  t.equal(ps.length, 3);
  t.match(ps[2]!.body, b1, 'the trap text is kept');
  t.notOk(ps.some((p) => p.body.includes(b2)));
});

t.test('lines: long diagnostics and addresses are folded, never over 998', async (t) => {
  const words = Array.from({ length: 200 }, (_, i) => `word${i}`).join(' ');
  const d = buildDsn(input({ recipients: [{ ...failed, diagnostic: `smtp; 550 5.7.1 ${words}` }] }));
  checkLines(t, d.message, 78);
  const [, r] = statusBlocks(parts(d.message.toString()).parts[1]!.body);
  t.equal(r!.get('Diagnostic-Code'), `smtp; 550 5.7.1 ${words}`, 'unfolds to the same text');

  const blob = buildDsn(input({ recipients: [{ ...failed, diagnostic: `smtp; 550 ${'x'.repeat(1900)}\r\n550 second line` }] }));
  checkLines(t, blob.message, 998);
  const [, r2] = statusBlocks(parts(blob.message.toString()).parts[1]!.body);
  t.match(r2!.get('Diagnostic-Code')!, /550 second line$/, 'a multi-line reply becomes one field');
});

t.test('diagnostic typing, status fallback, optional fields', async (t) => {
  const d = buildDsn(
    input({
      envelopeId: 'QQ314159',
      recipients: [
        { address: 'a@example.org', action: 'failed', status: 'bogus', diagnostic: '550 no such user' },
        { address: 'b@example.org', action: 'delayed', status: '', diagnostic: 'connection refused' },
        { address: 'c@example.org', action: 'failed', status: '5.2.2', originalRecipient: 'rfc822;C@Example.org', remoteMta: 'MX.Example.ORG.' },
      ],
    }),
  );
  const { parts: ps } = parts(d.message.toString());
  const [m, a, b, c] = statusBlocks(ps[1]!.body);
  t.equal([...m!.keys()][0], 'Original-Envelope-Id');
  t.equal(m!.get('Original-Envelope-Id'), 'QQ314159');
  t.equal(a!.get('Status'), '5.0.0');
  t.equal(a!.get('Diagnostic-Code'), 'smtp; 550 no such user');
  t.equal(b!.get('Status'), '4.0.0');
  t.equal(b!.get('Diagnostic-Code'), 'X-Appliance; connection refused');
  t.notOk(b!.has('Will-Retry-Until'), 'absent when unknown');
  t.notOk(b!.has('Last-Attempt-Date'));
  t.equal(c!.get('Original-Recipient'), 'rfc822;C@Example.org');
  t.equal([...c!.keys()][0], 'Original-Recipient');
  t.equal(c!.get('Remote-MTA'), 'dns; mx.example.org');
  t.notOk(c!.has('Diagnostic-Code'));
  t.match(ps[0]!.body, /<c@example\.org>: delivery failed \(status 5\.2\.2\)/);

  const custom = buildDsn(input({ postmaster: 'postmaster@example.test', reportingMta: 'mx.bücher.example' }));
  const top = parseEntity(custom.message.toString());
  t.equal(one(top, 'from'), 'Mail Delivery System <postmaster@example.test>');
  t.equal(one(top, 'message-id'), '<dsn-test-1@mx.xn--bcher-kva.example>', 'IDN host in A-labels');
});

t.test('deterministic with now and id; unique without', async (t) => {
  t.same(buildDsn(input()).message, buildDsn(input()).message);
  const { id: _omit, ...noId } = input();
  const a = parseEntity(buildDsn(noId).message.toString());
  const b = parseEntity(buildDsn(noId).message.toString());
  t.not(one(a, 'message-id'), one(b, 'message-id'));
  t.not(boundaryOf(a), boundaryOf(b));
  t.match(one(a, 'message-id'), /^<[A-Za-z0-9.-]+@mx\.example\.test>$/);
  const weird = parseEntity(buildDsn(input({ id: 'a b<c>@..d' })).message.toString());
  t.match(one(weird, 'message-id'), /^<[^\s<>@]+@mx\.example\.test>$/, 'id sanitized for Message-ID');
  const noNow = input({ now: undefined });
  t.match(one(parseEntity(buildDsn(noNow).message.toString()), 'date'), /^\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000$/);
});
