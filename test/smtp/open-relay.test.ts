/**
 * Open-relay battery against the running appliance (SPEC §config `match`,
 * §smtp): the classic address tricks, on every listener, with and without
 * authentication, under three rule sets. The guarantee checked everywhere:
 * an unauthenticated MX session from outside never gets a relay recipient
 * accepted, and nothing it sends ends up in `appliance queue show`.
 *
 * What the tricks become (core/address.ts: nothing routes on `%`, `!` or a
 * quoted `@`; a source route is dropped):
 *   user%external.org@example.test    local part "user%external.org" of ours: 550 5.1.1
 *   external.org!user@example.test    local part of ours: 550 5.1.1
 *   USER@EXAMPLE.TEST                 case-insensitive domain, unknown user: 550 5.1.1
 *   @example.test:user@external.org   source route dropped = user@external.org: relay, 554 5.7.1
 *   "user@external.org"@example.test  refused by smtp-server's path parser: 501 5.1.3
 *   user@external.org@example.test    two '@': 501 5.1.3
 *   alice@example.test.               trailing dot refused by smtp-server's parser: 501 5.1.3
 *   victim@external.org               relay: 554 5.7.1
 *
 * Relayed test mail must never leave the machine: every appliance here
 * resolves through a local port where nothing answers (`resolver`), so the
 * outbound runner's MX lookups fail temporarily and relayed recipients stay
 * in the queue (pending or deferred), never delivered and never bounced.
 *
 * swaks drives the plaintext sessions (as an outside MTA would). CI installs
 * swaks without its Recommends, so it has no TLS (Net::SSLeay); the STARTTLS
 * and smtps sessions use the raw client of test/helpers/smtp-client.ts,
 * which sends the same RCPT lines verbatim.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { MAIN, USERS, freePort, startAppliance, writeConfig } from '../helpers/appliance.ts';
import { RawSmtp, dataBlock, transaction } from '../helpers/smtp-client.ts';

const run = promisify(execFile);

/** The outside sender of every unauthenticated probe: its mail must never be queued. */
const MALLORY = 'mallory@attacker.example';

type Expect = readonly [address: string, code: number, enhanced: string];

/** Each trick and the reply an unauthenticated MX session must get at RCPT. */
const UNAUTH_MX: readonly Expect[] = [
  ['user%external.org@example.test', 550, '5.1.1'],
  ['@example.test:user@external.org', 554, '5.7.1'],
  ['"user@external.org"@example.test', 501, '5.1.3'],
  ['user@external.org@example.test', 501, '5.1.3'],
  ['external.org!user@example.test', 550, '5.1.1'],
  ['USER@EXAMPLE.TEST', 550, '5.1.1'],
  ['alice@example.test.', 501, '5.1.3'],
  ['victim@external.org', 554, '5.7.1'],
  ['VICTIM@EXTERNAL.ORG', 554, '5.7.1'],
];

/** The same tricks from an authenticated user: relaying is allowed, the local-part tricks still go nowhere. */
const AUTHENTICATED: readonly Expect[] = UNAUTH_MX.map(([a, code, enhanced]) =>
  code === 554 ? ([a, 250, '2.1.5'] as const) : ([a, code, enhanced] as const),
);

interface SwaksStep {
  /** The command swaks sent, e.g. "RCPT TO:<victim@external.org>". */
  readonly command: string;
  readonly code: number;
  readonly enhanced: string;
  readonly line: string;
}

/** Runs swaks (plaintext) and pairs every command it sent with the last line of the reply. */
async function swaks(port: number, args: readonly string[]): Promise<{ exit: number; steps: SwaksStep[]; stdout: string }> {
  const argv = ['--server', `127.0.0.1:${port}`, '--helo', 'mta.attacker.example', '--timeout', '10', ...args];
  let stdout = '';
  let exit = 0;
  try {
    stdout = (await run('swaks', argv, { timeout: 30_000 })).stdout;
  } catch (err) {
    const e = err as { code?: number; stdout?: string; killed?: boolean };
    if (e.killed || typeof e.code !== 'number') throw err;
    exit = e.code;
    stdout = e.stdout ?? '';
  }
  const steps: SwaksStep[] = [];
  let command: string | null = null;
  for (const line of stdout.split('\n')) {
    const sent = /^ [-~]> (.*)$/.exec(line);
    if (sent) {
      command = sent[1]!;
      continue;
    }
    const got = /^<[-~*]{1,2}\s+(\d{3}) (?:([245]\.\d{1,3}\.\d{1,3}) )?(.*)$/.exec(line);
    if (got && command !== null) {
      steps.push({ command, code: Number(got[1]), enhanced: got[2] ?? '', line: `${got[1]} ${got[2] ?? ''} ${got[3]}` });
      command = null;
    }
  }
  return { exit, steps, stdout };
}

