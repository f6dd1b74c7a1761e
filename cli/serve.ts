/**
 * The running appliance: the one place that wires real implementations
 * together — config, certificates, store, queue, tables, SMTP listeners,
 * local retry, IMAP listeners and the mailbox store, control socket.
 *
 * Start order: certificates are read and ports bound while still root, then
 * privileges are dropped, then the database is opened; sessions arriving in
 * between get 421. Reload is all-or-nothing: the new config is parsed,
 * validated and its tables opened before one reference is swapped; sessions
 * already open see the new rules at their next command. SIGTERM stops
 * accepting, lets sessions finish within a deadline, then closes the store.
 */
import { chownSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { sweepSpool } from '../store/maildir.ts';
import type { Server } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { AuthFailureLimiter } from '../core/auth/failures.ts';
import { formatDiagnostic, loadConfig } from '../core/config/index.ts';
import { printListener } from '../core/config/printer.ts';
import type { Config, ListenerDecl } from '../core/config/types.ts';
import type { Logger } from '../core/log.ts';
import { openTables, verifyTables, type TableDeps, type TableSet } from '../core/tables/registry.ts';
import { loadCertificates, reloadCertificates, type TlsRegistry } from '../core/tls.ts';
import { Store } from '../store/db.ts';
import { Queue, type QueuedMessage } from '../store/queue.ts';
import { MaildirFirstCommit, type InboundCommit } from '../smtp/inbound.ts';
import { bindAddresses, closeListener, startSmtpListener, type BoundListener, type ListenerDeps } from '../smtp/listeners.ts';
import { LocalRetry } from '../smtp/local-retry.ts';
import { DkimSigner } from '../smtp/dkim.ts';
import { MxResolver } from '../smtp/mx.ts';
import { OutboundRunner } from '../smtp/outbound.ts';
import { newTransactionId } from '../smtp/session.ts';
import { parseAddress } from '../core/address.ts';
import { resolveRecipient } from '../core/recipient.ts';
import type { SessionFacts } from '../core/rules.ts';
import { Readable } from 'node:stream';
import { connectControl } from './control/client.ts';
import { startControlServer, type ControlHandlers } from './control/server.ts';
import { startMetricsServer, type Gauges } from './metrics-server.ts';
import { CommandError } from './usage.ts';
import { chownDataDir, dropPrivileges, runAsUser } from './privileges.ts';
import { addEntry, delEntry, listTable, lookupEntry } from './table-admin.ts';
import { version } from './version.ts';
import { locateMaildir } from '../core/mail-location.ts';
import { startImapListener, type ImapListener } from '../imap/server.ts';
import type { ImapRuntime } from '../imap/session.ts';
import { Metrics } from '../core/metrics.ts';
import { SessionRegistry } from '../core/sessions.ts';
import { openMailStoreService } from '../store/mailbox/index.ts';
import type { MailStoreService } from '../store/mailbox/types.ts';
import type { AcmeManager } from '../acme/manager.ts';
import { certStatusView } from '../acme/status.ts';
import { ControlError } from './control/protocol.ts';

export class Appliance {
  private currentConfig: Config;
  private currentTables: TableSet | null = null;
  private store: Store | null = null;
  private queue: Queue | null = null;
  private inbound: InboundCommit | null = null;
  private localRetry: LocalRetry | null = null;
  private outbound: OutboundRunner | null = null;
  private dkim: DkimSigner | undefined;
  private control: Server | null = null;
  private listeners: BoundListener[] = [];
  private imapListeners: ImapListener[] = [];
  private mail: MailStoreService | null = null;
  readonly sessions = new SessionRegistry();
  readonly metrics = new Metrics();
  private metricsServer: HttpServer | null = null;
  private acme: AcmeManager | null = null;
  private ready = false;
  private stopping = false;
  readonly log: Logger;
  readonly tls: TlsRegistry;
  private readonly connectionsByIp = new Map<string, number>();
  private readonly authFailures: AuthFailureLimiter;

  private constructor(config: Config, tls: TlsRegistry, log: Logger) {
    this.currentConfig = config;
    this.tls = tls;
    this.log = log;
    this.authFailures = new AuthFailureLimiter({ maxFailures: config.auth.maxFailures, windowMs: 15 * 60_000 });
  }

  get config(): Config {
    return this.currentConfig;
  }

  /** The listening SMTP sockets (address and actual port), for tests and logs. */
  get smtpListeners(): readonly { address: string; port: number; decl: ListenerDecl }[] {
    return this.listeners;
  }

  static async start(config: Config, log: Logger): Promise<Appliance> {
    // One process owns the data directory: say so before trying to bind its ports.
    const running = await connectControl(config.control.socket).catch(() => null);
    if (running) {
      running.close();
      throw new CommandError(`another appliance is already running (its control socket ${config.control.socket} answers)`);
    }
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    const swept = await sweepSpool(join(config.dataDir, 'spool')).catch(() => 0);
    if (swept > 0) log.info({ files: swept }, 'removed spool files left by an interrupted run (never acknowledged)');
    const user = runAsUser(config.user, config.dataDir);
    const tls = await loadCertificates(config, log.child({ component: 'tls' }));
    // ACME's local parts (account key, challenge port) fail the start here, while still root; the CA is never waited for.
    const holder: { app?: Appliance } = {};
    const acme = [...config.pki.values()].some((p) => p.acme)
      ? await import('../acme/manager.ts').then((m) => m.AcmeManager.open({ config: () => holder.app?.config ?? config, registry: tls, log: log.child({ component: 'acme' }) }))
      : null;
    if (user) chownDataDir(config.dataDir, user);
    const app = new Appliance(config, tls, log);
    holder.app = app;
    app.acme = acme;
    try {
      for (const decl of config.listeners) await app.bind(decl);
      for (const decl of config.imap.listeners) await app.bindImap(decl);
      // Bound while still root, so a socket outside the data dir (`/run/appliance.sock`) works; owned by
      // the user we become. Requests other than ping wait for `ready` (answered "still starting").
      app.control = await startControlServer(config.control.socket, app.controlHandlers(), log.child({ component: 'control' }));
      if (user) chownSync(config.control.socket, user.uid, user.gid);
      if (config.metrics) app.metricsServer = await startMetricsServer(config.metrics.host, config.metrics.port, app.metrics, app.gauges(), log.child({ component: 'metrics' }));
      if (user) {
        dropPrivileges(user);
        log.info({ user: user.name, uid: user.uid }, 'dropped privileges');
      }
      app.store = await Store.open(config.dataDir);
      app.queue = Queue.open(app.store);
      app.mail = openMailStoreService({ store: app.store, log: log.child({ component: 'mailstore' }), hostname: config.hostname });
      // After each local delivery, open IMAP views of that Maildir learn of it at once (IDLE).
      const delivered = (maildir: string) => app.mail?.delivered(maildir);
      app.currentTables = openTables(config, app.tableDeps());
      await app.verifyTables(app.currentTables);
      const commit = new MaildirFirstCommit({ dataDir: config.dataDir, queue: app.queue, hostname: () => app.config.hostname, onDelivered: delivered });
      app.inbound = {
        // Queued relay mail goes out at once, not at the next timer tick.
        commit: async (req) => {
          const r = await commit.commit(req);
          if (r.kind === 'accepted' && r.queued > 0) void app.outbound?.runOnce();
          return r;
        },
      };
      app.localRetry = new LocalRetry({
        queue: app.queue,
        dataDir: config.dataDir,
        hostname: () => app.config.hostname,
        ttl: () => app.config.queue.ttl,
        log: log.child({ component: 'local-retry' }),
        onDelivered: delivered,
        metrics: app.metrics,
      });
      app.localRetry.start();
      app.dkim = config.dkim.length > 0 ? await DkimSigner.load(config, app.currentTables, log.child({ component: 'dkim' })) : undefined;
      app.outbound = new OutboundRunner({
        queue: app.queue,
        config: () => app.config,
        tables: () => app.currentTables!,
        log: log.child({ component: 'outbound' }),
        mx: new MxResolver(config.resolver ? { server: { host: config.resolver.host, port: config.resolver.port } } : {}),
        dkim: () => app.dkim,
        submitDsn: (recipient, message) => app.submitLocal(recipient, message),
        metrics: app.metrics,
      });
      app.outbound.start();
      app.ready = true;
      app.acme?.start();
    } catch (err) {
      await app.stop();
      throw err;
    }
    return app;
  }

  private listenerDeps(): ListenerDeps {
    const app = this;
    return {
      config: () => app.currentConfig,
      tables: () => app.currentTables!,
      log: app.log,
      authFailures: app.authFailures,
      get inbound(): InboundCommit {
        return app.inbound!;
      },
      connectionsByIp: app.connectionsByIp,
      shuttingDown: () => !app.ready || app.stopping,
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
      tls: app.tls,
      sessions: app.sessions,
      metrics: app.metrics,
    };
  }

  private async bind(decl: ListenerDecl): Promise<void> {
    for (const address of bindAddresses(decl)) {
      this.listeners.push(await startSmtpListener(decl, address, this.listenerDeps()));
    }
  }

  /** The listening IMAP sockets, for tests and logs. */
  get imapBound(): readonly { address: string; port: number; decl: ListenerDecl }[] {
    return this.imapListeners;
  }

  private imapRuntime(): ImapRuntime {
    const app = this;
    return {
      config: () => app.currentConfig,
      tables: () => app.currentTables!,
      log: app.log,
      authFailures: app.authFailures,
      tls: app.tls,
      get mail(): MailStoreService {
        return app.mail!;
      },
      sessions: app.sessions,
      locateMaildir: (username) => locateMaildir(app.currentConfig, app.currentTables!, username),
      shuttingDown: () => !app.ready || app.stopping,
      sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
      metrics: app.metrics,
    };
  }

  private async bindImap(decl: ListenerDecl): Promise<void> {
    for (const address of bindAddresses(decl)) {
      this.imapListeners.push(await startImapListener(decl, address, this.imapRuntime()));
    }
  }

  private tableDeps(): TableDeps {
    const tlog = this.log.child({ component: 'table' });
    const store = this.store!;
    return {
      kv: (name: string) => store.tableStore(name),
      file: {
        onReload: (entries: number) => tlog.info({ entries }, 'table file reloaded'),
        onReloadError: (err: Error) => tlog.error({ err: err.message }, 'table file change refused; previous contents stay'),
      },
      ldap: { onWarning: (message: string) => tlog.warn(message) },
    };
  }

  /** A refused LDAP service bind throws (start/reload refused); an unreachable directory is logged. */
  private async verifyTables(tables: TableSet): Promise<void> {
    for (const w of await verifyTables(tables)) {
      this.log.warn({ component: 'table', err: w.message }, 'directory unreachable; its lookups answer "try again later" (4xx) until it is back');
    }
  }

  /** What the metrics endpoint reads at scrape time. */
  private gauges(): Gauges {
    return {
      queueMessages: async () => (this.queue ? this.queue.count() : 0),
      connections: () => ({
        smtp: [...this.connectionsByIp.values()].reduce((a, b) => a + b, 0),
        imap: this.sessions.count('imap'),
      }),
      loggedIn: () => {
        const out: Record<string, number> = { submission: 0, imap: 0 };
        for (const x of this.sessions.list()) out[x.protocol] = (out[x.protocol] ?? 0) + 1;
        return out;
      },
      certificates: () => this.tls.all().map((c) => ({ name: c.name, source: c.source, notAfter: c.notAfter })),
    };
  }

    private controlHandlers(): ControlHandlers {
    const handlers = this.readyControlHandlers();
    const guarded = {} as Record<string, unknown>;
    for (const [method, handler] of Object.entries(handlers) as [string, (p: never, progress: (p: string) => void) => Promise<unknown>][]) {
      guarded[method] =
        method === 'ping'
          ? handler
          : (params: never, progress: (p: string) => void) => {
              if (!this.ready) return Promise.reject(new ControlError('failed', 'the appliance is still starting; try again in a moment'));
              return handler(params, progress);
            };
    }
    return guarded as ControlHandlers;
  }

  private readyControlHandlers(): ControlHandlers {
    const tables = () => this.currentTables!;
    return {
      ping: async () => ({ pid: process.pid, version, configPath: this.config.path }),
      'table.list': async ({ table }) => ({ entries: await listTable(this.config, tables(), table) }),
      'table.add': async ({ table, key, value }) => {
        const r = await addEntry(this.config, tables(), table, key, value);
        this.log.info({ component: 'table', table, key, replaced: r.replaced }, 'table entry added');
        return r;
      },
      'table.del': async ({ table, key }) => {
        const r = await delEntry(this.config, tables(), table, key);
        this.log.info({ component: 'table', table, key }, 'table entry removed');
        return r;
      },
      'table.lookup': async ({ table, key, kind }) => lookupEntry(this.config, tables(), table, key, kind),
      'queue.show': async () => {
        const out: QueuedMessage[] = [];
        for await (const m of this.queue!.list()) out.push(m);
        return { messages: out };
      },
      'queue.flush': async (_params, progress) => {
        const q = this.queue!;
        let scheduled = 0;
        // 128 at a time, concurrently: group commit writes each lot with one fsync, not one per message.
        let ids: string[] = [];
        const scheduleLot = async () => {
          for (const done of await Promise.all(ids.map((id) => q.schedule(id)))) if (done) scheduled++;
          ids = [];
        };
        for await (const m of q.list()) {
          ids.push(m.id);
          if (ids.length >= 128) await scheduleLot();
        }
        await scheduleLot();
        progress(`${scheduled} messages scheduled now`);
        await this.localRetry!.runOnce();
        await this.outbound!.flush();
        return { scheduled, remaining: await q.count() };
      },
      'queue.remove': async ({ id }) => ({ done: await this.queue!.remove(id) }),
      'queue.hold': async ({ id }) => ({ done: await this.queue!.hold(id) }),
      'queue.release': async ({ id }) => ({ done: await this.queue!.release(id) }),
      reload: async () => {
        const r = await this.reloadConfig();
        return r.ok ? { reloaded: true } : { reloaded: false, error: r.error };
      },
      who: async () => ({ sessions: this.sessions.list().map((x) => ({ ...x, since: x.since.toISOString() })) }),
      kick: async ({ user, cidr }) => ({ kicked: this.sessions.kick(user, cidr) }),
      'cert.status': async () => ({
        certificates: this.acme ? this.acme.status() : [...this.config.pki.values()].map((p) => certStatusView(p, this.tls.info(p.name), undefined)),
      }),
      'cert.renew': async ({ name }, progress) => {
        const acmePkis = [...this.config.pki.values()].filter((p) => p.acme).map((p) => p.name);
        if (name !== undefined && !this.config.pki.has(name)) throw new ControlError('usage', `no pki ${name} in the config`);
        if (name !== undefined && !acmePkis.includes(name)) throw new ControlError('usage', `pki ${name} does not use acme: its certificate is not renewed by the appliance`);
        if (acmePkis.length === 0 || !this.acme) throw new ControlError('usage', 'no pki uses acme in the running config');
        return { results: await this.acme.renew(name !== undefined ? [name] : acmePkis, progress) };
      },
    };
  }

  /**
   * Mail the appliance writes itself (bounces): routed by the rules as mail
   * from the machine (`from local`), then made durable like received mail.
   */
  async submitLocal(recipient: string, message: Buffer): Promise<void> {
    const parsed = parseAddress(recipient);
    if (!parsed.ok) throw new Error(`cannot send to ${recipient}: ${parsed.reason}`);
    const session: SessionFacts = { local: true, remoteAddress: '', tls: false };
    const decision = await resolveRecipient(this.config, this.currentTables!, session, { mailFrom: null, rcptTo: parsed.address });
    if (decision.kind !== 'accept') throw new Error(`no route for ${recipient}: ${decision.error.message}`);
    const id = newTransactionId();
    const result = await this.inbound!.commit({
      id,
      stream: Readable.from([message]),
      prefix: Buffer.alloc(0),
      sender: null,
      recipients: [{ address: parsed.address, destinations: decision.destinations }],
      maxBytes: Number.MAX_SAFE_INTEGER,
      log: this.log.child({ component: 'dsn' }),
    });
    this.log.info({ id, to: recipient, ...(result.kind === 'accepted' ? { delivered: result.delivered, queued: result.queued, qid: result.queueId } : {}) }, 'bounce submitted');
    if (result.kind === 'accepted' && result.queued > 0) void this.outbound?.runOnce();
  }

  /** SIGHUP / `appliance reload`: everything or nothing. */
  async reload(): Promise<boolean> {
    return (await this.reloadConfig()).ok;
  }

  /** The reload, with the reason of a refusal (logged once here, and shown by `appliance reload`). */
  private async reloadConfig(): Promise<{ ok: true } | { ok: false; error: string }> {
    const refuse = (error: string, context: Record<string, unknown> = {}) => {
      this.log.error(context, error);
      return { ok: false as const, error };
    };
    const r = loadConfig(this.config.path);
    if (!r.ok) {
      const errors = r.errors.map(formatDiagnostic);
      return refuse(`reload refused: the config has errors; the running config stays\n${errors.join('\n')}`, { errors });
    }
    const next = r.config;
    if (next.dataDir !== this.config.dataDir || next.control.socket !== this.config.control.socket || next.user !== this.config.user) {
      return refuse('reload refused: data-dir, user and control socket change only with a restart');
    }
    if (JSON.stringify(next.metrics ?? null, ['host', 'port']) !== JSON.stringify(this.config.metrics ?? null, ['host', 'port'])) {
      this.log.warn('metrics listen changes only with a restart; the endpoint stays where it is');
    }
    let tables: TableSet;
    try {
      tables = openTables(next, this.tableDeps());
      try {
        await this.verifyTables(tables);
      } catch (err) {
        await tables.close();
        throw err;
      }
    } catch (err) {
      return refuse(`reload refused: a table cannot be opened; the running config stays: ${(err as Error).message}`, { err: (err as Error).message });
    }
    try {
      const changed = await reloadCertificates(next, this.tls, this.log.child({ component: 'tls' }));
      if (changed.length > 0) this.log.info({ pki: changed }, 'certificates reloaded');
    } catch (err) {
      await tables.close();
      return refuse(`reload refused: a certificate cannot be loaded; the running config stays: ${(err as Error).message}`, { err: (err as Error).message });
    }
    const dkim = next.dkim.length > 0 ? await DkimSigner.load(next, tables, this.log.child({ component: 'dkim' })) : undefined;
    const oldTables = this.currentTables;
    this.currentConfig = next;
    this.currentTables = tables;
    this.dkim = dkim;
    await oldTables?.close();
    await this.reconcileListeners(next);
    await this.reconcileImapListeners(next);
    if (this.acme) {
      const adopted = this.acme.adopt();
      if (adopted.length > 0) this.log.info({ pki: adopted }, 'new ACME pkis: certificates requested');
    } else if ([...next.pki.values()].some((p) => p.acme)) {
      this.log.warn('the first "pki … acme" takes effect at the next restart (the challenge listener is bound at start); a self-signed certificate is served until then');
    }
    this.log.info({ files: next.files }, 'config reloaded');
    return { ok: true };
  }

  /** Listeners whose line changed are replaced; unchanged ones keep their sessions. */
  private async reconcileListeners(next: Config): Promise<void> {
    const { keep, close, add } = reconcile(this.listeners, next.listeners);
    for (const l of close) {
      await closeListener(l);
      this.log.info({ listen: `${l.address}:${l.port}` }, 'listener closed by reload');
    }
    this.listeners = keep;
    for (const decl of add) {
      await this.bind(decl).catch((err: Error) => this.log.error({ err: err.message }, 'reload: a new listener could not be opened'));
    }
  }

  /** The same for `imap listen on` lines. */
  private async reconcileImapListeners(next: Config): Promise<void> {
    const { keep, close, add } = reconcile(this.imapListeners, next.imap.listeners);
    for (const l of close) await l.close();
    this.imapListeners = keep;
    for (const decl of add) {
      await this.bindImap(decl).catch((err: Error) => this.log.error({ err: err.message }, 'reload: a new IMAP listener could not be opened'));
    }
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.sessions.closeAll('Server shutting down');
    await Promise.all(this.imapListeners.map((l) => l.close()));
    await Promise.all(this.listeners.map(closeListener));
    await this.acme?.stop();
    await this.localRetry?.stop();
    await this.outbound?.stop();
    await new Promise<void>((resolve) => (this.control ? this.control.close(() => resolve()) : resolve()));
    await new Promise<void>((resolve) => (this.metricsServer ? this.metricsServer.close(() => resolve()) : resolve()));
    await this.currentTables?.close();
    await this.mail?.close();
    await this.store?.close();
  }
}

/** Which bound listeners a new config keeps (same line), which it closes, and which lines are new. */
function reconcile<L extends { readonly decl: ListenerDecl }>(bound: readonly L[], wanted: readonly ListenerDecl[]): { keep: L[]; close: L[]; add: ListenerDecl[] } {
  const keyOf = (d: ListenerDecl) => printListener(d, (t) => t.name);
  const wantedByKey = new Map(wanted.map((d) => [keyOf(d), d]));
  const keep = bound.filter((l) => wantedByKey.has(keyOf(l.decl)));
  const close = bound.filter((l) => !wantedByKey.has(keyOf(l.decl)));
  const have = new Set(keep.map((l) => keyOf(l.decl)));
  return { keep, close, add: [...wantedByKey].filter(([k]) => !have.has(k)).map(([, d]) => d) };
}
