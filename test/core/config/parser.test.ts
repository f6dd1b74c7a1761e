/** One small config per feature of the grammar (SPEC §config). */
import t from 'tap';
import { brief, CONF, parse, parseErrors, parseOk, strip } from './helpers.ts';
import { formatDelay, formatSize, parseDelay, parseSize } from '../../../core/config/cursor.ts';
import { formatDiagnostic, parseConfigText } from '../../../core/config/index.ts';
import { defaults } from '../../../core/config/build.ts';

/** A valid, minimal config around the given lines (a used table, a rule). */
const base = (lines: string) => `table users { alice = x }\naction "local" maildir userbase <users>\n${lines}\n`;

t.test('macros', async (t) => {
  t.test('single-word and multi-word values', async (t) => {
    const { config } = parseOk(base(
      [
        'lan = "127.0.0.1 port 2525"',
        'dom = example.org',
        'name = "mx.example.org"',
        'hostname $name',
        'listen on $lan tag LAN',
        'match from any for domain $dom action "local"',
      ].join('\n'),
    ));
    t.equal(config.hostname, 'mx.example.org');
    t.match(config.listeners[0], { address: { kind: 'ip', value: '127.0.0.1' }, port: 2525, tag: 'LAN' });
    const forC = config.rules[0]!.conditions[1]!;
    t.equal(forC.type, 'for');
    if (forC.type === 'for' && forC.for.kind === 'domain') {
      t.same(config.tables.get(forC.for.table.name)!.source, { type: 'inline', form: 'list', values: ['example.org'] });
    }
  });
  t.test('undefined macro: one error at the reference', async (t) => {
    const errors = parseErrors(base('hostname $mx'));
    t.same(brief(errors), ['3:10: undefined macro $mx']);
    t.equal(formatDiagnostic(errors[0]!), `${CONF}:3:10: undefined macro $mx`);
  });
});

t.test('include', async (t) => {
  t.test('relative path, read with an injected readFile', async (t) => {
    const { config } = parseOk('include "conf.d/tables.conf"\naction "local" maildir userbase <users>\nmatch from any for domain <domains> action "local"\n', {
      '/etc/appliance/conf.d/tables.conf': 'table users db\ntable domains { example.org }\n',
    });
    t.same([...config.tables.keys()], ['users', 'domains']);
    t.same(config.files, [CONF, '/etc/appliance/conf.d/tables.conf']);
    t.equal(config.tables.get('domains')!.pos.file, '/etc/appliance/conf.d/tables.conf');
  });
  t.test('errors in an included file name that file', async (t) => {
    const errors = parseErrors('include "t.conf"\n', { '/etc/appliance/t.conf': '\ntable x bogus:1\n' });
    t.same(errors.map(formatDiagnostic), ['/etc/appliance/t.conf:2:9: unknown table backend "bogus:"; use file:, db or ldap:']);
  });
  t.test('include loop', async (t) => {
    const errors = parseErrors(base('include "loop.conf"'), { '/etc/appliance/loop.conf': 'include "appliance.conf"\n' });
    t.same(errors.map(formatDiagnostic), [`/etc/appliance/loop.conf:1:9: include loop: ${CONF} includes itself`]);
  });
  t.test('real files, in a temporary directory', async (t) => {
    const { loadConfig } = await import('../../../core/config/index.ts');
    const dir = t.testdir({
      'appliance.conf': 'include "inc/tables.conf"\naction "l" maildir userbase <users>\nmatch from any for domain <domains> action "l"\n',
      inc: { 'tables.conf': 'table users file:users.txt\ninclude "../domains.conf"\n' },
      'domains.conf': 'table domains { example.org }\n',
    });
    const r = loadConfig(`${dir}/appliance.conf`);
    t.ok(r.ok, r.ok ? '' : r.errors.map(formatDiagnostic).join('\n'));
    if (!r.ok) return;
    t.same(r.config.files, [`${dir}/appliance.conf`, `${dir}/inc/tables.conf`, `${dir}/domains.conf`]);
    t.same(r.config.tables.get('users')!.source, { type: 'file', path: `${dir}/users.txt` }, 'table paths are relative to the main config');
  });
});