function stepFor(steps: readonly SwaksStep[], prefix: string): SwaksStep | undefined {
  return steps.find((s) => s.command.toUpperCase().startsWith(prefix));
}

/** Runs `fn` over `items`, at most `width` at a time. */
async function pool<T, R>(items: readonly T[], width: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

interface QueueEntry {
  id: string;
  sender: string;
  recipients: { address: string; state: string; last_error: string | null }[];
}

async function queueShow(configPath: string): Promise<QueueEntry[]> {
  const { stdout } = await run(process.execPath, [MAIN, 'queue', 'show', '--json', '-c', configPath], { timeout: 20_000 });
  return JSON.parse(stdout) as QueueEntry[];
}

/** A resolver where nothing answers: lookups fail temporarily, so relayed mail stays queued. */
async function deadResolver(): Promise<string> {
  return `resolver 127.0.0.1:${await freePort()}`;
}

/** A relayed recipient still waiting: not delivered, not failed. */
const WAITING = new Set(['pending', 'deferred']);

function mailboxCount(dataDir: string, user: string): number {
  const dir = join(dataDir, 'mail', 'example.test', user, 'new');
  return existsSync(dir) ? readdirSync(dir).length : 0;
}

/**
 * The unauthenticated MX battery with swaks: a full send per trick (DATA
 * follows whenever a recipient were accepted, so an accepted relay would
 * reach the queue), each RCPT answered as `expected` says.
 */
async function mxBatteryWithSwaks(t: Test, port: number, expected: readonly Expect[]): Promise<void> {
  const results = await pool(expected, 4, ([address]) => swaks(port, ['--from', MALLORY, '--to', address, '--header', 'Subject: relay probe']));
  expected.forEach(([address, code, enhanced], i) => {
    const r = results[i]!;
    const mail = stepFor(r.steps, 'MAIL FROM');
    const rcpt = stepFor(r.steps, 'RCPT TO');
    t.equal(mail?.code, 250, `MX MAIL FROM for ${address}`);
    t.equal(rcpt?.command, `RCPT TO:<${address}>`, `swaks sent ${address} verbatim`);
    t.equal(`${rcpt?.code} ${rcpt?.enhanced}`, `${code} ${enhanced}`, `MX, no auth: RCPT ${address} → ${code} ${enhanced} (${rcpt?.line ?? r.stdout.slice(-300)})`);
    if (code !== 250) t.notOk(stepFor(r.steps, 'DATA'), `no DATA after ${address} was refused`);
  });
}

/** RCPT-only battery over a raw session (after STARTTLS / on smtps), one transaction per trick. */
async function rawBattery(t: Test, c: RawSmtp, from: string, expected: readonly Expect[], label: string): Promise<void> {
  for (const [address, code, enhanced] of expected) {
    const r = await transaction(c, from, [address]);
    t.equal(r.mail.code, 250, `${label}: MAIL FROM:<${from}> (${r.mail.last})`);
    t.equal(`${r.rcpt[0]?.code} ${r.rcpt[0]?.enhanced}`, `${code} ${enhanced}`, `${label}: RCPT ${address} → ${code} ${enhanced} (${r.rcpt[0]?.last})`);
  }
}

t.test('default rules: no listener relays for an unauthenticated client, whatever the address spelling', async (t) => {
  const dir = t.testdir();
  const cfg = await writeConfig(dir, { extra: await deadResolver() });
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());

  // MX, plaintext, an outside MTA's view (swaks, full sends).
  await mxBatteryWithSwaks(t, cfg.ports.mx, UNAUTH_MX);

  // Control: a legitimate spelling of a local user is accepted and delivered once.
  const ok = await swaks(cfg.ports.mx, ['--from', MALLORY, '--to', 'ALICE@EXAMPLE.TEST', '--header', 'Subject: case']);
  t.equal(stepFor(ok.steps, 'RCPT TO')?.code, 250, 'ALICE@EXAMPLE.TEST is alice');
  t.match(ok.steps.at(-2)?.line ?? '', /^250 2\.0\.0 Ok: queued as/, 'and the message is accepted');
  t.equal(mailboxCount(cfg.dataDir, 'alice'), 1, 'delivered to alice (lower-cased mailbox)');

  // MX after STARTTLS: TLS does not make a client trusted.
  {
    const c = await RawSmtp.connect(cfg.ports.mx);
    t.teardown(() => c.destroy());
    await c.greeting();
    await c.ehlo('mta.attacker.example');
    const ehlo = await c.starttls('mta.attacker.example');
    t.notMatch(ehlo.lines.join('\n'), /AUTH/, 'MX offers no AUTH, even after STARTTLS');
    await rawBattery(t, c, MALLORY, UNAUTH_MX, 'MX+STARTTLS, no auth');
    const auth = await c.authPlain(USERS[0]!.address, USERS[0]!.password);
    t.ok(auth.code >= 500 && auth.code < 510, `AUTH on MX is refused as a command (${auth.last})`);
    const again = await transaction(c, MALLORY, ['victim@external.org']);
    t.equal(again.rcpt[0]?.code, 554, 'and relaying is still refused after the AUTH attempt');
    await c.quit();
  }

  // swaks' own AUTH on MX: not advertised, so swaks gives up (exit 28) before MAIL.
  const mxAuth = await swaks(cfg.ports.mx, ['--auth', 'PLAIN', '--auth-user', USERS[0]!.address, '--auth-password', USERS[0]!.password, '--from', MALLORY, '--to', 'victim@external.org']);
  t.equal(mxAuth.exit, 28, 'swaks: "Host did not advertise authentication" on MX');
  t.notOk(stepFor(mxAuth.steps, 'RCPT TO'), 'no RCPT was ever answered');

  // Submission without AUTH: MAIL is refused (530) before any recipient, plaintext or after STARTTLS.
  const subResults = await pool(UNAUTH_MX, 4, ([address]) => swaks(cfg.ports.submission, ['--from', USERS[0]!.address, '--to', address]));
  subResults.forEach((r, i) => {
    const mail = stepFor(r.steps, 'MAIL FROM');
    t.equal(`${mail?.code} ${mail?.enhanced}`, '530 5.7.0', `submission, plaintext: MAIL refused before RCPT ${UNAUTH_MX[i]![0]}`);
    t.notOk(stepFor(r.steps, 'RCPT TO'), 'no RCPT answered');
  });
  for (const [port, label, implicitTls] of [
    [cfg.ports.submission, 'submission+STARTTLS', false],
    [cfg.ports.smtps, 'smtps', true],
  ] as const) {
    const c = await RawSmtp.connect(port, { implicitTls });
    t.teardown(() => c.destroy());
    await c.greeting();
    await c.ehlo();
    if (!implicitTls) await c.starttls();
    for (const from of [USERS[0]!.address, MALLORY]) {
      const mail = await c.cmd(`MAIL FROM:<${from}>`);
      t.equal(`${mail.code} ${mail.enhanced}`, '530 5.7.0', `${label}, no auth: MAIL FROM:<${from}> → 530 5.7.0 (${mail.last})`);
      const rcpt = await c.cmd('RCPT TO:<victim@external.org>');
      t.equal(rcpt.code, 530, `${label}, no auth: RCPT without MAIL is not accepted either (${rcpt.last})`);
    }
    await c.quit();
  }

  // Nothing an unauthenticated client sent is in the queue: it is empty.
  t.same(await queueShow(cfg.path), [], 'queue show: empty after every unauthenticated probe');

  // Authenticated: submission (alice, STARTTLS) and smtps (bob) relay; the local-part tricks still do not.
  for (const [port, label, implicitTls, user] of [
    [cfg.ports.submission, 'submission+AUTH', false, USERS[0]!],
    [cfg.ports.smtps, 'smtps+AUTH', true, USERS[1]!],
  ] as const) {
    const c = await RawSmtp.connect(port, { implicitTls });
    t.teardown(() => c.destroy());
    await c.greeting();
    await c.ehlo('laptop.example.test');
    if (!implicitTls) await c.starttls('laptop.example.test');
    const auth = await c.authPlain(user.address, user.password);
    t.equal(auth.code, 235, `${label}: authenticated`);
    await rawBattery(t, c, user.address, AUTHENTICATED, label);
    const sent = await transaction(c, user.address, ['victim@external.org'], dataBlock({ Subject: 'authenticated relay' }, 'hello'));
    t.match(sent.end?.last ?? '', /^250 2\.0\.0 /, `${label}: the relayed message is accepted`);
    await c.quit();
  }
  const queue = await queueShow(cfg.path);
  t.same(
    queue.map((m) => [m.sender, m.recipients.map((r) => r.address)]).sort(),
    [
      ['alice@example.test', ['victim@external.org']],
      ['bob@example.test', ['victim@external.org']],
    ],
    'queue show: only the two authenticated relays',
  );
  t.ok(
    queue.every((m) => m.recipients.every((r) => WAITING.has(r.state))),
    `and they wait there (${queue.flatMap((m) => m.recipients.map((r) => r.state)).join(', ')})`,
  );
  t.notOk(queue.some((m) => m.sender === MALLORY), 'nothing from the unauthenticated sender');
  t.equal(mailboxCount(cfg.dataDir, 'alice'), 1, 'alice still has only the one control message');
  t.equal(await app.stop(), 0);
});

