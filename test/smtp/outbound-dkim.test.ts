/**
 * DKIM signing of outbound mail, end to end: `appliance dkim keygen
 * example.test --selector s1` makes the key before the start and prints the
 * TXT record in zone-file syntax; that record (its quoted strings, as a DNS
 * server would load them) is published in the in-test DNS server; the
 * appliance signs mail from example.test (`dkim sign domain <domains>
 * selector s1`) delivered by MX to an in-test receiver; mailauth's
 * `dkimVerify`, resolving through that DNS server, says pass.
 * Loopback address used by this file: 127.0.0.47.
 */
import { execFile } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { dkimVerify } from 'mailauth';
import t from 'tap';
import { MAIN, startAppliance, writeConfig } from '../helpers/appliance.ts';
import { startDnsServer } from '../helpers/dns-server.ts';
import { queueShow, sleep, submit, waitFor } from '../helpers/outbound.ts';
import { startReceiver } from '../helpers/smtp-receiver.ts';

t.setTimeout(120_000);
const run = promisify(execFile);

/** The character-strings of the record printed by keygen (zone-file syntax; `;` lines are comments). */
function printedTxt(zoneText: string): { name: string; strings: string[] } {
  const lines = zoneText.split('\n').filter((l) => l.trim() !== '' && !l.trimStart().startsWith(';'));
  const name = /^(\S+?)\.?\s+IN\s+TXT\b/.exec(lines[0] ?? '')?.[1];
  if (!name) throw new Error(`no TXT record in:\n${zoneText}`);
  const strings = [...lines.join('\n').matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
  return { name, strings };
}

t.test('mail from example.test is signed and verifies against the published record', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'appliance-outbound-dkim-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const dns = await startDnsServer({
    'd.test': [{ type: 'MX', preference: 10, exchange: 'mx.d.test' }],
    'mx.d.test': [{ type: 'A', address: '127.0.0.47' }],
  });
  t.teardown(() => dns.close());
  const receiver = await startReceiver({ host: '127.0.0.47' });
  t.teardown(() => receiver.close());
  const cfg = await writeConfig(dir, { resolver: `127.0.0.1:${dns.port}`, extra: 'dkim sign domain <domains> selector s1' });

  const { stdout } = await run(process.execPath, [MAIN, 'dkim', 'keygen', 'example.test', '--selector', 's1', '-c', cfg.path], { timeout: 30_000 });
  const record = printedTxt(stdout);
  t.equal(record.name, 's1._domainkey.example.test');
  t.match(record.strings.join(''), /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]+$/);
  t.ok(record.strings.every((s) => s.length <= 255), 'character-strings of at most 255 bytes');
  dns.set(record.name, [{ type: 'TXT', strings: record.strings }]);

  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.stop());
  await submit(cfg.ports.submission, {
    to: ['reader@d.test'],
    subject: 'signed outbound',
    text: 'Signed body.\r\nWith trailing spaces   \r\n\r\n\r\n',
    headers: { 'X-Extra': 'not   signed   maybe' },
  });
  await receiver.waitFor('the message', () => receiver.messages.length >= 1);
  const data = receiver.messages[0]!.data;
  const text = data.toString('latin1');
  const sig = /^DKIM-Signature:(.*(?:\r\n[ \t].*)*)/m.exec(text)?.[1]?.replace(/\r\n[ \t]+/g, ' ') ?? '';
  t.ok(sig, 'the receiver got a DKIM-Signature header');
  t.ok(text.startsWith('DKIM-Signature:'), 'prepended, first header');
  t.match(sig, /\bd=example\.test;/);
  t.match(sig, /\bs=s1;/);
  t.match(sig, /\ba=rsa-sha256;/);
  t.match(sig, /\bc=relaxed\/relaxed;/);
  const h = /\bh=([^;]+)/.exec(sig)?.[1]?.replace(/\s+/g, '').toLowerCase().split(':') ?? [];
  t.ok(h.filter((x) => x === 'from').length >= 2, 'From oversigned');
  t.ok(['subject', 'to', 'date', 'message-id'].every((x) => h.includes(x)), 'the standard header set');

  const resolver = new Resolver({ timeout: 2_000, tries: 2 });
  resolver.setServers([`127.0.0.1:${dns.port}`]);
  const viaDns = async (name: string, type: string): Promise<string[][]> => {
    if (type !== 'TXT') throw Object.assign(new Error(`no ${type} lookups here`), { code: 'ENOTFOUND' });
    return resolver.resolveTxt(name);
  };
  const result = await dkimVerify(data, { resolver: viaDns });
  const verdicts = result.results.map((r) => ({ result: r.status.result, domain: r.signingDomain, selector: r.selector, comment: r.status.comment }));
  t.match(verdicts, [{ result: 'pass', domain: 'example.test', selector: 's1' }], 'mailauth: dkim=pass');
  t.ok(dns.queries.some((q) => q.name === 's1._domainkey.example.test' && q.type === 'TXT'), 'the key came from DNS');

  await waitFor('an empty queue', async () => (await queueShow(cfg.path)).length === 0);
  await sleep(200);
  t.equal(receiver.messages.length, 1);
});
