/**
 * A small in-memory implementation of the mailbox store contract
 * (store/mailbox/types.ts), for unit tests of the IMAP commands only:
 * messages are single-part (or multipart/mixed split on the boundary in a
 * simple way), flags and UIDs live in maps. Integration tests use the real
 * store.
 */
import { Readable } from 'node:stream';
import { MailboxExistsError, MailboxNotFoundError, MessageGoneError, NoPermissionError } from '../../store/mailbox/errors.ts';
import type {
  AppendInput,
  EnvelopeHeaders,
  Flag,
  FlagOperation,
  MailboxChanges,
  MailboxInfo,
  MailboxStatus,
  MailboxView,
  MailStoreService,
  MessageRecord,
  MessageSummary,
  MimePart,
  UserMailStore,
} from '../../store/mailbox/types.ts';

interface Msg {
  uid: number;
  flags: Flag[];
  internalDate: Date;
  content: Buffer;
  modseq: number;
}

class Box {
  name: string;
  uidValidity = 1000;
  uidNext = 1;
  msgs: Msg[] = [];
  subscribed = false;
  specialUse?: string;
  readonly views = new Set<MemoryView>();
  constructor(name: string) {
    this.name = name;
  }
  changed(except?: MemoryView): void {
    for (const v of this.views) if (v !== except) v.notify();
  }
}

function headerEnd(b: Buffer): number {
  const i = b.indexOf('\r\n\r\n');
  return i === -1 ? b.length : i + 4;
}

function headerValue(header: string, name: string): string | undefined {
  const m = new RegExp(`^${name}:[ \\t]*((?:.*)(?:\\r\\n[ \\t].*)*)`, 'im').exec(header);
  return m ? m[1]!.replace(/\r\n[ \t]/g, ' ') : undefined;
}

function part(content: Buffer, start: number, end: number): MimePart {
  const slice = content.subarray(start, end);
  const hEnd = start + headerEnd(slice);
  const header = content.toString('latin1', start, hEnd);
  const ct = headerValue(header, 'Content-Type') ?? 'text/plain; charset=us-ascii';
  const [type, subtype] = ct.split(';')[0]!.trim().toLowerCase().split('/') as [string, string];
  const params: Record<string, string> = {};
  for (const m of ct.matchAll(/;\s*([\w-]+)="?([^";]*)"?/g)) params[m[1]!.toLowerCase()] = m[2]!;
  const body = content.subarray(hEnd, end);
  const base = {
    headerStart: start,
    bodyStart: hEnd,
    bodyEnd: end,
    type,
    subtype,
    params,
    encoding: (headerValue(header, 'Content-Transfer-Encoding') ?? '7bit').toLowerCase(),
    size: end - hEnd,
    lines: body.toString('latin1').split('\r\n').length - 1,
  };
  if (type === 'multipart' && params.boundary) {
    const delim = Buffer.from(`\r\n--${params.boundary}`);
    const children: MimePart[] = [];
    let pos = content.indexOf(`--${params.boundary}`, hEnd);
    while (pos !== -1 && pos < end) {
      const lineEnd = content.indexOf('\r\n', pos) + 2;
      if (content.toString('latin1', pos, lineEnd).trim().endsWith('--')) break;
      const next = content.indexOf(delim, lineEnd);
      const stop = next === -1 || next > end ? end : next;
      children.push(part(content, lineEnd, stop));
      pos = stop + 2;
    }
    return { ...base, children };
  }
  return base;
}

function summarize(content: Buffer): MessageSummary {
  const header = content.toString('latin1', 0, headerEnd(content));
  const env: Record<string, string | undefined> = {};
  const names: [keyof EnvelopeHeaders, string][] = [
    ['date', 'Date'], ['subject', 'Subject'], ['from', 'From'], ['sender', 'Sender'], ['replyTo', 'Reply-To'],
    ['to', 'To'], ['cc', 'Cc'], ['bcc', 'Bcc'], ['inReplyTo', 'In-Reply-To'], ['messageId', 'Message-ID'],
  ];
  for (const [k, h] of names) {
    const v = headerValue(header, h);
    if (v !== undefined) env[k] = v;
  }
  return { envelope: env as EnvelopeHeaders, root: part(content, 0, content.length) };
}

