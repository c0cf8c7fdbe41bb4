/**
 * What the benchmarks read of a server process: resident memory
 * (/proc/<pid>/status VmRSS) and CPU time used (/proc/<pid>/stat utime +
 * stime; of its main thread, /proc/<pid>/task/<pid>/stat), and CPU pinning
 * with taskset; and of the machine: its description
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
  return statCpuSeconds(`/proc/${pid}/stat`);
}

/**
 * Those of its main thread alone (the event loop: JavaScript, uWS, the
 * syscalls), without V8's worker threads (compilers, parallel and concurrent GC).
 */
export function mainThreadCpuSeconds(pid: number): number {
  return statCpuSeconds(`/proc/${pid}/task/${pid}/stat`);
}

function statCpuSeconds(path: string): number {
  const stat = readFileSync(path, 'utf8');
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

/** Bytes queued in the kernel on the TCP connections of `port` on 127.0.0.x (IPv4, /proc/net/tcp). */
export interface TcpQueues {
  /** The server's send queues (written by the server, not yet taken by its peers). */
  serverSend: number;
  /** The clients' receive queues (arrived, not yet read by the load generator). */
  clientReceive: number;
  connections: number;
}

export function tcpQueues(port: number, table = readFileSync('/proc/net/tcp', 'latin1')): TcpQueues {
  const portSuffix = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const queues: TcpQueues = { serverSend: 0, clientReceive: 0, connections: 0 };
  // Fixed columns after "<sl>: ": local 0100007F:1F90, remote, st (01: established), tx_queue:rx_queue.
  // Read by position: the table holds every socket of the machine, tens of thousands of lines at times.
  let at = table.indexOf('\n') + 1;
  while (at > 0 && at < table.length) {
    const next = table.indexOf('\n', at);
    const p = table.indexOf(': ', at) + 2;
    at = next === -1 ? 0 : next + 1;
    if (p < 2 || table.slice(p + 28, p + 30) !== '01') continue;
    if (table.slice(p + 8, p + 13) === portSuffix) {
      queues.serverSend += parseInt(table.slice(p + 31, p + 39), 16);
      queues.connections++;
    } else if (table.slice(p + 22, p + 27) === portSuffix)
      queues.clientReceive += parseInt(table.slice(p + 40, p + 48), 16);
  }
  return queues;
}

/** Seconds core `core` spent so far, by kind (/proc/stat; softirq is accounted to no process). */
export interface CoreTimes {
  busy: number;
  softirq: number;
  idle: number;
}

export function coreTimes(core: number, stat = readFileSync('/proc/stat', 'utf8')): CoreTimes {
  const line = stat.split('\n').find((l) => l.startsWith(`cpu${core} `));
  if (!line) throw new Error(`no cpu${core} in /proc/stat`);
  // user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
  const [user, nice, system, idle, iowait, irq, softirq, steal] = line
    .trim()
    .split(/\s+/)
    .slice(1, 9)
    .map((v) => Number(v) / CLOCK_TICKS) as [number, number, number, number, number, number, number, number];
  return { busy: user + nice + system + irq + softirq + steal, softirq, idle: idle + iowait };
}
