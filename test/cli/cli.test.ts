/**
 * The CLI end to end, as a subprocess: init → check → table add/list/lookup/del,
 * the password on stdin and on a terminal prompt, bad input that changes
 * nothing, and the same table commands against a running appliance over its
 * control socket.
 */
import { existsSync, openSync, closeSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { run, runOnTerminal, startDaemon, waitFor } from './run.ts';

async function initDemo(dir: string) {
  const conf = join(dir, 'appliance.conf');
  const data = join(dir, 'data');
  const r = await run(['init', '-c', conf, '--dir', data, '--domain', 'example.test', '--unprivileged', '--address', '127.0.0.1']);
  return { conf, data, r };
}

t.test('init writes a valid starter config and the data directory', async (t) => {
  const dir = t.testdir();
  const { conf, data, r } = await initDemo(dir);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, `wrote ${conf}`);
  t.ok(existsSync(conf));
  t.equal(statSync(data).mode & 0o777, 0o700, 'data directory is private');
  const again = await run(['init', '-c', conf, '--dir', data]);
  t.equal(again.code, 1, 'refuses to overwrite');
  t.match(again.stderr, /already exists; not overwriting it/);
  const bad = await run(['init', '-c', join(dir, 'other.conf'), '--domain', 'not a domain']);
  t.equal(bad.code, 2);
  t.notOk(existsSync(join(dir, 'other.conf')));
});

t.test('check prints the normalised config; a broken config gets every error and touches nothing', async (t) => {
  const dir = t.testdir();
  const { conf } = await initDemo(dir);
  const ok = await run(['check', '-c', conf]);
  t.equal(ok.code, 0, ok.stderr);
  t.match(ok.stdout, 'listen on 127.0.0.1 port 2587 tls-require pki mail.example.test auth <users> senders <users> masquerade tag SUBMIT');
  t.match(ok.stdout, 'match from any for domain <domains> action "local"');

  const brokenDir = join(dir, 'never-created');
  const broken = join(dir, 'broken.conf');
  writeFileSync(
    broken,
    `data-dir "${brokenDir}"
listne on 127.0.0.1 port 25
table users db
listen on 0.0.0.0 port 70000 tag MX
listen on 0.0.0.0 port 587 auth <users> tag SUBMIT
action "out" relay
match from any for any action "out"
match from any for domain <nosuch> action "missing"
`,
  );
  const r = await run(['check', '-c', broken]);
  t.equal(r.code, 2);
  t.equal(r.stdout, '');
  const lines = r.stderr.trim().split('\n');
  t.same(lines, [
    `${broken}:2:1: unknown keyword "listne"; did you mean "listen"?`,
    `${broken}:4:24: port 70000 is out of range (1-65535)`,
    `${broken}:5:1: listen: auth on a listener without TLS would send passwords in clear; add tls, tls-require or smtps (only loopback listeners may omit it)`,
    `${broken}:7:1: open relay: this rule relays mail for any destination from any client without authentication; restrict it with auth, from local, from src <table> or the tag of an auth listener`,
    `${broken}:8:1: unreachable rule: the rule at line 7 matches every message first`,
    `${broken}:8:27: undefined table <nosuch>`,
    `${broken}:8:43: undefined action "missing"`,
  ]);
  t.notOk(existsSync(brokenDir), 'no data directory is touched');
  const missing = await run(['check', '-c', join(dir, 'nope.conf')]);
  t.equal(missing.code, 2);
  t.match(missing.stderr, /no such config file/);
});

