/**
 * `appliance dkim keygen` as a subprocess (the built CLI): the key file, the
 * printed record, and a message signed with the new key that mailauth
 * verifies against the record as printed.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dkimVerify } from 'mailauth';
import t from 'tap';
import { parseConfigText } from '../../core/config/index.ts';
import { createLogger } from '../../core/log.ts';
import { openTables } from '../../core/tables/registry.ts';
import { DkimSigner } from '../../smtp/dkim.ts';
import { run } from './run.ts';

/** mailauth's verdicts, with DNS answered from `txt` (name → the strings of one TXT record). */
async function verifyDkim(message: Buffer, txt: ReadonlyMap<string, readonly string[]>): Promise<string[]> {
  const resolver = async (name: string, type: string): Promise<string[][]> => {
    const record = type === 'TXT' ? txt.get(name.toLowerCase().replace(/\.$/, '')) : undefined;
    if (!record) throw Object.assign(new Error(`no ${type} record for ${name}`), { code: 'ENOTFOUND' });
    return [[...record]];
  };
  return (await dkimVerify(message, { resolver })).results.map((r) => r.status.result);
}

function setup(dir: string): { conf: string; data: string; text: string } {
  const data = join(dir, 'data');
  const conf = join(dir, 'appliance.conf');
  const text = `data-dir "${data}"
table signed { example.test, example.org }
dkim sign domain <signed> selector s2026
dkim sign domain ed.example selector ed1 algorithm ed25519 key "keys/%{domain}.key"
`;
  writeFileSync(conf, text);
  return { conf, data, text };
}

