/**
 * Interop with a real MTA: the appliance delivers by MX to a private Postfix
 * instance (test/helpers/postfix-peer.ts) whose smtpd listens on
 * 127.0.0.48:25 and delivers to virtual Maildirs. Checked: STARTTLS with
 * Postfix, one transaction for the recipients of one domain, Postfix's RCPT
 * rejection of an unknown user turned into one DSN to alice (naming only that
 * recipient) while the two others are delivered, and the message content
 * arriving intact (the same as the copy stored locally for bob).
 * Needs Debian's `postfix` installed (the test never installs anything; CI
 * must: scripts/test-deps.sh): without it this file says so in a comment.
 * Loopback address used by this file: 127.0.0.48.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startAppliance, writeConfig } from '../helpers/appliance.ts';
import { startDnsServer } from '../helpers/dns-server.ts';
import { ALICE, bouncesFor, dsnRecipients, logged, maildir, queueShow, submit, waitFor } from '../helpers/outbound.ts';
import { postfixAvailable, startPostfix } from '../helpers/postfix-peer.ts';

t.setTimeout(120_000);

if (!postfixAvailable()) {
  t.comment('postfix is not installed (apt-get install postfix): the real-MTA interop test did not run');
  t.pass('nothing to compare against without postfix');
} else {
  t.test('delivery by MX to a real Postfix', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'appliance-outbound-postfix-'));
    chmodSync(dir, 0o755); // Postfix's daemons (user postfix, virtual as nobody) walk into it
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const dns = await startDnsServer({
      'postfix.test': [{ type: 'MX', preference: 10, exchange: 'mx.postfix.test' }],
      'mx.postfix.test': [{ type: 'A', address: '127.0.0.48' }],
    });
    t.teardown(() => dns.close());
    mkdirSync(join(dir, 'postfix'));
    const postfix = await startPostfix(join(dir, 'postfix'), { host: '127.0.0.48', domain: 'postfix.test', users: ['friend', 'pal'] });
    t.teardown(() => postfix.stop());
    mkdirSync(join(dir, 'appliance'));
    const cfg = await writeConfig(join(dir, 'appliance'), { resolver: `127.0.0.1:${dns.port}` });
    const app = await startAppliance(cfg.path, join(dir, 'appliance'));
    t.teardown(() => app.stop());

    const subject = 'interop with postfix';
    await submit(cfg.ports.submission, {
      to: ['friend@postfix.test', 'nobody@postfix.test', 'pal@postfix.test', 'bob@example.test'],
      subject,
      text: 'Hello Postfix.\r\n.\r\nA line with a lone dot above.\r\n',
    });
    await waitFor('both Maildirs at Postfix', () => postfix.maildir('friend').length >= 1 && postfix.maildir('pal').length >= 1, 20_000);
    await waitFor('the DSN for nobody@', () => bouncesFor(cfg.dataDir, subject).length >= 1);
    await waitFor('an empty queue', async () => (await queueShow(cfg.path)).length === 0);

    const received = readFileSync(postfix.maildir('friend')[0]!, 'latin1');
    t.match(received, /^Return-Path: <alice@example\.test>\n/, 'envelope sender as given');
    t.match(received, /^Received: from mail\.example\.test \(/m, 'Postfix saw our EHLO name');
    t.match(received, /\(using TLSv1\.[23] /, 'STARTTLS with Postfix');
    t.match(received, /\bwith ESMTPS id /);
    // Postfix stores LF line ends and prepends Return-Path, Delivered-To and its Received.
    const second = received.indexOf('\nReceived: ', received.indexOf('\nReceived: ') + 1);
    const stored = maildir(cfg.dataDir, 'bob')[0]!.replace(/\r\n/g, '\n');
    const local = stored.slice(stored.indexOf('\n') + 1); // less the Return-Path our final delivery added
    t.equal(received.slice(second + 1), local, 'after Postfix\'s own trace headers, the message as the appliance stored it for bob');

    const log = postfix.log();
    t.match(log, /from=<alice@example\.test>, size=\d+, nrcpt=2 /, 'one transaction, two accepted recipients');
    t.match(log, /: reject: RCPT from \S+: 550 5\.1\.1 <nobody@postfix\.test>/);
    t.match(log, /disconnect from .* ehlo=2 starttls=1 mail=1 rcpt=2\/3 data=1 quit=1/, 'EHLO, STARTTLS, EHLO, one MAIL, three RCPT (two accepted), one DATA');

    const sent = logged(app, 'delivery sent', (l) => String(l.to).endsWith('@postfix.test'));
    t.same(sent.map((l) => l.to).sort(), ['friend@postfix.test', 'pal@postfix.test']);
    const queueId = /queued as ([0-9A-F]+)/.exec(String(sent[0]?.response))?.[1];
    t.ok(queueId && log.includes(`${queueId}: to=<friend@postfix.test>, relay=virtual`), 'the 250 reply names the queue id Postfix delivered');
    t.equal(sent[0]?.relay, 'mx.postfix.test[127.0.0.48]:25');

    const dsns = bouncesFor(cfg.dataDir, subject);
    t.equal(dsns.length, 1, 'one DSN');
    const blocks = dsnRecipients(dsns[0]!);
    t.equal(blocks.length, 1);
    t.match(blocks[0], { 'final-recipient': /nobody@postfix\.test/, action: 'failed', status: '5.1.1', 'remote-mta': /mx\.postfix\.test/, 'diagnostic-code': /User unknown in virtual mailbox table/ });
    t.notMatch(dsns[0]!.split(/Content-Type: text\/rfc822-headers/i)[0]!, /friend@|pal@/, 'the DSN names only the refused recipient');
    t.match(dsns[0]!, new RegExp(`^To: .*${ALICE.address.replace('.', '\\.')}`, 'im'));
  });
}
