/**
 * The running appliance: the one place that wires real implementations
 * together (config, store, tables, control socket; the protocol listeners
 * plug in here). Reload is all-or-nothing: the new config is parsed,
 * validated and its tables opened before one reference is swapped.
 */
import { mkdirSync } from 'node:fs';
import type { Server } from 'node:net';
import { loadConfig, formatDiagnostic } from '../core/config/index.ts';
import type { Config } from '../core/config/types.ts';
import type { Logger } from '../core/log.ts';
import { openTables, type TableSet } from '../core/tables/registry.ts';
import { Store } from '../store/db.ts';
import { startControlServer, type ControlHandlers } from './control/server.ts';
import { chownDataDir, dropPrivileges, runAsUser } from './privileges.ts';
import { addEntry, delEntry, listTable, lookupEntry } from './table-admin.ts';
import { version } from './version.ts';

export class Appliance {
  config: Config;
  tables: TableSet;
  readonly store: Store;
  readonly log: Logger;
  private control: Server | null = null;
  private stopping = false;

  private constructor(config: Config, store: Store, tables: TableSet, log: Logger) {
    this.config = config;
    this.store = store;
    this.tables = tables;
    this.log = log;
  }

  static async start(config: Config, log: Logger): Promise<Appliance> {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    const user = runAsUser(config.user, config.dataDir);
    if (user) chownDataDir(config.dataDir, user);
    // Ports below 1024 are bound here, before the switch, once listeners exist.
    if (user) {
      dropPrivileges(user);
      log.info({ user: user.name, uid: user.uid }, 'dropped privileges');
    }
    const store = await Store.open(config.dataDir);
    let tables: TableSet;
    try {
      tables = openTables(config, tableDeps(store, log));
    } catch (err) {
      await store.close();
      throw err;
    }
    const app = new Appliance(config, store, tables, log);
    try {
      app.control = await startControlServer(config.control.socket, app.controlHandlers(), log.child({ component: 'control' }));
    } catch (err) {
      await tables.close();
      await store.close();
      throw err;
    }
    return app;
  }

  private controlHandlers(): ControlHandlers {
    return {
      ping: async () => ({ pid: process.pid, version, configPath: this.config.path }),
      'table.list': async ({ table }) => ({ entries: await listTable(this.config, this.tables, table) }),
      'table.add': async ({ table, key, value }) => {
        const r = await addEntry(this.config, this.tables, table, key, value);
        this.log.info({ component: 'table', table, key, replaced: r.replaced }, 'table entry added');
        return r;
      },
      'table.del': async ({ table, key }) => {
        const r = await delEntry(this.config, this.tables, table, key);
        this.log.info({ component: 'table', table, key }, 'table entry removed');
        return r;
      },
      'table.lookup': async ({ table, key, kind }) => lookupEntry(this.config, this.tables, table, key, kind),
    };
  }

  /** SIGHUP / `appliance reload`: everything or nothing. */
  async reload(): Promise<boolean> {
    const r = loadConfig(this.config.path);
    if (!r.ok) {
      this.log.error({ errors: r.errors.map(formatDiagnostic) }, 'reload refused: the config has errors; the running config stays');
      return false;
    }
    if (r.config.dataDir !== this.config.dataDir || r.config.control.socket !== this.config.control.socket) {
      this.log.error('reload refused: data-dir and control socket change only with a restart');
      return false;
    }
    let tables: TableSet;
    try {
      tables = openTables(r.config, tableDeps(this.store, this.log));
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'reload refused: a table cannot be opened; the running config stays');
      return false;
    }
    const old = this.tables;
    this.config = r.config;
    this.tables = tables;
    await old.close();
    this.log.info({ files: r.config.files }, 'config reloaded');
    return true;
  }

  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    await new Promise<void>((resolve) => (this.control ? this.control.close(() => resolve()) : resolve()));
    await this.tables.close();
    await this.store.close();
  }
}

function tableDeps(store: Store, log: Logger) {
  const tlog = log.child({ component: 'table' });
  return {
    kv: (name: string) => store.tableStore(name),
    file: {
      onReload: (entries: number) => tlog.info({ entries }, 'table file reloaded'),
      onReloadError: (err: Error) => tlog.error({ err: err.message }, 'table file change refused; previous contents stay'),
    },
  };
}
