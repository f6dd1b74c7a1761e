/**
 * DKIM signing (smtp/dkim.ts): signatures made here verified by mailauth's
 * verifier against a stub DNS resolver; line and key selection, oversigned
 * From, tampering, and keys that are missing (logged once, no signature).
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { dkimVerify } from 'mailauth';
import t from 'tap';
import { formatDiagnostic, parseConfigText } from '../../core/config/index.ts';
import type { Config } from '../../core/config/types.ts';
import { createLogger } from '../../core/log.ts';
import { openTables } from '../../core/tables/registry.ts';
import { DkimSigner, dkimPublicKeyValue, dkimSignMessage, fromDomainOf } from '../../smtp/dkim.ts';

interface Verdict {
  readonly result: string;
  readonly comment?: string;
  readonly domain?: string;
  readonly selector?: string;
  readonly algorithm?: string;
}

/** mailauth's DKIM verifier with DNS answered from `txt` (name → the strings of one TXT record). */
async function verifyDkim(message: Buffer, txt: ReadonlyMap<string, readonly string[]>): Promise<Verdict[]> {
  const resolver = async (name: string, type: string): Promise<string[][]> => {
    const record = type === 'TXT' ? txt.get(name.toLowerCase().replace(/\.$/, '')) : undefined;
    if (!record) throw Object.assign(new Error(`no ${type} record for ${name}`), { code: 'ENOTFOUND' });
    return [[...record]];
  };
  const r = await dkimVerify(message, { resolver });
  return r.results.map((x) => ({
    result: x.status.result,
    ...(x.status.comment ? { comment: String(x.status.comment) } : {}),
    ...(x.signingDomain ? { domain: x.signingDomain } : {}),
    ...(x.selector ? { selector: x.selector } : {}),
    ...(x.algo ? { algorithm: x.algo } : {}),
  }));
}

function txtOf(key: KeyObject): string[] {
  const { k, p } = dkimPublicKeyValue(key);
  return [`v=DKIM1; k=${k}; p=${p}`];
}

function message(from: string, body = 'Hello  there\r\n\r\nBye\r\n'): Buffer {
  return Buffer.from(
    `Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n` +
      `From: ${from}\r\n` +
      `To: Bob <bob@example.org>\r\n` +
      `Subject:  Greetings,\r\n\tfolded   subject \r\n` +
      `Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n` +
      `Message-ID: <1@example.test>\r\n` +
      `MIME-Version: 1.0\r\n` +
      `Content-Type: text/plain; charset=utf-8\r\n` +
      `List-Unsubscribe: <mailto:leave@example.test>\r\n` +
      `X-Not-Signed: yes\r\n` +
      `\r\n${body}`,
    'utf8',
  );
}

interface Fixture {
  config: Config;
  signer: DkimSigner;
  logs: () => Record<string, unknown>[];
  rsa: KeyObject;
  ed: KeyObject;
  dir: string;
}

