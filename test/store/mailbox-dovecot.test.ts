/**
 * Dovecot interop of the mailbox store: Debian's Dovecot (`doveadm`, with a
 * private config in a temp dir, LAYOUT=maildir++, `/` separator, its index
 * elsewhere) pointed at a tree we wrote reports the same UIDs, UIDVALIDITY,
 * UIDNEXT, flags, keywords, sizes and subscriptions; and the other way round,
 * a tree Dovecot wrote (LF-stored messages, messages left in new/ with info,
 * dovecot-keywords, expunges) reads back with Dovecot's UIDs, and our writes
 * to it are seen by Dovecot with the UIDs we gave.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, lstatSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import t from 'tap';
import { openMailStoreService, type MailboxView, type UserMailStore } from '../../store/mailbox/index.ts';

const run = promisify(execFile);
const log = pino({ level: 'silent' });
const DOVEADM = ['/usr/bin/doveadm', '/usr/local/bin/doveadm'].find((p) => existsSync(p));

interface Dovecot {
  readonly root: string;
  /** Runs doveadm as the user (the tree is handed to its uid first); returns stdout rows of `-f tab` output without the header. */
  tab(args: readonly string[], input?: string): Promise<string[][]>;
  raw(args: readonly string[], input?: string): Promise<string>;
}

function dovecot(dir: string): Dovecot {
  const root = join(dir, 'mail', 'alice');
  for (const d of ['index', 'home', 'run', 'state', 'mail']) mkdirSync(join(dir, d), { recursive: true });
  const conf = join(dir, 'dovecot.conf');
  writeFileSync(
    conf,
    `base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
ssl = no
mail_uid = 65534
mail_gid = 65534
mail_location = maildir:${dir}/mail/%u:LAYOUT=maildir++:INDEX=${dir}/index/%u
namespace inbox {
  inbox = yes
  separator = /
}
`,
  );
  const chownTree = (p: string): void => {
    if (!existsSync(p)) return;
    chownSync(p, 65534, 65534);
    if (lstatSync(p).isDirectory()) for (const e of readdirSync(p)) chownTree(join(p, e));
  };
  const env = { USER: 'alice', HOME: join(dir, 'home'), PATH: '/usr/bin:/bin' };
  const raw = async (args: readonly string[], input?: string): Promise<string> => {
    for (const d of ['mail', 'index', 'home']) chownTree(join(dir, d));
    const p = run(DOVEADM!, ['-c', conf, ...args], { env });
    if (input !== undefined) {
      p.child.stdin!.end(input);
    }
    return (await p).stdout;
  };
  return {
    root,
    raw,
    async tab(args, input) {
      const out = await raw(['-f', 'tab', ...args], input);
      return out.split('\n').slice(1).filter((l) => l !== '').map((l) => l.split('\t'));
    },
  };
}

const noRecent = (flags: string): string => flags.split(' ').filter((f) => f !== '' && f !== '\\Recent').sort().join(' ');

async function ours(store: UserMailStore, name: string): Promise<{ view: MailboxView; rows: string[][] }> {
  const view = await store.open(name, { readOnly: true });
  return { view, rows: view.messages.map((m) => [String(m.uid), [...m.flags].sort().join(' '), String(m.size)]) };
}