t.test('backslash continuation and comments', async (t) => {
  const text = base('# comment\nlisten on 127.0.0.1 \\\n  port 2525 \\\n  tag LAN # trailing comment\nhostname mx.example.org # here too\n');
  const { config } = parseOk(text);
  t.match(config.listeners[0], { port: 2525, tag: 'LAN', pos: { line: 4, col: 1 } });
  t.equal(config.hostname, 'mx.example.org');
  const errors = parseErrors('listen on 127.0.0.1 \\\n  port 2525 \\\n  bogus\n');
  t.same(brief(errors), ['3:3: unknown listen option "bogus"'], 'an error on a continued line has that line');
});

t.test('quoted strings with escapes', async (t) => {
  const { config } = parseOk(base('data-dir "/srv/my \\"mail\\" dir\\\\x"\nimap mailbox "Spam \\"old\\"" special-use "\\Junk"'));
  t.equal(config.dataDir, '/srv/my "mail" dir\\x');
  t.same(config.imap.mailboxes.map((m) => [m.name, m.specialUse]), [['Spam "old"', '\\Junk']]);
});

t.test('multi-line { } tables', async (t) => {
  const { config } = parseOk(base(
    [
      'table domains {',
      '  example.org,',
      '  example.net',
      '  example.com',
      '}',
      'table aliases {',
      '  postmaster = alice,',
      '  abuse = "alice@example.org"',
      '}',
      'action "al" maildir alias <aliases> userbase <users>',
      'match from any for domain <domains> action "al"',
    ].join('\n'),
  ));
  t.same(config.tables.get('domains')!.source, { type: 'inline', form: 'list', values: ['example.org', 'example.net', 'example.com'] });
  t.same(config.tables.get('aliases')!.source, {
    type: 'inline',
    form: 'map',
    entries: [['postmaster', 'alice'], ['abuse', 'alice@example.org']],
  });
  t.same(config.tables.get('aliases')!.pos, { file: CONF, line: 8, col: 7 });
  t.same(brief(parseErrors('table t { a, b = c }\n')), ['1:9: a table is either a list { a, b } or a map { k = v }, not both']);
});

t.test('the seed password hash stays literal, unquoted', async (t) => {
  const hash = '$2b$08$1f4SvI3pbJcJG60M/PHoEOAzCt/ZSVUaSK9lvm7EMwCCoUM1DGUO2';
  const { config } = parseOk(`table users { alice = ${hash} }\naction "l" maildir userbase <users>\nmatch from any for domain example.org action "l"\n`);
  t.same(config.tables.get('users')!.source, { type: 'inline', form: 'map', entries: [['alice', hash]] });
});

t.test('sizes K/M/G (powers of 1024)', async (t) => {
  const cases: [string, number][] = [
    ['512K', 512 * 1024],
    ['35M', 35 * 1024 * 1024],
    ['1G', 1024 ** 3],
    ['10m', 10 * 1024 * 1024],
    ['2048', 2048],
  ];
  for (const [text, bytes] of cases) {
    t.equal(parseOk(base(`smtp max-message-size ${text}`)).config.smtp.limits.maxMessageSize, bytes, text);
    t.equal(parseSize(text), bytes);
  }
  t.equal(parseOk(base('max-message-size 20M')).config.smtp.limits.maxMessageSize, 20 * 1024 * 1024, 'legacy global spelling');
  t.equal(parseOk(base('imap limit literal-size 1M')).config.imap.limits.maxLiteralSize, 1024 * 1024);
  t.equal(parseOk(base('smtp max-message-size 1M')).config.imap.limits.maxLiteralSize, 1024 * 1024, 'literal-size defaults to max-message-size');
  t.equal(parseOk(base('')).config.smtp.limits.maxMessageSize, defaults.maxMessageSize);
  t.equal(parseOk(base('')).config.smtp.authenticationResults, true, 'SPF/DKIM/DMARC verification on by default');
  t.equal(parseOk(base('smtp authentication-results no')).config.smtp.authenticationResults, false);
  t.equal(parseOk(base('smtp authentication-results yes')).config.smtp.authenticationResults, true);
  for (const bad of ['35Q', 'M', '-1', '1.5.5M', '']) t.equal(parseSize(bad), null, `parseSize(${JSON.stringify(bad)})`);
  t.same(['1G', '35M', '512K', '1000'].map((s) => formatSize(parseSize(s)!)), ['1G', '35M', '512K', '1000']);
});

