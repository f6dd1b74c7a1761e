/**
 * Server side of the control socket, in the running appliance. The socket is
 * created with mode 0600 (only the appliance's user, and root, may talk to
 * it); a stale socket left by a crash is replaced, a live one is refused.
 */
import { chmodSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../../core/log.ts';
import { withSocketPath } from './socket-path.ts';
import { ControlError, LineSplitter, type ControlMethod, type ControlMethods, type ControlRequest } from './protocol.ts';

export type ControlHandlers = {
  [M in ControlMethod]: (params: ControlMethods[M]['params'], progress: (p: string) => void) => Promise<ControlMethods[M]['result']>;
};

export async function startControlServer(path: string, handlers: ControlHandlers, log: Logger): Promise<Server> {
  await removeStaleSocket(path);
  const server = createServer((socket) => serve(socket, handlers, log));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const old = process.umask(0o177);
    withSocketPath(path, (address, done) => {
      server.once('error', done);
      server.listen(address, () => {
        done();
        process.umask(old);
        server.off('error', reject);
        resolve();
      });
    });
  });
  chmodSync(path, 0o600);
  server.unref();
  return server;
}

async function removeStaleSocket(path: string): Promise<void> {
  const live = await new Promise<boolean>((resolve) => {
    withSocketPath(path, (address, done) => {
      const s = connect(address);
      s.once('connect', () => {
        done();
        s.destroy();
        resolve(true);
      });
      s.once('error', () => {
        done();
        resolve(false);
      });
    });
  });
  if (live) throw new Error(`another appliance is already running (its control socket ${path} answers)`);
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

function serve(socket: Socket, handlers: ControlHandlers, log: Logger): void {
  socket.setEncoding('utf8');
  const send = (msg: object) => {
    if (!socket.destroyed) socket.write(`${JSON.stringify(msg)}\n`);
  };
  const splitter = new LineSplitter((line) => {
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
    } catch {
      send({ id: 0, ok: false, error: { code: 'usage', message: 'malformed request' } });
      return;
    }
    const handler = handlers[req.method] as ((p: unknown, progress: (p: string) => void) => Promise<unknown>) | undefined;
    if (typeof req.id !== 'number' || !handler || !Object.hasOwn(handlers, req.method)) {
      send({ id: req.id ?? 0, ok: false, error: { code: 'unknown-method', message: `unknown method ${String(req.method)}` } });
      return;
    }
    handler(req.params ?? {}, (p) => send({ id: req.id, progress: p })).then(
      (result) => send({ id: req.id, ok: true, result }),
      (err: unknown) => {
        if (err instanceof ControlError) {
          send({ id: req.id, ok: false, error: { code: err.code, message: err.message } });
        } else {
          log.error({ err, method: req.method }, 'control request failed');
          send({ id: req.id, ok: false, error: { code: 'failed', message: (err as Error).message } });
        }
      },
    );
  });
  socket.on('data', (chunk: string) => {
    try {
      splitter.push(chunk);
    } catch {
      socket.destroy();
    }
  });
  socket.on('error', () => socket.destroy());
}
