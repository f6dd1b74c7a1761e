/**
 * Shared pieces of the outbound (remote delivery) end-to-end tests: submit
 * as alice over the submission port, look at the queue through the CLI,
 * read Maildirs, wait with a deadline, pick log lines.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { MAIN, USERS, type RunningAppliance } from './appliance.ts';

const run = promisify(execFile);
export const ALICE = USERS[0]!;

export interface QueueEntry {
  id: string;
  sender: string;
  recipients: { address: string; state: string; attempts: number; next_attempt: string; last_error: string | null }[];
}

export async function queueShow(configPath: string): Promise<QueueEntry[]> {
  const { stdout } = await run(process.execPath, [MAIN, 'queue', 'show', '--json', '-c', configPath], { timeout: 20_000 });
  return JSON.parse(stdout) as QueueEntry[];
}

/** `appliance queue flush`: everything due now, one outbound pass, then returns. */
export async function queueFlush(configPath: string): Promise<string> {
  const { stdout } = await run(process.execPath, [MAIN, 'queue', 'flush', '-c', configPath], { timeout: 60_000 });
  return stdout;
}

export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Submits as alice over STARTTLS + AUTH; resolves with the submission's reply. */
export async function submit(port: number, mail: { to: readonly string[]; subject: string; text: string; headers?: Record<string, string> }): Promise<{ messageId: string; response: string }> {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port,
    secure: false,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user: ALICE.address, pass: ALICE.password },
    name: 'client.example.test',
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 20_000,
  });
  try {
    const info = await transport.sendMail({ from: ALICE.address, to: [...mail.to], subject: mail.subject, text: mail.text, ...(mail.headers ? { headers: mail.headers } : {}) });
    return { messageId: info.messageId, response: info.response };
  } finally {
    transport.close();
  }
}

/** The messages in a local user's Maildir `new/` (example.test), as text. */
export function maildir(dataDir: string, user: string): string[] {
  const dir = join(dataDir, 'mail', 'example.test', user, 'new');
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .sort()
    .map((f) => readFileSync(join(dir, f), 'latin1'));
}

/** The DSNs in alice's Maildir whose attached original headers carry `subject`. */
export function bouncesFor(dataDir: string, subject: string): string[] {
  return maildir(dataDir, 'alice').filter((m) => /^Content-Type: multipart\/report/im.test(m) && m.includes(`Subject: ${subject}`));
}

/** The message/delivery-status part's per-recipient blocks, as field maps. */
export function dsnRecipients(dsn: string): Record<string, string>[] {
  const part = /Content-Type: message\/delivery-status\r?\n(?:[^\r\n]+\r?\n)*\r?\n([\s\S]*?)\r?\n--/i.exec(dsn)?.[1] ?? '';
  const blocks = part.split(/\r?\n\r?\n/).map((b) => b.trim()).filter(Boolean);
  return blocks
    .map((b) => {
      const fields: Record<string, string> = {};
      for (const line of b.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
        const i = line.indexOf(':');
        if (i > 0) fields[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
      }
      return fields;
    })
    .filter((f) => 'final-recipient' in f);
}

/** JSON log lines with this message (`msg`), optionally only those where `pick` holds. */
export function logged(app: RunningAppliance, msg: string, pick: (l: Record<string, unknown>) => boolean = () => true): Record<string, unknown>[] {
  return app.logLines().filter((l) => l.msg === msg && pick(l));
}
