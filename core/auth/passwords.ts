/**
 * Password hashes in credentials tables: identify, verify, create. Verifies
 * what existing user databases hold — bcrypt, SHA-crypt ($5$/$6$), MD5-crypt,
 * argon2id/argon2i PHC strings, LDAP/Dovecot {SCHEME} prefixes — so they
 * migrate unchanged; new hashes are argon2id or bcrypt. SHA-crypt and
 * MD5-crypt are implemented here on node:crypto (no native crypt(3)).
 * Comparisons are constant-time; a malformed hash or an empty password is a
 * mismatch, never an exception.
 */

import * as nodeCrypto from 'node:crypto';
import { createHash, randomBytes, timingSafeEqual, type BinaryLike } from 'node:crypto';
import bcrypt from 'bcryptjs';

export type HashScheme =
  | 'bcrypt'
  | 'sha512-crypt'
  | 'sha256-crypt'
  | 'md5-crypt'
  | 'ssha'
  | 'ssha512'
  | 'sha'
  | 'argon2id'
  | 'argon2i'
  | 'plain';

// OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane.
const ARGON2_MEMORY_KIB = 19456;
const ARGON2_ITERATIONS = 2;
const ARGON2_PARALLELISM = 1;
const ARGON2_SALT_BYTES = 16;
const ARGON2_HASH_BYTES = 32;
const BCRYPT_COST = 10;

// Upper bounds on work taken from a stored hash (an LDAP user may be able to
// write their own), so one entry cannot make each login cost minutes of CPU
// or gigabytes of memory. Hashes above them are identified but never verify.
const ARGON2_MAX_MEMORY_KIB = 1024 * 1024; // 1 GiB
const ARGON2_MAX_ITERATIONS = 64;
const ARGON2_MAX_PARALLELISM = 64;
const SHA_CRYPT_MAX_ROUNDS = 1_000_000; // passlib's default is 656000; ~2 s here
const BCRYPT_MAX_COST = 16; // ~5 s with bcryptjs
// SHA-crypt rounds run on the main thread; yield between slices of this many.
const SHA_CRYPT_SLICE = 10_000;

/* ------------------------------------------------------------------ parsing */

