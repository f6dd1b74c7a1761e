/**
 * LOGIN (RFC 3501 §6.2.3) and AUTHENTICATE PLAIN (RFC 4616) with an initial
 * response (RFC 4959 SASL-IR). Only over TLS, or from loopback on a listener
 * that does not require TLS; otherwise NO [PRIVACYREQUIRED] (and
 * LOGINDISABLED is advertised). A failed attempt is answered after
 * `auth failure-delay`; an address with too many failures is refused for a
 * while (core/auth/failures.ts). A directory that is down is NO [UNAVAILABLE],
 * never "wrong password".
 */
import { authenticate } from '../../core/auth/authenticate.ts';
import type { CommandOf } from '../protocol/command.ts';
import type { LookupResult } from '../../core/tables/types.ts';
import type { ImapSession, Tagged } from '../session.ts';

export async function loginCommand(s: ImapSession, _tag: string, cmd: CommandOf<'LOGIN'>): Promise<Tagged> {
  return logIn(s, cmd.username, cmd.password, 'LOGIN');
}

export async function authenticateCommand(s: ImapSession, _tag: string, cmd: CommandOf<'AUTHENTICATE'>): Promise<Tagged> {
  if (cmd.mechanism !== 'PLAIN') return { status: 'NO', code: 'CANNOT', text: 'Unsupported authentication mechanism' };
  if (!s.loginAllowed) return { status: 'NO', code: 'PRIVACYREQUIRED', text: 'Authentication is only allowed over TLS' };
  let response = cmd.initial;
  if (response === undefined) {
    const line = await s.continuation('');
    if (line === null) return { status: 'BAD', text: 'Connection closed' };
    response = line.toString('latin1').trim();
  }
  if (response === '*') return { status: 'BAD', text: 'Authentication cancelled' };
  // RFC 4959: "=" is an empty initial response.
  const decoded = response === '=' ? '' : decodeBase64(response);
  if (decoded === null) return { status: 'BAD', text: 'Invalid base64' };
  const parts = decoded.split('\0');
  if (parts.length !== 3) return { status: 'NO', code: 'AUTHENTICATIONFAILED', text: 'Invalid PLAIN response' };
  const [authzid, authcid, password] = parts as [string, string, string];
  if (authzid !== '' && authzid !== authcid) return { status: 'NO', code: 'AUTHORIZATIONFAILED', text: 'Proxy authorization is not supported' };
  return logIn(s, authcid, password, 'PLAIN');
}

function decodeBase64(s: string): string | null {
  if (s.length > 8192 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) return null;
  return Buffer.from(s, 'base64').toString('utf8');
}

async function logIn(s: ImapSession, username: string, password: string, method: string): Promise<Tagged> {
  const rt = s.rt;
  if (!s.loginAllowed) return { status: 'NO', code: 'PRIVACYREQUIRED', text: 'Login is only allowed over TLS' };
  const ip = s.remoteAddress;
  if (!rt.authFailures.allowed(ip)) {
    s.log.warn({ ip }, 'login refused: too many failures from this address');
    await rt.sleep(rt.config().auth.failureDelay);
    return { status: 'NO', code: 'UNAVAILABLE', text: 'Too many failed logins; try again later' };
  }
  const ref = s.listener.auth;
  const table = ref ? rt.tables().get(ref.table.name) : undefined;
  if (!table) return { status: 'NO', code: 'UNAVAILABLE', text: 'Authentication is temporarily unavailable' };
  const outcome = await authenticate(table, username, password);
  if (outcome.kind === 'tempfail') {
    s.log.error({ table: ref!.table.name, err: outcome.error.message }, 'auth lookup failed temporarily');
    return { status: 'NO', code: 'UNAVAILABLE', text: 'Authentication is temporarily unavailable' };
  }
  if (outcome.kind === 'invalid') {
    const failures = rt.authFailures.recordFailure(ip);
    rt.metrics?.authFailures.inc({ protocol: 'imap' });
    s.log.info({ ip, user: username.slice(0, 64), failures, method }, 'auth failed');
    await rt.sleep(rt.config().auth.failureDelay);
    return { status: 'NO', code: 'AUTHENTICATIONFAILED', text: 'Authentication failed' };
  }
  rt.authFailures.recordSuccess(ip);
  const user = outcome.username;
  const limit = rt.config().imap.limits.connectionsPerUserIp;
  if (rt.sessions.countUserIp(user, ip) >= limit) {
    s.log.info({ user, ip, limit }, 'login refused: too many connections for this user from this address');
    return { status: 'NO', code: 'LIMIT', text: `Maximum number of connections from user+IP exceeded (${limit})` };
  }
  // Counted from here on (same tick as the check), so parallel logins cannot all pass it.
  s.user = user;
  const refused = (t: Tagged): Tagged => {
    s.user = null;
    return t;
  };
  const root = await rt.locateMaildir(user).catch((err: Error): LookupResult<string> => ({ kind: 'tempfail', error: err }));
  if (root.kind === 'tempfail') {
    s.log.error({ user, err: root.error.message }, 'mailbox lookup failed temporarily');
    return refused({ status: 'NO', code: 'UNAVAILABLE', text: 'Mailbox temporarily unavailable' });
  }
  if (root.kind === 'none') {
    s.log.error({ user }, 'login refused: no maildir action delivers to this user');
    return refused({ status: 'NO', code: 'UNAVAILABLE', text: 'This account has no mailbox' });
  }
  const store = rt.mail.forRoot(root.value);
  try {
    await store.ensureSpecialMailboxes(rt.config().imap.mailboxes.map((m) => ({ name: m.name, auto: m.auto, ...(m.specialUse ? { specialUse: m.specialUse } : {}) })));
  } catch (err) {
    s.log.warn({ user, err: (err as Error).message }, 'could not create the special mailboxes');
  }
  s.store = store;
  s.state = 'authenticated';
  s.log = s.log.child({ user });
  s.log.info({ ip, method, tls: s.secure }, 'logged in');
  return { status: 'OK', code: `CAPABILITY ${s.capabilities().join(' ')}`, text: 'Logged in' };
}