t.test('rule "match from any auth for any action out": relays only for authenticated sessions', async (t) => {
  const dir = t.testdir();
  const cfg = await writeConfig(dir, {
    rules: `match from any for domain <domains> action "local"
match from any auth for any action "out"
match from any for any reject`,
    extra: await deadResolver(),
  });
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  await mxBatteryWithSwaks(t, cfg.ports.mx, UNAUTH_MX);
  const c = await RawSmtp.connect(cfg.ports.submission);
  t.teardown(() => c.destroy());
  await c.greeting();
  await c.ehlo();
  await c.starttls();
  t.equal((await c.authPlain(USERS[0]!.address, USERS[0]!.password)).code, 235);
  await rawBattery(t, c, USERS[0]!.address, AUTHENTICATED, 'submission+AUTH, "from any auth" rule');
  await c.quit();
  t.same(await queueShow(cfg.path), [], 'queue show: nothing relayed (the battery stops at RCPT)');
  t.equal(await app.stop(), 0);
});

/*
 * `from local` means "the client connected over loopback" (127.0.0.0/8,
 * ::1): the machine itself. The starter config (cli/starter-config.ts) has
 * `match from local for any action "out"` so that programs on the mail host
 * (cron, a web app, sendmail-style scripts speaking SMTP to 127.0.0.1) can
 * send out without a password. The price: ANY loopback client relays, on
 * any listener, the MX one included. That is fine on a mail host, and a
 * hole if something on the host forwards outside connections to the MX port
 * over loopback (a reverse proxy, an SSH or container port forward): every
 * client behind it would look local. This test shows the effect, from the
 * test runner's loopback connection to the MX listener; the same rule with
 * a non-loopback client is refused (test/smtp/session.test.ts).
 */
