/** Inline tables: `table d { a.org, b.org }` and `table s { k = v }`, fixed at parse time. */
import type { TableDecl } from '../config/types.ts';
import { MapEntries, lookupEntries, servicesOf } from './key-value-lookup.ts';
import type { LookupKind, LookupResult, LookupValues, Table, TableEntry } from './types.ts';

export class InlineTable implements Table {
  readonly name: string;
  readonly backend = 'inline' as const;
  private readonly entries_: readonly (readonly [string, string])[];
  private readonly source: MapEntries;
  private readonly form: 'list' | 'map';

  constructor(decl: TableDecl) {
    if (decl.source.type !== 'inline') throw new Error(`table ${decl.name} is not inline`);
    this.name = decl.name;
    this.form = decl.source.form;
    this.entries_ = decl.source.form === 'list' ? decl.source.values.map((v) => [v, ''] as const) : decl.source.entries;
    this.source = new MapEntries(this.entries_);
  }

  services(): ReadonlySet<LookupKind> {
    return servicesOf(this.form);
  }

  lookup<K extends LookupKind>(kind: K, key: string): Promise<LookupResult<LookupValues[K]>> {
    return lookupEntries(this.source, kind, key);
  }

  async *entries(): AsyncIterable<TableEntry> {
    for (const [key, value] of this.entries_) yield { key, value };
  }
}
