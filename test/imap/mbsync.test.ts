/**
 * mbsync (isync) against the appliance: it pulls a mailbox of a few thousand
 * messages (a Maildir restored from elsewhere, so the store numbers it on
 * first access) into a local Maildir; then flags change and messages move
 * on both sides, mbsync syncs again, and both sides must agree exactly.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ImapFlow } from 'imapflow';
import t from 'tap';
import { startAppliance } from '../helpers/appliance.ts';
import { writeImapConfig } from '../helpers/imap.ts';

const run = promisify(execFile);
t.setTimeout(300_000);

const INBOX_COUNT = 2000;
const LISTS_COUNT = 300;
const SYSTEM = new Set(['\\Seen', '\\Flagged', '\\Answered', '\\Draft']);

function message(folder: string, i: number): string {
  const body = `Message ${i} of ${folder}.\r\n${'Lorem ipsum dolor sit amet, consectetur adipiscing elit. '.repeat(1 + (i % 20))}\r\n`;
  return `Return-Path: <sender${i % 17}@example.net>\r\nFrom: Sender ${i % 17} <sender${i % 17}@example.net>\r\nTo: alice@example.test\r\nSubject: ${folder} message ${i}\r\nDate: Mon, 2 Mar 2026 ${String(i % 24).padStart(2, '0')}:00:00 +0000\r\nMessage-ID: <${folder}.${i}@example.net>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n${body}`;
}

function populate(dir: string, folder: string, count: number): void {
  for (const sub of ['cur', 'new', 'tmp']) mkdirSync(join(dir, sub), { recursive: true });
  for (let i = 1; i <= count; i++) {
    const content = message(folder, i);
    const flags = `${i % 7 === 0 ? 'F' : ''}${i % 3 === 0 ? 'S' : ''}`;
    writeFileSync(join(dir, 'cur', `${1_770_000_000 + i}.M${i}P1.restore,S=${Buffer.byteLength(content)}:2,${flags}`), content);
  }
}

type State = Map<string, Map<string, string>>;

/** Folder → Message-ID → flags, from a local Maildir tree written by mbsync (SubFolders Verbatim). */
function localState(root: string): State {
  const out: State = new Map();
  const folders = readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
  const walk = (name: string, dir: string) => {
    if (existsSync(join(dir, 'cur'))) {
      const msgs = new Map<string, string>();
      for (const sub of ['cur', 'new']) {
        for (const f of readdirSync(join(dir, sub))) {
          const id = /^Message-ID: (<[^>]+>)/im.exec(readFileSync(join(dir, sub, f), 'latin1'))?.[1] ?? f;
          const info = f.includes(':2,') ? f.slice(f.indexOf(':2,') + 3) : '';
          const flags = [...info].flatMap((c) => ({ D: ['\\Draft'], F: ['\\Flagged'], R: ['\\Answered'], S: ['\\Seen'] } as Record<string, string[]>)[c] ?? []).sort();
          if (info.includes('T')) continue; // trashed, to be expunged
          msgs.set(id, flags.join(' '));
        }
      }
      out.set(name, msgs);
    }
    for (const d of readdirSync(dir, { withFileTypes: true })) {
      if (d.isDirectory() && !['cur', 'new', 'tmp'].includes(d.name)) walk(`${name}/${d.name}`, join(dir, d.name));
    }
  };
  for (const f of folders) walk(f, join(root, f));
  return out;
}

async function remoteState(c: ImapFlow): Promise<State> {
  const out: State = new Map();
  for (const box of await c.list()) {
    if (box.flags.has('\\Noselect')) continue;
    const lock = await c.getMailboxLock(box.path);
    try {
      const msgs = new Map<string, string>();
      if ((c.mailbox as { exists: number }).exists > 0) {
        for await (const m of c.fetch('1:*', { flags: true, envelope: true })) {
          msgs.set(m.envelope?.messageId ?? `uid${m.uid}`, [...(m.flags ?? [])].filter((f) => SYSTEM.has(f)).sort().join(' '));
        }
      }
      out.set(box.path, msgs);
    } finally {
      lock.release();
    }
  }
  return out;
}

function summary(s: State): Record<string, number> {
  return Object.fromEntries([...s].map(([k, v]) => [k, v.size]).sort());
}

function differences(a: State, b: State): string[] {
  const diffs: string[] = [];
  for (const name of new Set([...a.keys(), ...b.keys()])) {
    const x = a.get(name) ?? new Map<string, string>();
    const y = b.get(name) ?? new Map<string, string>();
    for (const id of new Set([...x.keys(), ...y.keys()])) {
      if (x.get(id) !== y.get(id)) diffs.push(`${name} ${id}: local=${x.get(id)} remote=${y.get(id)}`);
    }
  }
  return diffs;
}

