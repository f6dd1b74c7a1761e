/**
 * `table NAME ldap:/path/ldap.conf`. The directory backend (OpenSMTPD's
 * table-ldap keys, ldapts) is its own piece of work (issue "Directory");
 * until it lands the table answers every lookup "temporarily unavailable",
 * so mail for its users is deferred with a 4xx and never bounced.
 */
import { tempfail, type LookupKind, type LookupResult, type LookupValues, type Table } from './types.ts';

export class UnavailableLdapTable implements Table {
  readonly name: string;
  readonly backend = 'ldap' as const;
  readonly path: string;
  private readonly error: Error;

  constructor(name: string, path: string) {
    this.name = name;
    this.path = path;
    this.error = new Error(`table ${name}: LDAP tables are not implemented yet (${path})`);
  }

  services(): ReadonlySet<LookupKind> {
    return new Set(['domain', 'alias', 'credentials', 'userinfo', 'mailaddr', 'mailaddrmap']);
  }

  async lookup<K extends LookupKind>(_kind: K, _key: string): Promise<LookupResult<LookupValues[K]>> {
    return tempfail(this.error);
  }
}
