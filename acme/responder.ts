/**
 * The HTTP-01 responder on `acme challenge http-01 listen on ADDR port N`:
 * answers GET/HEAD /.well-known/acme-challenge/TOKEN with the key
 * authorization while an order waits for it, and 404 for everything else
 * (no other content is ever served on this port). Bound at start, while
 * still root, so a port in use is a clear error then and not at the first
 * renewal months later.
 */
import { createServer, type Server } from 'node:http';

const PREFIX = '/.well-known/acme-challenge/';
/** Tokens are base64url, at least 128 bits of entropy (RFC 8555 §8.3); bound what we look up. */
const TOKEN_RE = /^[A-Za-z0-9_-]{1,256}$/;

export class ChallengeResponder {
  private readonly tokens = new Map<string, string>();
  private readonly server: Server;
  /** Fetches of a known token (the CA's validation), for logs. */
  served = 0;

  private constructor(server: Server) {
    this.server = server;
  }

  static async listen(host: string, port: number): Promise<ChallengeResponder> {
    let responder: ChallengeResponder | undefined;
    const server = createServer((req, res) => {
      const url = (req.url ?? '').split('?')[0] ?? '';
      const token = url.startsWith(PREFIX) ? url.slice(PREFIX.length) : '';
      const answer = (req.method === 'GET' || req.method === 'HEAD') && TOKEN_RE.test(token) ? responder?.tokens.get(token) : undefined;
      if (answer === undefined) {
        res.writeHead(404, { 'content-type': 'text/plain', connection: 'close' });
        res.end('not found\n');
        return;
      }
      responder!.served++;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': Buffer.byteLength(answer) });
      res.end(req.method === 'HEAD' ? undefined : answer);
    });
    server.headersTimeout = 10_000;
    server.requestTimeout = 10_000;
    server.maxHeadersCount = 50;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        const why = err.code === 'EADDRINUSE' ? 'the port is already in use' : err.code === 'EACCES' ? 'permission denied (ports below 1024 need root)' : err.message;
        reject(new Error(`acme challenge: cannot listen on ${host} port ${port}: ${why}`));
      });
      server.listen(port, host, () => resolve());
    });
    server.unref();
    responder = new ChallengeResponder(server);
    return responder;
  }

  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  set(token: string, keyAuthorization: string): void {
    this.tokens.set(token, keyAuthorization);
  }

  remove(token: string): void {
    this.tokens.delete(token);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
