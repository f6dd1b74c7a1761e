/**
 * Connections to the directory servers of one LDAP table (ldapts).
 *
 * - Failover: a new connection tries the urls in order, starting with the
 *   one that answered last, and remembers which one did.
 * - TLS: ldaps:// or STARTTLS, always verifying the server certificate
 *   against `ca_file` (else the system CAs) and the url's host name.
 * - A small pool of service-bound connections is reused for searches. A
 *   connection that failed or was closed by the server is dropped and a new
 *   one opened, bound again and, with STARTTLS, upgraded again: ldapts's own
 *   transparent reconnect is disabled, because it would carry on unbound
 *   (the seed's ACLs then hide every entry: "user unknown" for everyone) or
 *   in clear text after STARTTLS.
 * - A wrong service password is a ServiceBindError, distinct from "the
 *   directory is unreachable", so start-up can refuse it.
 */
import { connect as netConnect, Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { Client, ResultCodeError } from 'ldapts';

export class ServiceBindError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ServiceBindError';
  }
}

export interface LdapConnectorOptions {
  readonly urls: readonly string[];
  readonly starttls: boolean;
  /** PEM of the CAs to trust (ca_file); undefined = the system's. */
  readonly ca?: string | Buffer;
  readonly timeoutMs: number;
}

/** Result codes that mean "the server is busy or going away", not "the request is wrong". */
const TRANSIENT_CODES: ReadonlySet<number> = new Set([3, 11, 51, 52, 80]);

export function isTransient(err: unknown): boolean {
  return !(err instanceof ResultCodeError) || TRANSIENT_CODES.has(err.code);
}

export class LdapConnector {
  private readonly o: LdapConnectorOptions;
  private preferred = 0;

  constructor(o: LdapConnectorOptions) {
    this.o = o;
  }

  /** A new connection (TLS set up, not bound) to the first server that answers. */
  async open(): Promise<LdapConnection> {
    const errors: string[] = [];
    const n = this.o.urls.length;
    for (let i = 0; i < n; i++) {
      const index = (this.preferred + i) % n;
      const url = this.o.urls[index]!;
      try {
        const conn = await this.connect(url);
        this.preferred = index;
        return conn;
      } catch (err) {
        errors.push(`${url}: ${describe(err)}`);
      }
    }
    throw new Error(`no LDAP server answered (${errors.join('; ')})`);
  }

  private async connect(url: string): Promise<LdapConnection> {
    const u = new URL(url);
    const secure = u.protocol === 'ldaps:';
    const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = u.port === '' ? (secure ? 636 : 389) : Number(u.port);
    const tlsOptions: ConnectionOptions = { minVersion: 'TLSv1.2', host, ...(isIpLiteral(host) ? {} : { servername: host }), ...(this.o.ca ? { ca: this.o.ca } : {}) };
    const connectMs = Math.max(500, Math.floor(this.o.timeoutMs / this.o.urls.length));
    // The socket is opened here, so failover happens at connect; ldapts gets
    // it once, and a reconnect of its own gets a failing socket (see header).
    const socket = await openSocket(host, port, secure ? tlsOptions : undefined, connectMs);
    let handedOver = false;
    let lost = false;
    const once = (): Socket => {
      if (handedOver) return lostSocket();
      handedOver = true;
      return socket;
    };
    const client = new Client({
      url,
      timeout: this.o.timeoutMs,
      connectTimeout: connectMs,
      tlsOptions,
      createConnection: (() => once()) as unknown as typeof netConnect,
      createSecureConnection: ((...args: unknown[]) => {
        if (typeof args[0] === 'number') return once();
        // STARTTLS: ldapts watches only the plain socket, which emits nothing
        // once wrapped; without this a server that went away would leave
        // requests waiting for their timeout and the connection looking alive.
        const upgraded = tlsConnect(args[0] as ConnectionOptions);
        const gone = () => {
          lost = true;
          socket.destroy();
        };
        upgraded.once('end', gone);
        upgraded.once('close', gone);
        return upgraded;
      }) as typeof tlsConnect,
    });
    try {
      if (this.o.starttls) await client.startTLS({ ...tlsOptions });
      return { client, url, alive: () => !lost && client.isConnected };
    } catch (err) {
      socket.destroy();
      void client.unbind().catch(() => undefined);
      throw err;
    }
  }
}

export interface LdapConnection {
  readonly client: Client;
  readonly url: string;
  /** False once the server closed it or it failed: it is then replaced, never reused. */
  alive(): boolean;
}

