/**
 * SPF, DKIM and DMARC of mail from outside, end to end: an in-test DNS
 * server publishes sender.test's SPF, DKIM key and DMARC policy; a signed
 * message from an allowed address gets pass/pass/pass in the
 * Authentication-Results the mailbox copy carries; a spoofed one gets
 * fail/none/fail and is still delivered (recorded, not enforced); a forged
 * Authentication-Results claiming our name is removed, another server's
 * kept; an authenticated submission is not verified. The filter that
 * removes forged fields is also tested on its own, across chunk boundaries.
 */
import { generateKeyPairSync } from 'node:crypto';
import { Readable } from 'node:stream';
import { dkimSign } from 'mailauth';
import t from 'tap';
import type { Config } from '../../core/config/types.ts';
import { ForgedResultsFilter, verifyMessage } from '../../smtp/authentication-results.ts';
import { startAppliance, writeConfig } from '../helpers/appliance.ts';
import { startDnsServer } from '../helpers/dns-server.ts';
import { maildir, submit, waitFor } from '../helpers/outbound.ts';
import { RawSmtp } from '../helpers/smtp-client.ts';

t.setTimeout(90_000);

async function filtered(chunks: string[], authservId = 'mail.example.test'): Promise<string> {
  const out: Buffer[] = [];
  for await (const c of Readable.from(chunks.map((c) => Buffer.from(c))).pipe(new ForgedResultsFilter(authservId))) out.push(c as Buffer);
  return Buffer.concat(out).toString();
}

t.test('ForgedResultsFilter: our authserv-id removed, others kept, the body untouched', async (t) => {
  const msg =
    'Authentication-Results: MAIL.example.test;\r\n spf=pass smtp.mailfrom=x@y\r\n' +
    'Authentication-Results: other.example; dkim=pass\r\n' +
    'Authentication-Results: "mail.example.test"; dmarc=pass\r\n' +
    'Authentication-Results: mail.example.test.evil; spf=pass\r\n' +
    'Subject: hi\r\n\r\n' +
    'Authentication-Results: mail.example.test; in the body stays\r\n';
  const want =
    'Authentication-Results: other.example; dkim=pass\r\n' +
    'Authentication-Results: mail.example.test.evil; spf=pass\r\n' +
    'Subject: hi\r\n\r\n' +
    'Authentication-Results: mail.example.test; in the body stays\r\n';
  t.equal(await filtered([msg]), want, 'one chunk');
  t.equal(await filtered(msg.match(/[\s\S]{1,7}/g)!), want, 'seven-byte chunks');
  t.equal(await filtered(['Subject: none\r\n\r\nbody\r\n']), 'Subject: none\r\n\r\nbody\r\n', 'nothing to remove: unchanged');
  t.equal(await filtered(['Authentication-Results: mail.example.test; x\r\nSubject: only headers\r\n']), 'Subject: only headers\r\n', 'a message that is all headers');
});

t.test('verifyMessage: a large signed message in small chunks, and an unsigned one read only to its header', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const dns = await startDnsServer({
    'big.test': [{ type: 'TXT', strings: 'v=spf1 ip4:127.0.0.1 -all' }],
    'k._domainkey.big.test': [{ type: 'TXT', strings: `v=DKIM1; k=rsa; p=${publicKey.export({ type: 'spki', format: 'der' }).toString('base64')}` }],
  });
  t.teardown(() => dns.close());
  const config = { resolver: { host: '127.0.0.1', port: dns.port } } as unknown as Config;
  const facts = { ip: '127.0.0.1', helo: 'mx.big.test', sender: 'a@big.test', mta: 'mail.example.test' };
  const plain = `From: <a@big.test>\r\nSubject: big\r\n\r\n${`${'x'.repeat(76)}\r\n`.repeat(4000)}`;
  const key = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const sig = (await dkimSign(plain, { signatureData: [{ signingDomain: 'big.test', selector: 'k', privateKey: key }] } as never)).signatures;
  const chunks = (text: string) => Readable.from(text.match(/[\s\S]{1,1000}/g)!.map((c) => Buffer.from(c)));
  const signed = await verifyMessage(chunks(sig + plain), facts, config);
  t.equal(signed.verdicts.dkim, 'pass', 'the body hash over 312 KB in 1 KB chunks');
  t.equal(signed.verdicts.spf, 'pass');
  const tampered = await verifyMessage(chunks(`${sig + plain}extra line\r\n`), facts, config);
  t.not(tampered.verdicts.dkim, 'pass', 'a changed body does not pass');
  let read = 0;
  const unsigned = Readable.from(
    (function* () {
      for (const c of plain.match(/[\s\S]{1,1000}/g)!) {
        read += c.length;
        yield Buffer.from(c);
      }
    })(),
  );
  const r = await verifyMessage(unsigned, facts, config);
  t.equal(r.verdicts.dkim, 'none');
  t.equal(r.verdicts.spf, 'pass');
  t.ok(read < 10_000, `only the header block was read (${read} bytes)`);
});

