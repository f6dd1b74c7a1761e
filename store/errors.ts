/** Store errors, in a module of their own so the CLI can name them without loading LevelDB. */

export class DatabaseLockedError extends Error {
  constructor(path: string) {
    super(`the database ${path} is in use by another process (is "appliance start" running? then its control socket should answer)`);
    this.name = 'DatabaseLockedError';
  }
}
