/**
 * One smtp-server per `listen on` line and bound address. TLS comes from
 * the registry on every handshake (SNI callback) and the default context is
 * replaced when the pki changes, so renewed certificates apply to new
 * handshakes at once while open sessions carry on.
 *
 * ESMTP extensions: PIPELINING, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES,
 * SIZE, STARTTLS (tls, tls-require), AUTH PLAIN LOGIN (auth listeners).
 * DSN is not offered (not implemented). The 100 ms early-talker pause stays
 * on listeners without auth (MX) and is dropped on auth listeners.
 */
import { Resolver } from 'node:dns';
import { networkInterfaces } from 'node:os';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import type { Config, ListenerDecl } from '../core/config/types.ts';
import { printListener } from '../core/config/printer.ts';
import { TLS_CIPHERS, TLS_MIN_VERSION, type TlsRegistry } from '../core/tls.ts';
import { installEnhancedStatusPassThrough } from './enhanced-status.ts';
import { installGreetingDelayOption, LIBRARY_GREETING_DELAY_MS } from './greeting-delay.ts';
import { SmtpSessionPolicy, type SessionRuntime } from './session.ts';

export interface BoundListener {
  readonly decl: ListenerDecl;
  readonly address: string;
  readonly port: number;
  readonly server: SMTPServer;
  /** Stops following certificate changes of the listener's pki. */
  readonly unwatch: () => void;
  /** The config text of the line, to match listeners across reloads. */
  readonly key: string;
}

/** The concrete addresses a listen line binds. */
export function bindAddresses(decl: ListenerDecl): string[] {
  const a = decl.address;
  const families = (list: string[]) =>
    list.filter((ip) => (decl.family === 'inet4' ? !ip.includes(':') : decl.family === 'inet6' ? ip.includes(':') : true));
  switch (a.kind) {
    case 'ip':
      return [a.value];
    case 'localhost':
      return families(['127.0.0.1', '::1']);
    case 'all':
    case 'egress':
      // egress: every interface that can reach out; binding the wildcard covers them all.
      return families(['0.0.0.0', '::']);
    case 'interface': {
      const iface = networkInterfaces()[a.name];
      if (!iface) throw new Error(`listen on ${a.name}: no such network interface`);
      return families(iface.map((i) => (i.family === 'IPv6' && i.scopeid ? `${i.address}%${a.name}` : i.address)));
    }
  }
}

export interface ListenerDeps extends SessionRuntime {
  readonly tls: TlsRegistry;
}

export function usesRdns(config: Config): boolean {
  return config.rules.some((r) => r.conditions.some((c) => c.type === 'from' && c.from.kind === 'rdns'));
}

export async function startSmtpListener(decl: ListenerDecl, address: string, deps: ListenerDeps): Promise<BoundListener> {
  installGreetingDelayOption();
  installEnhancedStatusPassThrough();
  const config = deps.config();
  const policy = new SmtpSessionPolicy(decl, deps);
  const pair = decl.pki ? deps.tls.keyPair(decl.pki) : undefined;
  const log = deps.log.child({ component: 'smtp', listen: `${address}:${decl.port}` });
  const rdns = usesRdns(config);
  const options: SMTPServerOptions & { greetingDelayMs: number } = {
    secure: decl.tls === 'smtps',
    name: decl.hostname ?? config.hostname,
    banner: 'appliance',
    size: config.smtp.limits.maxMessageSize,
    hideSTARTTLS: decl.tls === 'none',
    hideDSN: true,
    // SPEC §smtp: replies carry enhanced status codes (the library hides them by default).
    hideENHANCEDSTATUSCODES: false,
    hideREQUIRETLS: true,
    authMethods: ['PLAIN', 'LOGIN'],
    authOptional: !decl.auth || decl.auth.optional,
    // Per session (onConnect/onSecure) we decide whether AUTH is offered yet.
    allowInsecureAuth: true,
    disabledCommands: decl.auth ? [] : ['AUTH'],
    disableReverseLookup: !rdns,
    ...(rdns && config.resolver ? { resolver: resolverFor(config) } : {}),
    logger: false,
    socketTimeout: config.smtp.limits.idleTimeout,
    closeTimeout: 10_000,
    maxClients: 2000,
    greetingDelayMs: decl.auth && !decl.auth.optional ? 0 : LIBRARY_GREETING_DELAY_MS,
    minVersion: TLS_MIN_VERSION,
    ciphers: TLS_CIPHERS,
    ...(pair ? { key: pair.key, cert: pair.cert } : {}),
    ...(decl.pki
      ? {
          SNICallback: (_servername: string, cb: (err: Error | null, ctx?: import('node:tls').SecureContext) => void) => cb(null, deps.tls.context(decl.pki!)),
        }
      : {}),
    onConnect: (session, cb) => policy.onConnect(session, cb),
    onSecure: (socket, session, cb) => policy.onSecure(socket, session, cb),
    onAuth: (auth, session, cb) => policy.onAuth(auth, session, cb),
    onMailFrom: (addr, session, cb) => policy.onMailFrom(addr, session, cb),
    onRcptTo: (addr, session, cb) => policy.onRcptTo(addr, session, cb),
    onData: (stream, session, cb) => policy.onData(stream, session, cb),
    onClose: (session) => policy.onClose(session),
  };
  const server = new SMTPServer(options);
  // `appliance kick`: smtp-server's connection ids are its session ids.
  policy.attachCloser((id) => {
    for (const c of server.connections as Set<{ id: string; close(): void }>) if (c.id === id) c.close();
  });
  server.on('error', (err: Error) => {
    // smtp-server marks TLS handshake failures (STARTTLS or implicit) with `meta` (normalizeTLSError).
    if ((err as { meta?: unknown }).meta !== undefined) deps.metrics?.tlsErrors.inc({ protocol: 'smtp' });
    log.warn({ err: err.message }, 'smtp connection error');
  });
  let unwatch = () => {};
  if (decl.pki) {
    const pki = decl.pki;
    unwatch = deps.tls.onChange(pki, (p) => {
      server.updateSecureContext({ key: p.key, cert: p.cert });
      log.info({ pki }, 'certificate replaced for new handshakes');
    });
  }
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => {
      unwatch();
      reject(new Error(`cannot listen on ${address} port ${decl.port}: ${err.message}`));
    };
    server.server.once('error', onError);
    server.listen(decl.port, address, () => {
      server.server.off('error', onError);
      resolve();
    });
  });
  const bound = server.server.address();
  const port = typeof bound === 'object' && bound ? bound.port : decl.port;
  log.info({ tls: decl.tls, tag: decl.tag, auth: decl.auth?.table.name }, 'listening');
  return { decl, address, port, server, unwatch, key: `${printListener(decl, (r) => r.name)}@${address}` };
}

function resolverFor(config: Config): { reverse(ip: string, cb: (err: Error | null, names: string[]) => void): void } {
  const r = new Resolver({ timeout: 2000, tries: 1 });
  const rs = config.resolver!;
  r.setServers([rs.host.includes(':') ? `[${rs.host}]:${rs.port}` : `${rs.host}:${rs.port}`]);
  return { reverse: (ip, cb) => r.reverse(ip, (err, names) => cb(err, names ?? [])) };
}

export function closeListener(l: BoundListener): Promise<void> {
  // A closed listener no longer follows certificate changes (a reload closes and rebinds listeners).
  l.unwatch();
  return new Promise((resolve) => l.server.close(() => resolve()));
}
