/**
 * The SMTP session policy of one listener, as smtp-server hooks: per-IP
 * connection limits, AUTH (only over TLS except from loopback; failure delay
 * and per-IP lockout), `tls-require`, `senders`, the rule decision for every
 * RCPT (core/recipient.ts: unknown users and relays are refused here, never
 * bounced later), and DATA handed to the inbound commit, which answers 250
 * only once every recipient is durable.
 *
 * Hooks read the current config and tables through the runtime on every
 * call, so a reload applies to sessions already open.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { SMTPServerAddress, SMTPServerAuthentication, SMTPServerAuthenticationResponse, SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import { addressKey, formatAddress, isLoopbackAddress, parsePath, type MailAddress } from '../core/address.ts';
import { authenticate } from '../core/auth/authenticate.ts';
import type { AuthFailureLimiter } from '../core/auth/failures.ts';
import { describeRule } from '../core/config/printer.ts';
import type { Config, ListenerDecl } from '../core/config/types.ts';
import type { Logger } from '../core/log.ts';
import type { Metrics } from '../core/metrics.ts';
import { resolveRecipient, type Destination } from '../core/recipient.ts';
import type { SessionFacts } from '../core/rules.ts';
import type { SessionRegistry } from '../core/sessions.ts';
import type { TableSet } from '../core/tables/registry.ts';
import { ForgedResultsFilter, verifyMessage, type Verdicts } from './authentication-results.ts';
import type { InboundCommit } from './inbound.ts';
import { FromRewriter } from './masquerade.ts';
import { receivedHeader } from './received.ts';
import { replies, replyFor } from './replies.ts';

export interface SessionRuntime {
  config(): Config;
  tables(): TableSet;
  readonly log: Logger;
  readonly authFailures: AuthFailureLimiter;
  readonly inbound: InboundCommit;
  /** Open sessions per client address, shared by all listeners. */
  readonly connectionsByIp: Map<string, number>;
  /** True once shutdown started: new transactions get 421. */
  shuttingDown(): boolean;
  /** Waits `ms` (injectable for tests). */
  sleep(ms: number): Promise<void>;
  /** Where authenticated sessions are listed for `appliance who` / `kick`. */
  readonly sessions?: SessionRegistry;
  /** Counters for the metrics endpoint. */
  readonly metrics?: Metrics;
}

export interface AcceptedRecipient {
  readonly address: MailAddress;
  readonly destinations: readonly Destination[];
}

interface SessionState {
  readonly id: string;
  readonly log: Logger;
  mailFrom: MailAddress | null;
  accepted: AcceptedRecipient[];
  messages: number;
  authUser?: string;
  counted: boolean;
  readonly since: Date;
  /** Removes the session from the registry (set once authenticated). */
  untrack?: () => void;
}

type Callback = (err?: Error | null) => void;

export class SmtpSessionPolicy {
  private readonly listener: ListenerDecl;
  private readonly rt: SessionRuntime;
  private readonly states = new Map<string, SessionState>();
  private closeConnection: ((id: string) => void) | null = null;

  constructor(listener: ListenerDecl, rt: SessionRuntime) {
    this.listener = listener;
    this.rt = rt;
  }

  private state(session: SMTPServerSession): SessionState {
    let s = this.states.get(session.id);
    if (!s) {
      s = {
        id: session.id,
        log: this.rt.log.child({ cid: session.id }),
        mailFrom: null,
        accepted: [],
        messages: 0,
        counted: false,
        since: new Date(),
      };
      this.states.set(session.id, s);
    }
    return s;
  }

  /** How `appliance kick` closes one of this listener's connections (set by the listener). */
  attachCloser(close: (id: string) => void): void {
    this.closeConnection = close;
  }

