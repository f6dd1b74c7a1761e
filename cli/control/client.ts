/**
 * Client side of the control socket. `connectControl` answers null when no
 * appliance is running (no socket, or nobody listening), so commands fall
 * back to opening the data directory themselves.
 */
import { connect, type Socket } from 'node:net';
import { withSocketPath } from './socket-path.ts';
import { ControlError, LineSplitter, MAX_ANSWER_BYTES, type ControlMethod, type ControlMethods, type ControlResponse } from './protocol.ts';

export class ControlClient {
  private readonly socket: Socket;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; onProgress?: (p: string) => void }>();

  constructor(socket: Socket) {
    this.socket = socket;
    const splitter = new LineSplitter((line) => this.onLine(line), MAX_ANSWER_BYTES);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      try {
        splitter.push(chunk);
      } catch (err) {
        this.failAll(err as Error);
        socket.destroy();
      }
    });
    socket.on('close', () => this.failAll(new Error('the appliance closed the control connection')));
    socket.on('error', (err) => this.failAll(err));
  }

  request<M extends ControlMethod>(method: M, params: ControlMethods[M]['params'], onProgress?: (p: string) => void): Promise<ControlMethods[M]['result']> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, ...(onProgress ? { onProgress } : {}) });
      this.socket.write(`${JSON.stringify({ id, method, params })}\n`);
    });
  }

  close(): void {
    this.socket.end();
  }

  private onLine(line: string): void {
    let msg: ControlResponse;
    try {
      msg = JSON.parse(line) as ControlResponse;
    } catch {
      this.failAll(new Error('malformed answer on the control socket'));
      return;
    }
    const p = this.pending.get(msg.id);
    if (!p) return;
    if ('progress' in msg) {
      p.onProgress?.(msg.progress);
      return;
    }
    this.pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.result);
    else p.reject(new ControlError(msg.error.code, msg.error.message));
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

/** Connects, or answers null when nothing is listening on the socket. */
export function connectControl(path: string, timeoutMs = 3000): Promise<ControlClient | null> {
  return new Promise((resolve, reject) => {
    const { socket, done } = withSocketPath(path, (address, done) => ({ socket: connect(address), done }));
    socket.once('connect', done);
    socket.once('error', done);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the control socket ${path} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(new ControlClient(socket));
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') resolve(null);
      else reject(new Error(`cannot connect to the control socket ${path}: ${err.message}`));
    });
  });
}
