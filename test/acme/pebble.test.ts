/**
 * ACME end to end against Debian's pebble: the appliance starts at once on
 * its self-signed certificate, gets one from pebble over HTTP-01 (pebble
 * really fetches the token from the appliance's responder, names resolved
 * by the in-test DNS server), serves it on STARTTLS and implicit TLS to a
 * client that trusts only pebble's root, renews it on `cert renew` while an
 * SMTP/TLS session and an IMAP session (imapflow over 993, IDLE/NOOP) stay
 * open and keep working, the IMAP listeners (implicit TLS and STARTTLS)
 * presenting it too, keeps it when pebble is
 * down (error and backoff in `cert status`), and after a restart serves the
 * stored certificate without a new order.
 */
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ImapFlow } from 'imapflow';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { freePort, startAppliance, writeConfig, type RunningAppliance } from '../helpers/appliance.ts';
import { startDnsServer } from '../helpers/dns-server.ts';
import { logged, waitFor } from '../helpers/outbound.ts';
import { pebbleAvailable, startPebble } from '../helpers/pebble.ts';
import { RawSmtp } from '../helpers/smtp-client.ts';
import { run } from '../cli/run.ts';
import { ariCertId } from '../../acme/ari.ts';

if (!pebbleAvailable()) throw new Error('pebble is not installed (scripts/test-deps.sh installs it)');

interface Status {
  name: string;
  source: string;
  subject: string | null;
  alt_names: string[];
  issuer: string | null;
  serial: string | null;
  not_after: string | null;
  days_left: number | null;
  seconds_left: number | null;
  last_attempt: string | null;
  last_outcome: string | null;
  last_error: string | null;
  next_check: string | null;
}

async function certStatus(configPath: string): Promise<Status> {
  const r = await run(['cert', 'status', '--json', '-c', configPath]);
  if (r.code !== 0) throw new Error(`cert status failed: ${r.stderr}`);
  const all = JSON.parse(r.stdout) as Status[];
  return all.find((s) => s.name === 'mail.example.test')!;
}

/** The certificate presented on an implicit-TLS connection, verified against `ca`. */
function implicitTlsSerial(port: number, ca: string, servername = 'smtp.example.test'): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca, servername }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.destroy();
      resolve(serial);
    });
    s.once('error', reject);
    s.setTimeout(10_000, () => s.destroy(new Error('implicit TLS handshake timed out')));
  });
}

/** The certificate an IMAP STARTTLS upgrade presents, verified against `ca`. */
function imapStarttlsSerial(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const plain = netConnect(port, '127.0.0.1');
    let text = '';
    plain.setTimeout(10_000, () => plain.destroy(new Error('IMAP STARTTLS timed out')));
    plain.once('error', reject);
    const onData = (d: Buffer) => {
      text += d.toString('latin1');
      if (/^\* OK[^\r]*\r\n$/.test(text)) {
        text = '';
        plain.write('s1 STARTTLS\r\n');
      } else if (/^s1 OK[^\r]*\r\n$/.test(text)) {
        plain.off('data', onData);
        const secure = tlsConnect({ socket: plain, ca, servername: 'mail.example.test' }, () => {
          const serial = secure.getPeerCertificate().serialNumber;
          secure.destroy();
          resolve(serial);
        });
        secure.once('error', reject);
      } else if (/\r\n$/.test(text) && !text.startsWith('* OK')) {
        reject(new Error(`IMAP STARTTLS: ${text.trim()}`));
        plain.destroy();
      }
    };
    plain.on('data', onData);
  });
}

async function starttlsSession(port: number, ca: string): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port);
  await c.greeting();
  await c.ehlo();
  const r = await c.starttls('client.example.net', { ca, servername: 'mail.example.test' });
  if (r.code !== 250) throw new Error(`EHLO after STARTTLS: ${r.last}`);
  return c;
}

