/**
 * Receiving mail end to end: the built appliance on loopback, real clients
 * (nodemailer's SMTP transport, Python's smtplib), Maildir files checked
 * byte for byte, remote mail visible in `appliance queue show`.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import t from 'tap';
import { MAIN, USERS, startAppliance, writeConfig } from '../helpers/appliance.ts';

const run = promisify(execFile);

function maildirFiles(dataDir: string, domain: string, user: string): string[] {
  const dir = join(dataDir, 'mail', domain, user, 'new');
  if (!existsSync(dir)) return [];
  return readdirSync(dir).map((f) => join(dir, f));
}

function raw(from: string, to: string, subject: string, body: string): string {
  return `From: <${from}>\r\nTo: <${to}>\r\nSubject: ${subject}\r\nMessage-ID: <${subject.replace(/\W/g, '')}@example.test>\r\n\r\n${body}\r\n`;
}

t.test('MX delivery to a local user, with STARTTLS, byte for byte plus Authentication-Results and a Received header', async (t) => {
  const dir = t.testdir();
  const cfg = await writeConfig(dir);
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const transport = nodemailer.createTransport({ host: '127.0.0.1', port: cfg.ports.mx, secure: false, tls: { rejectUnauthorized: false }, name: 'client.example.net' });
  const message = raw('sender@example.net', 'alice@example.test', 'hello', 'Line one\r\nLine two, caf\u00e9');
  const info = await transport.sendMail({ envelope: { from: 'sender@example.net', to: ['alice@example.test'] }, raw: message });
  t.match(info.response, /^250 2\.0\.0 Ok: queued as \w+/);
  const files = maildirFiles(cfg.dataDir, 'example.test', 'alice');
  t.equal(files.length, 1, 'one file in new/');
  const content = readFileSync(files[0]!);
  const text = content.toString('utf8');
  t.match(text, /^Return-Path: <sender@example\.net>\r\n/, 'the envelope sender, as the delivering server records it');
  const afterReturnPath0 = text.slice(text.indexOf('\r\n') + 2);
  // Mail from outside: the SPF/DKIM/DMARC verdicts (no DNS here: temperror for SPF and DMARC), above our Received.
  const verdicts = /^Received-SPF: temperror [^\r]*(\r\n[ \t][^\r]*)*\r\nAuthentication-Results: mail\.example\.test;(\r\n[ \t][^\r]*)*\r\n/.exec(afterReturnPath0);
  t.ok(verdicts, 'Received-SPF and Authentication-Results follow Return-Path');
  t.match(verdicts?.[0], /dkim=none \(message not signed\)/);
  t.match(verdicts?.[0], /spf=temperror .* smtp\.mailfrom=sender@example\.net/);
  t.match(verdicts?.[0], /dmarc=temperror header\.from=example\.net/);
  const afterReturnPath = afterReturnPath0.slice(verdicts?.[0].length ?? 0);
  t.match(afterReturnPath, /^Received: from client\.example\.net \(\[127\.0\.0\.1\]\)\r\n\tby mail\.example\.test \(appliance\) with ESMTPS id \w+\r\n\t\(version=TLSv1\.[23] cipher=[\w-]+\)\r\n\tfor <alice@example\.test>;\r\n\t\w{3}, /);
  const received = /^Received: [^\r]*(\r\n\t[^\r]*)*\r\n/.exec(afterReturnPath)![0];
  t.equal(afterReturnPath.slice(received.length), message, 'the message follows the Received header unchanged');
  const name = files[0]!.split('/').pop()!;
  t.match(name, new RegExp(`,S=${content.length}$`), 'the file name carries its size');
  t.equal(await app.stop(), 0);
});

t.test('submission: AUTH after STARTTLS, local and remote recipients; remote waits in the queue', async (t) => {
  const dir = t.testdir();
  const cfg = await writeConfig(dir);
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const script = `
import smtplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP('127.0.0.1', ${cfg.ports.submission}, local_hostname='laptop.example.test', timeout=10)
s.ehlo()
caps_before = s.esmtp_features.copy()
s.starttls(context=ctx); s.ehlo()
s.login('${USERS[0]!.address}', '${USERS[0]!.password}')
msg = b'From: <alice@example.test>\\r\\nTo: <bob@example.test>, <carol@remote.example>\\r\\nSubject: hi\\r\\n\\r\\nHello\\r\\n'
r = s.sendmail('alice@example.test', ['bob@example.test', 'carol@remote.example'], msg)
s.quit()
print('auth-before-tls' if 'auth' in caps_before else 'no-auth-before-tls')
print('refused', r)
`;
  const { stdout } = await run('python3', ['-c', script], { timeout: 20_000 });
  t.match(stdout, 'no-auth-before-tls', 'AUTH is not offered before STARTTLS on tls-require');
  t.match(stdout, 'refused {}', 'both recipients accepted');
  const bob = maildirFiles(cfg.dataDir, 'example.test', 'bob');
  t.equal(bob.length, 1, 'bob has it');
  t.match(readFileSync(bob[0]!, 'utf8'), /with ESMTPSA id \w+[\s\S]*\(authenticated as alice@example\.test\)/, 'received-auth names the user');
  const q = await run(process.execPath, [MAIN, 'queue', 'show', '--json', '-c', cfg.path]);
  const queued = JSON.parse(q.stdout) as { sender: string; recipients: { address: string; state: string }[] }[];
  t.equal(queued.length, 1);
  t.equal(queued[0]!.sender, 'alice@example.test');
  t.same(queued[0]!.recipients.map((r) => r.address), ['carol@remote.example']);
  t.match(queued[0]!.recipients[0]!.state, /^(pending|deferred)$/, 'waiting: no DNS answers here, so delivery is deferred');
  t.equal(await app.stop(), 0);
});

t.test('refusals at RCPT and MAIL: unknown user, relay, tls-require, sender mismatch, size', async (t) => {
  const dir = t.testdir();
  const cfg = await writeConfig(dir, { maxSize: '64K' });
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const script = `
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
out = []
s = smtplib.SMTP('127.0.0.1', ${cfg.ports.mx}, local_hostname='mx.example.net', timeout=10)
s.ehlo(); s.starttls(context=ctx); s.ehlo()
s.mail('someone@example.net')
out.append(('unknown', s.rcpt('nobody@example.test')))
out.append(('relay', s.rcpt('victim@elsewhere.example')))
out.append(('known', s.rcpt('alice@example.test')))
s.rset()
out.append(('auth-on-mx', s.docmd('AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABhbGljZS1zZWNyZXQ=')))
s.quit()
s = smtplib.SMTP('127.0.0.1', ${cfg.ports.submission}, local_hostname='laptop', timeout=10)
s.ehlo()
out.append(('mail-before-tls', s.docmd('MAIL FROM:<alice@example.test>')))
s.starttls(context=ctx); s.ehlo(); s.login('${USERS[0]!.address}', '${USERS[0]!.password}')
out.append(('not-owned', s.docmd('MAIL FROM:<bob@example.test>')))
out.append(('owned', s.docmd('MAIL FROM:<alice@example.test> SIZE=100')))
s.rset()
out.append(('size-declared', s.docmd('MAIL FROM:<alice@example.test> SIZE=100000000')))
s.rset()
s.mail('alice@example.test'); s.rcpt('bob@example.test')
out.append(('size-stream', s.data(b'Subject: big\\r\\n\\r\\n' + (b'x' * 998 + b'\\r\\n') * 200)))
s.quit()
for k, (code, text) in out:
    print(k, code, text.decode())
`;
  const { stdout } = await run('python3', ['-c', script], { timeout: 30_000 });
  const lines = Object.fromEntries(stdout.trim().split('\n').map((l) => [l.split(' ')[0], l.slice(l.indexOf(' ') + 1)]));
  t.match(lines.unknown, /^550 5\.1\.1 /);
  t.match(lines.relay, /^554 5\.7\.1 /);
  t.match(lines.known, /^250 /);
  t.match(lines['auth-on-mx'], /^50[0-4] /, 'no AUTH on the MX listener');
  t.match(lines['mail-before-tls'], /^530 5\.7\.0 /);
  t.match(lines['not-owned'], /^553 5\.7\.1 /);
  t.match(lines.owned, /^250 /);
  t.match(lines['size-declared'], /^552 /);
  t.match(lines['size-stream'], /^552 /);
  t.equal(maildirFiles(cfg.dataDir, 'example.test', 'bob').length, 0, 'nothing of the oversized message was delivered');
  t.equal(await app.stop(), 0);
});
