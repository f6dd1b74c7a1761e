/**
 * The renewal policy as pure functions: a third of the lifetime, the CA's
 * renewal window (RFC 9773) when earlier, backoff from minutes to hours with
 * jitter, Retry-After as a floor.
 */
import t from 'tap';
import { BACKOFF_MAX_MS, CHECK_INTERVAL_MS, backoffDelay, lifetimeRenewalTime, nextCheckTime, pickInWindow, renewalTime, retryTime } from '../../acme/schedule.ts';
import { parseRetryAfter } from '../../acme/http.ts';
import { serialOctets } from '../../acme/ari.ts';

const day = 86_400_000;
const notBefore = new Date('2026-01-01T00:00:00Z');
const notAfter = new Date(notBefore.getTime() + 90 * day);

t.test('a third of the lifetime left: day 60 of 90', async (t) => {
  t.equal(lifetimeRenewalTime({ notBefore, notAfter }).toISOString(), new Date(notBefore.getTime() + 60 * day).toISOString());
});

t.test("the CA's window wins only when earlier", async (t) => {
  const early = { start: new Date(notBefore.getTime() + 10 * day), end: new Date(notBefore.getTime() + 12 * day) };
  const pick = pickInWindow(early, 0.5);
  t.equal(pick.toISOString(), new Date(notBefore.getTime() + 11 * day).toISOString(), 'uniform pick in the window');
  t.equal(renewalTime({ notBefore, notAfter }, pick).getTime(), pick.getTime(), 'an earlier window moves the renewal forward');
  const late = pickInWindow({ start: new Date(notBefore.getTime() + 70 * day), end: new Date(notBefore.getTime() + 80 * day) }, 0);
  t.equal(renewalTime({ notBefore, notAfter }, late).getTime(), notBefore.getTime() + 60 * day, 'a later window does not postpone it');
});

t.test('backoff: minutes then hours, capped, jittered ±20 %', async (t) => {
  t.equal(backoffDelay(1, 0.5), 5 * 60_000, 'first retry after 5 minutes');
  t.equal(backoffDelay(2, 0.5), 10 * 60_000, 'then 10');
  t.equal(backoffDelay(5, 0.5), 80 * 60_000, 'then hours');
  t.equal(backoffDelay(50, 0.5), BACKOFF_MAX_MS, 'capped at 6 h');
  t.equal(backoffDelay(1, 0), 4 * 60_000, 'jitter low end');
  t.equal(backoffDelay(1, 0.999999), Math.round(5 * 60_000 * (0.8 + 0.4 * 0.999999)), 'jitter high end');
  for (let n = 1; n < 30; n++) t.ok(backoffDelay(n + 1, 0.5) >= backoffDelay(n, 0.5), `non-decreasing at ${n}`);
});

t.test('Retry-After is a floor for the next attempt', async (t) => {
  const now = new Date('2026-03-01T00:00:00Z');
  const ra = parseRetryAfter('3600', now)!;
  t.equal(ra.getTime(), now.getTime() + 3600_000, 'delta-seconds');
  t.equal(parseRetryAfter('Sun, 01 Mar 2026 02:00:00 GMT', now)!.getTime(), now.getTime() + 2 * 3600_000, 'HTTP date');
  t.equal(parseRetryAfter('soon', now), undefined, 'garbage ignored');
  t.equal(retryTime(now, 1, 0.5, ra).getTime(), ra.getTime(), 'Retry-After later than the backoff wins');
  t.equal(retryTime(now, 1, 0.5, new Date(now.getTime() + 1000)).getTime(), now.getTime() + 5 * 60_000, 'the backoff wins over a short Retry-After');
});

t.test('next check: at renewal time, at the latest after the check interval', async (t) => {
  const now = new Date('2026-03-01T00:00:00Z');
  t.equal(nextCheckTime(now, new Date(now.getTime() + 30 * day)).getTime(), now.getTime() + CHECK_INTERVAL_MS);
  t.equal(nextCheckTime(now, new Date(now.getTime() + 3600_000)).getTime(), now.getTime() + 3600_000);
  t.equal(nextCheckTime(now, new Date(now.getTime() - 1000)).getTime(), now.getTime(), 'overdue: now');
});

t.test('ARI serial encoding (RFC 9773 §4.1 example: 0x0087654321 → AIdlQyE)', async (t) => {
  t.equal(serialOctets('87654321').toString('base64url'), 'AIdlQyE', 'a sign octet is added for a high first bit');
  t.equal(serialOctets('0A').toString('hex'), '0a');
  t.equal(serialOctets('ABC').toString('hex'), '0abc', 'odd hex length padded');
  t.equal(Buffer.from('69885B6B87464041E1B37B847BA0AE2CDE01C8D4', 'hex').toString('base64url'), 'aYhba4dGQEHhs3uEe6CuLN4ByNQ', 'the AKI part of the example');
});