  onConnect(session: SMTPServerSession, cb: Callback): void {
    const s = this.state(session);
    const ip = session.remoteAddress;
    if (this.rt.shuttingDown()) return cb(replies.shuttingDown());
    const open = this.rt.connectionsByIp.get(ip) ?? 0;
    if (open >= this.rt.config().smtp.limits.connectionsPerIp && !isLoopbackAddress(ip)) {
      s.log.info({ ip, open }, 'connection refused: too many from this address');
      return cb(replies.tooManyConnections());
    }
    this.rt.connectionsByIp.set(ip, open + 1);
    s.counted = true;
    this.rt.metrics?.connections.inc({ protocol: 'smtp' });
    // AUTH before STARTTLS only for loopback clients (SPEC §config listen).
    if (this.listener.auth && this.listener.tls !== 'smtps' && this.listener.tls !== 'none' && !isLoopbackAddress(ip)) {
      session.disabledCommands = ['AUTH'];
    }
    if (this.listener.tls === 'tls-require') session.disabledCommands = ['AUTH'];
    s.log.debug({ ip, port: this.listener.port, tag: this.listener.tag }, 'connect');
    cb();
  }

  onSecure(_socket: unknown, session: SMTPServerSession, cb: Callback): void {
    // After STARTTLS the server-wide command list applies again (AUTH allowed).
    delete session.disabledCommands;
    cb();
  }

  onClose(session: SMTPServerSession): void {
    const s = this.states.get(session.id);
    s?.untrack?.();
    if (s?.counted) {
      const ip = session.remoteAddress;
      const n = (this.rt.connectionsByIp.get(ip) ?? 1) - 1;
      if (n <= 0) this.rt.connectionsByIp.delete(ip);
      else this.rt.connectionsByIp.set(ip, n);
    }
    this.states.delete(session.id);
  }

  onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession, cb: (err: Error | null | undefined, response?: SMTPServerAuthenticationResponse) => void): void {
    void this.auth(auth, session).then(
      (user) => cb(null, { user }),
      (err: Error) => cb(err),
    );
  }

  private async auth(auth: SMTPServerAuthentication, session: SMTPServerSession): Promise<string> {
    const s = this.state(session);
    const ip = session.remoteAddress;
    const ref = this.listener.auth;
    if (!ref) throw replies.authRequired();
    if (!session.secure && !isLoopbackAddress(ip) && this.listener.tls !== 'none') throw replies.encryptionRequired();
    if (!this.rt.authFailures.allowed(ip)) {
      s.log.warn({ ip }, 'auth refused: too many failures from this address');
      throw replies.authLockedOut();
    }
    const table = this.rt.tables().get(ref.table.name);
    if (!table) throw replies.authTempfail();
    const username = auth.username ?? '';
    const outcome = await authenticate(table, username, auth.password ?? '');
    if (outcome.kind === 'tempfail') {
      s.log.error({ table: ref.table.name, err: outcome.error.message }, 'auth lookup failed temporarily');
      throw replies.authTempfail();
    }
    if (outcome.kind === 'invalid') {
      const failures = this.rt.authFailures.recordFailure(ip);
      this.rt.metrics?.authFailures.inc({ protocol: 'smtp' });
      s.log.info({ ip, user: username.slice(0, 64), failures, method: auth.method }, 'auth failed');
      await this.rt.sleep(this.rt.config().auth.failureDelay);
      throw replies.authInvalid();
    }
    this.rt.authFailures.recordSuccess(ip);
    s.authUser = outcome.username;
    s.untrack?.();
    s.untrack = this.rt.sessions?.add({
      protocol: 'submission',
      remoteAddress: ip,
      since: s.since,
      user: outcome.username,
      mailboxName: () => null,
      kick: () => this.closeConnection?.(session.id),
    });
    s.log.info({ user: outcome.username, method: auth.method }, 'authenticated');
    return outcome.username;
  }

  onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, cb: Callback): void {
    void this.mailFrom(address, session).then(() => cb(), (err: Error) => cb(err));
  }

  private async mailFrom(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const s = this.state(session);
    const config = this.rt.config();
    if (this.rt.shuttingDown()) throw replies.shuttingDown();
    if (this.listener.tls === 'tls-require' && !session.secure) throw replies.tlsRequired();
    if (this.listener.auth && !this.listener.auth.optional && !s.authUser) throw replies.authRequired();
    if (s.messages >= config.smtp.limits.maxMails) throw replies.tooManyMessages();
    const parsed = parsePath(address.address, { allowUtf8: true });
    if (!parsed.ok) throw replies.badSender(parsed.reason);
    const sender = parsed.address;
    if (this.listener.senders && s.authUser !== undefined) {
      const allowed = await this.senderAllowed(s.authUser, sender);
      if (allowed === 'tempfail') throw replyFor(new Error('senders lookup failed'));
      if (!allowed) {
        s.log.info({ user: s.authUser, sender: sender ? formatAddress(sender) : '<>' }, 'sender refused: not owned by the authenticated user');
        throw replies.senderNotOwned();
      }
    }
    s.mailFrom = sender;
    s.accepted = [];
  }

  /** `senders <t>`: the addresses the user may send as (mailaddrmap), exact or `@domain`. */
  private async senderAllowed(user: string, sender: MailAddress | null): Promise<boolean | 'tempfail'> {
    if (sender === null) return false;
    const ref = this.listener.senders!.table;
    const table = this.rt.tables().get(ref.name);
    if (!table) return 'tempfail';
    const r = await table.lookup('mailaddrmap', user);
    if (r.kind === 'tempfail') return 'tempfail';
    if (r.kind === 'none') return false;
    const key = addressKey(sender);
    return r.value.some((entry) => {
      const e = entry.toLowerCase();
      return e === key || (e.startsWith('@') && e.slice(1) === sender.domain);
    });
  }

  onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, cb: Callback): void {
    void this.rcptTo(address, session).then(() => cb(), (err: Error) => cb(err));
  }

  private async rcptTo(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const s = this.state(session);
    const config = this.rt.config();
    if (s.accepted.length >= config.smtp.limits.maxRcpt) throw replies.tooManyRecipients();
    const parsed = parsePath(address.address, { allowUtf8: true });
    if (!parsed.ok || parsed.address === null) throw replies.badRecipient(parsed.ok ? 'empty address' : parsed.reason);
    const rcpt = parsed.address;
    const facts = this.facts(session, s);
    const decision = await resolveRecipient(config, this.rt.tables(), facts, { mailFrom: s.mailFrom, rcptTo: rcpt });
    const to = formatAddress(rcpt);
    const from = s.mailFrom ? formatAddress(s.mailFrom) : '';
    if (decision.kind === 'accept') {
      s.accepted.push({ address: rcpt, destinations: decision.destinations });
      s.log.debug({ from, to, rule: describeRule(config, decision.rule) }, 'recipient accepted');
      return;
    }
    if (decision.kind === 'tempfail') {
      s.log.warn({ from, to, err: decision.error.message }, 'recipient deferred: temporary failure');
      const reply = replyFor(decision.error);
      this.rt.metrics?.recipientsRejected.inc({ code: String(reply.responseCode ?? 451) });
      throw reply;
    }
    s.log.info({ from, to, ip: session.remoteAddress, reason: decision.error.message, rule: decision.rule ? describeRule(config, decision.rule) : 'no rule matched' }, 'recipient rejected');
    const reply = replyFor(decision.error);
    this.rt.metrics?.recipientsRejected.inc({ code: String(reply.responseCode ?? 550) });
    throw reply;
  }

  onData(stream: SMTPServerDataStream, session: SMTPServerSession, cb: (err?: Error | null, message?: string) => void): void {
    void this.data(stream, session).then(
      (message) => cb(null, message),
      (err: Error) => cb(err),
    );
  }

  private async data(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const s = this.state(session);
    const config = this.rt.config();
    const id = newTransactionId();
    const tls = session.secure && session.tlsOptions ? { version: session.tlsOptions.version ?? 'TLS', cipher: session.tlsOptions.name ?? 'unknown' } : undefined;
    const protocol = `ESMTP${tls ? 'S' : ''}${s.authUser !== undefined ? 'A' : ''}` as 'ESMTP' | 'ESMTPS' | 'ESMTPA' | 'ESMTPSA';
    const header = receivedHeader({
      helo: session.hostNameAppearsAs,
      clientHostname: typeof session.clientHostname === 'string' ? session.clientHostname : undefined,
      clientAddress: session.remoteAddress,
      byHost: this.listener.hostname ?? config.hostname,
      protocol: session.openingCommand === 'HELO' ? 'SMTP' : protocol,
      id,
      ...(tls ? { tls } : {}),
      ...(this.listener.receivedAuth && s.authUser !== undefined ? { authUser: s.authUser } : {}),
      ...(s.accepted.length === 1 ? { recipient: formatAddress(s.accepted[0]!.address) } : {}),
      date: new Date(),
      maskSource: this.listener.maskSrc,
    });
    const started = Date.now();
    let body: Readable = stream;
    if (this.listener.senders?.masquerade && s.authUser !== undefined && s.mailFrom) {
      const rewriter = new FromRewriter(formatAddress(s.mailFrom));
      stream.on('error', (err) => rewriter.destroy(err));
      body = stream.pipe(rewriter);
    }
    // Mail from outside gets its SPF/DKIM/DMARC verdicts recorded; a user's own submission does not.
    let verdicts: Verdicts | undefined;
    const authResults =
      config.smtp.authenticationResults && s.authUser === undefined
        ? {
            verify: async (message: Readable) => {
              const v = await verifyMessage(
                message,
                { ip: session.remoteAddress, helo: session.hostNameAppearsAs || session.remoteAddress, sender: s.mailFrom ? formatAddress(s.mailFrom) : '', mta: this.listener.hostname ?? config.hostname },
                config,
              );
              verdicts = v.verdicts;
              return v.headers;
            },
            filter: () => new ForgedResultsFilter(this.listener.hostname ?? config.hostname),
          }
        : undefined;
    const result = await this.rt.inbound.commit({
      id,
      stream: body,
      prefix: Buffer.from(header),
      sender: s.mailFrom,
      recipients: s.accepted,
      maxBytes: config.smtp.limits.maxMessageSize,
      log: s.log,
      ...(authResults ? { authenticate: authResults } : {}),
    });
    if (result.kind === 'too-big') {
      s.log.info({ id, size: result.size }, 'message refused: over the size limit');
      throw replies.messageTooBig(config.smtp.limits.maxMessageSize);
    }
    s.messages++;
    this.rt.metrics?.messagesReceived.inc({ tag: this.listener.tag ?? '' });
    if (result.delivered > 0) this.rt.metrics?.deliveries.inc({ transport: 'local', status: 'delivered' }, result.delivered);
    s.log.info(
      {
        id,
        from: s.mailFrom ? formatAddress(s.mailFrom) : '',
        to: s.accepted.map((r) => formatAddress(r.address)),
        size: result.size,
        delivered: result.delivered,
        queued: result.queued,
        qid: result.queueId,
        tls: tls?.version,
        user: s.authUser,
        ...(verdicts ? { spf: verdicts.spf, dkim: verdicts.dkim, dmarc: verdicts.dmarc } : {}),
        ms: Date.now() - started,
      },
      'message accepted',
    );
    s.accepted = [];
    s.mailFrom = null;
    return `2.0.0 Ok: queued as ${id}`;
  }

  private facts(session: SMTPServerSession, s: SessionState): SessionFacts {
    const rdns = typeof session.clientHostname === 'string' && session.clientHostname !== '' && !session.clientHostname.startsWith('[') ? session.clientHostname : null;
    return {
      local: isLoopbackAddress(session.remoteAddress),
      remoteAddress: session.remoteAddress,
      rdns,
      tls: session.secure === true,
      ...(this.listener.tag ? { tag: this.listener.tag } : {}),
      ...(s.authUser !== undefined ? { authUser: s.authUser } : {}),
      ...(session.hostNameAppearsAs ? { helo: session.hostNameAppearsAs } : {}),
    };
  }
}

/** A transaction id: time-sortable, unique, short (like Postfix queue ids). */
export function newTransactionId(now = Date.now()): string {
  return `${now.toString(36).toUpperCase()}${randomBytes(5).toString('hex').toUpperCase()}`;
}