t.test('Dovecot reads the tree we wrote: same UIDs, UIDVALIDITY, flags, keywords, sizes, subscriptions', async (t) => {
  if (!DOVEADM) return t.plan(0, 'doveadm not installed');
  if (process.getuid?.() !== 0) return t.plan(0, 'needs root to hand the tree to an unprivileged mail uid');
  const dir = t.testdir();
  const dc = dovecot(dir);
  const store = openMailStoreService({ log, hostname: 'mail.example.test' }).forRoot(dc.root);
  await store.create('Entwürfe/Alt');
  await store.create('Work');
  await store.subscribe('Entwürfe/Alt');
  await store.subscribe('INBOX');
  for (let i = 0; i < 6; i++) {
    await store.append('INBOX', {
      content: Buffer.from(`Subject: m${i}\r\nFrom: a@example.test\r\n\r\nbody ${i}\r\n`),
      flags: [['\\Seen'], ['\\Answered', '$Forwarded'], ['\\Flagged', 'work', '$Junk'], [], ['\\Draft', 'Later'], ['\\Seen', '\\Deleted']][i]!,
      internalDate: new Date(Date.UTC(2026, 0, i + 1)),
    });
  }
  await store.append('Entwürfe/Alt', { content: Buffer.from('Subject: draft\r\n\r\nx\r\n'), flags: ['\\Draft'] });
  // Enough expunged messages that dovecot-uidlist gets compacted (rewritten) too.
  for (let i = 0; i < 40; i++) await store.append('Work', { content: Buffer.from(`Subject: w${i}\r\n\r\nx\r\n`), flags: i < 35 ? ['\\Deleted'] : [] });
  const work = await store.open('Work', { readOnly: false });
  t.equal((await work.expunge()).length, 35);
  await work.close();
  const v = await store.open('INBOX', { readOnly: false });
  t.same(await v.expunge(), [6]);
  await v.setFlags([1], 'add', ['$Junk']);
  await v.setFlags([3], 'remove', ['work']);
  await v.close();
  // A message written by hand with bare LF line ends (another program), then renamed to set its flags.
  writeFileSync(join(dc.root, 'cur', '1790000000.M1P1.other:2,RS'), 'Subject: lf\nFrom: b@example.test\n\nline 1\nline 2\n');

  const inbox = await ours(store, 'INBOX');
  t.equal(inbox.rows.length, 6);
  const dvRows = await dc.tab(['fetch', 'uid flags size.virtual', 'mailbox', 'INBOX', 'all']);
  t.same(dvRows.map(([uid, flags, size]) => [uid, noRecent(flags!), size]), inbox.rows, 'INBOX: UIDs, flags and keywords, RFC822 sizes');
  const status = await dc.tab(['mailbox', 'status', 'uidvalidity uidnext messages', 'INBOX']);
  t.same(status[0], ['INBOX', String(inbox.view.messages.length), String(inbox.view.uidNext), String(inbox.view.uidValidity)], 'messages, uidnext, uidvalidity');
  const alt = await ours(store, 'Entwürfe/Alt');
  const altStatus = await dc.tab(['mailbox', 'status', 'uidvalidity uidnext messages', 'Entwürfe/Alt']);
  t.same(altStatus[0], ['Entwürfe/Alt', '1', String(alt.view.uidNext), String(alt.view.uidValidity)]);
  t.same((await dc.tab(['fetch', 'uid flags', 'mailbox', 'Entwürfe/Alt', 'all'])).map(([u, f]) => [u, noRecent(f!)]), [['1', '\\Draft']]);
  t.same((await dc.raw(['mailbox', 'list'])).trim().split('\n').sort(), ['Entwürfe', 'Entwürfe/Alt', 'INBOX', 'Work'].sort());
  t.same((await dc.raw(['mailbox', 'list', '-s'])).trim().split('\n').sort(), ['Entwürfe/Alt', 'INBOX']);
  const workRows = (await dc.tab(['fetch', 'uid', 'mailbox', 'Work', 'all'])).map(([u]) => Number(u));
  t.same(workRows, [36, 37, 38, 39, 40], 'a compacted uidlist keeps the UIDs');
  t.same((await dc.tab(['mailbox', 'status', 'uidnext', 'Work']))[0], ['Work', '41']);
  await inbox.view.close();
  await alt.view.close();
});

