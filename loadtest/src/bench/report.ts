/**
 * Tables side by side with ratios, and the issue's targets as PASS/MISS with
 * the margin.
 */

import type { DeliveryRun, LatencyResult, ServerResult } from './measure.js';
import { LABELS, type ServerKind } from './servers.js';

export interface TargetRow {
  name: string;
  target: string;
  measured: string;
  pass: boolean;
  /** Positive: better than the target by this fraction; negative: missed by it. */
  margin: number;
}

export const kb = (bytes: number) => `${(bytes / 1024).toFixed(2)} KB`;
const count = (v: number) => (v >= 10_000 ? `${(v / 1000).toFixed(0)}k` : v.toFixed(0));
const ratio = (a: number, b: number) => (a > 0 && b > 0 ? `${(a / b).toFixed(2)}×` : '–');

/** Right-aligned columns under a header and a rule. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** One row per level, one column per server, then Switchboard's ratio to each peer. */
function sideBySide(
  title: string,
  firstColumn: string,
  results: ServerResult[],
  points: (r: ServerResult) => { n: number; value: number }[],
  format: (v: number) => string,
): string {
  const sb = results.find((r) => r.kind === 'switchboard');
  const peers = results.filter((r) => r.kind !== 'switchboard');
  const levels = Math.max(...results.map((r) => points(r).length));
  const rows: string[][] = [];
  for (let i = 0; i < levels; i++) {
    const n = Math.max(...results.map((r) => points(r)[i]?.n ?? 0));
    const value = (r: ServerResult | undefined) => (r ? (points(r)[i]?.value ?? 0) : 0);
    rows.push([
      count(n),
      ...results.map((r) => (points(r)[i] ? format(value(r)) : '–')),
      ...(sb ? peers.map((p) => ratio(value(sb), value(p))) : []),
    ]);
  }
  const header = [
    firstColumn,
    ...results.map((r) => LABELS[r.kind]),
    ...(sb ? peers.map((p) => `SB ÷ ${LABELS[p.kind]}`) : []),
  ];
  return `${title}\n${table(header, rows)}\n`;
}

const deliveries = (runs: DeliveryRun[]) => runs.map((r) => ({ n: r.n, value: r.perCpuSecond }));

export function formatResults(results: ServerResult[], latencies: LatencyResult[]): string {
  const out = [
    sideBySide(
      'Memory per idle connection (server RSS growth / connections; connected, HS256-authenticated, one subscription)',
      'connections',
      results,
      (r) => r.memory.map((m) => ({ n: m.connections, value: m.bytesPerConnection })),
      kb,
    ),
    sideBySide(
      'Fan-out, 1 channel × N subscribers: deliveries per server CPU-second',
      'subscribers',
      results,
      (r) => deliveries(r.fanout),
      (v) => v.toFixed(0),
    ),
    sideBySide(
      'Fan-out, N channels × 1 subscriber: deliveries per server CPU-second (one publish command each)',
      'channels',
      results,
      (r) => deliveries(r.channels),
      (v) => v.toFixed(0),
    ),
    `Connect rate (HS256 token verified, one subscription), ramp to the largest level\n${table(
      ['server', 'connections', 'failed', 'wall s', 'connects/s', 'server CPU s', 'connects/CPU-s'],
      results.map((r) => [
        LABELS[r.kind],
        String(r.connect.connections),
        String(r.connect.failed),
        r.connect.seconds.toFixed(2),
        r.connect.perSecond.toFixed(0),
        r.connect.cpuSeconds.toFixed(2),
        r.connect.perCpuSecond.toFixed(0),
      ]),
    )}\n`,
    `Delivery check (all runs): lost (never delivered), duplicated and reordered publications\n${table(
      [
        'server',
        'delivered',
        'expected',
        'lost',
        'duplicated',
        'reordered',
        'publish errors',
        'connection errors and closes',
      ],
      results.map((r) => {
        const runs = [...r.fanout, ...r.channels];
        const sum = (f: (d: DeliveryRun) => number) => String(runs.reduce((a, d) => a + f(d), 0));
        return [
          LABELS[r.kind],
          sum((d) => d.delivered),
          sum((d) => d.expected),
          sum((d) => d.lost),
          sum((d) => d.duplicated),
          sum((d) => d.reordered),
          sum((d) => d.publishErrors),
          Object.entries(r.errors)
            .map(([what, n]) => `${what}: ${n}`)
            .join(', ') || 'none',
        ];
      }),
    )}\n`,
  ];
  if (latencies.length > 0) {
    out.push(
      `Publish-to-deliver latency, Switchboard, fixed load\n${table(
        [
          'setup',
          'gateways',
          'subscribers',
          'offered/s',
          'delivered/s',
          'lost',
          'p50 ms',
          'p99 ms',
          'p999 ms',
        ],
        latencies.map((l) => [
          l.setup === 'cluster' ? 'HAProxy + NATS' : 'embedded',
          String(l.gateways),
          String(l.n),
          l.offeredDeliveryRate.toFixed(0),
          l.perSecond.toFixed(0),
          String(l.lost),
          l.p50.toFixed(2),
          l.p99.toFixed(2),
          l.p999.toFixed(2),
        ]),
      )}\n`,
    );
  }
  return out.join('\n');
}