t.test('DNS answers and definite negatives are cached briefly, failures are not', async (t) => {
  const dns = await startDnsServer({ 'c.test': [{ type: 'TXT', strings: 'v=spf1 ip4:127.0.0.1 -all' }] });
  t.teardown(() => dns.close());
  dns.fail('f.test', 'SERVFAIL');
  const config = { resolver: { host: '127.0.0.1', port: dns.port } } as unknown as Config;
  const message = (from: string) => Readable.from([Buffer.from(`From: <x@${from}>\r\nSubject: c\r\n\r\nbody\r\n`)]);
  const facts = (domain: string) => ({ ip: '127.0.0.1', helo: 'mx.c.test', sender: `x@${domain}`, mta: 'mail.example.test' });
  const first = await verifyMessage(message('c.test'), facts('c.test'), config);
  t.equal(first.verdicts.spf, 'pass');
  t.equal(first.verdicts.dmarc, 'none', 'no DMARC record (NXDOMAIN)');
  const asked = dns.queries.length;
  t.ok(asked >= 2, `the first message asked (${asked} queries)`);
  const second = await verifyMessage(message('c.test'), facts('c.test'), config);
  t.same(second.verdicts, first.verdicts, 'the same verdicts');
  t.equal(dns.queries.length, asked, 'the second message asked nothing: answers and the NXDOMAIN came from the cache');
  const broken = await verifyMessage(message('f.test'), facts('f.test'), config);
  t.equal(broken.verdicts.spf, 'temperror', 'SERVFAIL: temperror');
  const afterBroken = dns.queries.length;
  await verifyMessage(message('f.test'), facts('f.test'), config);
  t.ok(dns.queries.length > afterBroken, 'a SERVFAIL is asked again, not cached');
});

