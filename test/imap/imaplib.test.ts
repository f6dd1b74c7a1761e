/**
 * Python's imaplib (what scripts and many tools use) against the appliance:
 * LOGIN, LIST, SELECT, APPEND with flags and date, FETCH of bodies and
 * headers, SEARCH with a UTF-8 literal, STORE, COPY, EXPUNGE, IDLE-free
 * polling with NOOP, STATUS, LOGOUT; and STARTTLS on the tls-require port.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { startAppliance } from '../helpers/appliance.ts';
import { writeImapConfig } from '../helpers/imap.ts';

const run = promisify(execFile);

// Real servers and clients: generous under a loaded CI machine (the default is 30 s).
t.setTimeout(120_000);

t.test('imaplib', async (t) => {
  const dir = t.testdir();
  const cfg = await writeImapConfig(dir);
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const script = `
import imaplib, json, ssl, time, email
out = {}
m = imaplib.IMAP4('127.0.0.1', ${cfg.imap.plain})
out['caps'] = sorted(m.capabilities)
out['login'] = m.login('alice@example.test', 'alice-secret')[0]
typ, boxes = m.list()
out['list'] = [b.decode() for b in boxes]
msg = 'From: Zoë <zoe@example.net>\\r\\nTo: alice@example.test\\r\\nSubject: =?utf-8?b?R3LDvMOfZQ==?=\\r\\nMessage-ID: <py1@example.net>\\r\\n\\r\\nBonjour, ça va ? Schöne Grüße.\\r\\n'.encode('utf-8')
out['append'] = m.append('INBOX', '(\\\\Flagged $Label1)', imaplib.Time2Internaldate(time.mktime((2025, 12, 24, 18, 0, 0, 0, 0, -1))), msg)[1][0].decode()
m.append('INBOX', None, None, b'Subject: second\\r\\n\\r\\nplain\\r\\n')
typ, data = m.select('INBOX')
out['exists'] = int(data[0])
typ, data = m.fetch('1', '(FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])')
out['fetch_meta'] = data[0][0].decode()
out['body_ok'] = data[0][1] == msg
typ, data = m.fetch('1', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
out['subject_header'] = data[0][1].decode()
m.literal = 'grüße'.encode('utf-8')
out['search_subject'] = m.search('UTF-8', 'SUBJECT')[1][0].decode()
m.literal = 'ça va'.encode('utf-8')
out['search_body'] = m.search('UTF-8', 'BODY')[1][0].decode()
out['search_keyword'] = m.search(None, 'KEYWORD', '$Label1')[1][0].decode()
out['uid_search'] = m.uid('SEARCH', None, 'ALL')[1][0].decode()
out['store'] = [d.decode() for d in m.store('2', '+FLAGS', '(\\\\Seen \\\\Deleted)')[1]]
typ, data = m.copy('1', 'Trash')
out['copy'] = [typ, [d.decode() for d in data]]
out['expunge'] = [d.decode() for d in m.expunge()[1]]
out['noop'] = m.noop()[0]
out['status'] = m.status('Trash', '(MESSAGES UIDNEXT UNSEEN)')[1][0].decode()
out['create'] = m.create('Projets/&AMk-t&AOk-')[0]
out['list_utf7'] = [b.decode() for b in m.list('""', 'Projets/*')[1]]
m.close()
out['logout'] = m.logout()[0]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = imaplib.IMAP4('127.0.0.1', ${cfg.imap.tlsRequire})
out['tls_caps_before'] = sorted(s.capabilities)
s.starttls(ssl_context=ctx)
out['tls_login'] = s.login('alice@example.test', 'alice-secret')[0]
s.logout()
print(json.dumps(out))
`;
  const { stdout } = await run('python3', ['-c', script], { timeout: 60_000 });
  const out = JSON.parse(stdout) as Record<string, unknown>;
  const has = (list: unknown, items: string[]) => items.every((i) => (list as string[]).includes(i));
  t.ok(has(out.caps, ['AUTH=PLAIN', 'ENABLE', 'ID', 'IDLE', 'IMAP4REV1', 'LITERAL+', 'SASL-IR']), 'capabilities before login');
  t.equal(out.login, 'OK');
  t.match(out.list, ['(\\HasNoChildren) "/" "INBOX"']);
  t.match(out.append, /^\[APPENDUID \d+ 1\] APPEND completed/);
  t.equal(out.exists, 2);
  t.match(out.fetch_meta, /^1 \(FLAGS \(\$Label1 \\Flagged( \\Recent)?\) INTERNALDATE "24-Dec-2025 \d\d:00:00 \+0000" RFC822\.SIZE \d+ BODY\[\] \{\d+\}$/);
  t.equal(out.body_ok, true, 'bytes as appended');
  t.equal(out.subject_header, 'Subject: =?utf-8?b?R3LDvMOfZQ==?=\r\n\r\n');
  t.equal(out.search_subject, '1', 'SUBJECT matches the decoded encoded word');
  t.equal(out.search_body, '1', 'BODY matches UTF-8 text');
  t.equal(out.search_keyword, '1');
  t.equal(out.uid_search, '1 2');
  t.match(out.store, [/^2 \(FLAGS \(\\Deleted \\Seen( \\Recent)?\)\)$/]);
  t.match(out.copy, ['OK', [/^\[COPYUID \d+ 1 1\] COPY completed/]]);
  t.same(out.expunge, ['2']);
  t.equal(out.noop, 'OK');
  t.match(out.status, /^"Trash" \(MESSAGES 1 UIDNEXT 2 UNSEEN 1\)$/);
  t.equal(out.create, 'OK');
  t.match(out.list_utf7, ['(\\HasNoChildren) "/" "Projets/&AMk-t&AOk-"']);
  t.equal(out.logout, 'BYE');
  t.ok(has(out.tls_caps_before, ['IMAP4REV1', 'LOGINDISABLED', 'STARTTLS']) && !has(out.tls_caps_before, ['AUTH=PLAIN']), 'tls-require: LOGINDISABLED until STARTTLS');
  t.equal(out.tls_login, 'OK');
  t.equal(await app.stop(), 0);
});
