/**
 * SPEC §config's whole example parses, with warnings only, to the objects
 * the rest of the program relies on.
 */
import t from 'tap';
import { CONF, fixture, lineOf, parse, strip } from './helpers.ts';
import { LETS_ENCRYPT_DIRECTORY, type Config } from '../../../core/config/types.ts';

const text = fixture('spec-example.conf');
const r = parse(text);
if (!r.ok) throw new Error(r.errors.map((e) => `${e.pos.line}:${e.pos.col}: ${e.message}`).join('\n'));
const c: Config = r.config;

t.test('parses with only warnings', async (t) => {
  t.ok(r.ok);
  t.ok(r.warnings.every((w) => w.severity === 'warning'));
  t.same(
    r.warnings.map((w) => `${w.pos.line}: ${w.message}`),
    [
      `${lineOf(text, 'table dir')}: table dir is not used`,
      `${lineOf(text, 'action "smarthost"')}: action "smarthost" is not used by any match rule`,
    ],
  );
  t.equal(c.path, CONF);
  t.same(c.files, [CONF]);
  t.ok(Object.isFrozen(c) && Object.isFrozen(c.listeners) && Object.isFrozen(c.listeners[0]), 'the config is frozen');
});

t.test('identity and storage', async (t) => {
  t.equal(c.hostname, 'mail.example.org');
  t.equal(c.dataDir, '/var/lib/appliance');
  t.equal(c.user, 'appliance');
});

t.test('pki', async (t) => {
  t.same([...c.pki.keys()], ['mail.example.org']);
  t.same(strip(c.pki.get('mail.example.org')), {
    name: 'mail.example.org',
    cert: '/etc/ssl/mail.example.org.pem',
    key: '/etc/ssl/private/mail.example.org.key',
    acme: { altNames: ['imap.example.org'] },
    selfSigned: false,
  });
  t.equal(c.pki.get('mail.example.org')!.pos.line, lineOf(text, 'pki mail.example.org cert'));
});

t.test('tables', async (t) => {
  t.same([...c.tables.keys()], ['domains', 'users', 'aliases', 'dir', 'secrets'], 'no anonymous tables');
  const src = (name: string) => c.tables.get(name)!.source;
  t.same(src('domains'), { type: 'inline', form: 'list', values: ['example.org', 'example.net'] });
  t.same(src('users'), { type: 'db' });
  t.same(src('aliases'), { type: 'file', path: '/etc/appliance/aliases' });
  t.same(src('dir'), { type: 'ldap', path: '/etc/appliance/ldap.conf' });
  t.same(src('secrets'), { type: 'inline', form: 'map', entries: [['smarthost', 'relayuser:relaypass']] });
  for (const tb of c.tables.values()) t.equal(tb.anonymous, false);
  t.same(c.tables.get('secrets')!.pos, { file: CONF, line: lineOf(text, 'table secrets'), col: 7 });
});

t.test('SMTP listeners', async (t) => {
  t.equal(c.listeners.length, 4);
  const [mx4, mx6, submission, smtps] = c.listeners.map(strip);
  t.same(mx4, {
    protocol: 'smtp',
    address: { kind: 'ip', value: '0.0.0.0' },
    port: 25,
    tls: 'tls',
    verify: false,
    pki: 'mail.example.org',
    tag: 'MX',
    maskSrc: false,
    receivedAuth: false,
    noDsn: false,
  });
  t.same(mx6!.address, { kind: 'ip', value: '::' });
  t.equal(mx6!.port, 25);
  t.same(submission, {
    protocol: 'smtp',
    address: { kind: 'ip', value: '0.0.0.0' },
    port: 587,
    tls: 'tls-require',
    verify: false,
    pki: 'mail.example.org',
    auth: { table: { name: 'users' }, optional: false },
    senders: { table: { name: 'users' }, masquerade: true },
    tag: 'SUBMIT',
    maskSrc: false,
    receivedAuth: false,
    noDsn: false,
  });
  t.match(smtps, { port: 465, tls: 'smtps', pki: 'mail.example.org', auth: { table: { name: 'users' }, optional: false }, tag: 'SUBMIT' });
  t.notOk('senders' in smtps!);
  t.equal(c.listeners[2]!.pos.line, lineOf(text, 'port 587'), 'a continued listener is positioned at its first line');
  t.equal(c.listeners[2]!.senders!.table.pos.line, lineOf(text, 'senders <users> masquerade'));
});