t.test('pebble: issuance, STARTTLS, renewal under an open session, CA down, restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-acme-'));
  const dns = await startDnsServer({
    'mail.example.test': [{ type: 'A', address: '127.0.0.1' }],
    'smtp.example.test': [{ type: 'A', address: '127.0.0.1' }],
  });
  t.teardown(() => dns.close());
  const challengePort = await freePort();
  const pebble = await startPebble(dir, { httpPort: challengePort, dnsPort: dns.port });
  t.teardown(() => pebble.stop());
  const imap = { imaps: await freePort(), starttls: await freePort() };
  const { path, ports, dataDir } = await writeConfig(dir, {
    pki: 'pki mail.example.test acme alt-names { smtp.example.test }',
    extra: `acme directory "${pebble.directory}"
acme ca "${pebble.caPath}"
acme contact "mailto:postmaster@example.test"
acme challenge http-01 listen on 127.0.0.1 port ${challengePort}
imap listen on 127.0.0.1 port ${imap.imaps} imaps pki mail.example.test auth <users>
imap listen on 127.0.0.1 port ${imap.starttls} tls-require pki mail.example.test auth <users>`,
  });
  let app: RunningAppliance = await startAppliance(path, dir);
  t.teardown(() => app.stop());

  // Ready before the CA answered, and says it serves a self-signed certificate meanwhile.
  t.ok(
    app.logLines().some((l) => /serving a self-signed certificate/.test(String(l.msg)) && l.reason === 'acme certificate not issued yet'),
    'the log says the self-signed certificate is served until issuance',
  );
  await waitFor('the pebble certificate to be installed', () => logged(app, 'certificate issued and installed for mail.example.test').length > 0, 30_000);
  t.ok(pebble.log().includes('/.well-known/acme-challenge/') || dns.queries.some((q) => q.name === 'mail.example.test'), 'pebble resolved the name through the test DNS server');
  t.equal(pebble.issuedCount(), 1, 'pebble issued one certificate');

  const root = await pebble.issuingRoot();
  t.match(root, /BEGIN CERTIFICATE/, "pebble's issuing root from its management API");

  // Stored: chain and key, key mode 0600; account key 0600.
  const stored = readFileSync(join(dataDir, 'acme', 'mail.example.test.crt'), 'utf8');
  t.equal((stored.match(/BEGIN CERTIFICATE/g) ?? []).length >= 2, true, 'the chain is stored (leaf + intermediate)');
  t.equal(statSync(join(dataDir, 'acme', 'mail.example.test.key')).mode & 0o777, 0o600, 'certificate key mode 0600');
  t.equal(statSync(join(dataDir, 'acme', 'account.key')).mode & 0o777, 0o600, 'account key mode 0600');
  // ARI identifier: the leaf's authority key identifier is the intermediate's SKI that pebble logs.
  const ski = /Generated new intermediate issuer .* and SKI ([0-9a-f]+)/.exec(pebble.log())?.[1];
  t.ok(ski, 'pebble logged its intermediate SKI');
  t.equal(ariCertId(stored).split('.')[0], Buffer.from(ski!, 'hex').toString('base64url'), 'ARI certID starts with the AKI (RFC 9773)');

  // STARTTLS on the MX listener: verified against pebble's root only.
  const first = await starttlsSession(ports.mx, root);
  const firstCert = first.peerCertificate()!;
  t.match(firstCert.subjectaltname, /DNS:mail\.example\.test/, 'STARTTLS presents the pebble certificate for the pki name');
  t.match(firstCert.subjectaltname, /DNS:smtp\.example\.test/, '… with the alt name');
  t.match(firstCert.issuer.CN, /Pebble Intermediate/, '… issued by pebble');
  t.equal(await implicitTlsSerial(ports.smtps, root), firstCert.serialNumber, 'the smtps listener presents the same certificate');
  t.equal(await implicitTlsSerial(imap.imaps, root), firstCert.serialNumber, 'the IMAP 993-style listener presents it');
  t.equal(await imapStarttlsSerial(imap.starttls, root), firstCert.serialNumber, 'IMAP STARTTLS presents it');

  // An IMAP client that trusts only pebble's root, logged in and idling across the renewal.
  const mua = new ImapFlow({
    host: '127.0.0.1',
    port: imap.imaps,
    secure: true,
    tls: { ca: root, servername: 'mail.example.test' },
    auth: { user: 'alice@example.test', pass: 'alice-secret' },
    logger: false,
    connectionTimeout: 10_000,
  });
  mua.on('error', () => {});
  await mua.connect();
  t.teardown(() => mua.close());
  const inbox = await mua.mailboxOpen('INBOX');
  const existsBefore = inbox.exists;
  void mua.idle();

  let status = await certStatus(path);
  t.equal(status.source, 'acme', 'cert status: source acme');
  t.equal(status.serial, firstCert.serialNumber, 'cert status: the served serial');
  t.same(status.alt_names.sort(), ['mail.example.test', 'smtp.example.test'], 'cert status: alt names');
  t.match(status.issuer, /Pebble Intermediate/, 'cert status: issuer');
  t.equal(status.last_outcome, 'issued', 'cert status: last attempt issued');
  t.ok(status.seconds_left! > 86400 && status.days_left! >= 1, 'cert status: expiry as a number');
  t.ok(status.next_check && Date.parse(status.next_check) > Date.now(), 'cert status: next check in the future');

  // Forced renewal while a TLS session is open: the session keeps working, new handshakes get the new certificate.
  const open = first;
  t.equal((await open.cmd('MAIL FROM:<someone@example.net>')).code, 250, 'open session: MAIL before the renewal');
  const renew = await run(['cert', 'renew', 'mail.example.test', '-c', path], { timeoutMs: 60_000 });
  t.equal(renew.code, 0, `cert renew succeeds: ${renew.stderr}`);
  t.match(renew.stderr, /validated/, 'cert renew prints progress');
  t.match(renew.stdout, /mail\.example\.test: renewed, valid until/, 'cert renew reports the result');
  t.equal(pebble.issuedCount(), 2, 'pebble issued a second certificate');
  t.equal(pebble.accountCount(), 1, 'the account was registered once and reused');
  t.equal((await open.cmd('RCPT TO:<alice@example.test>')).code, 250, 'open session: RCPT after the swap');
  t.equal((await open.cmd('DATA')).code, 354, 'open session: DATA after the swap');
  const done = await open.cmd('Subject: across a certificate swap\r\n\r\nstill here\r\n.');
  t.equal(done.code, 250, 'open session: message accepted after the swap');
  t.equal(open.peerCertificate()!.serialNumber, firstCert.serialNumber, 'the open session still has its original certificate');
  await open.quit();
  const second = await starttlsSession(ports.mx, root);
  const secondSerial = second.peerCertificate()!.serialNumber;
  await second.quit();
  t.not(secondSerial, firstCert.serialNumber, 'a new STARTTLS handshake gets the renewed certificate');
  t.equal(await implicitTlsSerial(ports.smtps, root), secondSerial, 'so does a new implicit-TLS handshake');
  t.equal(await implicitTlsSerial(imap.imaps, root), secondSerial, 'and a new IMAP implicit-TLS handshake');
  t.equal(await imapStarttlsSerial(imap.starttls, root), secondSerial, 'and a new IMAP STARTTLS upgrade');
  // The IMAP session opened before the swap still works: it saw the message delivered meanwhile (IDLE), and answers NOOP.
  await waitFor('the open IMAP session to see the new message', () => (mua.mailbox ? mua.mailbox.exists : 0) > existsBefore, 10_000);
  await mua.noop();
  t.ok(mua.usable, 'the IMAP session opened before the renewal is still usable');
  const subjects: string[] = [];
  for await (const m of mua.fetch('1:*', { envelope: true })) subjects.push(m.envelope?.subject ?? '');
  t.ok(subjects.includes('across a certificate swap'), 'and fetches over it');
  await mua.logout();

  // CA down: the renewal fails, the certificate in service stays, the error and the backoff are visible.
  await pebble.stop();
  const down = await run(['cert', 'renew', '-c', path], { timeoutMs: 60_000 });
  t.equal(down.code, 1, 'cert renew fails with pebble down');
  t.match(down.stderr, /cannot reach|ECONNREFUSED/, 'the error says the CA is unreachable');
  status = await certStatus(path);
  t.equal(status.source, 'acme', 'still serving the ACME certificate');
  t.equal(status.serial, secondSerial, '… the same one');
  t.equal(status.last_outcome, 'failed', 'cert status: last attempt failed');
  t.match(status.last_error, /cannot reach the CA/, 'cert status: the error');
  t.ok(Date.parse(status.next_check!) >= Date.now() + 3 * 60_000, 'cert status: the retry is backed off by minutes');
  t.equal(await implicitTlsSerial(ports.smtps, root), secondSerial, 'handshakes still get the current certificate');
  t.ok(logged(app, 'certificate request failed; the current certificate stays in service').length >= 1, 'the failure is logged');

  // Restart with the stored certificate: served at once, no new order (pebble back up on the same port).
  await app.stop();
  await pebble.restart();
  const ordersBefore = pebble.orderCount();
  app = await startAppliance(path, dir, 'appliance-2');
  t.ok(logged(app, 'serving the stored ACME certificate for mail.example.test').length === 1, 'the stored certificate is served at start');
  await waitFor('the first renewal check after the restart', () => logged(app, 'certificate expiry checked').length > 0, 20_000);
  t.equal(pebble.orderCount(), ordersBefore, 'no new order after the restart');
  t.equal(await implicitTlsSerial(ports.smtps, root), secondSerial, 'the stored certificate is served after the restart');
  const after = logged(app, 'certificate expiry checked')[0]!;
  t.type(after.secondsLeft, 'number', 'the expiry is logged as a number (secondsLeft)');

  // The restarted pebble has forgotten the account: a renewal registers the same key again and succeeds.
  const accountsBefore = pebble.accountCount();
  const again = await run(['cert', 'renew', '-c', path], { timeoutMs: 60_000 });
  t.equal(again.code, 0, `renewal against a CA that forgot the account: ${again.stderr}`);
  t.match(again.stderr, /registering the account key again/, 'progress says the account is registered again');
  t.equal(pebble.accountCount(), accountsBefore + 1, 'one new registration');
  status = await certStatus(path);
  t.equal(status.last_outcome, 'issued', 'cert status: issued again');
  t.not(status.serial, secondSerial, 'a new certificate is in service');
});

