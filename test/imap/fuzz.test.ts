/**
 * Fuzzing, bounded in count and time: random and mutated commands through
 * the parser (never throws), the framing (never holds more than its limits)
 * and a live session (always answers, or says BYE; the server goes on).
 * Seeded, so a failure can be replayed.
 */
import t from 'tap';
import { parseCommand } from '../../imap/protocol/command.ts';
import { CommandReader } from '../../imap/protocol/reader.ts';
import { Client, startHarness } from './harness.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 20261122);
const TIME_BUDGET_MS = 8000;

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const CORPUS = [
  'a LOGIN alice@example.test secret',
  'a SELECT INBOX',
  'a EXAMINE "Entw&APw-rfe"',
  'a FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)',
  'a UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (From Subject)] BODY[1.2.MIME]<0.100> BINARY.PEEK[1])',
  'a STORE 1:3 +FLAGS.SILENT (\\Seen $Junk)',
  'a SEARCH CHARSET UTF-8 OR (FROM "x" SINCE 1-Jan-2020) NOT (LARGER 100 UID 1:*) TEXT {3+}\r\nabc',
  'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("*" "%") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))',
  'a APPEND INBOX (\\Draft) " 1-Jan-2020 00:00:00 +0000" {10+}\r\n0123456789',
  'a STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT)',
  'a UID MOVE 1:* Trash',
  'a COPY 1,2,3:4 "Sent"',
  'a AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==',
  'a ID ("name" "fuzz")',
  'a RENAME "a/b" "c/d"',
  'a UID EXPUNGE 1:5',
  'a NOOP',
];

const SPICE = ['(', ')', '{', '}', '"', '\\', '[', ']', '<', '>', '*', '%', ':', ',', ' ', '\r\n', '\0', '{4294967295}\r\n', '{5}\r\n', '~{2}\r\n', 'NIL', '\u00ff', '&', '-', '.'];

function mutate(rand: () => number, s: string): string {
  let out = s;
  const n = 1 + Math.floor(rand() * 4);
  for (let i = 0; i < n; i++) {
    const pos = Math.floor(rand() * (out.length + 1));
    const r = rand();
    if (r < 0.3) out = out.slice(0, pos) + SPICE[Math.floor(rand() * SPICE.length)] + out.slice(pos);
    else if (r < 0.5) out = out.slice(0, pos) + out.slice(pos + 1 + Math.floor(rand() * 5));
    else if (r < 0.65) out = out.slice(0, pos) + String.fromCharCode(Math.floor(rand() * 256)) + out.slice(pos + 1);
    else if (r < 0.8) out = out.slice(0, pos) + out.slice(pos, pos + 20).repeat(1 + Math.floor(rand() * 10)) + out.slice(pos);
    else out = out.slice(0, pos) + out.slice(Math.floor(rand() * out.length));
  }
  return out;
}

function randomBytes(rand: () => number, n: number): Buffer {
  return Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
}

t.test('parser: random and mutated commands never throw', async (t) => {
  const rand = prng(SEED);
  const start = Date.now();
  let n = 0;
  let ok = 0;
  for (; n < 50_000 && Date.now() - start < TIME_BUDGET_MS; n++) {
    const input = rand() < 0.2 ? randomBytes(rand, Math.floor(rand() * 200)) : Buffer.from(mutate(rand, CORPUS[Math.floor(rand() * CORPUS.length)]!), 'latin1');
    let r;
    try {
      r = parseCommand(input);
    } catch (err) {
      t.fail(`threw on ${JSON.stringify(input.toString('latin1'))}: ${String(err)}`);
      return;
    }
    if (r.ok) ok++;
    else if (typeof r.message !== 'string' || r.message.length === 0) t.fail('BAD without a message');
  }
  t.ok(n >= 1000, `${n} inputs (${ok} still valid)`);
});

t.test('framing: memory bounded whatever arrives', async (t) => {
  const rand = prng(SEED + 1);
  const limits = { maxLine: 4096, maxLiteral: 8192, maxCommand: 16384 };
  let events = 0;
  const reader = new CommandReader(limits, () => events++);
  const start = Date.now();
  let max = 0;
  for (let i = 0; i < 20_000 && Date.now() - start < TIME_BUDGET_MS; i++) {
    const r = rand();
    const chunk = r < 0.3 ? randomBytes(rand, Math.floor(rand() * 3000)) : r < 0.5 ? Buffer.from(`x {${Math.floor(rand() * 20000)}${rand() < 0.5 ? '+' : ''}}\r\n`) : Buffer.from(mutate(rand, CORPUS[Math.floor(rand() * CORPUS.length)]!) + (rand() < 0.8 ? '\r\n' : ''), 'latin1');
    reader.push(chunk);
    max = Math.max(max, reader.bufferedBytes);
  }
  t.ok(max <= limits.maxCommand + limits.maxLine, `never held more than the limits (max ${max})`);
  t.ok(events > 0);
});

t.test('session: mutated commands over a socket; the server always answers', async (t) => {
  const h = await startHarness();
  t.teardown(() => h.close());
  const rand = prng(SEED + 2);
  const start = Date.now();
  let sent = 0;
  let reconnects = 0;
  let c = (await Client.open(h.port)).client;
  await c.login();
  await c.cmd('SELECT INBOX');
  for (let batch = 0; batch < 40 && Date.now() - start < TIME_BUDGET_MS; batch++) {
    for (let i = 0; i < 25; i++) {
      const m = mutate(rand, CORPUS[Math.floor(rand() * CORPUS.length)]!);
      // A synchronising literal would wait for "+"; the fuzz sends the bytes anyway (as a broken client would).
      c.write(Buffer.from(`${m}\r\n`, 'latin1'));
      sent++;
    }
    const tag = `zz${batch}`;
    // Whatever came before, a NOOP after a blank line is answered, or the server said BYE.
    c.write(`\r\n${tag} NOOP\r\n`);
    const got = await c.until((s) => new RegExp(`${tag} (OK|BAD|NO)[^\\r]*\\r\\n`).test(s) || /\* BYE/.test(s) || c.closed, 10_000).catch(() => 'timeout');
    if (got === 'timeout' || !new RegExp(`${tag} `).test(got)) {
      // A half literal or a BYE: a fresh connection must work.
      c.close();
      reconnects++;
      c = (await Client.open(h.port)).client;
      await c.login();
      await c.cmd('SELECT INBOX');
    }
  }
  t.ok(sent >= 100, `${sent} mutated commands, ${reconnects} reconnects`);
  const last = (await Client.open(h.port)).client;
  await last.login();
  t.match(await last.cmd('NOOP'), /OK/, 'server healthy at the end');
  last.close();
  c.close();
});
