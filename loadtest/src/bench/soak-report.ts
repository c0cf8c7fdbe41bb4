/**
 * The pure half of `make soak`: the churn schedule, what a sample holds,
 * least-squares slopes per hour after the warm-up, the verdict (flat or
 * not), the tables, and the few Prometheus figures read off the gateway.
 */

import type { MajorGc } from './gc-trace.js';
import { table } from './report.js';

/** One reading of the gateway and the clients, every `sampleSeconds`. */
export interface Sample {
  /** Seconds since the steady phase (churn and publishing) began. */
  seconds: number;
  /** Gateway VmRSS. */
  rssBytes: number;
  /** V8 heap used (switchboard_nodejs_heap_size_used_bytes). */
  heapUsedBytes: number;
  /** Of it, outside the young generation (new space: garbage until the next scavenge, up to 16 MB). */
  heapOldBytes: number;
  heapTotalBytes: number;
  /** Major GCs (mark-compact) so far, and the heap they left, the latest one's (0 before the first). */
  majorGcs: number;
  liveHeapBytes: number;
  /** Memory V8 accounts outside its heap (ArrayBuffers, Buffers). */
  externalBytes: number;
  /** Entries of /proc/<gateway pid>/fd. */
  fds: number;
  /** The gateway's switchboard_connections gauge (all transports). */
  gatewayConnections: number;
  /** Connections the soak holds open (subscribed or on their way). */
  clientConnections: number;
  /** Gateway CPU (user + system) over the last interval, percent of one core. */
  cpuPercent: number;
  /** The soak's own (the load generator's) likewise. */
  loadCpuPercent: number;
  /** Totals so far. */
  published: number;
  reconnects: number;
  dropped: number;
  delivered: number;
  lost: number;
  duplicated: number;
  /** Deliveries per second and publish-to-deliver p99 over the last interval. */
  deliveriesPerSecond: number;
  p99Ms: number;
}

/**
 * Connections to close and reopen at each churn tick so that `perMinute`
 * of `connections` reconnect each minute: whole connections, the fraction
 * carried to the next tick so that the average is exact.
 */
export class ChurnSchedule {
  private carry = 0;

  constructor(
    readonly connections: number,
    readonly perMinute: number,
    readonly tickSeconds: number,
  ) {}

  next(): number {
    const due = (this.connections * this.perMinute * this.tickSeconds) / 60 + this.carry;
    const whole = Math.floor(due);
    this.carry = due - whole;
    return whole;
  }
}

/** `k` distinct elements of `from` chosen at random (all of them when k ≥ length); `from` is reordered. */
export function pickRandom<T>(from: T[], k: number, random: () => number = Math.random): T[] {
  const n = Math.min(k, from.length);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(random() * (from.length - i));
    [from[i], from[j]] = [from[j]!, from[i]!];
  }
  return from.slice(0, n);
}

/** A small seeded generator (mulberry32): the same churn for the same seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

export interface Fit {
  /** Change per x unit. */
  slope: number;
  intercept: number;
  /** Standard error of the slope (0 with fewer than 3 points). */
  slopeError: number;
  mean: number;
  n: number;
}