t.test('delays s/m/h/d', async (t) => {
  const cases: [string, number][] = [
    ['30s', 30_000],
    ['90m', 90 * 60_000],
    ['2h', 2 * 3_600_000],
    ['5d', 5 * 86_400_000],
    ['45', 45_000],
  ];
  for (const [text, ms] of cases) {
    t.equal(parseOk(base(`queue ttl ${text}`)).config.queue.ttl, ms, `queue ttl ${text}`);
    t.equal(parseDelay(text), ms);
  }
  t.same(parseOk(base('bounce warn-interval 1h, 4h, 1d')).config.bounce.warnIntervals, [3_600_000, 4 * 3_600_000, 86_400_000]);
  t.equal(parseOk(base('auth failure-delay 500s')).config.auth.failureDelay, 500_000);
  t.equal(parseOk(base('expire 3d')).config.queue.ttl, 3 * 86_400_000, 'legacy "expire"');
  for (const bad of ['4x', '1.5s', 'h', '-1s', '']) t.equal(parseDelay(bad), null, `parseDelay(${JSON.stringify(bad)})`);
  t.same(['4d', '4h', '90m', '90s'].map((s) => formatDelay(parseDelay(s)!)), ['4d', '4h', '90m', '90s']);
});

t.test('outbound concurrency', async (t) => {
  const d = parseOk(base('')).config.queue;
  t.same([d.concurrency, d.destinationConcurrency], [20, 5], 'defaults');
  const c = parseOk(base('queue concurrency 50\nqueue destination-concurrency 20')).config.queue;
  t.same([c.concurrency, c.destinationConcurrency], [50, 20]);
  t.equal(parseOk(base('queue concurrency 3')).config.queue.destinationConcurrency, 3, 'never above the total');
  for (const bad of ['queue concurrency 0', 'queue destination-concurrency many', 'queue concurrency']) {
    t.notOk(parseConfigText(base(bad)).ok, bad);
  }
});