t.test('table add/list/lookup/del with the appliance stopped', async (t) => {
  const dir = t.testdir();
  const { conf } = await initDemo(dir);
  const c = ['-c', conf];

  const add = await run(['table', 'add', 'users', 'alice@example.test', '--password-stdin', ...c], { input: 'correct horse\n' });
  t.equal(add.code, 0, add.stderr);
  t.equal(add.stdout, 'alice@example.test added to users\n');

  const list = await run(['table', 'list', 'users', ...c]);
  t.equal(list.code, 0, list.stderr);
  t.equal(list.stdout, 'alice@example.test\t******** (argon2id)\n', 'the hash is masked');
  t.notMatch(list.stdout, 'correct horse');

  const json = await run(['table', 'list', 'users', '--json', ...c]);
  t.same(JSON.parse(json.stdout), [{ key: 'alice@example.test', value: '******** (argon2id)' }]);

  const lookup = await run(['table', 'lookup', 'users', 'ALICE@example.test', ...c]);
  t.equal(lookup.code, 0, lookup.stderr);
  t.equal(lookup.stdout, 'alice@example.test ******** (argon2id)\n');
  const userinfo = await run(['table', 'lookup', 'users', 'alice@example.test', '--kind', 'userinfo', ...c]);
  t.equal(userinfo.stdout, 'alice@example.test (default Maildir)\n');
  const none = await run(['table', 'lookup', 'users', 'bob@example.test', ...c]);
  t.equal(none.code, 1, 'not found exits 1, like postmap -q');
  t.match(none.stderr, 'not found (credentials)');

  const alias = await run(['table', 'add', 'aliases', 'postmaster@example.test', 'alice@example.test', ...c]);
  t.equal(alias.code, 0, alias.stderr);
  const aliasLookup = await run(['table', 'lookup', 'aliases', 'postmaster@example.test', '--json', ...c]);
  t.same(JSON.parse(aliasLookup.stdout), { kind: 'alias', result: 'found', value: 'alice@example.test' });
  const domain = await run(['table', 'lookup', 'domains', 'EXAMPLE.test', ...c]);
  t.equal(domain.code, 0);
  t.equal(domain.stdout, 'found\n');

  const replaced = await run(['table', 'add', 'users', 'alice@example.test', '--password-stdin', ...c], { input: 'another one' });
  t.equal(replaced.stdout, 'alice@example.test replaced in users\n');

  const del = await run(['table', 'del', 'aliases', 'postmaster@example.test', ...c]);
  t.equal(del.code, 0, del.stderr);
  const delAgain = await run(['table', 'del', 'aliases', 'postmaster@example.test', ...c]);
  t.equal(delAgain.code, 1);
  t.match(delAgain.stderr, 'has no key "postmaster@example.test"');
});

t.test('bad table input fails clearly and changes nothing', async (t) => {
  const dir = t.testdir();
  const { conf } = await initDemo(dir);
  const c = ['-c', conf];
  const cases: [string[], string, RegExp][] = [
    [['table', 'add', 'nosuch', 'k'], '', /no table named "nosuch" in .* \(tables: domains, users, aliases\)/],
    [['table', 'add', 'users', 'bad@@example.test', '--password-stdin'], 'pw\n', /"bad@@example.test" is not a valid address: unquoted '@' in local part/],
    [['table', 'add', 'users', 'bob@example.test', '--password-stdin'], '', /empty password on stdin/],
    [['table', 'add', 'users', 'bob@example.test', '--password-stdin'], '\n', /empty password on stdin/],
    [['table', 'add', 'users', 'bob@example.test', 'cleartext'], '', /give the password on the prompt or with --password-stdin/],
    [['table', 'add', 'users', 'bob@example.test'], '', /no terminal to ask for the password: pipe it with --password-stdin/],
    [['table', 'add', 'domains', 'example.org'], '', /table domains is not a db table \(its backend is inline\)/],
    [['table', 'add', 'aliases', 'a b', 'x'], '', /invalid key "a b"/],
    [['table', 'lookup', 'users', 'x', '--kind', 'nonsense'], '', /unknown lookup kind "nonsense"/],
    [['table', 'frob', 'users'], '', /unknown table command "frob"/],
    [['table', 'add', 'users'], '', /usage: appliance table add/],
    [['table', 'list', 'users', '--bogus'], '', /Unknown option '--bogus'/],
  ];
  for (const [args, input, message] of cases) {
    const r = await run([...args, ...c], { input });
    t.equal(r.code, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, message, args.join(' '));
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line on stderr');
  }
  const list = await run(['table', 'list', 'users', ...c]);
  t.equal(list.stdout, '', 'nothing was added');
});

t.test('the password prompt on a terminal asks twice and stores only the hash', async (t) => {
  const dir = t.testdir();
  const { conf } = await initDemo(dir);
  const ok = await runOnTerminal(['table', 'add', 'users', 'carol@example.test', '-c', conf], [
    ['Password: ', 's3cret pass'],
    ['Again: ', 's3cret pass'],
  ]);
  t.equal(ok.code, 0, ok.stdout + ok.stderr);
  t.match(ok.stdout, 'carol@example.test added to users');
  t.notMatch(ok.stdout, 's3cret', 'the password is not echoed');
  const differ = await runOnTerminal(['table', 'add', 'users', 'dave@example.test', '-c', conf], [
    ['Password: ', 'one'],
    ['Again: ', 'two'],
  ]);
  t.equal(differ.code, 2);
  t.match(differ.stdout, 'the passwords differ; nothing changed');
  const list = await run(['table', 'list', 'users', '-c', conf]);
  t.equal(list.stdout, 'carol@example.test\t******** (argon2id)\n');
});