t.test('actions', async (t) => {
  t.same([...c.actions.keys()], ['local', 'out', 'smarthost']);
  t.same(strip(c.actions.get('local')), {
    name: 'local',
    method: { type: 'maildir', junk: false, alias: { name: 'aliases' }, userbase: { name: 'users' } },
    legacy: false,
  });
  t.same(strip(c.actions.get('out')), { name: 'out', method: { type: 'relay', backup: false }, legacy: false });
  const smarthost = c.actions.get('smarthost')!.method;
  t.equal(smarthost.type, 'relay');
  if (smarthost.type !== 'relay') return;
  t.same(smarthost.host, { scheme: 'smtp+tls', label: 'smarthost', host: 'relay.example.net', port: 587 });
  t.equal(smarthost.auth!.name, 'secrets');
  t.equal(smarthost.tls, undefined);
});

t.test('rules, with their conditions and decisions', async (t) => {
  t.equal(c.rules.length, 3);
  const [local, out, reject] = c.rules.map(strip);
  t.same(local, {
    conditions: [
      { type: 'from', from: { kind: 'any' }, negate: false },
      { type: 'for', for: { kind: 'domain', table: { name: 'domains' } }, negate: false },
    ],
    decision: { type: 'action', action: 'local' },
  });
  t.same(out, {
    conditions: [
      { type: 'tag', tag: 'SUBMIT', negate: false },
      { type: 'auth', negate: false },
      { type: 'from', from: { kind: 'any' }, negate: false },
      { type: 'for', for: { kind: 'any' }, negate: false },
    ],
    decision: { type: 'action', action: 'out' },
  });
  t.same(reject, {
    conditions: [
      { type: 'from', from: { kind: 'any' }, negate: false },
      { type: 'for', for: { kind: 'any' }, negate: false },
    ],
    decision: { type: 'reject' },
  });
  const line = lineOf(text, 'match tag SUBMIT');
  t.same(c.rules[1]!.pos, { file: CONF, line, col: 1 });
  t.same(c.rules[1]!.conditions.map((x) => x.pos.col), [7, 18, 23, 32]);
  const d = c.rules[1]!.decision;
  t.same(d.type === 'action' && d.pos, { file: CONF, line, col: 47 });
  t.equal(c.rules[0]!.legacyText, undefined);
});

t.test('IMAP', async (t) => {
  t.same(
    c.imap.listeners.map((l) => strip(l)),
    [
      {
        protocol: 'imap',
        address: { kind: 'ip', value: '0.0.0.0' },
        port: 993,
        tls: 'smtps',
        verify: false,
        pki: 'mail.example.org',
        auth: { table: { name: 'users' }, optional: false },
        maskSrc: false,
        receivedAuth: false,
        noDsn: false,
      },
      {
        protocol: 'imap',
        address: { kind: 'ip', value: '0.0.0.0' },
        port: 143,
        tls: 'tls-require',
        verify: false,
        pki: 'mail.example.org',
        auth: { table: { name: 'users' }, optional: false },
        maskSrc: false,
        receivedAuth: false,
        noDsn: false,
      },
    ],
  );
  t.same(
    c.imap.mailboxes.map((m) => [m.name, m.specialUse, m.auto]),
    [
      ['Drafts', '\\Drafts', 'subscribe'],
      ['Sent', '\\Sent', 'subscribe'],
      ['Junk', '\\Junk', 'subscribe'],
      ['Trash', '\\Trash', 'subscribe'],
    ],
  );
  t.same(c.imap.limits, { connectionsPerUserIp: 10, maxLiteralSize: 35 * 1024 * 1024, idleTimeout: 30 * 60_000 });
});

t.test('ACME', async (t) => {
  t.same(strip(c.acme), {
    contact: 'mailto:admin@example.org',
    directory: LETS_ENCRYPT_DIRECTORY,
    challenge: { host: '0.0.0.0', port: 80 },
    ca: '/path/to/extra-ca.pem',
  });
});

t.test('outbound', async (t) => {
  t.same(strip(c.resolver), { host: '127.0.0.1', port: 5353 });
  t.equal(c.queue.ttl, 4 * 24 * 3600 * 1000, 'queue ttl 4d in ms');
  t.same(c.bounce.warnIntervals, [4 * 3600 * 1000], 'bounce warn-interval 4h in ms');
  t.equal(c.smtp.limits.maxMessageSize, 35 * 1024 * 1024, 'max-message-size 35M in bytes');
  t.equal(c.smtp.subAddrDelim, '+');
  t.same(strip(c.dkim), [{ domains: { name: 'domains' }, selector: 's2026', algorithm: 'rsa-sha256' }]);
});

t.test('operations', async (t) => {
  t.equal(c.control.socket, '/run/appliance.sock');
  t.same(strip(c.metrics), { host: '127.0.0.1', port: 9154 });
  t.equal(c.log.level, 'info');
  t.equal(c.auth.failureDelay, 2000);
  t.equal(c.auth.maxFailures, 10);
});
