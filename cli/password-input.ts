/**
 * Reading a new password for `table add` on a credentials table: twice from
 * the terminal without echo, or once from stdin with --password-stdin.
 */
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { UsageError } from './usage.ts';

const MAX_PASSWORD_BYTES = 1024;

export async function passwordFromStdin(stdin: NodeJS.ReadableStream = process.stdin): Promise<string> {
  let data = '';
  for await (const chunk of stdin) {
    data += chunk.toString();
    if (data.length > MAX_PASSWORD_BYTES * 4) throw new UsageError('the password on stdin is too long');
  }
  const password = data.replace(/\r?\n$/, '');
  if (password === '') throw new UsageError('empty password on stdin');
  if (password.includes('\n')) throw new UsageError('the password on stdin must be one line');
  if (Buffer.byteLength(password) > MAX_PASSWORD_BYTES) throw new UsageError(`the password is longer than ${MAX_PASSWORD_BYTES} bytes`);
  return password;
}

export async function passwordFromTerminal(): Promise<string> {
  if (!process.stdin.isTTY) {
    throw new UsageError('no terminal to ask for the password: pipe it with --password-stdin');
  }
  const first = await ask('Password: ');
  if (first === '') throw new UsageError('empty password');
  const second = await ask('Again: ');
  if (first !== second) throw new UsageError('the passwords differ; nothing changed');
  return first;
}

function ask(prompt: string): Promise<string> {
  let muted = true;
  const output = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (!muted) process.stderr.write(chunk);
      cb();
    },
  });
  // The interface puts the terminal in raw mode (no echo) before the prompt appears.
  const rl = createInterface({ input: process.stdin, output, terminal: true });
  process.stderr.write(prompt);
  return new Promise((resolve) => {
    rl.question('', (answer) => {
      muted = false;
      rl.close();
      process.stderr.write('\n');
      resolve(answer);
    });
  });
}
