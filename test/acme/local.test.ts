/**
 * The local parts of ACME: the account key (made once, 0600, a corrupt one
 * refused and left alone) and the HTTP-01 responder (only challenge paths,
 * 404 otherwise, a clear error for a port in use).
 */
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { AccountKeyError, loadOrCreateAccountKey } from '../../acme/account.ts';
import { ChallengeResponder } from '../../acme/responder.ts';

function get(port: number, path: string, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

t.test('account key: created once with mode 0600, then reused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-acme-key-'));
  const a = loadOrCreateAccountKey(dir);
  t.ok(a.created, 'created');
  t.equal(statSync(a.path).mode & 0o777, 0o600, 'mode 0600');
  const b = loadOrCreateAccountKey(dir);
  t.notOk(b.created, 'not created again');
  t.equal(b.pem, a.pem, 'the same key');
});

t.test('account key: a corrupt file is an error and is not replaced', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-acme-key-'));
  const { path } = loadOrCreateAccountKey(dir);
  const truncated = readFileSync(path, 'utf8').slice(0, 60);
  writeFileSync(path, truncated);
  t.throws(() => loadOrCreateAccountKey(dir), AccountKeyError, 'refused');
  t.throws(() => loadOrCreateAccountKey(dir), /is corrupt/, 'says corrupt');
  t.equal(readFileSync(path, 'utf8'), truncated, 'left as it was');
});

t.test('responder: serves known tokens only on the challenge path', async (t) => {
  const r = await ChallengeResponder.listen('127.0.0.1', 0);
  t.teardown(() => r.close());
  r.set('tok_en-1', 'tok_en-1.thumbprint');
  t.same(await get(r.port, '/.well-known/acme-challenge/tok_en-1'), { status: 200, body: 'tok_en-1.thumbprint' }, 'token served');
  t.equal((await get(r.port, '/.well-known/acme-challenge/tok_en-1', 'HEAD')).status, 200, 'HEAD too');
  t.equal((await get(r.port, '/.well-known/acme-challenge/other')).status, 404, 'unknown token: 404');
  t.equal((await get(r.port, '/')).status, 404, 'anything else: 404');
  t.equal((await get(r.port, '/.well-known/acme-challenge/../../etc/passwd')).status, 404, 'no traversal, no other content');
  t.equal((await get(r.port, '/.well-known/acme-challenge/tok_en-1', 'POST')).status, 404, 'only GET/HEAD');
  r.remove('tok_en-1');
  t.equal((await get(r.port, '/.well-known/acme-challenge/tok_en-1')).status, 404, 'removed after the challenge');
});

t.test('responder: a port in use is a clear error', async (t) => {
  const a = await ChallengeResponder.listen('127.0.0.1', 0);
  t.teardown(() => a.close());
  await t.rejects(ChallengeResponder.listen('127.0.0.1', a.port), new RegExp(`cannot listen on 127\\.0\\.0\\.1 port ${a.port}: the port is already in use`));
});
