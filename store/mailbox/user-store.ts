/**
 * One user's Maildir++ tree (UserMailStore): mailbox names → directories
 * (names.ts), the folder operations, and APPEND/COPY/MOVE through the shared
 * MailboxState of the target. Special-use attributes given at CREATE are kept
 * in `appliance-special-use` at the root (`NAME<TAB>\Attr` lines); those of
 * the config come from ensureSpecialMailboxes.
 */
import { constants as fsConstants } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { ensureMaildir, uniqueName } from '../maildir.ts';
import { InvalidMailboxNameError, MailboxExistsError, MailboxNotFoundError, NoPermissionError } from './errors.ts';
import { initUidlist, type MailboxState, type NewFile, type StateContext } from './mailbox-state.ts';
import { parseMessage } from './mime.ts';
import { folderDirName, mailboxDir, nameOfFolderDir, parseMailboxName, type MailboxName } from './names.ts';
import { readSubscriptions, updateSubscriptions } from './subscriptions.ts';
import { readUidlist } from './uidlist.ts';
import type { AppendInput, MailboxInfo, MailboxStatus, MailboxView, UserMailStore } from './types.ts';
import { View } from './view.ts';

const SPECIAL_USE_FILE = 'appliance-special-use';

/** What a user store needs from the service. */
export interface StoreHost {
  readonly ctx: StateContext;
  readonly hostname: string;
  acquire(dir: string): MailboxState;
  release(state: MailboxState): void;
  /** A loaded state of this directory, if any (for notifications and renames). */
  loaded(dir: string): MailboxState | undefined;
  /** Moves a loaded state after a directory rename. */
  moved(fromDir: string, toDir: string): void;
  /** Drops a loaded state (its directory was deleted); views holding it see everything expunged. */
  forget(dir: string): void;
}

export class MaildirUserStore implements UserMailStore {
  readonly root: string;
  private readonly host: StoreHost;
  private ready: Promise<void> | undefined;
  private readonly configSpecialUse = new Map<string, string>();

  constructor(root: string, host: StoreHost) {
    this.root = root;
    this.host = host;
  }

