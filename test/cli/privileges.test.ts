/**
 * Started as root with `user nobody`: ports below 1024 are bound first, the
 * control socket too (here in a root-only directory, as `/run/appliance.sock`
 * would be), then the process becomes nobody; mail is delivered into a data
 * dir it owns and the CLI still reaches it. Runs only as root (CI is).
 * Loopback address used by this file: 127.0.0.61.
 */
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startAppliance, writeConfig } from '../helpers/appliance.ts';
import { RawSmtp, dataBlock, transaction } from '../helpers/smtp-client.ts';
import { run } from './run.ts';

if (process.getuid?.() !== 0) throw new Error('this test starts the appliance as root and must run as root (CI does)');
const NOBODY = 65534;

t.test('root binds port 25 and the control socket, then runs as nobody', async (t) => {
  const dir = t.testdir();
  const run_ = join(dir, 'run');
  mkdirSync(run_, { mode: 0o755 }); // root's: nobody could not create a socket here
  const socket = join(run_, 'appliance.sock');
  const cfg = await writeConfig(dir, { extra: `listen on 127.0.0.61 port 25 tag MX\ncontrol socket "${socket}"` });
  writeFileSync(cfg.path, readFileSync(cfg.path, 'utf8').replace(/^user .*$/m, 'user nobody'));
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());

  const status = readFileSync(`/proc/${app.child.pid}/status`, 'utf8');
  t.match(status, new RegExp(`^Uid:\\s+${NOBODY}\\s+${NOBODY}\\s+${NOBODY}\\s+${NOBODY}$`, 'm'), 'every uid is nobody');
  t.match(status, /^Gid:\s+65534\s+65534\s+65534\s+65534$/m, 'every gid is nogroup');
  t.match(status, /^Groups:\s*(65534\s*)?$/m, 'only nobody\'s own groups (root\'s are gone)');
  t.ok(app.logLines().some((l) => l.msg === 'dropped privileges' && l.user === 'nobody'), 'the drop is logged');

  const sock = statSync(socket);
  t.equal(sock.uid, NOBODY, 'the control socket belongs to nobody');
  t.equal(sock.mode & 0o777, 0o600, 'mode 0600');
  const show = await run(['queue', 'show', '-c', cfg.path]);
  t.equal(show.code, 0, `the CLI reaches the running appliance: ${show.stderr}`);

  const c = await RawSmtp.connect(25, { host: '127.0.0.61' });
  await c.greeting();
  await c.ehlo();
  const r = await transaction(c, 'someone@remote.example', ['alice@example.test'], dataBlock({ Subject: 'to port 25' }, 'delivered by nobody'));
  await c.quit();
  t.equal(r.end?.code, 250, `accepted on port 25: ${r.end?.last}`);
  const newDir = join(cfg.dataDir, 'mail', 'example.test', 'alice', 'new');
  const files = readdirSync(newDir);
  t.equal(files.length, 1, 'delivered');
  t.equal(statSync(join(newDir, files[0]!)).uid, NOBODY, 'the message file belongs to nobody');

  t.equal(await app.stop(), 0, 'SIGTERM: clean exit');
});