t.test('verdicts recorded for mail from outside', async (t) => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const p = publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
  const dns = await startDnsServer({
    'sender.test': [{ type: 'TXT', strings: 'v=spf1 ip4:127.0.0.1 -all' }],
    'sel._domainkey.sender.test': [{ type: 'TXT', strings: `v=DKIM1; k=rsa; p=${p}` }],
    '_dmarc.sender.test': [{ type: 'TXT', strings: 'v=DMARC1; p=reject' }],
    'spoofer.test': [{ type: 'TXT', strings: 'v=spf1 ip4:192.0.2.1 -all' }],
  });
  t.teardown(() => dns.close());
  const dir = t.testdir();
  const cfg = await writeConfig(dir, { resolver: `127.0.0.1:${dns.port}` });
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());

  async function mx(from: string, message: string): Promise<string> {
    const c = await RawSmtp.connect(cfg.ports.mx);
    await c.greeting();
    await c.ehlo('mta.sender.test');
    await c.cmd(`MAIL FROM:<${from}>`);
    await c.cmd('RCPT TO:<alice@example.test>');
    await c.cmd('DATA');
    const r = await c.cmd(`${message.replace(/\r\n\./g, '\r\n..')}\r\n.`);
    await c.quit();
    return r.last;
  }
  const mails = () => maildir(cfg.dataDir, 'alice');
  const headerBlock = (m: string) => m.slice(0, m.indexOf('\r\n\r\n') + 2);

  // 1. Signed by sender.test, sent from an address its SPF allows: everything passes.
  const plain = 'From: Ann <ann@sender.test>\r\nTo: alice@example.test\r\nSubject: signed\r\nMessage-ID: <signed@sender.test>\r\n\r\nHello, signed.\r\n';
  const key = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  // mailauth 7 reads `signatureData` (its .d.ts describes top-level fields, which sign nothing).
  const signed = await dkimSign(plain, { signatureData: [{ signingDomain: 'sender.test', selector: 'sel', privateKey: key, algorithm: 'rsa-sha256', canonicalization: 'relaxed/relaxed' }] } as never);
  t.match(signed.signatures, /^DKIM-Signature: /, 'the test message is signed');
  t.match(await mx('ann@sender.test', signed.signatures + plain), /^250 /);
  await waitFor('the signed message', () => mails().length === 1);
  let head = headerBlock(mails()[0]!);
  t.match(head, /^Return-Path: <ann@sender\.test>\r\nReceived-SPF: pass /, 'Received-SPF under Return-Path');
  t.match(head, /Authentication-Results: mail\.example\.test;/);
  t.match(head, /dkim=pass header\.i=@sender\.test header\.s=sel/, 'dkim=pass');
  t.match(head, /spf=pass \([^)]*\) smtp\.mailfrom=ann@sender\.test/, 'spf=pass');
  t.match(head, /dmarc=pass \(p=REJECT[^)]*\)[^;]* header\.from=sender\.test/, 'dmarc=pass');
  const accepted = app.logLines().filter((l) => l.msg === 'message accepted');
  t.match(accepted.at(-1), { spf: 'pass', dkim: 'pass', dmarc: 'pass' }, 'the verdicts are in the log line');

  // 2. Spoofed From: sender.test, envelope from a domain whose SPF excludes us, and forged results.
  const spoof =
    'Authentication-Results: mail.example.test; spf=pass; dkim=pass; dmarc=pass\r\n' +
    'Authentication-Results: relay.other.example; spf=pass\r\n' +
    'From: CEO <ceo@sender.test>\r\nTo: alice@example.test\r\nSubject: wire money\r\n\r\nNow.\r\n';
  t.match(await mx('boss@spoofer.test', spoof), /^250 /, 'recorded, not refused');
  await waitFor('the spoofed message', () => mails().length === 2);
  const second = mails().find((m) => m.includes('wire money'))!;
  head = headerBlock(second);
  t.match(head, /spf=fail \([^)]*\) smtp\.mailfrom=boss@spoofer\.test/, 'spf=fail');
  t.match(head, /dkim=none/, 'dkim=none');
  t.match(head, /dmarc=fail \(p=REJECT[^)]*\) policy\.dmarc=reject header\.from=sender\.test/, 'dmarc=fail');
  t.equal(head.match(/^Authentication-Results: mail\.example\.test;/gm)?.length, 1, 'only our own verdict claims our name');
  t.notMatch(head, /spf=pass; dkim=pass; dmarc=pass/, 'the forged one is gone');
  t.match(head, /^Authentication-Results: relay\.other\.example; spf=pass\r\n/m, "another server's is kept");
  t.ok(second.endsWith('\r\n\r\nNow.\r\n\r\n'), 'the body is untouched');

  // 3. An authenticated submission is the user's own: not verified.
  await submit(cfg.ports.submission, { to: ['alice@example.test'], subject: 'from alice herself', text: 'mine\r\n' });
  await waitFor('the submitted message', () => mails().length === 3);
  const own = mails().find((m) => m.includes('from alice herself'))!;
  t.notMatch(headerBlock(own), /Authentication-Results|Received-SPF/, 'no verdicts on a submission');
});

t.test('smtp authentication-results no: nothing verified, nothing added', async (t) => {
  const dir = t.testdir();
  const cfg = await writeConfig(dir, { extra: 'smtp authentication-results no' });
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const c = await RawSmtp.connect(cfg.ports.mx);
  await c.greeting();
  await c.ehlo();
  await c.cmd('MAIL FROM:<x@remote.example>');
  await c.cmd('RCPT TO:<alice@example.test>');
  await c.cmd('DATA');
  t.match((await c.cmd('Subject: plain\r\n\r\nbody\r\n.')).last, /^250 /);
  await c.quit();
  const m = maildir(cfg.dataDir, 'alice')[0]!;
  t.match(m, /^Return-Path: <x@remote\.example>\r\nReceived: /, 'Return-Path then Received, as before');
});
