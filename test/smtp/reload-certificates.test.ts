/**
 * `appliance reload` after certbot renewed a pki's files: new handshakes get
 * the new certificate, an open session carries on; a half-written renewal
 * (key and certificate that do not match) refuses the reload and the served
 * certificate stays; a pki added with a new listener is served at once.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import t from 'tap';
import { freePort, startAppliance, writeConfig } from '../helpers/appliance.ts';
import { RawSmtp } from '../helpers/smtp-client.ts';
import { run } from '../cli/run.ts';

function makeCert(dir: string, name: string, cn: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '30', '-subj', `/CN=${cn}`, '-addext', `subjectAltName=DNS:${cn}`], { stdio: 'ignore' });
  return { cert, key };
}

function servedSerial(port: number, servername = 'mail.example.test'): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.destroy();
      resolve(serial);
    });
    s.once('error', reject);
    s.setTimeout(10_000, () => s.destroy(new Error('TLS handshake timed out')));
  });
}

const serialOf = (certPath: string) => execFileSync('openssl', ['x509', '-noout', '-serial', '-in', certPath], { encoding: 'utf8' }).trim().replace(/^serial=/, '').toUpperCase();

t.test('reload re-reads pki files, all or nothing', async (t) => {
  const dir = t.testdir();
  const live = { cert: join(dir, 'live.crt'), key: join(dir, 'live.key') };
  const first = makeCert(dir, 'first', 'mail.example.test');
  copyFileSync(first.cert, live.cert);
  copyFileSync(first.key, live.key);
  const cfg = await writeConfig(dir, { pki: `pki mail.example.test cert "${live.cert}"\npki mail.example.test key "${live.key}"` });
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  t.equal(await servedSerial(cfg.ports.smtps), serialOf(first.cert), 'the files are served');

  const open = await RawSmtp.connect(cfg.ports.smtps, { implicitTls: true });
  await open.greeting();
  await open.ehlo();

  // certbot renews: new files in place, then the deploy hook runs `appliance reload`.
  const second = makeCert(dir, 'second', 'mail.example.test');
  copyFileSync(second.cert, live.cert);
  copyFileSync(second.key, live.key);
  const r = await run(['reload', '-c', cfg.path]);
  t.equal(r.code, 0, `reload: ${r.stderr}`);
  t.equal(await servedSerial(cfg.ports.smtps), serialOf(second.cert), 'a new handshake gets the renewed certificate');
  const mx = await RawSmtp.connect(cfg.ports.mx);
  await mx.greeting();
  await mx.ehlo();
  await mx.starttls();
  t.equal(mx.peerCertificate()!.serialNumber, serialOf(second.cert), 'so does STARTTLS on the MX listener');
  await mx.quit();
  t.equal((await open.cmd('NOOP')).code, 250, 'the session opened before carries on');
  await open.quit();
  t.ok(app.logLines().some((l) => l.msg === 'certificate files of mail.example.test re-read: the new certificate is served'), 'logged');

  // A half-written renewal: the new certificate with the old key.
  const third = makeCert(dir, 'third', 'mail.example.test');
  copyFileSync(third.cert, live.cert);
  const refused = await run(['reload', '-c', cfg.path]);
  t.equal(refused.code, 1, 'reload refused');
  t.match(refused.stderr, /reload refused: a certificate cannot be loaded; the running config stays: pki mail\.example\.test: the key does not match the certificate/, 'the CLI shows why');
  t.ok(app.logLines().some((l) => String(l.msg).startsWith('reload refused: a certificate cannot be loaded') && /does not match/.test(String(l.err))), 'the reason is logged');
  t.equal(await servedSerial(cfg.ports.smtps), serialOf(second.cert), 'the served certificate stays');

  // Fixed, plus a new pki with its own listener in the same reload.
  copyFileSync(third.key, live.key);
  const other = makeCert(dir, 'other', 'other.example.test');
  const port = await freePort();
  writeFileSync(
    cfg.path,
    readFileSync(cfg.path, 'utf8') + `pki other.example.test cert "${other.cert}"\npki other.example.test key "${other.key}"\nlisten on 127.0.0.1 port ${port} smtps pki other.example.test tag MX\n`,
  );
  const again = await run(['reload', '-c', cfg.path]);
  t.equal(again.code, 0, `reload with a new pki: ${again.stderr}`);
  t.equal(await servedSerial(cfg.ports.smtps), serialOf(third.cert), 'the repaired files are served');
  t.equal(await servedSerial(port, 'other.example.test'), serialOf(other.cert), 'the new listener serves the new pki');
  t.equal(await app.stop(), 0);
});