t.test('mbsync pulls, both sides change, mbsync syncs, both agree', async (t) => {
  const dir = t.testdir();
  const cfg = await writeImapConfig(dir);
  const maildir = join(cfg.dataDir, 'mail', 'example.test', 'alice');
  populate(maildir, 'INBOX', INBOX_COUNT);
  populate(join(maildir, '.Lists'), 'Lists', LISTS_COUNT);
  writeFileSync(join(maildir, '.Lists', 'maildirfolder'), '');
  const app = await startAppliance(cfg.path, dir);
  t.teardown(() => app.kill9());

  const local = join(dir, 'local');
  mkdirSync(local);
  const conf = join(dir, 'mbsyncrc');
  writeFileSync(
    conf,
    `IMAPAccount appliance
Host 127.0.0.1
Port ${cfg.imap.plain}
User alice@example.test
Pass alice-secret
SSLType None
AuthMechs PLAIN

IMAPStore remote
Account appliance

MaildirStore local
Path ${local}/
Inbox ${local}/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
`,
  );
  const mbsync = async () => {
    try {
      return await run('mbsync', ['-c', conf, '-a'], { timeout: 180_000, maxBuffer: 16 * 1024 * 1024 });
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new Error(`mbsync failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}\n${app.log().split('\n').slice(-20).join('\n')}`);
    }
  };

  await mbsync();
  const c = new ImapFlow({ host: '127.0.0.1', port: cfg.imap.plain, secure: false, doSTARTTLS: false, auth: { user: 'alice@example.test', pass: 'alice-secret' }, logger: false });
  await c.connect();
  t.teardown(() => c.close());
  const local1 = localState(local);
  const remote1 = await remoteState(c);
  t.equal(local1.get('INBOX')?.size, INBOX_COUNT, 'every INBOX message pulled');
  t.equal(local1.get('Lists')?.size, LISTS_COUNT, 'and the folder');
  t.same(differences(local1, remote1), [], 'first pull: both sides agree (messages and flags)');

  // Local changes: flag 50 messages, move 20 from INBOX to Lists.
  const inboxCur = join(local, 'INBOX', 'cur');
  const files = readdirSync(inboxCur).sort();
  for (const f of files.slice(0, 50)) {
    const [base, info = ''] = f.split(':2,');
    if (!info.includes('F')) renameSync(join(inboxCur, f), join(inboxCur, `${base}:2,${[...new Set([...info, 'F'])].sort().join('')}`));
  }
  for (const f of readdirSync(inboxCur).sort().slice(100, 120)) {
    // A moved file loses its UID (mbsync's ,U=) so mbsync uploads it as new.
    renameSync(join(inboxCur, f), join(local, 'Lists', 'cur', f.replace(/,U=\d+/, '')));
  }
  // Remote changes: \Seen on 30, \Answered on 10, 25 moved to Trash, 5 deleted and expunged.
  {
    const lock = await c.getMailboxLock('INBOX');
    try {
      await c.messageFlagsAdd('1001:1030', ['\\Seen']);
      await c.messageFlagsAdd('1101:1110', ['\\Answered']);
      await c.messageMove('1501:1525', 'Trash');
      await c.messageDelete('1801:1805');
    } finally {
      lock.release();
    }
    const lists = await c.getMailboxLock('Lists');
    try {
      await c.messageFlagsRemove('1:*', ['\\Seen']);
    } finally {
      lists.release();
    }
  }

  await mbsync();
  const local2 = localState(local);
  const remote2 = await remoteState(c);
  t.same(differences(local2, remote2), [], 'after the second sync both sides agree');
  t.same(summary(remote2), summary(local2));
  t.equal(remote2.get('Trash')?.size, 25, 'moved on the server, moved locally');
  t.equal(remote2.get('Lists')?.size, LISTS_COUNT + 20, 'moved locally, moved on the server');
  t.equal(remote2.get('INBOX')?.size, INBOX_COUNT - 20 - 25 - 5);
  t.equal([...(remote2.get('INBOX') ?? new Map()).values()].filter((f) => f.includes('\\Answered')).length, 10);
  t.equal([...(remote2.get('Lists') ?? new Map()).values()].filter((f) => f.includes('\\Seen')).length, [...(local2.get('Lists') ?? new Map()).values()].filter((f) => f.includes('\\Seen')).length);

  // A third run has nothing left to do and changes nothing.
  await mbsync();
  t.same(differences(localState(local), await remoteState(c)), [], 'stable');
  await c.logout();
  t.equal(await app.stop(), 0);
});