function record(m: Msg): MessageRecord {
  return { uid: m.uid, flags: [...m.flags].sort(), internalDate: m.internalDate, size: m.content.length, modseq: m.modseq };
}

class MemoryView implements MailboxView {
  readonly box: Box;
  readonly readOnly: boolean;
  messages: MessageRecord[];
  recentUids = new Set<number>();
  private known = new Map<number, string>();
  private listeners = new Set<() => void>();
  constructor(box: Box, readOnly: boolean) {
    this.box = box;
    this.readOnly = readOnly;
    this.messages = box.msgs.map(record);
    for (const m of this.messages) this.known.set(m.uid, m.flags.join(' '));
    box.views.add(this);
  }
  get name() {
    return this.box.name;
  }
  get uidValidity() {
    return this.box.uidValidity;
  }
  get uidNext() {
    return this.box.uidNext;
  }
  get highestModseq() {
    return 1;
  }
  notify(): void {
    for (const l of this.listeners) l();
  }
  async sync(): Promise<MailboxChanges> {
    const now = this.box.msgs.map(record);
    const nowUids = new Set(now.map((m) => m.uid));
    const added = now.filter((m) => !this.known.has(m.uid));
    const expunged = [...this.known.keys()].filter((u) => !nowUids.has(u));
    const flagsChanged = now.filter((m) => this.known.has(m.uid) && this.known.get(m.uid) !== m.flags.join(' '));
    this.known = new Map(now.map((m) => [m.uid, m.flags.join(' ')]));
    for (const a of added) this.recentUids.add(a.uid);
    this.messages = now;
    return { added, expunged, flagsChanged };
  }
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  async setFlags(uids: readonly number[], op: FlagOperation, flags: readonly Flag[]): Promise<readonly MessageRecord[]> {
    if (this.readOnly) throw new NoPermissionError('read-only');
    const out: MessageRecord[] = [];
    for (const m of this.box.msgs) {
      if (!uids.includes(m.uid)) continue;
      const set = new Set(op === 'replace' ? [] : m.flags);
      for (const f of flags) op === 'remove' ? set.delete(f) : set.add(f);
      m.flags = [...set].sort();
      m.modseq++;
      out.push(record(m));
      this.known.set(m.uid, m.flags.join(' '));
    }
    this.messages = this.box.msgs.map(record);
    this.box.changed(this);
    return out;
  }
  async expunge(uids?: readonly number[]): Promise<readonly number[]> {
    if (this.readOnly) throw new NoPermissionError('read-only');
    const gone = this.box.msgs.filter((m) => m.flags.includes('\\Deleted') && (!uids || uids.includes(m.uid))).map((m) => m.uid);
    this.box.msgs = this.box.msgs.filter((m) => !gone.includes(m.uid));
    for (const u of gone) this.known.delete(u);
    this.messages = this.box.msgs.map(record);
    this.box.changed(this);
    return gone;
  }
  private msg(uid: number): Msg {
    const m = this.box.msgs.find((x) => x.uid === uid);
    if (!m) throw new MessageGoneError(uid);
    return m;
  }
  async read(uid: number, start?: number, end?: number): Promise<Readable> {
    return Readable.from([await this.readBuffer(uid, start, end)]);
  }
  async readBuffer(uid: number, start = 0, end?: number): Promise<Buffer> {
    const m = this.msg(uid);
    return m.content.subarray(start, end ?? m.content.length);
  }
  async summary(uid: number): Promise<MessageSummary> {
    return summarize(this.msg(uid).content);
  }
  async close(): Promise<void> {
    this.box.views.delete(this);
  }
}