const BCRYPT_RE = /^\$2[aby]\$(?:0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}$/;
// Salts: printable ASCII up to the next '$' (the tools use [./0-9A-Za-z]).
const SHA_CRYPT_RE = /^\$([56])\$(?:rounds=([0-9]{1,10})\$)?([!-#%-9;-~]{0,16})\$([./A-Za-z0-9]+)$/;
const MD5_CRYPT_RE = /^\$1\$([!-#%-9;-~]{0,8})\$([./A-Za-z0-9]{22})$/;
const ARGON2_RE =
  /^\$(argon2id|argon2i)\$v=([0-9]+)\$m=([0-9]{1,10}),t=([0-9]{1,10}),p=([0-9]{1,3})\$([A-Za-z0-9+/]{11,})\$([A-Za-z0-9+/]{6,})$/;
const PREFIX_RE = /^\{([A-Za-z0-9.-]+)\}/;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

type CryptScheme = 'bcrypt' | 'sha512-crypt' | 'sha256-crypt' | 'md5-crypt';

/** Which crypt(3)-style string this is, if one we verify. */
function identifyCrypt(s: string): CryptScheme | null {
  if (BCRYPT_RE.test(s)) return 'bcrypt';
  const sha = SHA_CRYPT_RE.exec(s);
  if (sha) {
    if (sha[4]!.length !== (sha[1] === '6' ? 86 : 43)) return null;
    return sha[1] === '6' ? 'sha512-crypt' : 'sha256-crypt';
  }
  if (MD5_CRYPT_RE.test(s)) return 'md5-crypt';
  return null;
}

function identifyArgon2(s: string): 'argon2id' | 'argon2i' | null {
  const m = ARGON2_RE.exec(s);
  return m ? (m[1] as 'argon2id' | 'argon2i') : null;
}

function decodeBase64Strict(s: string): Buffer | null {
  return BASE64_RE.test(s) ? Buffer.from(s, 'base64') : null;
}

// {SCHEME} prefixes whose body is a crypt(3) string. As in Dovecot, the
// *-CRYPT prefixes all call crypt(), so the body decides the algorithm.
const CRYPT_PREFIXES = new Set(['CRYPT', 'BLF-CRYPT', 'SHA512-CRYPT', 'SHA256-CRYPT', 'MD5-CRYPT']);

/** The scheme of a stored hash, and the part after any {SCHEME} prefix. */
function parse(stored: string): { scheme: HashScheme; body: string } | null {
  if (typeof stored !== 'string') return null;
  const prefix = PREFIX_RE.exec(stored);
  if (!prefix) {
    const crypt = identifyCrypt(stored);
    if (crypt) return { scheme: crypt, body: stored };
    const argon = identifyArgon2(stored);
    return argon ? { scheme: argon, body: stored } : null;
  }
  const name = prefix[1]!.toUpperCase();
  const body = stored.slice(prefix[0].length);
  if (CRYPT_PREFIXES.has(name)) {
    const crypt = identifyCrypt(body);
    return crypt ? { scheme: crypt, body } : null;
  }
  switch (name) {
    case 'ARGON2ID':
    case 'ARGON2I': {
      const argon = identifyArgon2(body);
      return argon && argon === name.toLowerCase() ? { scheme: argon, body } : null;
    }
    case 'SSHA': {
      const raw = decodeBase64Strict(body);
      return raw && raw.length >= 20 ? { scheme: 'ssha', body } : null;
    }
    case 'SSHA512': {
      const raw = decodeBase64Strict(body);
      return raw && raw.length >= 64 ? { scheme: 'ssha512', body } : null;
    }
    case 'SHA': {
      const raw = decodeBase64Strict(body);
      return raw && raw.length === 20 ? { scheme: 'sha', body } : null;
    }
    case 'PLAIN':
    case 'CLEAR':
    case 'CLEARTEXT':
      return { scheme: 'plain', body };
    default:
      return null;
  }
}

/** The scheme of a stored password hash; null when the format is unknown. */
export function identifyHash(stored: string): HashScheme | null {
  return parse(stored)?.scheme ?? null;
}

/** True for a stored value that is a password hash (not clear text, not garbage). */
export function isPasswordHash(value: string): boolean {
  const scheme = identifyHash(value);
  return scheme !== null && scheme !== 'plain';
}

/* -------------------------------------------------------------- verifying */

function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Constant-time string comparison that does not leak either length. */
function constantTimeStringEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a, 'utf8').digest();
  const hb = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(ha, hb) && a.length === b.length;
}

/**
 * Checks a password against a stored hash. Unknown or malformed hashes and
 * empty passwords give false; this never throws.
 */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  try {
    if (typeof password !== 'string' || password.length === 0) return false;
    const parsed = parse(stored);
    if (!parsed) return false;
    const { scheme, body } = parsed;
    switch (scheme) {
      case 'bcrypt':
        if (Number(body.slice(4, 6)) > BCRYPT_MAX_COST) return false;
        return await bcrypt.compare(password, body);
      case 'sha512-crypt':
      case 'sha256-crypt':
      case 'md5-crypt':
        return await verifyCrypt(password, body);
      case 'argon2id':
      case 'argon2i':
        return await verifyArgon2(password, body);
      case 'ssha':
        return verifySaltedDigest('sha1', 20, password, body);
      case 'ssha512':
        return verifySaltedDigest('sha512', 64, password, body);
      case 'sha':
        return verifySaltedDigest('sha1', 20, password, body);
      case 'plain':
        return constantTimeStringEqual(password, body);
    }
  } catch {
    return false;
  }
}

/** {SSHA}/{SSHA512}/{SHA}: base64(digest(password + salt) + salt). */
function verifySaltedDigest(algorithm: string, size: number, password: string, body: string): boolean {
  const raw = decodeBase64Strict(body);
  if (!raw || raw.length < size) return false;
  const expected = raw.subarray(0, size);
  const salt = raw.subarray(size);
  const computed = createHash(algorithm).update(password, 'utf8').update(salt).digest();
  return constantTimeEqual(computed, expected);
}

async function verifyCrypt(password: string, stored: string): Promise<boolean> {
  const computed = await cryptString(Buffer.from(password, 'utf8'), stored);
  if (computed === null) return false;
  return constantTimeEqual(Buffer.from(computed, 'latin1'), Buffer.from(stored, 'latin1'));
}

/** crypt(password, setting) for $1$, $5$ and $6$; null if the setting is not one. */
async function cryptString(password: Buffer, setting: string): Promise<string | null> {
  const sha = /^\$([56])\$(?:rounds=([0-9]{1,10})\$)?([^$]*)/.exec(setting);
  if (sha) {
    if (sha[2] !== undefined && Number(sha[2]) > SHA_CRYPT_MAX_ROUNDS) return null;
    const salt = Buffer.from(sha[3]!, 'latin1').subarray(0, 16);
    return shaCrypt(sha[1] === '6' ? 'sha512' : 'sha256', password, salt, sha[2]);
  }
  const md5 = /^\$1\$([^$]*)/.exec(setting);
  if (md5) return md5Crypt(password, Buffer.from(md5[1]!, 'latin1').subarray(0, 8));
  return null;
}

async function verifyArgon2(password: string, body: string): Promise<boolean> {
  const m = ARGON2_RE.exec(body);
  if (!m) return false;
  const [, variant, version, mem, iter, par, saltB64, hashB64] = m;
  if (version !== '19') return false; // hash-wasm computes Argon2 v1.3 only
  const memorySize = Number(mem);
  const iterations = Number(iter);
  const parallelism = Number(par);
  if (parallelism < 1 || parallelism > ARGON2_MAX_PARALLELISM) return false;
  if (iterations < 1 || iterations > ARGON2_MAX_ITERATIONS) return false;
  if (memorySize < 8 * parallelism || memorySize > ARGON2_MAX_MEMORY_KIB) return false;
  const salt = Buffer.from(saltB64!, 'base64');
  const expected = Buffer.from(hashB64!, 'base64');
  if (salt.length < 8 || expected.length < 4) return false;
  const options = {
    password: Buffer.from(password, 'utf8'),
    salt,
    iterations,
    parallelism,
    memorySize,
    hashLength: expected.length,
  };
  const computed = await argon2Raw(variant === 'argon2id' ? 'argon2id' : 'argon2i', options);
  return constantTimeEqual(computed, expected);
}

interface Argon2Params {
  readonly password: Uint8Array;
  readonly salt: Uint8Array;
  readonly iterations: number;
  readonly parallelism: number;
  readonly memorySize: number;
  readonly hashLength: number;
}

type NodeArgon2 = (
  algorithm: 'argon2id' | 'argon2i',
  params: { message: Uint8Array; nonce: Uint8Array; parallelism: number; tagLength: number; memory: number; passes: number },
  cb: (err: Error | null, result: Buffer) => void,
) => void;

/**
 * Raw Argon2 (v1.3): Node's own implementation where it has one (Node ≥ 24.7,
 * native, off the main thread, ~2.4× faster), else hash-wasm (Node 22).
 */
async function argon2Raw(variant: 'argon2id' | 'argon2i', p: Argon2Params): Promise<Uint8Array> {
  const native = (nodeCrypto as unknown as { argon2?: NodeArgon2 }).argon2;
  if (typeof native === 'function') {
    return new Promise((resolve, reject) =>
      native(variant, { message: p.password, nonce: p.salt, parallelism: p.parallelism, tagLength: p.hashLength, memory: p.memorySize, passes: p.iterations }, (err, out) =>
        err ? reject(err) : resolve(out),
      ),
    );
  }
  const wasm = await import('hash-wasm');
  const options = { ...p, outputType: 'binary' } as const;
  return variant === 'argon2id' ? wasm.argon2id(options) : wasm.argon2i(options);
}

/* ---------------------------------------------------------------- hashing */

/** A new hash for storage: argon2id PHC string (default) or bcrypt `$2b$`. */
export async function hashPassword(password: string, scheme: 'argon2id' | 'bcrypt' = 'argon2id'): Promise<string> {
  if (typeof password !== 'string' || password.length === 0) {
    throw new RangeError('cannot hash an empty password');
  }
  if (scheme === 'bcrypt') {
    return bcrypt.hash(password, BCRYPT_COST);
  }
  if (scheme !== 'argon2id') throw new RangeError(`unsupported hash scheme: ${String(scheme)}`);
  const salt = randomBytes(ARGON2_SALT_BYTES);
  const hash = await argon2Raw('argon2id', {
    password: Buffer.from(password, 'utf8'),
    salt,
    iterations: ARGON2_ITERATIONS,
    parallelism: ARGON2_PARALLELISM,
    memorySize: ARGON2_MEMORY_KIB,
    hashLength: ARGON2_HASH_BYTES,
  });
  const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64').replace(/=+$/, '');
  return (
    `$argon2id$v=19$m=${ARGON2_MEMORY_KIB},t=${ARGON2_ITERATIONS},p=${ARGON2_PARALLELISM}` +
    `$${b64(salt)}$${b64(hash)}`
  );
}

/* ------------------------------------------------- crypt(3) algorithms */

const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** crypt's base64: 3 bytes (given most significant first) to n characters, low bits first. */
function b64From24(b2: number, b1: number, b0: number, n: number): string {
  let w = (b2 << 16) | (b1 << 8) | b0;
  let out = '';
  for (let i = 0; i < n; i++) {
    out += ITOA64[w & 0x3f];
    w >>>= 6;
  }
  return out;
}

/** Byte triples of the final digest, in the order SHA-crypt encodes them. */
const SHA256_ORDER: readonly (readonly [number, number, number])[] = [
  [0, 10, 20], [21, 1, 11], [12, 22, 2], [3, 13, 23], [24, 4, 14],
  [15, 25, 5], [6, 16, 26], [27, 7, 17], [18, 28, 8], [9, 19, 29],
];
const SHA512_ORDER: readonly (readonly [number, number, number])[] = [
  [0, 21, 42], [22, 43, 1], [44, 2, 23], [3, 24, 45], [25, 46, 4],
  [47, 5, 26], [6, 27, 48], [28, 49, 7], [50, 8, 29], [9, 30, 51],
  [31, 52, 10], [53, 11, 32], [12, 33, 54], [34, 55, 13], [56, 14, 35],
  [15, 36, 57], [37, 58, 16], [59, 17, 38], [18, 39, 60], [40, 61, 19],
  [62, 20, 41],
];

/** `len` bytes made by repeating `block`. */
function repeatTo(block: Buffer, len: number): Buffer {
  const out = Buffer.alloc(len);
  for (let i = 0; i < len; i += block.length) block.copy(out, i, 0, Math.min(block.length, len - i));
  return out;
}

function digest(algorithm: string, ...parts: BinaryLike[]): Buffer {
  const h = createHash(algorithm);
  for (const p of parts) h.update(p);
  return h.digest();
}

/**
 * Ulrich Drepper's "Unix crypt using SHA-256 and SHA-512"
 * (https://www.akkadia.org/drepper/SHA-crypt.txt), steps numbered as there.
 * `roundsText` is the digits after `rounds=`, if the setting had them.
 */
async function shaCrypt(
  algorithm: 'sha256' | 'sha512',
  key: Buffer,
  salt: Buffer,
  roundsText: string | undefined,
): Promise<string> {
  const ROUNDS_DEFAULT = 5000;
  const ROUNDS_MIN = 1000;
  const ROUNDS_MAX = 999_999_999;
  let rounds = ROUNDS_DEFAULT;
  if (roundsText !== undefined) {
    rounds = Math.min(ROUNDS_MAX, Math.max(ROUNDS_MIN, Number(roundsText)));
  }
  const size = algorithm === 'sha512' ? 64 : 32;

  // Steps 4-8: digest B = H(key salt key).
  const b = digest(algorithm, key, salt, key);
  // Steps 1-3, 9-12: digest A.
  const a = createHash(algorithm).update(key).update(salt);
  a.update(repeatTo(b, key.length));
  for (let n = key.length; n > 0; n >>>= 1) a.update(n & 1 ? b : key);
  const altResult = a.digest();
  // Steps 13-16: P, from the key repeated key.length times.
  const dpCtx = createHash(algorithm);
  for (let i = 0; i < key.length; i++) dpCtx.update(key);
  const p = repeatTo(dpCtx.digest(), key.length);
  // Steps 17-20: S, from the salt repeated 16 + A[0] times.
  const dsCtx = createHash(algorithm);
  for (let i = 0; i < 16 + altResult[0]!; i++) dsCtx.update(salt);
  const s = repeatTo(dsCtx.digest(), salt.length);
  // Step 21: the rounds.
  let c = altResult;
  for (let i = 0; i < rounds; i++) {
    const h = createHash(algorithm);
    h.update(i & 1 ? p : c);
    if (i % 3 !== 0) h.update(s);
    if (i % 7 !== 0) h.update(p);
    h.update(i & 1 ? c : p);
    c = h.digest();
    if (i % SHA_CRYPT_SLICE === SHA_CRYPT_SLICE - 1) await new Promise<void>((resolve) => setImmediate(resolve));
  }
  // Step 22: the output string.
  let out = algorithm === 'sha512' ? '$6$' : '$5$';
  if (roundsText !== undefined) out += `rounds=${rounds}$`;
  out += `${salt.toString('latin1')}$`;
  for (const [x, y, z] of size === 64 ? SHA512_ORDER : SHA256_ORDER) out += b64From24(c[x]!, c[y]!, c[z]!, 4);
  out += size === 64 ? b64From24(0, 0, c[63]!, 2) : b64From24(0, c[31]!, c[30]!, 3);
  return out;
}

/** Poul-Henning Kamp's MD5-crypt (FreeBSD, glibc `$1$`). */
function md5Crypt(key: Buffer, salt: Buffer): string {
  const magic = Buffer.from('$1$', 'latin1');
  const alt = digest('md5', key, salt, key);
  const ctx = createHash('md5').update(key).update(magic).update(salt);
  ctx.update(repeatTo(alt, key.length));
  for (let n = key.length; n > 0; n >>>= 1) ctx.update(n & 1 ? Buffer.of(0) : key.subarray(0, 1));
  let f = ctx.digest();
  for (let i = 0; i < 1000; i++) {
    const h = createHash('md5');
    h.update(i & 1 ? key : f);
    if (i % 3 !== 0) h.update(salt);
    if (i % 7 !== 0) h.update(key);
    h.update(i & 1 ? f : key);
    f = h.digest();
  }
  const enc =
    b64From24(f[0]!, f[6]!, f[12]!, 4) +
    b64From24(f[1]!, f[7]!, f[13]!, 4) +
    b64From24(f[2]!, f[8]!, f[14]!, 4) +
    b64From24(f[3]!, f[9]!, f[15]!, 4) +
    b64From24(f[4]!, f[10]!, f[5]!, 4) +
    b64From24(0, 0, f[11]!, 2);
  return `$1$${salt.toString('latin1')}$${enc}`;
}
