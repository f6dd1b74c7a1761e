/**
 * Runs the built CLI (dist/cli/main.js) as a subprocess, as a user would,
 * with the Node binary running the tests. Every run is bounded in time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface RunResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export function requireBuild(): void {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run "npm run build" first (npm test does)`);
}

export function run(args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  requireBuild();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      env: { ...process.env, APPLIANCE_CONFIG: '', ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`appliance ${args.join(' ')} did not finish within ${opts.timeoutMs ?? 20000} ms`));
    }, opts.timeoutMs ?? 20000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Starts `appliance start` in the background; output goes to the given log file. */
export function startDaemon(args: string[], logFd: number): ChildProcess {
  requireBuild();
  return spawn(process.execPath, [MAIN, 'start', ...args], { stdio: ['ignore', logFd, logFd], env: { ...process.env, APPLIANCE_CONFIG: '' } });
}

export async function waitFor(cond: () => boolean, what: string, timeoutMs = 10000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Runs the CLI on a pseudo-terminal (python3's pty), answering prompts:
 * each [prompt, answer] pair waits for the prompt text then types the answer.
 */
export function runOnTerminal(args: string[], answers: readonly (readonly [string, string])[]): Promise<RunResult> {
  requireBuild();
  const script = `
import os, pty, sys, json, select, time
argv = json.loads(sys.argv[1]); answers = json.loads(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
out = b''
deadline = time.time() + 20
def read_until(text):
    global out
    while text.encode() not in out:
        if time.time() > deadline: return False
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try: chunk = os.read(fd, 4096)
            except OSError: return False
            if not chunk: return False
            out += chunk
    return True
for prompt, answer in answers:
    if not read_until(prompt): break
    out = out.replace(prompt.encode(), b'<' + prompt.encode() + b'>', 1)
    os.write(fd, (answer + '\\n').encode())
while time.time() < deadline:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try: chunk = os.read(fd, 4096)
        except OSError: break
        if not chunk: break
        out += chunk
    else:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done: break
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode('utf-8', 'replace'))
sys.exit(os.waitstatus_to_exitcode(status))
`;
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-c', script, JSON.stringify([process.execPath, MAIN, ...args]), JSON.stringify(answers)], {
      env: { ...process.env, APPLIANCE_CONFIG: '' },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