t.test('we read the tree Dovecot wrote: its UIDs, flags, keywords; Dovecot then sees our writes', async (t) => {
  if (!DOVEADM) return t.plan(0, 'doveadm not installed');
  if (process.getuid?.() !== 0) return t.plan(0, 'needs root to hand the tree to an unprivileged mail uid');
  const dir = t.testdir();
  const dc = dovecot(dir);
  await dc.raw(['mailbox', 'create', '-s', 'Projekte/Größe']);
  const texts: string[] = [];
  for (let i = 0; i < 5; i++) {
    const text = `From: x@example.test\r\nSubject: dove ${i}\r\n\r\nhello ${i}\r\nsecond line\r\n`;
    texts.push(text);
    await dc.raw(['save', '-m', 'INBOX'], text);
  }
  await dc.raw(['flags', 'add', '\\Seen $Label1', 'mailbox', 'INBOX', 'uid', '2']);
  await dc.raw(['flags', 'add', '\\Answered custom', 'mailbox', 'INBOX', 'uid', '4']);
  await dc.raw(['expunge', 'mailbox', 'INBOX', 'uid', '3']);
  await dc.raw(['save', '-m', 'Projekte/Größe'], 'Subject: p\r\n\r\np\r\n');
  const dvStatus = (await dc.tab(['mailbox', 'status', 'uidvalidity uidnext', 'INBOX']))[0]!.slice(1);
  const dvRows = (await dc.tab(['fetch', 'uid flags size.virtual', 'mailbox', 'INBOX', 'all'])).map(([u, f, s]) => [u, noRecent(f!), s]);

  const svc = openMailStoreService({ log, hostname: 'mail.example.test' });
  const store = svc.forRoot(dc.root);
  t.same((await store.list()).map((m) => [m.name, m.subscribed]), [['INBOX', false], ['Projekte', false], ['Projekte/Größe', true]]);
  const view = await store.open('INBOX', { readOnly: false });
  t.same(dvStatus, [String(view.uidNext), String(view.uidValidity)], 'UIDNEXT and UIDVALIDITY as Dovecot has them');
  t.same(view.messages.map((m) => [String(m.uid), [...m.flags].sort().join(' '), String(m.size)]), dvRows, 'UIDs, flags, keywords, sizes');
  const chunks: Buffer[] = [];
  for await (const c of await view.read(4)) chunks.push(c as Buffer);
  t.equal(Buffer.concat(chunks).toString(), texts[3], 'served with CRLF (Dovecot stores LF)');
  t.equal((await view.summary(4)).envelope.subject, 'dove 3');

  // Our writes into Dovecot's tree.
  const a = await store.append('INBOX', { content: Buffer.from('Subject: ours\r\n\r\nx\r\n'), flags: ['$Label1', 'fresh'] });
  await view.setFlags([1], 'add', ['\\Flagged', 'custom']);
  await view.setFlags([5], 'add', ['\\Deleted']);
  await view.expunge();
  await view.sync();
  const after = (await dc.tab(['fetch', 'uid flags', 'mailbox', 'INBOX', 'all'])).map(([u, f]) => [u, noRecent(f!)]);
  t.same(after, [['1', '\\Flagged custom'], ['2', '$Label1 \\Seen'], ['4', '\\Answered custom'], [String(a.uid), '$Label1 fresh']].map(([u, f]) => [u, f!.split(' ').sort().join(' ')]));
  t.equal(a.uid, Number(dvStatus[0]), 'our APPEND took the UIDNEXT Dovecot announced');

  // Dovecot writes while our view is open: sync() reports its changes.
  await dc.raw(['save', '-m', 'INBOX'], 'Subject: while open\r\n\r\nx\r\n');
  await dc.raw(['flags', 'add', '\\Seen', 'mailbox', 'INBOX', 'uid', '1']);
  await dc.raw(['expunge', 'mailbox', 'INBOX', 'uid', '2']);
  const ch = await view.sync();
  t.same(ch.added.map((r) => r.uid), [a.uid + 1]);
  t.same(ch.expunged, [2]);
  t.same(ch.flagsChanged.map((r) => [r.uid, [...r.flags].sort()]), [[1, ['\\Flagged', '\\Seen', 'custom']]]);
  t.equal((await view.summary(a.uid + 1)).envelope.subject, 'while open');
  await view.close();
  await svc.close();
});