async function fixture(dir: string, extra = ''): Promise<Fixture> {
  const data = join(dir, 'data');
  mkdirSync(join(data, 'dkim'), { recursive: true });
  mkdirSync(join(dir, 'keys'));
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const ed = generateKeyPairSync('ed25519').privateKey;
  writeFileSync(join(data, 'dkim', 'example.test.s2026.key'), rsa.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(join(dir, 'keys', 'ed.example.ed.key'), ed.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const text = `data-dir "${data}"
table signed { example.test, nokey.example }
dkim sign domain <signed> selector s2026
dkim sign domain { ed.example, example.test } selector ed1 algorithm ed25519 key "keys/%{domain}.ed.key"
${extra}`;
  const r = parseConfigText(text, join(dir, 'appliance.conf'));
  if (!r.ok) throw new Error(r.errors.map(formatDiagnostic).join('\n'));
  const out = new PassThrough();
  const lines: string[] = [];
  out.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
  const log = createLogger({ level: 'info', pretty: false, destination: out });
  const tables = openTables(r.config, { file: { watch: false } });
  const signer = await DkimSigner.load(r.config, tables, log);
  return { config: r.config, signer, logs: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>), rsa, ed, dir };
}

t.test('fromDomainOf', async (t) => {
  const cases: [string, string | null][] = [
    ['From: alice@Example.TEST\r\n', 'example.test'],
    ['Subject: x\r\nfrom :  Alice <alice@example.test>\r\n', 'example.test'],
    ['From: "Smith, Alice <a@wrong.example>" <alice@example.test>\r\n', 'example.test'],
    ['From: =?utf-8?q?Al=C3=AFce?=\r\n <alice@example.test>\r\nTo: b@other.example\r\n', 'example.test'],
    ['From: alice@example.test (Alice <x@wrong.example>)\r\n', 'example.test'],
    ['From: Team: alice@example.test, bob@other.example;\r\n', 'example.test'],
    ['From: Undisclosed:;\r\n', null],
    ['From: a@first.example, b@second.example\r\n', 'first.example'],
    ['From: <@relay.example:alice@example.test>\r\n', 'example.test'],
    ['From: Alice <alice@example.test.>\n\nFrom: body@wrong.example\n', 'example.test'],
    ['From: no address here\r\n', null],
    ['From: alice@[192.0.2.1]\r\n', null],
    ['To: bob@example.test\r\n\r\nFrom: body@wrong.example\r\n', null],
    ['From: Ålice <alice@bücher.example>\r\n', 'bücher.example'],
  ];
  for (const [input, want] of cases) t.equal(fromDomainOf(Buffer.from(input, 'utf8')), want, JSON.stringify(input));
});

t.test('signs with the first matching line (rsa-sha256); mailauth verifies; From is oversigned', async (t) => {
  const f = await fixture(t.testdir());
  const msg = message('Alice <alice@example.test>');
  const { header } = await f.signer.sign(msg, fromDomainOf(msg)!);
  t.ok(header, 'signed');
  t.match(header!, /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.test;\r\n/);
  t.match(header!, /s=s2026;/);
  t.ok(header!.endsWith('\r\n'));
  t.notOk(/\r\n(?![ \t])./.test(header!.slice(0, -2)), 'every further line is a continuation');
  const h = /h=([^;]+);/.exec(header!.replace(/\r\n\t/g, ''))![1]!.split(':');
  t.same(h, ['from', 'to', 'subject', 'date', 'message-id', 'mime-version', 'content-type', 'list-unsubscribe', 'from']);
  t.equal(h.filter((n) => n === 'from').length, 2, 'From listed twice');

  const txt = new Map([['s2026._domainkey.example.test', txtOf(f.rsa)]]);
  const signed = Buffer.concat([Buffer.from(header!), msg]);
  t.same(await verifyDkim(signed, txt), [{ result: 'pass', domain: 'example.test', selector: 's2026', algorithm: 'rsa-sha256' }]);

  // Changes that relaxed canonicalization ignores keep it valid.
  const rewrapped = Buffer.from(signed.toString().replace('Subject:  Greetings,', 'subject: Greetings, ').replace('Bye\r\n', 'Bye  \r\n\r\n\r\n'));
  t.equal((await verifyDkim(rewrapped, txt))[0]!.result, 'pass', 'whitespace changes are tolerated');
  // An unsigned header may change.
  t.equal((await verifyDkim(Buffer.from(signed.toString().replace('X-Not-Signed: yes', 'X-Not-Signed: changed')), txt))[0]!.result, 'pass');
});

t.test('tampering breaks the signature', async (t) => {
  const f = await fixture(t.testdir());
  const msg = message('alice@example.test');
  const { header } = await f.signer.sign(msg, 'example.test');
  const txt = new Map([['s2026._domainkey.example.test', txtOf(f.rsa)]]);
  const signed = Buffer.concat([Buffer.from(header!), msg]).toString();

  const body = await verifyDkim(Buffer.from(signed.replace('Bye', 'Buy')), txt);
  t.not(body[0]!.result, 'pass', 'tampered body');
  t.match(body[0]!.comment, /body hash/);
  t.equal((await verifyDkim(Buffer.from(signed.replace('folded   subject', 'other subject')), txt))[0]!.result, 'fail', 'tampered subject');
  const added = signed.replace('Received:', 'From: mallory@evil.example\r\nReceived:');
  t.equal((await verifyDkim(Buffer.from(added), txt))[0]!.result, 'fail', 'a second From: added later (oversigned)');
  const otherKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  t.equal((await verifyDkim(Buffer.from(signed), new Map([['s2026._domainkey.example.test', txtOf(otherKey)]])))[0]!.result, 'fail', 'another public key');
});

t.test('ed25519-sha256 with a key path template (relative to the config)', async (t) => {
  const f = await fixture(t.testdir());
  const msg = message('Ed <ed@ed.example>');
  const { header } = await f.signer.sign(msg, 'ed.example');
  t.match(header, /a=ed25519-sha256; c=relaxed\/relaxed; d=ed\.example;/);
  t.match(header, /s=ed1;/);
  const txt = new Map([['ed1._domainkey.ed.example', txtOf(f.ed)]]);
  t.match(txtOf(f.ed)[0], /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/]{43}=$/);
  t.same(await verifyDkim(Buffer.concat([Buffer.from(header!), msg]), txt), [{ result: 'pass', domain: 'ed.example', selector: 'ed1', algorithm: 'ed25519-sha256' }]);
});

