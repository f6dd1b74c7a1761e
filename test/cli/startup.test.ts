/**
 * A short command must not pay for the whole server: cli/main.ts loads each
 * verb on demand (bench/RESULTS.md, CLI latency). This guards the import list.
 */
import { readFileSync } from 'node:fs';
import t from 'tap';

t.test('main.ts imports no command module and nothing heavy up front', async (t) => {
  const source = readFileSync(new URL('../../cli/main.ts', import.meta.url), 'utf8');
  const staticImports = source.split('\n').filter((l) => /^import /.test(l));
  for (const line of staticImports) {
    t.notMatch(line, /commands\//, `no static import of a command: ${line}`);
    t.notMatch(line, /store\/db|tables\/registry|smtp\/|pino|level/, `only light modules: ${line}`);
  }
  t.match(source, /import\('\.\/commands\/check\.ts'\)/, 'commands are imported lazily');
});
