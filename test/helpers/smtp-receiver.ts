/**
 * A receiving SMTP server for outbound tests (the remote MX or smarthost the
 * appliance delivers to): `smtp-server` on a loopback address, port 25 by
 * default (tests run as root; PEERS.md). It records every session and every
 * accepted message byte for byte, and can be told how to answer: per RCPT,
 * at the end of DATA, per attempt. STARTTLS is offered with a self-signed
 * certificate unless `tls: false`; `requireTls` refuses MAIL before it;
 * `auth` requires AUTH (only offered after STARTTLS, smtp-server's default).
 * Waits are bounded (`waitFor`).
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';

export interface Pem {
  readonly key: string;
  readonly cert: string;
}

/** A self-signed certificate for these names and IP addresses (also usable as its own trust anchor). */
export async function selfSignedCert(cn: string, opts: { dns?: readonly string[]; ips?: readonly string[] } = {}): Promise<Pem> {
  const { generate } = await import('selfsigned');
  const now = Date.now();
  const pems = await generate([{ name: 'commonName', value: cn }], {
    keySize: 2048,
    algorithm: 'sha256',
    notBeforeDate: new Date(now - 60_000),
    notAfterDate: new Date(now + 7 * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: true },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, keyCertSign: true },
      { name: 'extKeyUsage', serverAuth: true },
      {
        name: 'subjectAltName',
        altNames: [...(opts.dns ?? [cn]).map((value) => ({ type: 2 as const, value })), ...(opts.ips ?? []).map((ip) => ({ type: 7 as const, ip }))],
      },
    ],
  });
  return { key: pems.private, cert: pems.cert };
}

export interface SessionRecord {
  readonly id: string;
  /** The EHLO/HELO argument. */
  ehlo: string;
  secure: boolean;
  /** e.g. "TLSv1.3" once STARTTLS is done. */
  tlsVersion: string;
  user: string | undefined;
}

export interface ReceivedMessage {
  readonly session: SessionRecord;
  /** MAIL FROM ('' for the null sender). */
  readonly from: string;
  /** Accepted RCPT TO addresses, in order. */
  readonly to: readonly string[];
  readonly data: Buffer;
}

/** An SMTP reply a hook wants to give instead of 250, e.g. "550 5.1.1 no such user". */
export type Refusal = string | undefined;

export interface ReceiverOptions {
  readonly host: string;
  readonly port?: number;
  /** Offer STARTTLS with this certificate (default: a fresh self-signed one); false: no STARTTLS. */
  readonly tls?: Pem | false;
  /** 530 to MAIL before STARTTLS. */
  readonly requireTls?: boolean;
  /** Require AUTH; `check` decides (default: accept anything). */
  readonly auth?: (user: string, pass: string) => boolean;
  /** Per RCPT TO: a refusal, or undefined to accept. */
  readonly onRcpt?: (address: string, session: SessionRecord) => Refusal;
  /** false: do not offer SMTPUTF8 (an older MTA). */
  readonly smtpUtf8?: boolean;
  /** At the end of DATA (after the bytes were read): a refusal, or undefined to accept (250). */
  readonly onData?: (message: ReceivedMessage) => Refusal;
}

export interface Receiver {
  readonly host: string;
  readonly port: number;
  /** Every connection's session, including those that ended in a TLS failure. */
  readonly sessions: SessionRecord[];
  /** Messages answered with 250 at the end of DATA. */
  readonly messages: ReceivedMessage[];
  /** Messages whose DATA was refused by `onData`. */
  readonly refused: ReceivedMessage[];
  /** Failed AUTH attempts (user names). */
  readonly authFailures: string[];
  /** Resolves when `cond()` holds; rejects after `timeoutMs`. */
  waitFor(what: string, cond: () => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

function refusalError(reply: string): Error {
  const m = /^([45]\d\d)[ -](.*)$/s.exec(reply);
  if (!m) throw new Error(`receiver: not an SMTP error reply: ${reply}`);
  return Object.assign(new Error(m[2]!), { responseCode: Number(m[1]) });
}

export async function startReceiver(opts: ReceiverOptions): Promise<Receiver> {
  const pem = opts.tls === false ? undefined : (opts.tls ?? (await selfSignedCert(`mx.${opts.host}`)));
  const sessions: SessionRecord[] = [];
  const messages: ReceivedMessage[] = [];
  const refused: ReceivedMessage[] = [];
  const authFailures: string[] = [];
  const byId = new Map<string, SessionRecord>();
  const record = (s: SMTPServerSession): SessionRecord => {
    let r = byId.get(s.id);
    if (!r) {
      r = { id: s.id, ehlo: '', secure: false, tlsVersion: '', user: undefined };
      byId.set(s.id, r);
      sessions.push(r);
    }
    r.ehlo = s.hostNameAppearsAs || r.ehlo;
    r.secure = s.secure;
    const v = (s.tlsOptions as { version?: string } | undefined)?.version;
    if (v) r.tlsVersion = v;
    if (s.user) r.user = String(s.user);
    return r;
  };

  const server = new SMTPServer({
    name: `mx.${opts.host}`,
    banner: 'test receiver',
    disableReverseLookup: true,
    logger: false,
    size: 10 * 1024 * 1024,
    closeTimeout: 2_000,
    ...(opts.smtpUtf8 === false ? { hideSMTPUTF8: true } : {}),
    ...(pem ? { key: pem.key, cert: pem.cert } : { hideSTARTTLS: true }),
    ...(opts.auth ? { authMethods: ['PLAIN', 'LOGIN'] } : { authOptional: true, disabledCommands: ['AUTH'] }),
    onConnect(session, cb) {
      record(session);
      cb();
    },
    onAuth(auth, session, cb) {
      record(session);
      const user = auth.username ?? '';
      if (opts.auth?.(user, auth.password ?? '')) return cb(null, { user });
      authFailures.push(user);
      cb(Object.assign(new Error('5.7.8 Authentication credentials invalid'), { responseCode: 535 }));
    },
    onMailFrom(_address, session, cb) {
      const r = record(session);
      if (opts.requireTls && !session.secure) return cb(refusalError('530 5.7.0 Must issue a STARTTLS command first'));
      if (opts.auth && !r.user) return cb(refusalError('530 5.7.0 Authentication required'));
      cb();
    },
    onRcptTo(address, session, cb) {
      const r = record(session);
      const refusal = opts.onRcpt?.(address.address, r);
      cb(refusal ? refusalError(refusal) : undefined);
    },
    onData(stream, session, cb) {
      const r = record(session);
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
        const m: ReceivedMessage = { session: { ...r }, from, to: session.envelope.rcptTo.map((a) => a.address), data: Buffer.concat(chunks) };
        const refusal = opts.onData?.(m);
        if (refusal) {
          refused.push(m);
          return cb(refusalError(refusal));
        }
        messages.push(m);
        cb(null, `2.0.0 Ok: queued as R${messages.length}`);
      });
    },
  });
  // TLS handshakes the client aborts (an unverifiable certificate) and dropped connections land here.
  server.on('error', () => {});

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 25, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  return {
    host: opts.host,
    port,
    sessions,
    messages,
    refused,
    authFailures,
    async waitFor(what, cond, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!cond()) {
        if (Date.now() > deadline) throw new Error(`receiver ${opts.host}:${port}: timed out after ${timeoutMs} ms waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    close() {
      closed ??= new Promise<void>((resolve) => server.close(() => resolve()));
      return closed;
    },
  };
}