t.test('no signature for a domain no line covers; a missing key is logged once', async (t) => {
  const f = await fixture(t.testdir());
  t.same(await f.signer.sign(message('x@other.example'), 'other.example'), { header: null });
  t.same(await f.signer.sign(message('x@example.test'), 'sub.example.test'), { header: null }, 'no subdomain match in a plain domain table');
  t.same(await f.signer.sign(message('x@example.test'), '../etc'), { header: null }, 'not a domain');

  const before = f.logs().filter((l) => l.domain === 'nokey.example').length;
  t.equal(before, 1, 'the load reported the missing key of a listed domain');
  t.same(await f.signer.sign(message('x@nokey.example'), 'nokey.example'), { header: null });
  t.same(await f.signer.sign(message('x@nokey.example'), 'nokey.example'), { header: null });
  const missing = f.logs().filter((l) => l.domain === 'nokey.example');
  t.equal(missing.length, 1, 'logged once');
  t.match(missing[0], { level: 50, selector: 's2026', err: 'no such file', msg: /appliance dkim keygen nokey\.example --selector s2026/ });
});

t.test('keys are cached; a message without From: is not signed', async (t) => {
  const f = await fixture(t.testdir());
  t.ok((await f.signer.sign(message('a@example.test'), 'example.test')).header);
  unlinkSync(join(f.config.dataDir, 'dkim', 'example.test.s2026.key'));
  t.ok((await f.signer.sign(message('a@example.test'), 'example.test')).header, 'still signs from the cache');
  t.same(await f.signer.sign(Buffer.from('Subject: no from\r\n\r\nbody\r\n'), 'example.test'), { header: null });
  t.match(f.logs().at(-1), { level: 40, msg: /unsigned/ });
});

t.test('a key of the other type signs with its own algorithm (warned)', async (t) => {
  const dir = t.testdir();
  const f = await fixture(dir);
  // nokey.example gets an ed25519 key although its line says rsa-sha256.
  writeFileSync(join(f.config.dataDir, 'dkim', 'nokey.example.s2026.key'), f.ed.export({ type: 'pkcs8', format: 'pem' }));
  const msg = message('n@nokey.example');
  const { header } = await f.signer.sign(msg, 'nokey.example');
  t.match(header, /a=ed25519-sha256/);
  t.equal((await verifyDkim(Buffer.concat([Buffer.from(header!), msg]), new Map([['s2026._domainkey.nokey.example', txtOf(f.ed)]])))[0]!.result, 'pass');
  t.ok(f.logs().some((l) => l.level === 40 && /is ed25519, the config says rsa-sha256/.test(String(l.msg))));
});

t.test('bare LF line endings, an empty body and a message without a body', async (t) => {
  const f = await fixture(t.testdir());
  const txt = new Map([['s2026._domainkey.example.test', txtOf(f.rsa)]]);
  for (const msg of [
    Buffer.from('From: a@example.test\nSubject: lf\n\nline one \nline two\n'),
    Buffer.from('From: a@example.test\r\nSubject: empty\r\n\r\n'),
    Buffer.from('From: a@example.test\r\nSubject: none\r\n'),
  ]) {
    const { header } = await f.signer.sign(msg, 'example.test');
    t.equal((await verifyDkim(Buffer.concat([Buffer.from(header!), msg]), txt))[0]!.result, 'pass', JSON.stringify(msg.toString().slice(-20)));
  }
});

t.test('dkimSignMessage: fixed time, a long h= is folded', async (t) => {
  const key = generateKeyPairSync('ed25519').privateKey;
  const lists = Array.from({ length: 12 }, (_, i) => `List-Archive: <https://example.test/${i}>\r\n`).join('');
  const msg = Buffer.from(`From: a@example.test\r\n${lists}\r\nbody\r\n`);
  const header = dkimSignMessage(msg, { domain: 'example.test', selector: 'x', key, time: 1700000000 });
  t.match(header, /t=1700000000;/);
  for (const line of header.split('\r\n')) t.ok(line.length <= 80, `short line: ${line.slice(0, 30)}`);
  t.equal((await verifyDkim(Buffer.concat([Buffer.from(header), msg]), new Map([['x._domainkey.example.test', txtOf(key)]])))[0]!.result, 'pass');
  t.throws(() => dkimSignMessage(Buffer.from('To: a@b\r\n\r\n'), { domain: 'example.test', selector: 'x', key }), /no From/);
});
