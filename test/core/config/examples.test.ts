/** The configs shipped in examples/ and written by `appliance init` are valid. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { formatDiagnostic, parseConfigText } from '../../../core/config/index.ts';
import { printConfig } from '../../../core/config/printer.ts';
import { starterConfig } from '../../../cli/starter-config.ts';

const examples = fileURLToPath(new URL('../../../examples/', import.meta.url));

t.test('examples/vps.conf', async (t) => {
  const r = parseConfigText(readFileSync(`${examples}vps.conf`, 'utf8'), '/etc/appliance/appliance.conf');
  t.ok(r.ok, r.ok ? 'valid' : r.errors.map(formatDiagnostic).join('\n'));
  t.same(r.warnings.map(formatDiagnostic), [], 'no warnings');
  if (!r.ok) return;
  t.equal(r.config.listeners.length, 5);
  t.equal(r.config.pki.get('mail.example.org')?.acme?.altNames.length, 0);
  t.same(r.config.tables.get('aliases')?.source, { type: 'file', path: '/etc/appliance/aliases' });
});

t.test('the starter config, standard and unprivileged', async (t) => {
  for (const unprivileged of [false, true]) {
    const text = starterConfig({ domain: 'example.org', hostname: 'mail.example.org', dataDir: '/var/lib/appliance', unprivileged, address: '0.0.0.0', user: 'appliance' });
    const r = parseConfigText(text, '/etc/appliance/appliance.conf');
    t.ok(r.ok, r.ok ? 'valid' : r.errors.map(formatDiagnostic).join('\n'));
    t.same(r.warnings.map(formatDiagnostic), [], 'no warnings');
    if (!r.ok) continue;
    t.same(r.config.listeners.map((l) => l.port), unprivileged ? [2525, 2587, 2465] : [25, 587, 465]);
    const again = parseConfigText(printConfig(r.config), '/etc/appliance/appliance.conf');
    t.ok(again.ok, 'its normalised form parses too');
  }
});
