/**
 * Checking a login against a credentials table: the table's own
 * authenticate (LDAP auth_bind) when it has one, else its stored hash. The
 * answer keeps the three states of every lookup: a directory that is down is
 * "try later", never "wrong password".
 */
import type { LookupResult, Table } from '../tables/types.ts';
import { verifyPassword } from './passwords.ts';

export type AuthOutcome =
  | { readonly kind: 'ok'; readonly username: string }
  | { readonly kind: 'invalid' }
  | { readonly kind: 'tempfail'; readonly error: Error };

/** Longest username and password accepted (bounded work per attempt). */
export const MAX_USERNAME_BYTES = 256;
export const MAX_PASSWORD_BYTES = 1024;

export async function authenticate(table: Table, username: string, password: string): Promise<AuthOutcome> {
  if (username === '' || password === '' || Buffer.byteLength(username) > MAX_USERNAME_BYTES || Buffer.byteLength(password) > MAX_PASSWORD_BYTES) {
    return { kind: 'invalid' };
  }
  if (table.authenticate) {
    const r: LookupResult<boolean> = await table.authenticate(username, password);
    if (r.kind === 'tempfail') return { kind: 'tempfail', error: r.error };
    return r.kind === 'found' && r.value ? { kind: 'ok', username } : { kind: 'invalid' };
  }
  const r = await table.lookup('credentials', username);
  if (r.kind === 'tempfail') return { kind: 'tempfail', error: r.error };
  if (r.kind === 'none') {
    // Spend the time of a check anyway, so a missing user is not faster than a wrong password.
    await verifyPassword(password, DUMMY_HASH);
    return { kind: 'invalid' };
  }
  return (await verifyPassword(password, r.value.hash)) ? { kind: 'ok', username: r.value.username } : { kind: 'invalid' };
}

/** bcrypt (cost 10) of a fixed string nobody uses, for timing equalisation. */
const DUMMY_HASH = '$2b$10$bNAo1yPz8M6bajwHt2q4d.fEXW09kQzis/VxpJwnN8U5XZirQoLvq';
