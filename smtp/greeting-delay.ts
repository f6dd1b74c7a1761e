/**
 * smtp-server holds every new connection a fixed 100 ms before its 220
 * greeting (an early-talker check inside SMTPConnection#init, with no
 * option). We keep that pause on the MX port — a client that talks before the
 * greeting is a spam engine, and 100 ms costs a real MTA nothing — and drop
 * it on authenticated submission ports, where it only slows our own users
 * (it caps a one-message-per-connection client at about 10 msg/s).
 *
 * The library has no hook for this, so `init` is replaced once, here, with
 * the same body reading the delay from the server's options (our
 * `greetingDelayMs`, default the library's 100 ms). Checked against
 * smtp-server 3.21; the test suite measures both behaviours.
 */
import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';

export const LIBRARY_GREETING_DELAY_MS = 100;

interface ConnectionInternals {
  _setListeners(done: () => void): void;
  _server: { options: { maxClients?: number; greetingDelayMs?: number; name?: string }; connections: Set<unknown> };
  send(code: number, message: string, command?: string | false): void;
  connectionReady(): void;
  name: string;
}

let installed = false;

export function installGreetingDelayOption(): void {
  if (installed) return;
  installed = true;
  const proto = SMTPConnection.prototype as unknown as ConnectionInternals & { init(): void };
  proto.init = function init(this: ConnectionInternals) {
    this._setListeners(() => {
      const options = this._server.options;
      if (options.maxClients && this._server.connections.size > options.maxClients) {
        this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
        return;
      }
      const delay = options.greetingDelayMs ?? LIBRARY_GREETING_DELAY_MS;
      if (delay <= 0) {
        this.connectionReady();
        return;
      }
      setTimeout(() => this.connectionReady(), delay).unref();
    });
  };
}