t.test('match: defaults, negation, anonymous tables', async (t) => {
  t.test('a rule without from/for is from local for local', async (t) => {
    const { config } = parseOk(base('match tag LAN action "local"\nlisten on lo tag LAN'));
    t.same(strip(config.rules[0]!.conditions), [
      { type: 'from', from: { kind: 'local' }, negate: false },
      { type: 'for', for: { kind: 'local' }, negate: false },
      { type: 'tag', tag: 'LAN', negate: false },
    ]);
  });
  t.test('! negates the condition it precedes', async (t) => {
    const { config } = parseOk(base('match !from local !for domain example.org ! tag LAN !auth !tls reject\nlisten on lo tag LAN'));
    const conds = config.rules[0]!.conditions;
    t.same(conds.map((c) => [c.type, c.negate]), [['from', true], ['for', true], ['tag', true], ['auth', true], ['tls', true]]);
    t.same(conds[0]!.pos, { file: CONF, line: 3, col: 7 }, 'a negated condition is positioned at its "!"');
    t.same(brief(parseErrors(base('match from any for any !reject'))), ['3:24: "!" cannot negate "reject"']);
  });
  t.test('anonymous inline tables, literal values', async (t) => {
    const { config } = parseOk(base(
      [
        'match from any mail-from { @a.org } for domain example.org reject',
        'match from any mail-from { @a.org } for domain { example.org } rcpt-to { a@example.org, b@example.org } reject',
        'match from mail-from "@b.org" for any reject',
      ].join('\n'),
    ));
    const anon = [...config.tables.values()].filter((x) => x.anonymous);
    t.same(
      anon.map((x) => x.source),
      [
        { type: 'inline', form: 'list', values: ['@a.org'] },
        { type: 'inline', form: 'list', values: ['example.org'] },
        { type: 'inline', form: 'list', values: ['a@example.org', 'b@example.org'] },
        { type: 'inline', form: 'list', values: ['@b.org'] },
      ],
      'a literal is a one-value table; identical contents share one table',
    );
    t.ok(anon.every((x) => x.name.startsWith('__')), 'generated names cannot clash with a written <name>');
    const [r1, r2, r3] = config.rules;
    t.same(r1!.conditions.map((c) => c.type), ['from', 'mail-from', 'for']);
    const tableOf = (c: (typeof r1)['conditions'][number]) =>
      c.type === 'mail-from' ? c.table.name : c.type === 'for' && c.for.kind === 'domain' ? c.for.table.name : undefined;
    t.equal(tableOf(r1!.conditions[1]!), tableOf(r2!.conditions[1]!));
    t.equal(tableOf(r1!.conditions[2]!), tableOf(r2!.conditions[2]!), '"for domain example.org" and "for domain { example.org }" are the same table');
    t.match(r3!.conditions[0], { type: 'from', from: { kind: 'mail-from' } });
  });
  t.test('a condition given twice', async (t) => {
    t.same(brief(parseErrors(base('match from any from local for any reject'))), ['3:16: "from" appears twice in this rule']);
  });
});

t.test('listen: ports, addresses, interfaces', async (t) => {
  const { config } = parseOk(base(
    [
      'pki p self-signed',
      'listen on 127.0.0.1 port smtp',
      'listen on 127.0.0.1 port submission',
      'listen on 127.0.0.1 port submissions smtps pki p',
      'listen on 127.0.0.1 port 2525',
      'imap listen on ::1 port imaps imaps pki p auth <users>',
      'imap listen on ::1 port imap auth <users>',
      'listen on egress tls pki p',
      'listen on all port 2526',
      'listen on localhost port 2527',
      'listen on eth0 port 2528',
      'listen on lo0 port 2529',
      'listen on enp3s0 port 2530',
      'listen on :: port 2531',
      'listen on [::1] port 2532',
      'listen on 2001:DB8::25 port 2533 family inet6',
      'listen on 0.0.0.0 smtps pki p',
    ].join('\n'),
  ));
  t.same(
    config.listeners.map((l) => [l.address, l.port]),
    [
      [{ kind: 'ip', value: '127.0.0.1' }, 25],
      [{ kind: 'ip', value: '127.0.0.1' }, 587],
      [{ kind: 'ip', value: '127.0.0.1' }, 465],
      [{ kind: 'ip', value: '127.0.0.1' }, 2525],
      [{ kind: 'egress' }, 25],
      [{ kind: 'all' }, 2526],
      [{ kind: 'localhost' }, 2527],
      [{ kind: 'interface', name: 'eth0' }, 2528],
      [{ kind: 'interface', name: 'lo0' }, 2529],
      [{ kind: 'interface', name: 'enp3s0' }, 2530],
      [{ kind: 'ip', value: '::' }, 2531],
      [{ kind: 'ip', value: '::1' }, 2532],
      [{ kind: 'ip', value: '2001:db8::25' }, 2533],
      [{ kind: 'ip', value: '0.0.0.0' }, 465],
    ],
  );
  t.equal(config.listeners[12]!.family, 'inet6');
  t.same(config.imap.listeners.map((l) => [l.port, l.tls]), [[993, 'smtps'], [143, 'none']], '"imaps" is a synonym of smtps on imap listen');
  t.same(brief(parseErrors('listen on lo port smtpx\n')), [
    '1:19: unknown port or service "smtpx" (use a number or smtp, submission, submissions, imap, imaps)',
  ]);
  t.same(brief(parseErrors('listen on lo port 25 port 26\n')), ['1:22: listen option "port" given twice']);
  t.same(brief(parseErrors('listen on lo tls smtps\n')), ['1:18: listen option "smtps" given twice']);
  t.same(brief(parseErrors('listen on lo auth\n')), ['1:14: auth needs a credentials table, as in auth <users>']);
});

