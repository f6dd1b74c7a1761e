import t from 'tap';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  hashPassword,
  identifyHash,
  isPasswordHash,
  verifyPassword,
  type HashScheme,
} from '../../../core/auth/passwords.ts';

const fixtures = join(dirname(fileURLToPath(import.meta.url)), '../../fixtures/passwords');

interface ToolVector {
  command: string;
  password: string;
  hash: string;
  scheme: HashScheme | null;
}
interface ToolFixture {
  tool: string;
  version: string;
  vectors: ToolVector[];
}
interface SpecVector {
  password: string;
  setting: string;
  hash: string;
}

function load<T>(name: string): T {
  return JSON.parse(readFileSync(join(fixtures, name), 'utf8')) as T;
}

const TOOL_FILES = ['mkpasswd.json', 'slappasswd.json', 'doveadm.json', 'htpasswd.json', 'smtpctl.json'];

for (const file of TOOL_FILES) {
  const fixture = load<ToolFixture>(file);
  t.test(`${fixture.tool} (${fixture.version})`, async (t) => {
    t.ok(fixture.vectors.length > 0, 'has vectors');
    for (const v of fixture.vectors) {
      const label = v.command;
      t.equal(identifyHash(v.hash), v.scheme, `identify: ${label}`);
      if (v.scheme === null) {
        t.equal(await verifyPassword(v.password, v.hash), false, `unsupported never verifies: ${label}`);
        t.equal(isPasswordHash(v.hash), false, `unsupported is not a hash: ${label}`);
        continue;
      }
      t.equal(isPasswordHash(v.hash), v.scheme !== 'plain', `isPasswordHash: ${label}`);
      if (v.password === '') {
        t.equal(await verifyPassword('', v.hash), false, `empty password never verifies: ${label}`);
        continue;
      }
      t.equal(await verifyPassword(v.password, v.hash), true, `right password: ${label}`);
      t.equal(await verifyPassword('x' + v.password, v.hash), false, `wrong password: ${label}`);
      // bcrypt ignores bytes after the 72nd (in every implementation, the tools' included).
      const truncated = v.scheme === 'bcrypt' && Buffer.byteLength(v.password) >= 72;
      t.equal(await verifyPassword(v.password + 'x', v.hash), truncated, `longer password: ${label}`);
      t.equal(await verifyPassword('', v.hash), false, `empty password: ${label}`);
    }
  });
}

t.test('fixtures cover every tool-made format', async (t) => {
  const seen = new Set<HashScheme | null>();
  for (const file of TOOL_FILES) for (const v of load<ToolFixture>(file).vectors) seen.add(v.scheme);
  const all: HashScheme[] = [
    'bcrypt', 'sha512-crypt', 'sha256-crypt', 'md5-crypt', 'ssha', 'ssha512', 'sha', 'argon2id', 'argon2i', 'plain',
  ];
  for (const s of all) t.ok(seen.has(s), s);
  // bcrypt minor versions and prefixes seen from real tools
  const hashes = TOOL_FILES.flatMap((f) => load<ToolFixture>(f).vectors.map((v) => v.hash));
  for (const p of ['$2a$', '$2b$', '$2y$', '{BLF-CRYPT}$2y$', '{CRYPT}$6$', '{ARGON2ID}$argon2id$', '{SSHA512}', '{PLAIN}']) {
    t.ok(hashes.some((h) => h.startsWith(p)), `a real ${p} hash`);
  }
  t.ok(hashes.some((h) => /^\$[56]\$rounds=/.test(h)), 'a real rounds= hash');
});

t.test("Drepper's SHA-crypt test vectors", async (t) => {
  const spec = load<{ vectors: SpecVector[] }>('drepper-sha-crypt.json');
  t.equal(spec.vectors.length, 14);
  for (const v of spec.vectors) {
    t.equal(identifyHash(v.hash), v.hash.startsWith('$6$') ? 'sha512-crypt' : 'sha256-crypt', v.setting);
    t.equal(await verifyPassword(v.password, v.hash), true, `verifies: ${v.setting}`);
    t.equal(await verifyPassword(v.password.slice(0, -1), v.hash), false, `shorter password: ${v.setting}`);
  }
});

t.test('the same vectors through {CRYPT} and Dovecot prefixes, case-insensitive', async (t) => {
  const spec = load<{ vectors: SpecVector[] }>('drepper-sha-crypt.json');
  const v256 = spec.vectors[0]!;
  const v512 = spec.vectors[7]!;
  for (const prefix of ['{CRYPT}', '{crypt}', '{SHA256-CRYPT}', '{sha256-crypt}']) {
    t.equal(identifyHash(prefix + v256.hash), 'sha256-crypt', prefix);
    t.equal(await verifyPassword(v256.password, prefix + v256.hash), true, prefix);
  }
  for (const prefix of ['{CRYPT}', '{SHA512-CRYPT}', '{Sha512-Crypt}']) {
    t.equal(identifyHash(prefix + v512.hash), 'sha512-crypt', prefix);
    t.equal(await verifyPassword(v512.password, prefix + v512.hash), true, prefix);
  }
});