t.test('table commands go through the control socket while the appliance runs', async (t) => {
  const dir = t.testdir();
  const { conf, data } = await initDemo(dir);
  const logPath = join(dir, 'appliance.log');
  const logFd = openSync(logPath, 'a');
  const daemon = startDaemon(['-c', conf], logFd);
  closeSync(logFd);
  const exited = new Promise<number | null>((resolve) => daemon.on('exit', (code) => resolve(code)));
  t.teardown(() => {
    if (daemon.exitCode === null) daemon.kill('SIGKILL');
  });
  const sock = join(data, 'control.sock');
  await waitFor(() => readFileSync(logPath, 'utf8').includes('appliance ready'), 'appliance ready');
  t.equal(statSync(sock).mode & 0o777, 0o600, 'control socket is 0600');

  const add = await run(['table', 'add', 'users', 'erin@example.test', '--password-stdin', '-c', conf], { input: 'pw-over-socket' });
  t.equal(add.code, 0, add.stderr);
  const lookup = await run(['table', 'lookup', 'users', 'erin@example.test', '-c', conf]);
  t.equal(lookup.stdout, 'erin@example.test ******** (argon2id)\n');
  const bad = await run(['table', 'add', 'domains', 'x.org', '-c', conf]);
  t.equal(bad.code, 2, 'a usage error from the daemon is still exit 2');
  t.match(bad.stderr, 'is not a db table');
  const log = readFileSync(logPath, 'utf8');
  t.match(log, /"table":"users","key":"erin@example.test","replaced":false,"msg":"table entry added"/, 'the running process did the write');
  t.notMatch(log, 'pw-over-socket', 'no password in the log');

  // A second instance refuses: the first owns the data directory.
  const second = await run(['start', '-c', conf], { timeoutMs: 10000 });
  t.equal(second.code, 1);
  t.match(second.stderr, /in use by another process|already running/);

  daemon.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM stops it cleanly');
  const after = await run(['table', 'list', 'users', '-c', conf]);
  t.equal(after.code, 0, 'stopped: commands open the store directly');
  t.equal(after.stdout, 'erin@example.test\t******** (argon2id)\n', 'the entry survived');
});

t.test('every command has --help, and usage errors exit 2', async (t) => {
  for (const cmd of ['init', 'check', 'start', 'table']) {
    const r = await run([cmd, '--help']);
    t.equal(r.code, 0, `${cmd} --help`);
    t.match(r.stdout, `usage: appliance ${cmd}`);
  }
  const top = await run(['--help']);
  t.equal(top.code, 0);
  t.match(top.stdout, 'usage: appliance <command>');
  const unknown = await run(['frobnicate']);
  t.equal(unknown.code, 2);
  t.match(unknown.stderr, 'unknown command "frobnicate"');
  const version = await run(['--version']);
  t.match(version.stdout, /^appliance \d+\.\d+\.\d+/);
});

t.test('check reads file tables: a malformed line is named, a missing file is an error', async (t) => {
  const dir = t.testdir({
    'aliases': 'postmaster: alice@example.org\n# fine\nabuse:\n',
    'appliance.conf': '',
  });
  const conf = join(dir, 'appliance.conf');
  writeFileSync(
    conf,
    `data-dir "${join(dir, 'data')}"
table users { "alice@example.org" = "$2b$10$abcdefghijklmnopqrstuu5A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5" }
table aliases file:aliases
table more file:missing
listen on 127.0.0.1 port 2525 auth <users> tag MX
action "local" maildir alias <aliases> virtual <more>
match from any for domain example.org action "local"
`,
  );
  const r = await run(['check', '-c', conf]);
  t.equal(r.code, 2);
  t.same(r.stderr.trim().split('\n'), [
    `${join(dir, 'aliases')}:3:1: "abuse:" has no value`,
    `${conf}:4:7: table more: cannot read ${join(dir, 'missing')}: no such file`,
  ]);
});
