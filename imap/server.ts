/**
 * IMAP listeners, one per `imap listen on` line and bound address: plain
 * TCP (STARTTLS offered on `tls`/`tls-require`) or implicit TLS (`smtps`,
 * `imaps`). Certificates come from the TLS registry on every handshake (SNI)
 * and the default context is replaced when the pki changes — the same seam
 * as the SMTP listeners, so ACME renewals apply without a restart.
 */
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { ListenerDecl } from '../core/config/types.ts';
import { printListener } from '../core/config/printer.ts';
import { TLS_CIPHERS, TLS_MIN_VERSION } from '../core/tls.ts';
import { ImapSession, type ImapRuntime } from './session.ts';

/** Open connections (any state) above which new ones get BYE at once. */
const MAX_CONNECTIONS = 2000;

export interface ImapListener {
  readonly decl: ListenerDecl;
  readonly address: string;
  readonly port: number;
  readonly key: string;
  close(): Promise<void>;
}

export async function startImapListener(decl: ListenerDecl, address: string, rt: ImapRuntime): Promise<ImapListener> {
  const log = rt.log.child({ component: 'imap', listen: `${address}:${decl.port}` });
  const sockets = new Set<Socket>();
  const onSocket = (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.setNoDelay(true);
    const session = new ImapSession(socket, decl, rt);
    if (rt.sessions.count('imap') >= MAX_CONNECTIONS) {
      socket.end('* BYE Too many connections\r\n');
      return;
    }
    rt.metrics?.connections.inc({ protocol: 'imap' });
    const remove = rt.sessions.add(session);
    session.onClose(remove);
    session.start();
  };
  let server: Server;
  let unwatch: (() => void) | undefined;
  if (decl.tls === 'smtps') {
    const pki = decl.pki!;
    const pair = rt.tls.keyPair(pki);
    const tlsServer = createTlsServer(
      {
        ...(pair ? { key: pair.key, cert: pair.cert } : {}),
        SNICallback: (_name, cb) => cb(null, rt.tls.context(pki)),
        minVersion: TLS_MIN_VERSION,
        ciphers: TLS_CIPHERS,
      },
      (socket: TLSSocket) => onSocket(socket),
    );
    tlsServer.on('tlsClientError', (err: Error) => {
      rt.metrics?.tlsErrors.inc({ protocol: 'imap' });
      log.debug({ err: err.message }, 'tls handshake failed');
    });
    unwatch = rt.tls.onChange(pki, (p) => {
      tlsServer.setSecureContext({ key: p.key, cert: p.cert, minVersion: TLS_MIN_VERSION, ciphers: TLS_CIPHERS });
      log.info({ pki }, 'certificate replaced for new handshakes');
    });
    server = tlsServer;
  } else {
    server = createTcpServer(onSocket);
  }
  server.on('error', (err: Error) => log.warn({ err: err.message }, 'imap listener error'));
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new Error(`cannot listen on ${address} port ${decl.port}: ${err.message}`));
    server.once('error', onError);
    server.listen(decl.port, address, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const bound = server.address();
  const port = typeof bound === 'object' && bound ? bound.port : decl.port;
  log.info({ tls: decl.tls, auth: decl.auth?.table.name }, 'listening');
  return {
    decl,
    address,
    port,
    key: `${printListener(decl, (r) => r.name)}@${address}`,
    close: () =>
      new Promise<void>((resolve) => {
        unwatch?.();
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