t.test('rule "match from local for any": a loopback client relays even on MX (what "local" means)', async (t) => {
  const dir = t.testdir();
  const cfg = await writeConfig(dir, {
    rules: `match from any for domain <domains> action "local"
match from any tag SUBMIT for any action "out"
match from local for any action "out"
match from any for any reject`,
    extra: await deadResolver(),
  });
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());
  const r = await swaks(cfg.ports.mx, ['--from', 'cron@mail.example.test', '--to', 'victim@external.org', '--header', 'Subject: from the machine itself']);
  const rcpt = stepFor(r.steps, 'RCPT TO');
  t.equal(`${rcpt?.code} ${rcpt?.enhanced}`, '250 2.1.5', 'loopback is "from local": the MX session relays');
  t.equal(r.exit, 0, 'swaks: the whole send succeeded');
  const queue = await queueShow(cfg.path);
  t.same(
    queue.map((m) => [m.sender, m.recipients.map((x) => x.address)]),
    [['cron@mail.example.test', ['victim@external.org']]],
    'queue show: the loopback client relay is queued',
  );
  t.ok(WAITING.has(queue[0]?.recipients[0]?.state ?? ''), 'waiting for delivery');
  // Local-part tricks still never turn into relays: they are local parts of our domain.
  const tricks = await swaks(cfg.ports.mx, ['--from', 'cron@mail.example.test', '--to', 'user%external.org@example.test', '--quit-after', 'RCPT']);
  t.equal(stepFor(tricks.steps, 'RCPT TO')?.code, 550, '"user%external.org@example.test" is still an unknown local user');
  t.equal(await app.stop(), 0);
});
