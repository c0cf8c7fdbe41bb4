/**
 * Connects per CPU-second of two or more servers, alternating: every server
 * runs at once (each pinned to the same core, idle while the others are
 * measured), and each round opens `--connections` HS256-authenticated,
 * subscribed connections to each in turn, then closes them. The median over
 * the rounds after the first (which warms every server up) is far steadier
 * than one ramp per server, so small changes to the connect path show; the
 * table gives the first server's median ÷ each one's. Every server runs with
 * V8's GC trace on (trace-gc.ts): its scavenges in each round, and what they
 * freed per connect, show the garbage a connect leaves for V8's young
 * generation (collected on worker threads as much as on the main one):
 *
 *   node loadtest/dist/src/bench/connect-ab.js --connections 4000 --rounds 8
 */

import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { scavenges, TRACE_GC_ON } from './gc-trace.js';
import { Clients, median, per } from './measure.js';
import { cpuSeconds, mainThreadCpuSeconds } from './proc.js';
import { ratio, table } from './report.js';
import { LABELS, type RunningServer, SERVERS, type ServerKind, startServer } from './servers.js';

const SECRET = 'bench-secret-hs256';
const SERVER_CORE = 1;
const TRACE_GC = fileURLToPath(new URL('./trace-gc.js', import.meta.url));

export interface ConnectRound {
  kind: ServerKind;
  round: number;
  connections: number;
  failed: number;
  cpuSeconds: number;
  mainThreadCpuSeconds: number;
  /** Young-generation collections during the round, and the bytes they freed. */
  scavenges: number;
  scavengedBytes: number;
}

export interface ConnectAbOptions {
  servers: ServerKind[];
  connections: number;
  rounds: number;
  timeoutMs: number;
}

/** One round of `connections` connects to `server`: its CPU (all threads and the main one) meanwhile. */
async function round(server: RunningServer, index: number, connections: number, timeoutMs: number) {
  const clients = new Clients(server.dialect, server.url, SECRET, timeoutMs);
  const printed = server.output().length;
  const cpu = cpuSeconds(server.pid);
  const main = mainThreadCpuSeconds(server.pid);
  await clients.grow(0, connections, () => 'fan');
  const gc = scavenges(server.output().slice(printed));
  // The main thread's window inside the process's (read after it at the start, before it at the
  // end), so that a busy server never shows its main thread above the whole.
  const mainAfter = mainThreadCpuSeconds(server.pid);
  const measured: ConnectRound = {
    kind: server.kind,
    round: index,
    connections: clients.fleet.connected,
    failed: clients.fleet.failed,
    cpuSeconds: cpuSeconds(server.pid) - cpu,
    mainThreadCpuSeconds: mainAfter - main,
    scavenges: gc.count,
    scavengedBytes: gc.freedBytes,
  };
  clients.close();
  return measured;
}

export async function connectAb(options: ConnectAbOptions): Promise<ConnectRound[]> {
  const servers: RunningServer[] = [];
  try {
    for (const kind of options.servers) {
      const server = await startServer(kind, SECRET, SERVER_CORE, { NODE_OPTIONS: `--import=${TRACE_GC}` });
      servers.push(server);
      // Without the trace the GC columns would read 0: refuse rather than print that.
      if (!server.output().includes(TRACE_GC_ON)) throw new Error(`${kind} runs without the GC trace`);
    }
    const rounds: ConnectRound[] = [];
    for (let i = 0; i < options.rounds; i++)
      for (const server of servers)
        rounds.push(await round(server, i, options.connections, options.timeoutMs));
    return rounds;
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

/**
 * Per server: connects per CPU-second (all threads, main thread) in each
 * round, the median of the timed ones, and the first server's median ÷ it;
 * the medians of scavenges per round and of bytes they freed per connect.
 */
export function formatConnectAb(rounds: ConnectRound[]): string {
  const kinds = [...new Set(rounds.map((r) => r.kind))];
  const of = (kind: ServerKind) => rounds.filter((r) => r.kind === kind);
  const timed = (kind: ServerKind) => of(kind).filter((r) => r.round > 0);
  const all = (r: ConnectRound) => per(r.connections, r.cpuSeconds);
  const main = (r: ConnectRound) => per(r.connections, r.mainThreadCpuSeconds);
  const medianOf = (kind: ServerKind, rate: (r: ConnectRound) => number) => median(timed(kind).map(rate));
  const [first] = kinds;
  const firstOver = (kind: ServerKind, rate: (r: ConnectRound) => number) =>
    first === undefined ? '–' : ratio(medianOf(first, rate), medianOf(kind, rate));
  const firstLabel = first === undefined ? '' : LABELS[first];
  return `Connects per CPU-second, rounds alternating between servers (round 0 warms up, untimed; medians of the rest)\n${table(
    [
      'server',
      'rounds',
      'connections each',
      'failed',
      'connects/CPU-s, each round',
      'median',
      `${firstLabel} ÷ it`,
      'median, main thread',
      `${firstLabel} ÷ it, main thread`,
      'scavenges per round',
      'freed per connect',
    ],
    kinds.map((kind) => [
      LABELS[kind],
      String(timed(kind).length),
      String(Math.max(0, ...of(kind).map((r) => r.connections))),
      String(of(kind).reduce((n, r) => n + r.failed, 0)),
      of(kind)
        .map((r) => all(r).toFixed(0))
        .join(' '),
      medianOf(kind, all).toFixed(0),
      firstOver(kind, all),
      medianOf(kind, main).toFixed(0),
      firstOver(kind, main),
      medianOf(kind, (r) => r.scavenges).toFixed(0),
      `${(medianOf(kind, (r) => per(r.scavengedBytes, r.connections)) / 1024).toFixed(2)} KB`,
    ]),
  )}\n`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      servers: { type: 'string', default: 'switchboard,uws' },
      connections: { type: 'string', default: '4000' },
      rounds: { type: 'string', default: '8' },
    },
  });
  const servers = values.servers.split(',').map((s) => s.trim()) as ServerKind[];
  for (const kind of servers)
    if (!(SERVERS as readonly string[]).includes(kind))
      throw new Error(`unknown server ${kind}; one of ${SERVERS.join(', ')}`);
  const connections = Number(values.connections);
  const rounds = Number(values.rounds);
  if (!Number.isInteger(connections) || connections < 1) throw new Error('--connections: a positive integer');
  if (!Number.isInteger(rounds) || rounds < 2) throw new Error('--rounds: an integer of at least 2');
  const result = await connectAb({ servers, connections, rounds, timeoutMs: 30_000 });
  console.log(formatConnectAb(result));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
