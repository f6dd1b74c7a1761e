/**
 * The pre-6.4 grammar of the seed howtos (`accept … deliver to …`,
 * `accept … relay`, `reject …`) is translated to action + match pairs, and
 * printed in its modern form.
 */
import t from 'tap';
import { brief, canonical, fixture, lineOf, parseErrors, parseOk, strip } from './helpers.ts';
import { printConfig } from '../../../core/config/printer.ts';

const HASH = '$2b$08$1f4SvI3pbJcJG60M/PHoEOAzCt/ZSVUaSK9lvm7EMwCCoUM1DGUO2';

t.test('the seed config', async (t) => {
  const text = fixture('seed-legacy.conf');
  const { config, warnings } = parseOk(text);
  t.same(
    warnings.map((w) => w.message),
    ['listen: "verify" (client certificates) is not supported: TLS is required, but clients are not asked for a certificate; authentication is by password'],
    'one warning: the seed\'s "tls-require verify" is not enforced',
  );

  t.test('pki, listeners and tables', async (t) => {
    t.same(strip(config.pki.get('hostname')), {
      name: 'hostname',
      cert: '/etc/ssl/hostname.pem',
      key: '/etc/ssl/private/hostname.key',
      selfSigned: false,
    });
    t.match(config.listeners, [
      { address: { kind: 'egress' }, port: 25, tls: 'tls', verify: false, pki: 'hostname', tag: 'mailin' },
      { address: { kind: 'egress' }, port: 587, tls: 'tls-require', verify: true, pki: 'hostname', auth: { table: { name: 'users' }, optional: false }, tag: 'mailout' },
    ]);
    t.notOk(config.listeners[0]!.auth);
    t.same(config.tables.get('domains')!.source, { type: 'inline', form: 'list', values: ['labomedia.org', 'radio-campus.org'] });
    t.same(config.tables.get('users')!.source, { type: 'inline', form: 'map', entries: [['alice', HASH]] }, 'the unquoted $2b$ hash is literal');
  });

  t.test('rules become action + match pairs', async (t) => {
    t.same(
      [...config.actions.values()].map((a) => strip(a)),
      [
        { name: 'local', method: { type: 'maildir', junk: false, userbase: { name: 'users' } }, legacy: true },
        { name: 'relay', method: { type: 'relay', backup: false }, legacy: true },
      ],
    );
    t.equal(config.rules.length, 3);
    const [deliver, relay, reject] = config.rules;
    t.same(strip(deliver!.conditions), [
      { type: 'from', from: { kind: 'any' }, negate: false },
      { type: 'for', for: { kind: 'domain', table: { name: 'domains' } }, negate: false },
    ]);
    t.match(deliver!.decision, { type: 'action', action: 'local' });
    t.equal(deliver!.legacyText, 'accept from any for domain <domains> userbase <users> deliver to maildir');
    t.equal(deliver!.pos.line, lineOf(text, 'deliver to maildir'));

    t.same(relay!.conditions.map((c) => c.type), ['from', 'tag', 'mail-from', 'for']);
    t.match(relay!.conditions, [{ from: { kind: 'any' } }, { tag: 'mailout', negate: false }, { negate: false }, { for: { kind: 'any' } }]);
    const sender = relay!.conditions[2]!;
    if (sender.type === 'mail-from') {
      const tb = config.tables.get(sender.table.name)!;
      t.equal(tb.anonymous, true);
      t.same(tb.source, { type: 'inline', form: 'list', values: ['@labomedia.org', '@radio-campus.org'] }, 'sender { … } becomes mail-from');
    }
    t.match(relay!.decision, { type: 'action', action: 'relay' });
    t.equal(relay!.legacyText, 'accept from any tagged mailout sender { @labomedia.org, @radio-campus.org } for any relay');

    t.same(strip(reject), {
      conditions: [
        { type: 'from', from: { kind: 'any' }, negate: false },
        { type: 'for', for: { kind: 'any' }, negate: false },
      ],
      decision: { type: 'reject' },
      legacyText: 'reject from any for any',
    });
  });

  t.test('printed in modern form, and the round trip is stable', async (t) => {
    const printed = printConfig(config);
    const lines = printed.split('\n');
    for (const line of [
      'pki hostname cert /etc/ssl/hostname.pem',
      'pki hostname key /etc/ssl/private/hostname.key',
      'listen on egress port 25 tls pki hostname tag mailin',
      'listen on egress port 587 tls-require verify pki hostname auth <users> tag mailout',
      'table domains { labomedia.org, radio-campus.org }',
      `table users { alice = "${HASH}" }`,
      'action "local" maildir userbase <users>',
      'action "relay" relay',
      'match from any for domain <domains> action "local"',
      'match from any for any tag mailout mail-from { @labomedia.org, @radio-campus.org } action "relay"',
      'match from any for any reject',
      '# was: accept from any tagged mailout sender { @labomedia.org, @radio-campus.org } for any relay',
    ]) {
      t.ok(lines.includes(line), line);
    }
    t.notOk(lines.some((l) => /^(accept|reject) /.test(l)), 'no legacy line is printed');

    const again = parseOk(printed);
    t.same(again.warnings.length, 1, 'the same verify warning, nothing else');
    t.same(canonical(again.config), canonical(config), 're-parses to an equivalent config');
    const printedAgain = printConfig(again.config);
    // The modern text has no legacy lines, so only the "# was:" comments go.
    t.equal(printedAgain, lines.filter((l) => !l.startsWith('# was: ')).join('\n'));
    t.equal(printConfig(parseOk(printedAgain).config), printedAgain, 'print → parse → print is identical');
  });
});