/** The name and the TXT strings of a printed zone-file record (one line or in parentheses). */
function parseRecord(stdout: string): { name: string; strings: string[] } {
  const m = /^(\S+)\. IN TXT (?:\( ((?:"[^"]*"\s*)+)\)|("[^"]*"))\n/.exec(stdout);
  if (!m) throw new Error(`not a TXT record: ${stdout}`);
  const strings = [...(m[2] ?? m[3]!).matchAll(/"([^"]*)"/g)].map((x) => x[1]!);
  return { name: m[1]!, strings };
}

t.test('rsa: a 0600 key in DATA-DIR/dkim (0700) and the record, split for BIND', async (t) => {
  const dir = t.testdir();
  const { conf, data, text } = setup(dir);
  const r = await run(['dkim', 'keygen', 'example.test', '-c', conf]);
  t.equal(r.code, 0, r.stderr);
  const keyPath = join(data, 'dkim', 'example.test.s2026.key');
  t.equal(r.stderr, `wrote ${keyPath} (rsa 2048)\n`);
  t.equal(statSync(keyPath).mode & 0o777, 0o600);
  t.equal(statSync(join(data, 'dkim')).mode & 0o777, 0o700);
  const pem = readFileSync(keyPath, 'utf8');
  t.match(pem, /^-----BEGIN PRIVATE KEY-----\n/, 'PKCS#8');
  const key = createPrivateKey(pem);
  t.equal(key.asymmetricKeyDetails?.modulusLength, 2048);

  const { name, strings } = parseRecord(r.stdout);
  t.equal(name, 's2026._domainkey.example.test');
  t.ok(strings.length >= 2, 'split');
  for (const s of strings) t.ok(s.length <= 255);
  const value = strings.join('');
  const lines = r.stdout.trimEnd().split('\n');
  t.equal(lines.at(-1), `; ${value}`, 'the one-line value for web panels');
  const p = /^v=DKIM1; k=rsa; p=([A-Za-z0-9+/=]+)$/.exec(value)![1]!;
  t.same(
    createPublicKey({ key: Buffer.from(p, 'base64'), format: 'der', type: 'spki' }).export({ type: 'spki', format: 'der' }),
    createPublicKey(key).export({ type: 'spki', format: 'der' }),
    'p= is the public half of the key',
  );

  // Sign with the key where the signer finds it; verify against the record as printed (multi-string TXT).
  const config = parseConfigText(text, conf);
  if (!config.ok) throw new Error('config');
  const signer = await DkimSigner.load(config.config, openTables(config.config, {}), createLogger({ level: 'fatal', pretty: false }));
  const msg = Buffer.from('From: A <a@example.test>\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n');
  const { header } = await signer.sign(msg, 'example.test');
  t.ok(header);
  const txt = new Map([[name, strings]]);
  t.same(await verifyDkim(Buffer.concat([Buffer.from(header!), msg]), txt), ['pass']);

  const again = await run(['dkim', 'keygen', 'example.test', '-c', conf]);
  t.equal(again.code, 1);
  t.match(again.stderr, /already exists; not overwriting it/);
  t.equal(readFileSync(keyPath, 'utf8'), pem, 'unchanged');
  const forced = await run(['dkim', 'keygen', 'example.test', '--force', '-c', conf]);
  t.equal(forced.code, 0, forced.stderr);
  t.not(readFileSync(keyPath, 'utf8'), pem, 'replaced with --force');
  t.equal(statSync(keyPath).mode & 0o777, 0o600);
});

t.test('ed25519 from the config line: key path template, one-line record (RFC 8463)', async (t) => {
  const dir = t.testdir();
  const { conf } = setup(dir);
  const r = await run(['dkim', 'keygen', 'ed.example', '-c', conf]);
  t.equal(r.code, 0, r.stderr);
  const keyPath = join(dir, 'keys', 'ed.example.key');
  t.equal(statSync(keyPath).mode & 0o777, 0o600);
  const key = createPrivateKey(readFileSync(keyPath));
  t.equal(key.asymmetricKeyType, 'ed25519');
  const m = /^ed1\._domainkey\.ed\.example\. IN TXT "v=DKIM1; k=ed25519; p=([A-Za-z0-9+/]{43}=)"\n$/.exec(r.stdout);
  t.ok(m, r.stdout);
  const raw = Buffer.from(m![1]!, 'base64');
  t.equal(raw.length, 32);
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  t.same(spki.subarray(spki.length - 32), raw, 'p= is the raw public key');
});

t.test('selector, algorithm and --json; a domain no line covers', async (t) => {
  const dir = t.testdir();
  const { conf, data } = setup(dir);
  const r = await run(['dkim', 'keygen', 'Other.Example', '--algorithm', 'ed25519', '--json', '-c', conf]);
  t.equal(r.code, 0, r.stderr);
  const year = new Date().getFullYear();
  const j = JSON.parse(r.stdout) as Record<string, string>;
  t.match(j, { domain: 'other.example', selector: `s${year}`, algorithm: 'ed25519', key: join(data, 'dkim', `other.example.s${year}.key`), name: `s${year}._domainkey.other.example` });
  t.match(j.value, /^v=DKIM1; k=ed25519; p=/);
  t.match(r.stderr, `no "dkim sign" line of ${conf} covers other.example`);
  t.match(r.stderr, `dkim sign domain other.example selector s${year} algorithm ed25519`);

  const sel = await run(['dkim', 'keygen', 'example.org', '--selector', 'next', '-c', conf]);
  t.equal(sel.code, 0, sel.stderr);
  t.match(sel.stdout, /^next\._domainkey\.example\.org\. IN TXT \( "v=DKIM1; k=rsa; p=/);
  t.ok(statSync(join(data, 'dkim', 'example.org.next.key')).isFile());
  t.match(sel.stderr, /signs example\.org with selector s2026; this key \(selector next\) is used once that line says selector next/);
});

t.test('bad usage exits 2 and writes nothing', async (t) => {
  const dir = t.testdir();
  const { conf } = setup(dir);
  for (const args of [
    ['dkim', 'keygen', '-c', conf],
    ['dkim', 'keygen', 'not a domain', '-c', conf],
    ['dkim', 'keygen', 'example.test', '--algorithm', 'dsa', '-c', conf],
    ['dkim', 'keygen', 'example.test', '--selector', 'bad.selector', '-c', conf],
    ['dkim', 'keygen', 'example.test', 'extra', '-c', conf],
    ['dkim', 'rotate', 'example.test', '-c', conf],
    ['dkim', 'keygen', 'example.test', '-c', join(dir, 'missing.conf')],
  ]) {
    const r = await run(args);
    t.equal(r.code, 2, args.join(' '));
    t.equal(r.stdout, '');
  }
  t.throws(() => statSync(join(dir, 'data')), 'no data directory');
  const help = await run(['dkim', '--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /SELECTOR\._domainkey\.DOMAIN\. IN TXT "v=DKIM1; k=rsa; p=BASE64"/);
  t.match((await run(['--help'])).stdout, /dkim {6}make a DKIM key/);
});
