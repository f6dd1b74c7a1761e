/**
 * The control protocol between the `appliance` commands and the running
 * process (like smtpctl ↔ smtpd): one JSON object per line over a Unix
 * socket of mode 0600. A request is `{ id, method, params }`; the answer is
 * zero or more `{ id, progress }` lines then one `{ id, ok: true, result }`
 * or `{ id, ok: false, error: { code, message } }`. Lines are bounded.
 */

import type { QueuedMessage } from '../../store/queue.ts';
import type { CertStatusView } from '../../acme/status.ts';
import type { RenewResult } from '../../acme/manager.ts';

/** Requests (what the server reads) are small. */
export const MAX_LINE_BYTES = 1024 * 1024;
/** Answers come from our own process and can be long (`queue show` of a big queue). */
export const MAX_ANSWER_BYTES = 256 * 1024 * 1024;

export interface TableEntryView {
  readonly key: string;
  /** Masked for credentials. */
  readonly value: string;
}

export interface LookupView {
  readonly kind: string;
  readonly result: 'found' | 'none' | 'tempfail';
  /** Printable value when found (credentials masked). */
  readonly value?: string;
  readonly error?: string;
}

/** Each method: its params and its result. */
export interface ControlMethods {
  ping: { params: Record<string, never>; result: { pid: number; version: string; configPath: string } };
  'table.list': { params: { table: string }; result: { entries: TableEntryView[] } };
  'table.add': { params: { table: string; key: string; value: string }; result: { replaced: boolean } };
  'table.del': { params: { table: string; key: string }; result: { removed: boolean } };
  'table.lookup': { params: { table: string; key: string; kind?: string }; result: LookupView };
  'queue.show': { params: Record<string, never>; result: { messages: QueuedMessage[] } };
  'queue.flush': { params: Record<string, never>; result: { scheduled: number; remaining: number } };
  'queue.remove': { params: { id: string }; result: { done: boolean } };
  'queue.hold': { params: { id: string }; result: { done: boolean } };
  'queue.release': { params: { id: string }; result: { done: boolean } };
  reload: { params: Record<string, never>; result: { reloaded: boolean; error?: string } };
  'cert.status': { params: Record<string, never>; result: { certificates: CertStatusView[] } };
  'cert.renew': { params: { name?: string }; result: { results: RenewResult[] } };
  who: { params: Record<string, never>; result: { sessions: SessionView[] } };
  kick: { params: { user: string; cidr?: string }; result: { kicked: number } };
}

/** One open session for `appliance who` (SPEC §ops: protocol, user, address, since, mailbox). */
export interface SessionView {
  readonly protocol: 'imap' | 'submission';
  readonly user: string;
  readonly address: string;
  readonly since: string;
  readonly mailbox: string | null;
}

export type ControlMethod = keyof ControlMethods;

export interface ControlRequest<M extends ControlMethod = ControlMethod> {
  readonly id: number;
  readonly method: M;
  readonly params: ControlMethods[M]['params'];
}

export type ControlErrorCode = 'usage' | 'not-found' | 'failed' | 'unknown-method';

export type ControlResponse =
  | { readonly id: number; readonly progress: string }
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: { readonly code: ControlErrorCode; readonly message: string } };

/** A failure a control handler reports to the client (usage → exit 2, others → exit 1). */
export class ControlError extends Error {
  readonly code: ControlErrorCode;
  constructor(code: ControlErrorCode, message: string) {
    super(message);
    this.name = 'ControlError';
    this.code = code;
  }
}

/** Splits a byte stream into lines, refusing any longer than the bound. */
export class LineSplitter {
  private buffer = '';
  private readonly onLine: (line: string) => void;
  private readonly maxBytes: number;
  constructor(onLine: (line: string) => void, maxBytes = MAX_LINE_BYTES) {
    this.onLine = onLine;
    this.maxBytes = maxBytes;
  }
  push(chunk: string): void {
    // Only the new chunk is searched: a long answer arrives in many chunks.
    let start = 0;
    let nl: number;
    while ((nl = chunk.indexOf('\n', start)) !== -1) {
      const line = this.buffer + chunk.slice(start, nl);
      this.buffer = '';
      start = nl + 1;
      if (line.trim() !== '') this.onLine(line);
    }
    this.buffer += chunk.slice(start);
    if (this.buffer.length > this.maxBytes) throw new Error('control line too long');
  }

}