/** Ordinary least squares y = intercept + slope · x. */
export function leastSquares(points: [number, number][]): Fit {
  const n = points.length;
  if (n === 0) return { slope: 0, intercept: 0, slopeError: 0, mean: 0, n };
  const mx = points.reduce((s, [x]) => s + x, 0) / n;
  const my = points.reduce((s, [, y]) => s + y, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (const [x, y] of points) {
    sxx += (x - mx) ** 2;
    sxy += (x - mx) * (y - my);
  }
  const slope = sxx > 0 ? sxy / sxx : 0;
  const intercept = my - slope * mx;
  let residuals = 0;
  for (const [x, y] of points) residuals += (y - intercept - slope * x) ** 2;
  const slopeError = n > 2 && sxx > 0 ? Math.sqrt(residuals / (n - 2) / sxx) : 0;
  return { slope, intercept, slopeError, mean: my, n };
}

/**
 * Where the warm-up ends, in seconds of the steady phase: after `warmup` of the run, or at the
 * first mark-compact if that comes later (it returns what the connect phase left behind: tens
 * of MB of RSS at once), but never after half the run.
 */
export function warmupEnd(endSeconds: number, warmup: number, firstMajorGcSeconds?: number): number {
  return Math.min(Math.max(warmup * endSeconds, firstMajorGcSeconds ?? 0), endSeconds / 2);
}

/** The points at or after `fromSeconds`; the last 3 when fewer are. */
export function after<T extends { seconds: number }>(points: T[], fromSeconds: number): T[] {
  const kept = points.filter((p) => p.seconds >= fromSeconds);
  return kept.length >= 3 ? kept : points.slice(-3);
}

export interface Bounds {
  /** Memory is flat when its slope is at most this fraction of its mean per hour ... */
  memoryFractionPerHour: number;
  /** ... or at most this many bytes per hour, whichever is larger. */
  memoryBytesPerHour: number;
  /** Descriptors beyond the connections may grow by at most this many per hour. */
  fdsPerHour: number;
}

/** 4 MB/h: with 19,000 clients and 10 % churn (114,000 reconnects an hour), 37 bytes per reconnect. */
export const BOUNDS: Bounds = {
  memoryFractionPerHour: 0.01,
  memoryBytesPerHour: 4 * 2 ** 20,
  fdsPerHour: 10,
};

export interface VerdictRow {
  name: string;
  unit: 'bytes' | 'fds' | 'count';
  /** Mean after the warm-up (for trends), or the figure judged. */
  mean: number;
  /** Per hour, after the warm-up (trends only). */
  slopePerHour?: number;
  slopeErrorPerHour?: number;
  /** Points fitted (trends only). */
  points?: number;
  /** The largest slope per hour (trends) or value (counts) that passes. */
  bound: number;
  pass: boolean;
  /** A trend whose standard error exceeds its bound, or of 2 points: the run was too short to tell. */
  uncertain?: boolean;
  /** The fitted line (seconds → value), for the plot. */
  fit?: { fromSeconds: number; toSeconds: number; intercept: number; slopePerSecond: number };
}

/** What the run ended with, for the count rows of the verdict. */
export interface Outcome {
  lost: number;
  duplicated: number;
  publishErrors: number;
  connectFailures: number;
  dropped: number;
  /** The gateway's gauge minus the clients the soak held at the end (after everything settled). */
  gaugeDifference: number;
}

/** A mark-compact as the soak saw it (within a second), with the gateway's RSS then. */
export type SeenGc = MajorGc & { seconds: number; rssBytes: number };

function trend(
  name: string,
  unit: VerdictRow['unit'],
  points: [number, number][],
  bound: (mean: number) => number,
): VerdictRow {
  const fit = leastSquares(points);
  const slopePerHour = fit.slope * 3600;
  const limit = bound(fit.mean);
  return {
    name,
    unit,
    mean: fit.mean,
    slopePerHour,
    slopeErrorPerHour: fit.slopeError * 3600,
    points: points.length,
    bound: limit,
    pass: slopePerHour <= limit,
    uncertain: points.length < 3 || fit.slopeError * 3600 > limit,
    fit: {
      fromSeconds: points[0]?.[0] ?? 0,
      toSeconds: points.at(-1)?.[0] ?? 0,
      intercept: fit.intercept,
      slopePerSecond: fit.slope,
    },
  };
}

/**
 * Flat after the warm-up (from `fromSeconds`): RSS and JS heap slopes at most max(1 % of their
 * mean, 4 MB) per hour; fds beyond the gateway's connections at most 10 more per hour; nothing
 * lost, duplicated, refused or dropped, and the connections gauge equal to what the clients hold.
 *
 * Memory is read at the same point of every GC cycle: right after each mark-compact (the heap
 * V8 says it left, and RSS within a second of it). Between mark-compacts both saw-tooth with
 * garbage, which a fit through every sample would read as growth or shrinkage depending on where
 * in a tooth the run stops. With fewer than 2 mark-compacts after the warm-up, the samples are
 * fitted instead (RSS, and the heap outside the young generation).
 */
export function judge(
  samples: Sample[],
  gcs: SeenGc[],
  fromSeconds: number,
  outcome: Outcome,
  bounds = BOUNDS,
): VerdictRow[] {
  const kept = after(samples, fromSeconds);
  const keptGcs = gcs.filter((g) => g.seconds >= fromSeconds);
  const cycles = keptGcs.length >= 2;
  const memory = (mean: number) => Math.max(bounds.memoryFractionPerHour * mean, bounds.memoryBytesPerHour);
  const count = (name: string, value: number): VerdictRow => ({
    name,
    unit: 'count',
    mean: value,
    bound: 0,
    pass: value === 0,
  });
  return [
    cycles
      ? trend(
          'gateway RSS after each major GC',
          'bytes',
          keptGcs.map((g) => [g.seconds, g.rssBytes]),
          memory,
        )
      : trend(
          'gateway RSS (sampled)',
          'bytes',
          kept.map((s) => [s.seconds, s.rssBytes]),
          memory,
        ),
    cycles
      ? trend(
          'gateway JS heap after each major GC',
          'bytes',
          keptGcs.map((g) => [g.seconds, g.afterBytes]),
          memory,
        )
      : trend(
          'gateway JS heap outside the young generation (sampled)',
          'bytes',
          kept.map((s) => [s.seconds, s.heapOldBytes]),
          memory,
        ),
    trend(
      'gateway fds − connections',
      'fds',
      kept.map((s) => [s.seconds, s.fds - s.gatewayConnections]),
      () => bounds.fdsPerHour,
    ),
    count('publications lost', outcome.lost),
    count('publications duplicated', outcome.duplicated),
    count('publish errors', outcome.publishErrors),
    count('connect or subscribe failures', outcome.connectFailures),
    count('connections dropped by the gateway', outcome.dropped),
    count('connections gauge − clients held, at the end', Math.abs(outcome.gaugeDifference)),
  ];
}

/**
 * The Prometheus text format's value of `name`, summed over its series (label-less or not), or
 * over those with `label` (`space="new"`); NaN when absent.
 */
export function metricValue(text: string, name: string, label?: string): number {
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== ' ' && line[name.length] !== '{')) continue;
    if (label !== undefined && !line.slice(name.length, line.lastIndexOf(' ')).includes(label)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) {
      sum += value;
      found = true;
    }
  }
  return found ? sum : NaN;
}