t.test('actions: relay host URLs', async (t) => {
  const host = (url: string) => {
    const { config } = parseOk(`table c { x = "u:p" }\naction "r" relay host ${url} auth <c>\nmatch from local for any action "r"\n`);
    const m = config.actions.get('r')!.method;
    return m.type === 'relay' ? m.host : undefined;
  };
  t.same(host('smtp://x@relay.example.net'), { scheme: 'smtp', label: 'x', host: 'relay.example.net', port: 25 });
  t.same(host('smtp+tls://x@Relay.Example.NET'), { scheme: 'smtp+tls', label: 'x', host: 'relay.example.net', port: 587 });
  t.same(host('smtps://x@relay.example.net:4650'), { scheme: 'smtps', label: 'x', host: 'relay.example.net', port: 4650 });
  t.same(host('smtp+notls://x@[2001:db8::1]:26'), { scheme: 'smtp+notls', label: 'x', host: '2001:db8::1', port: 26 });
  t.same(brief(parseErrors('action "r" relay host lmtp://x\n')), ['1:23: unknown relay scheme "lmtp://" (use smtp, smtp+tls, smtps or smtp+notls)']);
  t.same(brief(parseErrors('action "r" relay host relay.example.net\n')), [
    '1:23: invalid relay URL "relay.example.net" (expected smtp+tls://[label@]host[:port])',
  ]);
});

t.test('defaults', async (t) => {
  const { config } = parseOk('');
  t.equal(config.dataDir, '/var/lib/appliance');
  t.equal(config.control.socket, '/var/lib/appliance/control.sock');
  t.equal(config.queue.ttl, defaults.queueTtl);
  t.same(config.bounce.warnIntervals, [defaults.warnInterval]);
  t.equal(config.acme.directory, 'https://acme-v02.api.letsencrypt.org/directory');
  t.equal(config.log.level, 'info');
  t.ok(config.hostname.length > 0, 'hostname defaults to the machine name');
  t.equal(parseOk('data-dir "srv"').config.dataDir, '/etc/appliance/srv', 'relative paths are relative to the config file');
  t.equal(parseOk('data-dir /srv').config.control.socket, '/srv/control.sock');
});

t.test('unknown keyword with "did you mean"', async (t) => {
  const errors = parseErrors('listne on 0.0.0.0 port 25\n');
  t.same(errors.map(formatDiagnostic), [`${CONF}:1:1: unknown keyword "listne"; did you mean "listen"?`]);
  t.same(brief(parseErrors('hostnme a.example\nfoo bar\n')), [
    '1:1: unknown keyword "hostnme"; did you mean "hostname"?',
    '2:1: unknown keyword "foo"',
  ]);
  t.same(brief(parseErrors('listen on lo port 25 taag MX\n')), ['1:22: unknown listen option "taag"; did you mean "tag"?']);
});

t.test('one error per bad statement, parsing goes on', async (t) => {
  const r = parse('hostname bad_name!\nhostname ok.example\nhostname again.example\n');
  t.notOk(r.ok);
  if (r.ok) return;
  t.same(brief(r.errors), ['1:10: invalid host name "bad_name!"', '3:1: hostname is set twice']);
});
