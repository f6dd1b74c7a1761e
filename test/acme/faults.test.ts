/**
 * ACME bad input and faults: an unreachable directory and a URL that is not
 * an ACME directory (the appliance runs on its self-signed certificate and
 * says why in `cert status`), a corrupt account key and a challenge port in
 * use (clear errors at start, nothing replaced), and a CA answering with a
 * rate-limit problem and Retry-After (simulated by a tiny HTTPS server: the
 * one answer pebble cannot be made to give) — respected by the scheduler and
 * by `cert renew`.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { freePort, startAppliance, writeConfig } from '../helpers/appliance.ts';
import { logged, waitFor } from '../helpers/outbound.ts';
import { RawSmtp } from '../helpers/smtp-client.ts';
import { selfSignedCert } from '../helpers/smtp-receiver.ts';
import { run } from '../cli/run.ts';

interface Status {
  name: string;
  source: string;
  last_outcome: string | null;
  last_error: string | null;
  last_problem: { type?: string; detail?: string; status?: number } | null;
  retry_after: string | null;
  next_check: string | null;
}

async function certStatus(configPath: string): Promise<Status> {
  const r = await run(['cert', 'status', '--json', '-c', configPath]);
  if (r.code !== 0) throw new Error(`cert status failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as Status[]).find((s) => s.name === 'mail.example.test')!;
}

async function acmeConfig(dir: string, directory: string, extra = '') {
  const challengePort = await freePort();
  const cfg = await writeConfig(dir, {
    pki: 'pki mail.example.test acme',
    extra: `acme directory "${directory}"
acme challenge http-01 listen on 127.0.0.1 port ${challengePort}
${extra}`,
  });
  return { ...cfg, challengePort };
}

t.test('unreachable directory: the appliance runs on its self-signed certificate, the error is in cert status', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-acme-'));
  const closed = await freePort();
  const { path, ports } = await acmeConfig(dir, `https://127.0.0.1:${closed}/dir`);
  const app = await startAppliance(path, dir);
  t.teardown(() => app.stop());
  await waitFor('the failed attempt', () => logged(app, 'certificate request failed; the current certificate stays in service').length > 0, 20_000);
  const line = logged(app, 'certificate request failed; the current certificate stays in service')[0]!;
  t.match(String(line.err), /cannot reach the CA \(ECONNREFUSED\)/, 'the log says why');
  const status = await certStatus(path);
  t.equal(status.source, 'self-signed', 'self-signed certificate still served');
  t.equal(status.last_outcome, 'failed', 'last attempt failed');
  t.match(status.last_error, /ACME directory https:\/\/127\.0\.0\.1:\d+\/dir: cannot reach the CA/, 'the error names the directory');
  t.ok(Date.parse(status.next_check!) >= Date.now() + 3 * 60_000, 'the retry is minutes away (backoff), not a hot loop');
  const c = await RawSmtp.connect(ports.mx);
  await c.greeting();
  await c.ehlo();
  t.equal((await c.starttls()).code, 250, 'STARTTLS works on the self-signed certificate');
  t.match(c.peerCertificate()!.subjectaltname, /DNS:mail\.example\.test/, 'the self-signed certificate names the pki');
  await c.quit();

  // A restart keeps the backoff against the same CA (a crash loop must not hammer it).
  await app.stop();
  const again = await startAppliance(path, dir, 'appliance-2');
  t.teardown(() => again.stop());
  const start = again.logLines().find((l) => /^no ACME certificate for mail\.example\.test yet; the last attempt failed/.test(String(l.msg)));
  t.ok(start, 'the start log says the last attempt failed');
  t.equal(start?.nextAttempt, status.next_check, 'and keeps the backed-off next attempt');
});

t.test('a URL that is not an ACME directory: a clear error (cert renew with the appliance stopped)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-acme-'));
  const web = createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<html><body>Welcome to nginx!</body></html>');
  });
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => web.close(() => r())));
  const port = (web.address() as { port: number }).port;
  const { path } = await acmeConfig(dir, `http://127.0.0.1:${port}/`);
  const r = await run(['cert', 'renew', '-c', path], { timeoutMs: 30_000 });
  t.equal(r.code, 1, 'cert renew fails');
  t.match(r.stderr, /http:\/\/127\.0\.0\.1:\d+\/ is not an ACME directory/, 'the error says the URL is not an ACME directory');
  const status = await certStatus(path);
  t.equal(status.last_outcome, 'failed', 'recorded as a failed attempt');
  t.match(status.last_error, /is not an ACME directory/, 'cert status shows the error');
  t.equal(status.source, 'self-signed', 'no certificate but the self-signed one');
});

t.test('a corrupt account key: start fails clearly, the key is left alone, no new account', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-acme-'));
  let newAccounts = 0;
  const ca = createHttpServer((req, res) => {
    if (req.url === '/new-account') newAccounts++;
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((r) => ca.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => ca.close(() => r())));
  const { path, dataDir } = await acmeConfig(dir, `http://127.0.0.1:${(ca.address() as { port: number }).port}/dir`);
  mkdirSync(join(dataDir, 'acme'), { recursive: true });
  const keyPath = join(dataDir, 'acme', 'account.key');
  const corrupt = '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n';
  writeFileSync(keyPath, corrupt, { mode: 0o600 });
  const r = await run(['start', '-c', path], { timeoutMs: 20_000 });
  t.equal(r.code, 1, 'start exits 1');
  t.match(r.stderr, /the ACME account key .*account\.key is corrupt/, 'the error names the key file');
  t.match(r.stderr, /no new account is registered/, '… and says no new account was made');
  t.equal(readFileSync(keyPath, 'utf8'), corrupt, 'the key file is unchanged');
  t.equal(newAccounts, 0, 'the CA was not asked for a new account');
});

t.test('challenge port in use: start fails with a clear error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-acme-'));
  const { path, challengePort, ports } = await acmeConfig(dir, 'https://127.0.0.1:9/dir');
  const squatter = createNetServer();
  await new Promise<void>((r) => squatter.listen(challengePort, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => squatter.close(() => r())));
  const r = await run(['start', '-c', path], { timeoutMs: 20_000 });
  t.equal(r.code, 1, 'start exits 1');
  t.match(r.stderr, new RegExp(`acme challenge: cannot listen on 127\\.0\\.0\\.1 port ${challengePort}: the port is already in use`), 'the error names the port');
  const probe = createNetServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(ports.mx, '127.0.0.1', () => probe.close(() => resolve()));
  });
  t.pass('no SMTP listener was left behind');
});

t.test('rate limited: the CA problem is logged and shown, Retry-After is respected by the timer and by cert renew', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-acme-'));
  const pem = await selfSignedCert('localhost', { dns: ['localhost'], ips: ['127.0.0.1'] });
  const caPath = join(dir, 'ca.pem');
  writeFileSync(caPath, pem.cert);
  let accountPosts = 0;
  let base = '';
  const ca = createHttpsServer({ key: pem.key, cert: pem.cert }, (req, res) => {
    req.resume();
    if (req.url === '/dir') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ newNonce: `${base}/nonce`, newAccount: `${base}/new-account`, newOrder: `${base}/new-order` }));
    } else if (req.url === '/nonce') {
      res.writeHead(200, { 'replay-nonce': `nonce-${Date.now()}`, 'cache-control': 'no-store' });
      res.end();
    } else if (req.url === '/new-account') {
      accountPosts++;
      res.writeHead(429, { 'content-type': 'application/problem+json', 'retry-after': '3600', 'replay-nonce': `nonce-${Date.now()}` });
      res.end(JSON.stringify({ type: 'urn:ietf:params:acme:error:rateLimited', detail: 'too many new registrations (10) from this IP address in the last 3h0m0s', status: 429 }));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => ca.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => ca.close(() => r())));
  base = `https://127.0.0.1:${(ca.address() as { port: number }).port}`;
  const { path } = await acmeConfig(dir, `${base}/dir`, `acme ca "${caPath}"`);
  const app = await startAppliance(path, dir);
  t.teardown(() => app.stop());
  const msg = 'certificate request failed; the current certificate stays in service';
  await waitFor('the rate-limited attempt', () => logged(app, msg).length > 0, 20_000);
  const line = logged(app, msg)[0]!;
  t.match(line.problem, { type: 'urn:ietf:params:acme:error:rateLimited', status: 429 }, "the CA's problem document is logged");
  t.ok(typeof line.retryAfter === 'string' && Date.parse(line.retryAfter) > Date.now() + 3500_000, 'the Retry-After is logged');
  t.equal(accountPosts, 1, 'one request, not a retry loop');

  const status = await certStatus(path);
  t.match(status.last_error, /too many new registrations/, 'cert status: the CA detail');
  t.equal(status.last_problem?.type, 'urn:ietf:params:acme:error:rateLimited', 'cert status: the problem type');
  t.ok(Date.parse(status.retry_after!) > Date.now() + 3500_000, 'cert status: retry after about an hour');
  t.ok(Date.parse(status.next_check!) >= Date.parse(status.retry_after!), 'the next check is not before Retry-After');

  const r = await run(['cert', 'renew', '-c', path], { timeoutMs: 30_000 });
  t.equal(r.code, 1, 'cert renew refuses');
  t.match(r.stderr, /the CA asked not to retry before/, 'and says the CA asked to wait');
  t.equal(accountPosts, 1, 'the CA was not asked again');
});
