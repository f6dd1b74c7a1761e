/** `appliance reload` adds and removes `imap listen on` lines; sessions on unchanged listeners stay open. */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import t from 'tap';
import { MAIN, freePort, startAppliance } from '../helpers/appliance.ts';
import { RawImap, writeImapConfig } from '../helpers/imap.ts';

const run = promisify(execFile);
t.setTimeout(120_000);

t.test('reload', async (t) => {
  const dir = t.testdir();
  const cfg = await writeImapConfig(dir);
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const kept = await RawImap.connect(cfg.imap.plain);
  t.teardown(() => kept.close());
  await kept.expect(/\r\n/);
  t.match(await kept.cmd('a1', 'LOGIN alice@example.test alice-secret'), /a1 OK/);
  const extra = await freePort();
  const text = readFileSync(cfg.path, 'utf8').replace(/^imap listen on 127\.0\.0\.1 port \d+ imaps .*$/m, `imap listen on 127.0.0.1 port ${extra} auth <users>`);
  writeFileSync(cfg.path, text);
  await run(process.execPath, [MAIN, 'reload', '-c', cfg.path]);
  const fresh = await RawImap.connect(extra);
  t.teardown(() => fresh.close());
  t.match(await fresh.expect(/\r\n/), /^\* OK/, 'the new listener answers');
  await t.rejects(RawImap.connect(cfg.imap.imaps), 'the removed listener is closed');
  t.match(await kept.cmd('a2', 'NOOP'), /a2 OK/, 'a session on an unchanged listener carries on');
  t.equal(await app.stop(), 0);
});