  private ensureRoot(): Promise<void> {
    this.ready ??= ensureMaildir(this.root).catch((err: unknown) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }

  private dirOf(n: MailboxName): string {
    return mailboxDir(this.root, n);
  }

  private async isMailboxDir(dir: string): Promise<boolean> {
    try {
      return (await fsp.stat(join(dir, 'cur'))).isDirectory();
    } catch {
      return false;
    }
  }

  /** Every folder directory's name (the root's `.A.B` directories), without INBOX; `selectable` when it is a Maildir. */
  private async folderDirs(): Promise<{ name: string; selectable: boolean }[]> {
    const entries = await fsp.readdir(this.root, { withFileTypes: true });
    const out: { name: string; selectable: boolean }[] = [];
    for (const d of entries) {
      if (!d.isDirectory() && !d.isSymbolicLink()) continue;
      const name = nameOfFolderDir(d.name);
      if (name === undefined) continue;
      const selectable = await this.isMailboxDir(join(this.root, d.name));
      if (d.isSymbolicLink() && !selectable) continue;
      out.push({ name, selectable });
    }
    return out;
  }

  private async folderNames(): Promise<string[]> {
    return (await this.folderDirs()).map((d) => d.name);
  }

  private async specialUses(): Promise<Map<string, string>> {
    const m = new Map(this.configSpecialUse);
    try {
      for (const line of (await fsp.readFile(join(this.root, SPECIAL_USE_FILE), 'utf8')).split('\n')) {
        const tab = line.lastIndexOf('\t');
        if (tab > 0 && !m.has(line.slice(0, tab))) m.set(line.slice(0, tab), line.slice(tab + 1));
      }
    } catch {
      // none
    }
    return m;
  }

  async list(): Promise<readonly MailboxInfo[]> {
    await this.ensureRoot();
    const dirs = await this.folderDirs();
    const names = dirs.map((d) => d.name);
    const exists = new Set(['INBOX', ...dirs.filter((d) => d.selectable).map((d) => d.name)]);
    const all = new Set([...exists, ...names]);
    for (const n of names) {
      const levels = n.split('/');
      for (let i = 1; i < levels.length; i++) all.add(levels.slice(0, i).join('/'));
    }
    const subs = new Set(await readSubscriptions(this.root));
    const special = await this.specialUses();
    const out: MailboxInfo[] = [];
    for (const name of [...all].sort((a, b) => (a === 'INBOX' ? -1 : b === 'INBOX' ? 1 : a < b ? -1 : a > b ? 1 : 0))) {
      const prefix = `${name}/`;
      const hasChildren = [...all].some((n) => n.startsWith(prefix));
      const su = special.get(name);
      out.push({ name, subscribed: subs.has(name), hasChildren, noSelect: !exists.has(name), ...(su ? { specialUse: su } : {}) });
    }
    return out;
  }

  /** The subscribed names, existing or not (LSUB). */
  async subscriptions(): Promise<readonly string[]> {
    await this.ensureRoot();
    return readSubscriptions(this.root);
  }

  async create(name: string, opts: { readonly specialUse?: string } = {}): Promise<void> {
    await this.ensureRoot();
    const n = parseMailboxName(name);
    if (n.isInbox) throw new MailboxExistsError(n.name);
    const dir = this.dirOf(n);
    if (await this.isMailboxDir(dir)) throw new MailboxExistsError(n.name);
    for (let i = 1; i < n.levels.length; i++) {
      const parent = join(this.root, folderDirName(n.levels.slice(0, i)));
      if (!(await this.isMailboxDir(parent))) await this.makeMailbox(parent);
    }
    await this.makeMailbox(dir);
    if (opts.specialUse) {
      const file = join(this.root, SPECIAL_USE_FILE);
      await fsp.appendFile(file, `${n.name}\t${opts.specialUse}\n`, { mode: 0o600 });
    }
  }

  private async makeMailbox(dir: string): Promise<void> {
    await ensureMaildir(dir, { folder: true });
    await initUidlist(dir);
  }

  async delete(name: string): Promise<void> {
    await this.ensureRoot();
    const n = parseMailboxName(name);
    if (n.isInbox) throw new NoPermissionError('INBOX cannot be deleted');
    const dir = this.dirOf(n);
    if (!(await this.isMailboxDir(dir))) {
      const children = (await this.folderNames()).some((x) => x.startsWith(`${n.name}/`));
      if (children) throw new NoPermissionError(`${n.name} has no messages of its own to delete; delete its children first`);
      const stray = await fsp.stat(dir).catch(() => undefined);
      if (!stray?.isDirectory()) throw new MailboxNotFoundError(n.name);
      // A \Noselect directory of its own (not a Maildir): remove it like a mailbox.
    }
    // Renamed away first so that the name disappears at once (as Dovecot's DOVECOT-TRASH); children are other directories and stay.
    const guid = (await readUidlist(dir, true).catch(() => undefined))?.uidlist.guid;
    const trash = join(this.root, `..DELETED.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2)}`);
    await fsp.rename(dir, trash);
    const state = this.host.loaded(dir);
    if (state) {
      this.host.forget(dir);
      state.gone = true;
      state.notify();
    }
    await fsp.rm(trash, { recursive: true, force: true });
    if (guid) await this.host.ctx.cache.drop(guid).catch((err: unknown) => this.host.ctx.log.warn({ err, guid }, 'dropping the index of a deleted mailbox failed'));
    await this.renameSpecialUse((name) => (name === n.name ? undefined : name));
  }

  /** Keeps `appliance-special-use` in step with DELETE (undefined drops the line) and RENAME. */
  private async renameSpecialUse(map: (name: string) => string | undefined): Promise<void> {
    const file = join(this.root, SPECIAL_USE_FILE);
    let text: string;
    try {
      text = await fsp.readFile(file, 'utf8');
    } catch {
      return;
    }
    const lines: string[] = [];
    for (const line of text.split('\n')) {
      const tab = line.lastIndexOf('\t');
      if (tab <= 0) continue;
      const name = map(line.slice(0, tab));
      if (name !== undefined) lines.push(`${name}${line.slice(tab)}\n`);
    }
    const out = lines.join('');
    if (out === text) return;
    const tmp = `${file}.tmp`;
    await fsp.writeFile(tmp, out, { mode: 0o600 });
    await fsp.rename(tmp, file);
  }

  async rename(from: string, to: string): Promise<void> {
    await this.ensureRoot();
    const a = parseMailboxName(from);
    const b = parseMailboxName(to);
    if (b.isInbox) throw new MailboxExistsError(b.name);
    const toDir = this.dirOf(b);
    if (await this.isMailboxDir(toDir)) throw new MailboxExistsError(b.name);
    const fromDir = this.dirOf(a);
    if (!(await this.isMailboxDir(fromDir))) throw new MailboxNotFoundError(a.name);
    if (!a.isInbox && (b.name === a.name || b.name.startsWith(`${a.name}/`))) throw new InvalidMailboxNameError(b.name, 'cannot rename a mailbox into itself');
    const existing = await this.folderNames();
    if (!a.isInbox && existing.some((x) => x.startsWith(`${b.name}/`) && !x.startsWith(`${a.name}/`))) {
      // Children of the target name exist already: the rename would merge hierarchies.
      throw new MailboxExistsError(b.name);
    }
    for (let i = 1; i < b.levels.length; i++) {
      const parent = join(this.root, folderDirName(b.levels.slice(0, i)));
      if (!(await this.isMailboxDir(parent))) await this.makeMailbox(parent);
    }
    if (a.isInbox) {
      await this.renameInbox(toDir);
      return;
    }
    // The mailbox and its children: `.A` and every `.A.*`.
    const moves: [string, string][] = [[fromDir, toDir]];
    for (const x of existing) {
      if (!x.startsWith(`${a.name}/`)) continue;
      const rest = x.slice(a.name.length + 1).split('/');
      moves.push([join(this.root, folderDirName(x.split('/'))), join(this.root, folderDirName([...b.levels, ...rest]))]);
    }
    for (const [f, t] of moves) {
      await fsp.rename(f, t);
      this.host.moved(f, t);
    }
    const moveName = (s: string): string => (s === a.name ? b.name : s.startsWith(`${a.name}/`) ? b.name + s.slice(a.name.length) : s);
    await updateSubscriptions(this.root, (subs) => subs.map(moveName));
    await this.renameSpecialUse(moveName);
  }

  /** RFC 3501 §6.3.5: INBOX's messages move into a new mailbox; INBOX stays, empty. */
  private async renameInbox(toDir: string): Promise<void> {
    await this.makeMailbox(toDir);
    const src = this.host.acquire(this.root);
    const dst = this.host.acquire(toDir);
    try {
      await src.mutex.run(async () => {
        await src.scan();
        const records = src.records();
        const files: NewFile[] = [];
        for (const r of records) {
          const e = src.entries.get(r.uid)!;
          const tmp = join(toDir, 'tmp', e.base);
          try {
            await fsp.rename(src.path(e), tmp);
          } catch (err) {
            if ((err as { code?: string }).code === 'ENOENT') continue;
            throw err;
          }
          files.push({ tmpPath: tmp, base: e.base, flags: r.flags, vsize: e.vsize, bareLf: e.bareLf, mtimeMs: e.mtimeMs });
        }
        await dst.mutex.run(() => dst.addFiles(files, undefined));
        await src.scan();
        src.notify();
      });
    } finally {
      this.host.release(src);
      this.host.release(dst);
    }
  }

  async subscribe(name: string): Promise<void> {
    await this.ensureRoot();
    const n = parseMailboxName(name);
    await updateSubscriptions(this.root, (subs) => (subs.includes(n.name) ? subs : [...subs, n.name]));
  }

  async unsubscribe(name: string): Promise<void> {
    await this.ensureRoot();
    const n = parseMailboxName(name);
    await updateSubscriptions(this.root, (subs) => subs.filter((s) => s !== n.name));
  }

  /** A loaded, refreshed state of an existing mailbox (release it after use). */
  private async openState(name: string): Promise<{ n: MailboxName; state: MailboxState }> {
    await this.ensureRoot();
    const n = parseMailboxName(name);
    const dir = this.dirOf(n);
    if (!(await this.isMailboxDir(dir))) throw new MailboxNotFoundError(n.name);
    const state = this.host.acquire(dir);
    try {
      await state.refresh();
    } catch (err) {
      this.host.release(state);
      throw err;
    }
    return { n, state };
  }

  async status(name: string): Promise<MailboxStatus> {
    const { state } = await this.openState(name);
    try {
      const records = state.records();
      let unseen = 0;
      let size = 0;
      for (const r of records) {
        if (!r.flags.includes('\\Seen')) unseen++;
        size += r.size;
      }
      return {
        messages: records.length,
        recent: state.recentUids().length,
        unseen,
        uidNext: state.nextUid,
        uidValidity: state.uidValidity,
        size,
        highestModseq: state.highestModseq,
      };
    } finally {
      this.host.release(state);
    }
  }

  async open(name: string, opts: { readonly readOnly: boolean }): Promise<MailboxView> {
    const { n, state } = await this.openState(name);
    let released = false;
    const view = new View(state, n.name, opts.readOnly, () => {
      if (!released) {
        released = true;
        this.host.release(state);
      }
    });
    try {
      await view.init();
    } catch (err) {
      await view.close();
      throw err;
    }
    return view;
  }

  async append(name: string, message: AppendInput): Promise<{ readonly uidValidity: number; readonly uid: number }> {
    await this.ensureRoot();
    const n = parseMailboxName(name);
    const dir = this.dirOf(n);
    if (!(await this.isMailboxDir(dir))) throw new MailboxNotFoundError(n.name);
    const parsed = parseMessage(message.content);
    const base = `${uniqueName(message.content.length, this.host.hostname)},W=${parsed.size}`;
    const tmp = join(dir, 'tmp', base);
    const mtimeMs = await writeDurable(tmp, message.content, message.internalDate);
    const state = this.host.acquire(dir);
    try {
      const [uid] = await state.mutex.run(() =>
        state.addFiles([{ tmpPath: tmp, base, flags: message.flags ?? [], vsize: parsed.size, bareLf: parsed.bareLf, mtimeMs, summary: parsed.summary }], undefined),
      );
      await fsync(join(dir, 'cur'));
      return { uidValidity: state.uidValidity, uid: uid! };
    } catch (err) {
      await fsp.unlink(tmp).catch(() => undefined);
      throw err;
    } finally {
      this.host.release(state);
    }
  }

  async copy(from: MailboxView, uids: readonly number[], to: string, opts: { readonly move?: boolean } = {}): Promise<{ readonly uidValidity: number; readonly pairs: readonly (readonly [number, number])[] }> {
    await this.ensureRoot();
    if (!(from instanceof View)) throw new TypeError('copy: not a view of this store');
    if (opts.move && from.readOnly) throw new NoPermissionError(`mailbox ${from.name} is open read-only`);
    const n = parseMailboxName(to);
    const dir = this.dirOf(n);
    if (!(await this.isMailboxDir(dir))) throw new MailboxNotFoundError(n.name);
    const known = new Map(from.messages.map((m) => [m.uid, m]));
    const files: NewFile[] = [];
    const sources: number[] = [];
    try {
      for (const uid of [...new Set(uids)].sort((a, b) => a - b)) {
        if (!known.has(uid)) continue;
        const e = from.state.entries.get(uid);
        if (!e) continue;
        let size: number;
        try {
          size = await fileSize(from.state.path(e));
        } catch (err) {
          if ((err as { code?: string }).code === 'ENOENT') continue; // expunged meanwhile
          throw err;
        }
        const base = `${uniqueName(size, this.host.hostname)},W=${e.vsize}`;
        const tmp = join(dir, 'tmp', base);
        try {
          await linkOrCopy(from.state.path(e), tmp, e.mtimeMs);
        } catch (err) {
          if ((err as { code?: string }).code === 'ENOENT') continue; // expunged meanwhile
          throw err;
        }
        files.push({ tmpPath: tmp, base, flags: e.record.flags, vsize: e.vsize, bareLf: e.bareLf, mtimeMs: e.mtimeMs });
        sources.push(uid);
      }
    } catch (err) {
      await Promise.all(files.map((f) => fsp.unlink(f.tmpPath).catch(() => undefined)));
      throw err;
    }
    const state = this.host.acquire(dir);
    try {
      let newUids: number[] = [];
      try {
        if (files.length > 0) newUids = await state.mutex.run(() => state.addFiles(files, undefined));
      } catch (err) {
        // Refused (KeywordLimitError) or failed: the links made into tmp/ must not linger.
        await Promise.all(files.map((f) => fsp.unlink(f.tmpPath).catch(() => undefined)));
        throw err;
      }
      if (files.length > 0) await fsync(join(dir, 'cur'));
      const pairs = sources.map((s, i) => [s, newUids[i]!] as const);
      if (opts.move && sources.length > 0) await from.removeMoved(sources);
      return { uidValidity: state.uidValidity, pairs };
    } finally {
      this.host.release(state);
    }
  }

  async ensureSpecialMailboxes(mailboxes: readonly { readonly name: string; readonly specialUse?: string; readonly auto: 'no' | 'create' | 'subscribe' }[]): Promise<void> {
    await this.ensureRoot();
    for (const m of mailboxes) {
      const n = parseMailboxName(m.name);
      if (m.specialUse) this.configSpecialUse.set(n.name, m.specialUse);
      if (m.auto === 'no') continue;
      let created = false;
      if (!n.isInbox && !(await this.isMailboxDir(this.dirOf(n)))) {
        try {
          await this.create(n.name);
          created = true;
        } catch (err) {
          if (!(err instanceof MailboxExistsError)) throw err;
        }
      }
      if (m.auto === 'subscribe' && created) await this.subscribe(n.name);
    }
  }
}

async function fileSize(path: string): Promise<number> {
  return (await fsp.stat(path)).size;
}

/** Writes, sets the mtime (internal date), fsyncs. Returns the mtime in ms. */
async function writeDurable(path: string, content: Buffer, date: Date | undefined): Promise<number> {
  const fh = await fsp.open(path, 'wx', 0o600);
  try {
    await fh.writeFile(content);
    if (date) await fh.utimes(date, date);
    await fh.sync();
    return (await fh.stat()).mtimeMs;
  } catch (err) {
    await fh.close().catch(() => undefined);
    await fsp.unlink(path).catch(() => undefined);
    throw err;
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** A hard link (same inode: same mtime, no copy), or a copy with the mtime kept on another file system. */
async function linkOrCopy(src: string, dst: string, mtimeMs: number): Promise<void> {
  try {
    await fsp.link(src, dst);
  } catch (err) {
    if ((err as { code?: string }).code !== 'EXDEV' && (err as { code?: string }).code !== 'EPERM') throw err;
    await fsp.copyFile(src, dst, fsConstants.COPYFILE_EXCL);
    const d = new Date(mtimeMs);
    await fsp.utimes(dst, d, d);
    await fsync(dst);
  }
}

async function fsync(path: string): Promise<void> {
  const fh = await fsp.open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