/** A pool of connections bound as the service account, reused for searches. */
export class LdapPool {
  private readonly connector: LdapConnector;
  private readonly bindAs: { readonly dn: string; readonly password: string } | undefined;
  private readonly slots: { conn?: LdapConnection; pending?: Promise<LdapConnection> }[];
  private next = 0;
  private closed = false;

  constructor(connector: LdapConnector, bindAs: { readonly dn: string; readonly password: string } | undefined, size: number) {
    this.connector = connector;
    this.bindAs = bindAs;
    this.slots = Array.from({ length: Math.max(1, size) }, () => ({}));
  }

  /**
   * Runs one operation on a pooled connection. A connection-level failure
   * drops the connection and the operation is tried once more on a new one
   * (a server restarted since the last use closed it).
   */
  async run<T>(op: (client: Client) => Promise<T>): Promise<T> {
    const i = this.next++ % this.slots.length;
    for (let attempt = 0; ; attempt++) {
      const conn = await this.acquire(i);
      try {
        return await op(conn.client);
      } catch (err) {
        if (err instanceof ResultCodeError && !TRANSIENT_CODES.has(err.code)) throw err;
        this.drop(i, conn);
        if (attempt >= 1) throw err;
      }
    }
  }

  /** Opens the first connection now: throws ServiceBindError for a refused service bind. */
  async warm(): Promise<void> {
    await this.acquire(0);
  }

  async close(): Promise<void> {
    this.closed = true;
    const conns = this.slots.map((s) => s.conn).filter((c): c is LdapConnection => c !== undefined);
    for (const s of this.slots) delete s.conn;
    await Promise.all(conns.map((c) => c.client.unbind().catch(() => undefined)));
  }

  private async acquire(i: number): Promise<LdapConnection> {
    if (this.closed) throw new Error('the LDAP table is closed');
    const slot = this.slots[i]!;
    if (slot.conn && slot.conn.alive()) return slot.conn;
    if (slot.conn) this.drop(i, slot.conn);
    if (!slot.pending) {
      const pending = this.openBound();
      slot.pending = pending;
      pending.then(
        (c) => {
          if (slot.pending === pending) delete slot.pending;
          if (this.closed) void c.client.unbind().catch(() => undefined);
          else slot.conn = c;
        },
        () => {
          if (slot.pending === pending) delete slot.pending;
        },
      );
    }
    return slot.pending;
  }

  private async openBound(): Promise<LdapConnection> {
    const conn = await this.connector.open();
    const { client, url } = conn;
    if (!this.bindAs) return conn;
    try {
      await client.bind(this.bindAs.dn, this.bindAs.password);
      return conn;
    } catch (err) {
      void client.unbind().catch(() => undefined);
      if (err instanceof ResultCodeError && !TRANSIENT_CODES.has(err.code)) {
        throw new ServiceBindError(`the service bind as "${this.bindAs.dn}" was refused by ${url}: ${describe(err)}`);
      }
      throw err;
    }
  }

  private drop(i: number, conn: LdapConnection): void {
    const slot = this.slots[i]!;
    if (slot.conn === conn) delete slot.conn;
    void conn.client.unbind().catch(() => undefined);
  }
}

/** A short description of an ldapts or socket error, for logs and tempfail messages. */
export function describe(err: unknown): string {
  if (err instanceof ResultCodeError) {
    const name = err.name.replace(/Error$/, '').replace(/([a-z])([A-Z])/g, '$1 $2').toLowerCase();
    return `${name} (result code ${err.code})`;
  }
  const e = err as NodeJS.ErrnoException;
  return (e?.message ?? String(err)).split('\n')[0]!;
}

/** A socket that fails at once: what a second connect of one client gets. */
function lostSocket(): Socket {
  const s = new Socket();
  setImmediate(() => s.destroy(new Error('connection to the LDAP server was lost')));
  return s;
}

/** A TCP (or TLS, for ldaps://) connection, within a time limit. */
function openSocket(host: string, port: number, tls: ConnectionOptions | undefined, ms: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s: Socket = tls ? tlsConnect({ ...tls, port }) : netConnect(port, host);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no connection within ${ms} ms`));
    }, ms);
    s.once(tls ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      // Until ldapts attaches its own handler, an error must not crash the process.
      s.on('error', () => undefined);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    });
  });
}

function isIpLiteral(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