t.test('pebble: a failed validation is reported with the CA problem, then a renewal recovers', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-acme-'));
  const dns = await startDnsServer({});
  t.teardown(() => dns.close());
  dns.fail('mail.example.test', 'NXDOMAIN');
  const challengePort = await freePort();
  const pebble = await startPebble(dir, { httpPort: challengePort, dnsPort: dns.port });
  t.teardown(() => pebble.stop());
  const { path } = await writeConfig(dir, {
    pki: 'pki mail.example.test acme',
    extra: `acme directory "${pebble.directory}"
acme ca "${pebble.caPath}"
acme challenge http-01 listen on 127.0.0.1 port ${challengePort}`,
  });
  const app = await startAppliance(path, dir);
  t.teardown(() => app.stop());
  const msg = 'certificate request failed; the current certificate stays in service';
  await waitFor('the failed validation', () => logged(app, msg).length > 0, 30_000);
  const line = logged(app, msg)[0]!;
  t.match(line.problem, { type: /^urn:ietf:params:acme:error:/ }, "pebble's problem document is logged");
  t.match(JSON.stringify(line.problem), /could not resolve|NXDOMAIN/i, '… and says the name did not resolve');
  let status = await certStatus(path);
  t.equal(status.source, 'self-signed', 'the self-signed certificate stays in service');
  t.equal(status.last_outcome, 'failed', 'cert status: failed');
  t.match(status.last_error, /could not resolve|NXDOMAIN/i, 'cert status: the CA detail');

  dns.fail('mail.example.test', null);
  dns.set('mail.example.test', [{ type: 'A', address: '127.0.0.1' }]);
  const r = await run(['cert', 'renew', '-c', path], { timeoutMs: 60_000 });
  t.equal(r.code, 0, `cert renew after the DNS fix: ${r.stderr}`);
  status = await certStatus(path);
  t.equal(status.source, 'acme', 'the pebble certificate is in service');
  t.equal(status.last_outcome, 'issued', 'cert status: issued');
  t.equal(status.last_error, null, 'the old error is cleared');

  // A reload that adds an ACME pki (and a listener using it): requested at once, served without a restart.
  dns.set('other.example.test', [{ type: 'A', address: '127.0.0.1' }]);
  const port = await freePort();
  writeFileSync(path, `${readFileSync(path, 'utf8')}pki other.example.test acme\nlisten on 127.0.0.1 port ${port} smtps pki other.example.test tag MX\n`);
  const reload = await run(['reload', '-c', path]);
  t.equal(reload.code, 0, `reload: ${reload.stderr}`);
  await waitFor('the new pki issued', () => logged(app, 'certificate issued and installed for other.example.test').length > 0, 30_000);
  const root = await pebble.issuingRoot();
  const serial = await implicitTlsSerial(port, root, 'other.example.test');
  const other = (JSON.parse((await run(['cert', 'status', '--json', '-c', path])).stdout) as Status[]).find((x) => x.name === 'other.example.test')!;
  t.equal(other.source, 'acme', 'the added pki is served from pebble');
  t.equal(serial, other.serial, 'its listener presents it, verified against pebble\'s root');
});