t.test('OpenBSD default rules', async (t) => {
  t.test('deliver to mbox: a warning, translated to Maildir', async (t) => {
    const text = [
      'pki p self-signed',
      'table aliases file:/etc/mail/aliases',
      'table users db',
      'listen on lo0',
      'listen on 0.0.0.0 port 587 tls-require pki p auth <users>',
      'accept for local alias <aliases> deliver to mbox',
      'accept from local for any relay',
    ].join('\n');
    const { config, warnings } = parseOk(text);
    t.same(brief(warnings), ['6:45: mbox delivery is not supported; translated to Maildir delivery']);
    t.same(strip(config.actions.get('local')!.method), {
      type: 'maildir',
      junk: false,
      alias: { name: 'aliases' },
      userbase: { name: 'users' },
    }, 'the users are the one auth table of the listeners');
    t.same(strip(config.rules[0]!.conditions), [
      { type: 'from', from: { kind: 'local' }, negate: false },
      { type: 'for', for: { kind: 'local' }, negate: false },
    ], '"from" defaults to "from local"');
  });

  t.test('accept from local for any relay is not an open relay', async (t) => {
    const { config, warnings } = parseOk('accept from local for any relay\n');
    t.same(warnings, []);
    t.same(strip(config.rules[0]!.conditions), [
      { type: 'from', from: { kind: 'local' }, negate: false },
      { type: 'for', for: { kind: 'any' }, negate: false },
    ]);
    t.same(strip(config.actions.get('relay')!.method), { type: 'relay', backup: false });
  });

  t.test('accept from any for any relay is one', async (t) => {
    t.same(brief(parseErrors('accept from any for any relay\n')), [
      '1:1: open relay: this rule relays mail for any destination from any client without authentication; restrict it with auth, from local, from src <table> or the tag of an auth listener',
    ]);
  });

  t.test('without a userbase and without an auth listener, the users are unknown', async (t) => {
    t.same(brief(parseErrors('table aliases file:/etc/mail/aliases\naccept for local alias <aliases> deliver to mbox\n')), [
      '2:45: action "local": maildir without userbase, and the listeners use no auth tables, so the users it delivers to are unknown; add userbase <table>',
    ]);
  });
});

t.test('legacy details', async (t) => {
  t.test('rules with the same delivery share one action; others get numbered names', async (t) => {
    const { config } = parseOk(
      [
        'table users db',
        'action "relay" relay',
        'table d1 { a.example }',
        'table d2 { b.example }',
        'accept from any for domain <d1> userbase <users> deliver to maildir',
        'accept from any for domain <d2> userbase <users> deliver to maildir',
        'accept from any for domain { c.example } userbase <users> deliver to maildir "/srv/%{dest.user}"',
        'accept from local for any relay via smtp+tls://relay.example.net',
        'match from local for domain x.example action "relay"',
      ].join('\n'),
    );
    t.same([...config.actions.keys()], ['relay', 'local', 'local-2', 'relay-2']);
    t.same(config.rules.map((r) => (r.decision.type === 'action' ? r.decision.action : 'reject')), ['local', 'local', 'local-2', 'relay-2', 'relay']);
  });

  t.test('legacy relay options', async (t) => {
    const { config } = parseOk('table c { l = "u:p" }\naccept from local for any relay via tls+auth://l@relay.example.net auth <c> as bounces@example.org\n');
    t.same(strip(config.actions.get('relay')!.method), {
      type: 'relay',
      backup: false,
      host: { scheme: 'smtp+tls', label: 'l', host: 'relay.example.net', port: 587 },
      auth: { name: 'c' },
      mailFrom: 'bounces@example.org',
    });
  });

  t.test('negations and recipient', async (t) => {
    const { config } = parseOk('table users db\naccept from ! local for ! domain example.org recipient { a@example.org } userbase <users> deliver to maildir\n');
    t.same(config.rules[0]!.conditions.map((c) => [c.type, c.negate]), [['from', true], ['for', true], ['rcpt-to', false]]);
  });

  t.test('mistakes', async (t) => {
    t.same(brief(parseErrors('reject from any for any relay\n')), ['1:25: a reject rule takes no delivery method']);
    t.same(brief(parseErrors('accept from any for domain example.org\n')), ['1:1: accept rule without "deliver to …" or "relay"']);
    t.same(brief(parseErrors('accept from any for any deliver to lmtp\n')), ['1:36: "deliver to lmtp" is not supported: appliance delivers to Maildir']);
    t.same(brief(parseErrors('accept from local for any alias <a> relay\n')), ['1:37: alias, virtual and userbase apply to local delivery, not to relay']);
    t.same(brief(parseErrors('accept from local taged x for any relay\n')), ['1:19: unknown accept option "taged"; did you mean "tagged"?']);
  });
});

t.test('a legacy rule does not take a name the user gives an action later', async (t) => {
  const { config } = parseOk(`table users { alice = "${HASH}" }
listen on 127.0.0.1 port 2525 auth <users>
accept from any for domain example.org deliver to maildir
action "local" relay
match from local for any action "local"
`);
  t.same([...config.actions.keys()].sort(), ['local', 'local-legacy']);
  t.equal(config.actions.get('local')!.method.type, 'relay');
  t.equal(config.actions.get('local-legacy')!.method.type, 'maildir');
  t.match(config.rules[0], { decision: { type: 'action', action: 'local-legacy' } });
  t.match(config.rules[1], { decision: { type: 'action', action: 'local' } });
});
