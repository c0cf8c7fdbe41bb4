/**
 * What the benchmarks read of a server process: resident memory
 * (/proc/<pid>/status VmRSS) and CPU time used (/proc/<pid>/stat utime +
 * stime), and CPU pinning with taskset; and of the machine: its description
 * and how many connections one process may hold.
 */

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/** User + system CPU seconds the process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** Pins every thread of `pid` to `core` (`all`: any core again); false when taskset is missing or refused. */
export function pin(pid: number, core: number | 'all'): boolean {
  const cores = core === 'all' ? `0-${os.cpus().length - 1}` : String(core);
  try {
    execFileSync('taskset', ['-a', '-p', '-c', cores, String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** RSS once it stopped moving (two readings 250 ms apart within 0.5 %), or after `maxMs`. */
export async function settledRss(pid: number, maxMs: number): Promise<number> {
  let last = rssBytes(pid);
  for (let waited = 0; waited < maxMs; waited += 250) {
    await new Promise((r) => setTimeout(r, 250));
    const current = rssBytes(pid);
    if (Math.abs(current - last) <= last * 0.005) return current;
    last = current;
  }
  return last;
}

/** Connections one process may hold: the open-files limit, less room for everything else. */
export function connectionCeiling(): number {
  const limit = Number(execFileSync('sh', ['-c', 'ulimit -n']).toString().trim());
  return Math.min(50_000, Number.isFinite(limit) ? limit - 1000 : 50_000);
}

/** The machine a result was measured on. */
export function machine() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
  };
}