function target(
  name: string,
  goal: string,
  measured: number,
  limit: number,
  atMost: boolean,
  unit: (v: number) => string,
): TargetRow {
  const pass = atMost ? measured <= limit : measured >= limit;
  const margin = atMost ? (limit - measured) / limit : (measured - limit) / limit;
  return { name, target: goal, measured: unit(measured), pass, margin };
}

/** The issue's targets, judged on what was measured (rows are left out when their data is missing). */
export function judgeTargets(results: ServerResult[], latencies: LatencyResult[]): TargetRow[] {
  const of = (kind: ServerKind) => results.find((r) => r.kind === kind);
  const sb = of('switchboard');
  const rows: TargetRow[] = [];
  if (!sb) return rows;
  const closestTo = <T extends { n: number }>(points: T[], n: number) =>
    points.reduce<T | undefined>(
      (best, p) => (!best || Math.abs(p.n - n) < Math.abs(best.n - n) ? p : best),
      undefined,
    );
  const memory = closestTo(
    sb.memory.map((m) => ({ ...m, n: m.connections })),
    10_000,
  );
  if (memory) {
    rows.push(
      target(
        `idle connection memory at ${count(memory.n)} connections`,
        '≤ 6 KB',
        memory.bytesPerConnection,
        6 * 1024,
        true,
        kb,
      ),
    );
  }
  const largest = sb.fanout.at(-1);
  for (const [peer, factor] of [
    ['uws', 0.7],
    ['socketio', 10],
  ] as const) {
    const p = of(peer)?.fanout.find((r) => r.n === largest?.n) ?? of(peer)?.fanout.at(-1);
    if (largest && p && p.perCpuSecond > 0) {
      rows.push(
        target(
          `fan-out 1×${count(largest.n)} deliveries/CPU-s vs ${LABELS[peer]}`,
          `≥ ${factor}×`,
          largest.perCpuSecond / p.perCpuSecond,
          factor,
          false,
          (v) => `${v.toFixed(2)}×`,
        ),
      );
    }
  }
  const cluster = latencies
    .filter((l) => l.setup === 'cluster')
    .reduce<LatencyResult | undefined>(
      (best, l) =>
        !best || Math.abs(l.offeredDeliveryRate - 20_000) < Math.abs(best.offeredDeliveryRate - 20_000)
          ? l
          : best,
      undefined,
    );
  if (cluster) {
    rows.push(
      target(
        `publish→deliver p99, HAProxy + NATS + ${cluster.gateways} gateways at ${count(cluster.offeredDeliveryRate)} deliveries/s`,
        '< 10 ms',
        cluster.p99,
        10,
        true,
        (v) => `${v.toFixed(2)} ms`,
      ),
    );
  }
  rows.push(
    target(
      'connects per second per gateway (HS256), per gateway CPU-second',
      '≥ 3000/s',
      sb.connect.perCpuSecond,
      3000,
      false,
      (v) => `${v.toFixed(0)}/s`,
    ),
  );
  return rows;
}

export function formatTargets(rows: TargetRow[]): string {
  return `Targets\n${table(
    ['', 'target', 'measured', 'margin', 'what'],
    rows.map((r) => [
      r.pass ? 'PASS' : 'MISS',
      r.target,
      r.measured,
      `${r.margin >= 0 ? '+' : ''}${(r.margin * 100).toFixed(0)}%`,
      r.name,
    ]),
  )}\n`;
}