t.test('identifyHash on hand-written shapes', async (t) => {
  const cases: [string, HashScheme | null][] = [
    ['$2a$10$' + 'a'.repeat(53), 'bcrypt'],
    ['$2b$04$' + 'a'.repeat(53), 'bcrypt'],
    ['$2y$31$' + 'a'.repeat(53), 'bcrypt'],
    ['$2x$10$' + 'a'.repeat(53), null], // crypt_blowfish's buggy 8-bit mode
    ['$2b$03$' + 'a'.repeat(53), null], // cost below 4
    ['$2b$10$' + 'a'.repeat(52), null],
    ['$6$salt$' + 'a'.repeat(86), 'sha512-crypt'],
    ['$6$salt$' + 'a'.repeat(85), null],
    ['$5$rounds=5000$salt$' + 'a'.repeat(43), 'sha256-crypt'],
    ['$5$' + 's'.repeat(17) + '$' + 'a'.repeat(43), null], // salt longer than 16
    ['$1$saltsalt$' + 'a'.repeat(22), 'md5-crypt'],
    ['$1$saltsalts$' + 'a'.repeat(22), null],
    ['{CRYPT}abJnggxhB/yWI', null], // traditional DES
    ['abJnggxhB/yWI', null],
    ['$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7', null], // yescrypt
    ['$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$' + 'A'.repeat(43), 'argon2id'],
    ['$argon2i$v=19$m=4096,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$' + 'A'.repeat(43), 'argon2i'],
    ['$argon2d$v=19$m=4096,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$' + 'A'.repeat(43), null],
    ['{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$' + 'A'.repeat(43), 'argon2id'],
    ['{argon2i}$argon2i$v=19$m=4096,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$' + 'A'.repeat(43), 'argon2i'],
    ['{ARGON2I}$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$' + 'A'.repeat(43), null],
    ['{SSHA}' + Buffer.alloc(24).toString('base64'), 'ssha'],
    ['{ssha512}' + Buffer.alloc(72).toString('base64'), 'ssha512'],
    ['{SHA}' + Buffer.alloc(20).toString('base64'), 'sha'],
    ['{SHA}' + Buffer.alloc(24).toString('base64'), null],
    ['{SSHA}' + Buffer.alloc(10).toString('base64'), null],
    ['{SSHA}not base64!', null],
    ['{PLAIN}secret', 'plain'],
    ['{plain}', 'plain'],
    ['{MD5}CY9rzUYh03PK3k6DJie09g==', null],
    ['{NOPE}x', null],
    ['1000:10:/home/alice', null],
    ['secret', null],
    ['', null],
    ['$', null],
    ['{', null],
    ['{}', null],
  ];
  for (const [stored, scheme] of cases) t.equal(identifyHash(stored), scheme, JSON.stringify(stored));
});

t.test('isPasswordHash', async (t) => {
  t.equal(isPasswordHash('1000:10:/home/alice'), false, 'a userinfo value is not a hash');
  t.equal(isPasswordHash('{PLAIN}secret'), false, 'plain text is not a hash');
  t.equal(isPasswordHash('secret'), false);
  t.equal(isPasswordHash(''), false);
  t.equal(isPasswordHash(await hashPassword('pw')), true);
  t.equal(isPasswordHash('{SHA}' + Buffer.alloc(20).toString('base64')), true);
});