/** About `rows` samples spread evenly over the run, always the first and the last. */
export function thin<T>(samples: T[], rows: number): T[] {
  if (samples.length <= rows) return samples;
  const picked = new Set<number>();
  for (let k = 0; k < rows; k++) picked.add(Math.round((k * (samples.length - 1)) / (rows - 1)));
  return [...picked].sort((a, b) => a - b).map((i) => samples[i]!);
}

/** Minute marks for a run of `seconds`: a round step, at most 8 marks after 0. */
export function timeTicks(seconds: number): number[] {
  const minutes = seconds / 60;
  const step = [0.25, 0.5, 1, 2, 5, 10, 15, 30, 60].find((s) => minutes / s <= 8) ?? Math.ceil(minutes / 8);
  const ticks: number[] = [];
  for (let m = 0; m <= minutes + 1e-9; m += step) ticks.push(+m.toFixed(2));
  return ticks;
}

const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
const signed = (v: number, digits: number) => `${v >= 0 ? '+' : ''}${v.toFixed(digits)}`;

export function formatSamples(samples: Sample[], rows = 16): string {
  return table(
    [
      'min',
      'clients',
      'gw conns',
      'RSS MB',
      'heap MB',
      'old MB',
      'after GC MB',
      'fds',
      'fds−conns',
      'gw CPU %',
      'load CPU %',
      'published',
      'deliveries/s',
      'p99 ms',
      'lost',
      'dup',
      'reconnects',
    ],
    thin(samples, rows).map((s) => [
      (s.seconds / 60).toFixed(1),
      String(s.clientConnections),
      String(s.gatewayConnections),
      mb(s.rssBytes),
      mb(s.heapUsedBytes),
      mb(s.heapOldBytes),
      s.majorGcs > 0 ? mb(s.liveHeapBytes) : '–',
      String(s.fds),
      String(s.fds - s.gatewayConnections),
      s.cpuPercent.toFixed(0),
      s.loadCpuPercent.toFixed(0),
      String(s.published),
      s.deliveriesPerSecond.toFixed(0),
      s.p99Ms.toFixed(1),
      String(s.lost),
      String(s.duplicated),
      String(s.reconnects),
    ]),
  );
}

function describe(row: VerdictRow, value: number, digits = 1): string {
  if (row.unit === 'bytes') return `${signed(value / 2 ** 20, 2)} MB`;
  return signed(value, digits);
}

export function formatVerdict(rows: VerdictRow[], fromSeconds: number): string {
  const trends = rows.filter((r) => r.slopePerHour !== undefined);
  const counts = rows.filter((r) => r.slopePerHour === undefined);
  return [
    `Trends after the warm-up (from minute ${(fromSeconds / 60).toFixed(1)}), least-squares slope per hour`,
    table(
      ['', 'points', 'mean', 'slope per hour', '± std error', 'bound per hour', 'what'],
      trends.map((r) => [
        r.pass ? 'PASS' : 'MISS',
        String(r.points),
        r.unit === 'bytes' ? `${mb(r.mean)} MB` : r.mean.toFixed(1),
        describe(r, r.slopePerHour!),
        r.unit === 'bytes' ? `${mb(r.slopeErrorPerHour!)} MB` : r.slopeErrorPerHour!.toFixed(1),
        r.unit === 'bytes' ? `≤ ${mb(r.bound)} MB` : `≤ ${r.bound}`,
        r.uncertain ? `${r.name} (too short to tell: error above the bound)` : r.name,
      ]),
    ),
    '',
    table(
      ['', 'count', 'what'],
      counts.map((r) => [r.pass ? 'PASS' : 'MISS', String(r.mean), r.name]),
    ),
  ].join('\n');
}
