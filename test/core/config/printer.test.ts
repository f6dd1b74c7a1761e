/**
 * `printConfig` (what `appliance check` prints): the normalised text
 * re-parses to the same config, and printing that again changes nothing.
 */
import { readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import t from 'tap';
import { canonical, FIXTURES, parseOk } from './helpers.ts';
import { formatDiagnostic, loadConfig, parseConfigText } from '../../../core/config/index.ts';
import { lexConfigText } from '../../../core/config/lexer.ts';
import { printConfig, quote } from '../../../core/config/printer.ts';
import type { Config } from '../../../core/config/types.ts';

function validFixtures(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'broken' ? [] : validFixtures(p);
    return e.name.endsWith('.conf') ? [p] : [];
  });
}

const withoutFiles = (c: Config) => ({ ...(canonical(c) as object), files: undefined });
const dropWas = (text: string) => text.split('\n').filter((l) => !l.startsWith('# was: ')).join('\n');

const fixtures = validFixtures(FIXTURES);

t.test('the valid fixtures', async (t) => {
  t.ok(fixtures.length >= 5, `${fixtures.length} fixtures`);
  for (const file of fixtures) {
    t.test(relative(FIXTURES, file), async (t) => {
      const r = loadConfig(file);
      t.ok(r.ok, 'valid');
      if (!r.ok) {
        t.comment(r.errors.map(formatDiagnostic).join('\n'));
        return;
      }
      const printed = printConfig(r.config);
      const again = parseConfigText(printed, file);
      t.ok(again.ok, 'the printed text is valid');
      if (!again.ok) {
        t.comment(again.errors.map(formatDiagnostic).join('\n'));
        return;
      }
      t.same(again.warnings.map((w) => w.message), r.warnings.filter((w) => !w.message.startsWith('mbox delivery')).map((w) => w.message), 'same warnings');
      t.same(withoutFiles(again.config), withoutFiles(r.config), 'the same config');
      const printedAgain = printConfig(again.config);
      t.equal(printedAgain, dropWas(printed), 'printing it again gives the same text (legacy "# was:" notes aside)');
      const third = parseConfigText(printedAgain, file);
      t.ok(third.ok && printConfig(third.config) === printedAgain, 'print → parse → print is a fixed point');
      t.notOk(/\$[A-Za-z_]/.test(printed.replace(/"[^"\n]*"/g, '')), 'macros are expanded');
      t.notOk(/^include /m.test(printed), 'includes are inlined');
    });
  }
});

t.test('normalised text of the include fixture', async (t) => {
  const r = loadConfig(join(FIXTURES, 'include/main.conf'));
  if (!r.ok) throw new Error(r.errors.map(formatDiagnostic).join('\n'));
  t.same(r.config.files.map((f) => relative(FIXTURES, f)), ['include/main.conf', 'include/parts/macros.inc', 'include/parts/tables.inc']);
  const lines = printConfig(r.config).split('\n');
  for (const line of [
    'hostname mx.example.org',
    'pki mx.example.org self-signed',
    `table users file:${join(FIXTURES, 'include/users')}`,
    'table virtuals { postmaster@example.org = alice, @example.net = alice }',
    'listen on 0.0.0.0 port 587 tls-require pki mx.example.org auth <users> tag SUBMIT',
    'match from any for any tag SUBMIT action "out"',
  ]) {
    t.ok(lines.includes(line), line);
  }
});

t.test('defaults are made explicit', async (t) => {
  const lines = printConfig(parseOk('hostname h.example\n').config).split('\n');
  for (const line of [
    'data-dir /var/lib/appliance',
    'user appliance',
    'queue ttl 4d',
    'bounce warn-interval 4h',
    'smtp max-message-size 35M',
    'smtp authentication-results yes',
    'control socket /var/lib/appliance/control.sock',
    'log level info',
    'auth failure-delay 2s',
  ]) {
    t.ok(lines.includes(line), line);
  }
});

t.test('quote() gives text that lexes back to the same value', async (t) => {
  const values = [
    'plain',
    'mail.example.org',
    '/var/lib/appliance',
    'relayuser:relaypass',
    '%{dest.user}',
    '',
    'two words',
    'say "hi"',
    '\\Drafts',
    'ends with \\',
    'back\\\\slash',
    '\\"',
    '$2b$08$abc',
    '$macro',
    '#not-a-comment',
    '!bang',
    'a,b',
    'a=b',
    '{braces}',
    '<table>',
    "it's",
    'tab\there',
  ];
  for (const v of values) {
    const r = lexConfigText(`x ${quote(v)}`, '/q.conf');
    t.same(r.diagnostics, [], `no error for ${JSON.stringify(v)}`);
    t.same(r.statements[0]?.tokens.slice(1).map((tok) => tok.value), [v], `${JSON.stringify(v)} → ${quote(v)}`);
  }
  t.equal(quote('mail.example.org'), 'mail.example.org', 'plain words stay bare');
  t.equal(quote('two words'), '"two words"');
});

t.test('names that need quotes survive the round trip', async (t) => {
  const { config } = parseOk(
    'pki "my cert" self-signed\nlisten on lo port 2525 tls pki "my cert"\naction "two words" relay\nmatch from local for any action "two words"\n',
  );
  const printed = printConfig(config);
  t.match(printed, /^pki "my cert" self-signed$/m);
  t.match(printed, /^action "two words" relay$/m);
  t.equal(printConfig(parseOk(printed).config), printed);
});
