/** The server version shown in ID, read once from package.json. */
import { readFileSync } from 'node:fs';

function read(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const v = (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string });
      if (v.name === 'appliance' && v.version) return v.version;
    } catch {
      // try the next location (sources vs dist/)
    }
  }
  return '0';
}

export const version = read();
