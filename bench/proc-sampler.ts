/**
 * Worker thread for bench/inbound.ts: samples the summed RSS and PSS
 * (/proc/PID/smaps_rollup) of every process in one session (a server and
 * everything it forked) and keeps the peaks. It runs off the harness's main
 * thread so that reading /proc never delays the timestamps the main thread
 * takes of the load generators' output.
 *
 * Messages in: { type: 'start', sid, intervalMs } | { type: 'stop' }.
 * Message out, after each stop: { peakRss, peakPss, peakProcs, samples, sampleMs }
 * (KiB; `sampleMs` is the mean time of one sample, the sampler's own cost).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';

type In = { type: 'start'; sid: number; intervalMs: number } | { type: 'stop' };

function sessionOf(pid: string): number {
  const st = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[3]);
}

function members(sid: number): string[] {
  const out: string[] = [];
  for (const name of readdirSync('/proc')) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    try {
      if (sessionOf(name) === sid) out.push(name);
    } catch {
      /* gone */
    }
  }
  return out;
}

let timer: NodeJS.Timeout | null = null;
let sid = 0;
let peakRss = 0;
let peakPss = 0;
let peakProcs = 0;
let samples = 0;
let busyMs = 0;

function sample(): void {
  const t = performance.now();
  let rss = 0;
  let pss = 0;
  let n = 0;
  for (const pid of members(sid)) {
    try {
      const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'latin1');
      rss += Number(/^Rss:\s+(\d+)/m.exec(text)?.[1] ?? 0);
      pss += Number(/^Pss:\s+(\d+)/m.exec(text)?.[1] ?? 0);
      n++;
    } catch {
      /* gone */
    }
  }
  peakRss = Math.max(peakRss, rss);
  peakPss = Math.max(peakPss, pss);
  peakProcs = Math.max(peakProcs, n);
  samples++;
  busyMs += performance.now() - t;
}

parentPort!.on('message', (m: In) => {
  if (m.type === 'start') {
    sid = m.sid;
    peakRss = peakPss = peakProcs = samples = busyMs = 0;
    sample();
    timer = setInterval(sample, m.intervalMs);
    return;
  }
  if (timer) clearInterval(timer);
  timer = null;
  sample();
  parentPort!.postMessage({ peakRss, peakPss, peakProcs, samples, sampleMs: busyMs / Math.max(1, samples) });
});
