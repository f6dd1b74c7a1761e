/** Table errors, in a module of their own so the CLI can name them without loading the backends. */

export class TableOpenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TableOpenError';
  }
}