t.test('malformed hashes give false without throwing', async (t) => {
  const malformed = [
    '',
    '$',
    '$2b$',
    '$2b$10$',
    '$2b$99$' + 'a'.repeat(53),
    '$6$',
    '$6$$',
    '$6$rounds=$salt$x',
    '$6$rounds=abc',
    '$5$salt$short',
    '$1$',
    '$argon2id$',
    '$argon2id$v=19$m=19456,t=2,p=1$$',
    '$argon2id$v=16$m=4096,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$' + 'A'.repeat(43), // Argon2 1.0: not computable here
    '$argon2id$v=19$m=4,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$' + 'A'.repeat(43), // m < 8p
    '$argon2id$v=19$m=99999999,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$' + 'A'.repeat(43), // absurd memory
    '$argon2id$v=19$m=4096,t=0,p=1$c29tZXNhbHRzb21lc2FsdA$' + 'A'.repeat(43),
    '$argon2id$v=19$m=4096,t=3,p=0$c29tZXNhbHRzb21lc2FsdA$' + 'A'.repeat(43),
    '$argon2id$v=19$m=4096,t=3,p=1$c2FsdA$' + 'A'.repeat(43), // 4-byte salt
    '{SSHA}',
    '{SSHA}====',
    '{SSHA512}abc',
    '{SHA}',
    '{CRYPT}',
    '{CRYPT}*',
    '{CRYPT}!$6$salt$' + 'a'.repeat(86), // a locked account
    '{BLF-CRYPT}$2y$05$',
    '{ARGON2ID}',
    '{',
    '}',
    '{}{}',
    '\u0000',
    '$6$salt$' + '\u00e9'.repeat(86),
    'x'.repeat(100000),
  ];
  for (const stored of malformed) {
    const label = JSON.stringify(stored.length > 80 ? stored.slice(0, 80) + '…' : stored);
    t.equal(await verifyPassword('password', stored), false, label);
    t.doesNotThrow(() => identifyHash(stored), label);
  }
  // Not strings at all (from an untyped config or LDAP attribute).
  t.equal(await verifyPassword('password', undefined as unknown as string), false, 'undefined');
  t.equal(await verifyPassword('password', null as unknown as string), false, 'null');
  t.equal(await verifyPassword(undefined as unknown as string, '{PLAIN}x'), false, 'undefined password');
  t.equal(identifyHash(42 as unknown as string), null, 'number');
});

t.test('work taken from a stored hash is bounded', async (t) => {
  const sha = '$6$rounds=1000001$salt$' + 'a'.repeat(86);
  t.equal(identifyHash(sha), 'sha512-crypt', 'still identified');
  let start = Date.now();
  t.equal(await verifyPassword('password', sha), false, 'rounds above 1000000 never verify');
  t.ok(Date.now() - start < 500, 'and cost nothing');
  const bf = '$2b$17$' + 'a'.repeat(53);
  t.equal(identifyHash(bf), 'bcrypt', 'still identified');
  start = Date.now();
  t.equal(await verifyPassword('password', bf), false, 'bcrypt cost above 16 never verifies');
  t.ok(Date.now() - start < 500, 'and costs nothing');
});

t.test('SHA-crypt yields to the event loop on many rounds', async (t) => {
  const v = load<{ vectors: SpecVector[] }>('drepper-sha-crypt.json').vectors[12]!; // $6$rounds=123456$
  let ticks = 0;
  let done = false;
  const tick = (): void => {
    ticks++;
    if (!done) setImmediate(tick);
  };
  setImmediate(tick);
  const ok = await verifyPassword(v.password, v.hash);
  done = true;
  t.equal(ok, true);
  t.ok(ticks >= 5, `other work ran meanwhile (${ticks} ticks)`);
});

t.test('{PLAIN} compares exactly', async (t) => {
  t.equal(await verifyPassword('secret', '{PLAIN}secret'), true);
  t.equal(await verifyPassword('Secret', '{PLAIN}secret'), false);
  t.equal(await verifyPassword('secret ', '{PLAIN}secret'), false);
  t.equal(await verifyPassword('secre', '{PLAIN}secret'), false);
  t.equal(await verifyPassword('pässwörd', '{plain}pässwörd'), true);
  t.equal(await verifyPassword('', '{PLAIN}'), false, 'empty never verifies');
});

t.test('hashPassword round-trips: argon2id (default)', async (t) => {
  const password = 'pässwörd-日本語-🔑';
  const hash = await hashPassword(password);
  t.match(hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
  t.equal(identifyHash(hash), 'argon2id');
  t.equal(await verifyPassword(password, hash), true);
  t.equal(await verifyPassword(password + 'x', hash), false);
  t.equal(await verifyPassword(password, '{ARGON2ID}' + hash), true, 'with Dovecot prefix');
  t.not(await hashPassword(password), hash, 'salted: a second hash differs');
  t.equal(await hashPassword(password, 'argon2id').then((h) => h.startsWith('$argon2id$')), true, 'explicit scheme');
});

t.test('hashPassword round-trips: bcrypt', async (t) => {
  const password = 'correct horse battery staple';
  const hash = await hashPassword(password, 'bcrypt');
  t.match(hash, /^\$2b\$10\$[./A-Za-z0-9]{53}$/);
  t.equal(identifyHash(hash), 'bcrypt');
  t.equal(await verifyPassword(password, hash), true);
  t.equal(await verifyPassword(password + 'x', hash), false);
  t.equal(await verifyPassword(password, '{BLF-CRYPT}' + hash), true, 'with Dovecot prefix');
});

t.test('hashPassword refuses an empty password', async (t) => {
  await t.rejects(hashPassword(''), RangeError);
  await t.rejects(hashPassword('', 'bcrypt'), RangeError);
});