export class MemoryUserStore implements UserMailStore {
  readonly root: string;
  readonly boxes = new Map<string, Box>();
  constructor(root: string) {
    this.root = root;
    this.boxes.set('INBOX', new Box('INBOX'));
  }
  private box(name: string): Box {
    const b = this.boxes.get(name);
    if (!b) throw new MailboxNotFoundError(name);
    return b;
  }
  async list(): Promise<readonly MailboxInfo[]> {
    return [...this.boxes.values()].map((b) => ({
      name: b.name,
      subscribed: b.subscribed,
      hasChildren: [...this.boxes.keys()].some((k) => k.startsWith(`${b.name}/`)),
      noSelect: false,
      ...(b.specialUse ? { specialUse: b.specialUse } : {}),
    }));
  }
  async subscriptions(): Promise<readonly string[]> {
    return [...this.boxes.values()].filter((b) => b.subscribed).map((b) => b.name);
  }
  async create(name: string, opts?: { readonly specialUse?: string }): Promise<void> {
    if (this.boxes.has(name)) throw new MailboxExistsError(name);
    const b = new Box(name);
    if (opts?.specialUse) b.specialUse = opts.specialUse;
    this.boxes.set(name, b);
  }
  async delete(name: string): Promise<void> {
    if (name === 'INBOX') throw new NoPermissionError('INBOX');
    this.box(name);
    this.boxes.delete(name);
  }
  async rename(from: string, to: string): Promise<void> {
    const b = this.box(from);
    if (this.boxes.has(to)) throw new MailboxExistsError(to);
    if (from === 'INBOX') {
      const nb = new Box(to);
      nb.msgs = b.msgs;
      b.msgs = [];
      this.boxes.set(to, nb);
      return;
    }
    this.boxes.delete(from);
    b.name = to;
    this.boxes.set(to, b);
  }
  async subscribe(name: string): Promise<void> {
    this.box(name).subscribed = true;
  }
  async unsubscribe(name: string): Promise<void> {
    this.box(name).subscribed = false;
  }
  async status(name: string): Promise<MailboxStatus> {
    const b = this.box(name);
    return {
      messages: b.msgs.length,
      recent: 0,
      unseen: b.msgs.filter((m) => !m.flags.includes('\\Seen')).length,
      uidNext: b.uidNext,
      uidValidity: b.uidValidity,
      size: b.msgs.reduce((a, m) => a + m.content.length, 0),
      highestModseq: 1,
    };
  }
  async open(name: string, opts: { readonly readOnly: boolean }): Promise<MailboxView> {
    return new MemoryView(this.box(name), opts.readOnly);
  }
  async append(name: string, message: AppendInput): Promise<{ readonly uidValidity: number; readonly uid: number }> {
    const b = this.box(name);
    const uid = b.uidNext++;
    b.msgs.push({ uid, flags: [...(message.flags ?? [])].sort(), internalDate: message.internalDate ?? new Date(), content: message.content, modseq: 1 });
    b.changed();
    return { uidValidity: b.uidValidity, uid };
  }
  async copy(from: MailboxView, uids: readonly number[], to: string, opts?: { readonly move?: boolean }) {
    const src = (from as MemoryView).box;
    const dst = this.box(to);
    const pairs: [number, number][] = [];
    for (const m of src.msgs.filter((x) => uids.includes(x.uid))) {
      const uid = dst.uidNext++;
      dst.msgs.push({ ...m, uid, flags: [...m.flags] });
      pairs.push([m.uid, uid]);
    }
    if (opts?.move) {
      src.msgs = src.msgs.filter((m) => !uids.includes(m.uid));
      src.changed(from as MemoryView);
    }
    dst.changed();
    return { uidValidity: dst.uidValidity, pairs };
  }
  async ensureSpecialMailboxes(mailboxes: readonly { readonly name: string; readonly specialUse?: string; readonly auto: 'no' | 'create' | 'subscribe' }[]): Promise<void> {
    for (const m of mailboxes) {
      if (m.auto === 'no' || this.boxes.has(m.name)) continue;
      await this.create(m.name, m.specialUse ? { specialUse: m.specialUse } : undefined);
      if (m.auto === 'subscribe') await this.subscribe(m.name);
    }
  }
}

export class MemoryMailService implements MailStoreService {
  readonly stores = new Map<string, MemoryUserStore>();
  forRoot(root: string): MemoryUserStore {
    let s = this.stores.get(root);
    if (!s) this.stores.set(root, (s = new MemoryUserStore(root)));
    return s;
  }
  delivered(root: string, folder = 'INBOX'): void {
    this.stores.get(root)?.boxes.get(folder)?.changed();
  }
  async close(): Promise<void> {}
}
