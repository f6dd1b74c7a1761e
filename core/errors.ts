/**
 * The error catalogue: every failure that can reach a client or an operator
 * carries a stable code, its SMTP reply (basic + enhanced status) and whether
 * it is temporary. Protocols map these to replies in one place each.
 * An error of unknown kind counts as temporary (maddy's rule): a 4xx loses
 * nothing, a wrong 5xx loses mail.
 */

export interface ErrorSpec {
  readonly smtp: number;
  readonly enhanced: string;
  readonly temporary: boolean;
  /** Text shown to remote clients; details go to the log only. */
  readonly text: string;
}

export const errorCatalogue = {
  TABLE_TEMPFAIL: { smtp: 451, enhanced: '4.3.0', temporary: true, text: 'Temporary lookup failure, try again later' },
  USER_UNKNOWN: { smtp: 550, enhanced: '5.1.1', temporary: false, text: 'Recipient address rejected: user unknown' },
  BAD_ADDRESS: { smtp: 501, enhanced: '5.1.3', temporary: false, text: 'Bad address syntax' },
  RELAY_DENIED: { smtp: 554, enhanced: '5.7.1', temporary: false, text: 'Relay access denied' },
  REJECTED_BY_RULE: { smtp: 550, enhanced: '5.7.1', temporary: false, text: 'Delivery not authorized, message refused' },
  SENDER_NOT_OWNED: { smtp: 553, enhanced: '5.7.1', temporary: false, text: 'Sender address not owned by authenticated user' },
  ALIAS_LOOP: { smtp: 550, enhanced: '5.4.6', temporary: false, text: 'Alias expansion loop or too deep' },
  INTERNAL: { smtp: 451, enhanced: '4.3.0', temporary: true, text: 'Internal error, try again later' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof errorCatalogue;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly spec: ErrorSpec;
  constructor(code: ErrorCode, detail?: string, options?: { cause?: unknown }) {
    super(detail ?? errorCatalogue[code].text, options);
    this.name = 'AppError';
    this.code = code;
    this.spec = errorCatalogue[code];
  }
  get temporary(): boolean {
    return this.spec.temporary;
  }
}

/** Unknown errors are temporary: never turn a surprise into a bounce. */
export function isTemporary(err: unknown): boolean {
  return err instanceof AppError ? err.temporary : true;
}

/** A bad input from a user (config, CLI, table file): exit code 2 in the CLI. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
