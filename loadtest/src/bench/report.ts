/**
 * Tables side by side with ratios, and the issue's targets as PASS/MISS with
 * the margin.
 */

import { HOT_LABELS, HOT_VARIANTS, type HotResult, type HotVariant } from './hot.js';
import type { DeliveryRun, LatencyResult, ServerResult } from './measure.js';
import { LABELS, type ServerKind } from './servers.js';

export interface TargetRow {
  name: string;
  target: string;
  measured: string;
  pass: boolean;
  /** Positive: better than the target by this fraction; negative: missed by it. */
  margin: number;
  /** The figures behind a ratio or a difference (Switchboard's and bare uWS's, say). */
  detail: string;
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
  detail = '',
): TargetRow {
  const pass = atMost ? measured <= limit : measured >= limit;
  const margin = atMost ? (limit - measured) / limit : (measured - limit) / limit;
  return { name, target: goal, measured: unit(measured), pass, margin, detail };
}

const times = (v: number) => `${v.toFixed(2)}×`;
const ms = (v: number) => `${v.toFixed(2)} ms`;
const perCpu = (v: number) => `${count(v)}/CPU-s`;

/** Switchboard's figure ÷ bare uWS's, as a target row: left out when either is missing or 0. */
function versusUws(
  name: string,
  goal: string,
  factor: number,
  atMost: boolean,
  sb: number | undefined,
  uws: number | undefined,
  unit: (v: number) => string,
): TargetRow[] {
  if (!sb || !uws) return [];
  return [
    target(name, goal, sb / uws, factor, atMost, times, `Switchboard ${unit(sb)}, bare uWS ${unit(uws)}`),
  ];
}

/** The point measured at `n` (or the nearest), for the same level in another server's results. */
function at<T>(points: T[], n: number, nOf: (p: T) => number): T | undefined {
  return points.reduce<T | undefined>(
    (best, p) => (!best || Math.abs(nOf(p) - n) < Math.abs(nOf(best) - n) ? p : best),
    undefined,
  );
}

/**
 * Issue 14's targets, judged on what was measured, Switchboard against bare
 * uWS measured in the same run; rows whose data is missing are left out.
 */
export function judgeTargets(
  results: ServerResult[],
  latencies: LatencyResult[],
  hot: HotResult[] = [],
): TargetRow[] {
  const of = (kind: ServerKind) => results.find((r) => r.kind === kind);
  const sb = of('switchboard');
  const uws = of('uws');
  const rows: TargetRow[] = [];
  const memory = sb?.memory.at(-1);
  if (sb && memory) {
    const level = count(memory.connections);
    rows.push(
      target(
        `RSS per idle connection at ${level} (authenticated, subscribed)`,
        '≤ 2.00 KB',
        memory.bytesPerConnection,
        2 * 1024,
        true,
        kb,
      ),
    );
    const peer = uws && at(uws.memory, memory.connections, (m) => m.connections);
    rows.push(
      ...versusUws(
        `RSS per idle connection at ${level} vs bare uWS`,
        '≤ 1.25×',
        1.25,
        true,
        memory.bytesPerConnection,
        peer?.bytesPerConnection,
        kb,
      ),
    );
  }
  const fanout = sb?.fanout.at(-1);
  if (fanout) {
    rows.push(
      ...versusUws(
        `fan-out 1 channel × ${count(fanout.n)}, deliveries/CPU-s vs bare uWS`,
        '≥ 1.00×',
        1,
        false,
        fanout.perCpuSecond,
        uws && at(uws.fanout, fanout.n, (r) => r.n)?.perCpuSecond,
        perCpu,
      ),
    );
  }
  const channels = sb?.channels.at(-1);
  if (channels) {
    rows.push(
      ...versusUws(
        `fan-out ${count(channels.n)} channels × 1 (a client publish each), deliveries/CPU-s vs bare uWS`,
        '≥ 0.85×',
        0.85,
        false,
        channels.perCpuSecond,
        uws && at(uws.channels, channels.n, (r) => r.n)?.perCpuSecond,
        perCpu,
      ),
    );
  }
  if (sb) {
    rows.push(
      ...versusUws(
        'connects/CPU-s with HS256 vs bare uWS',
        '≥ 0.90×',
        0.9,
        false,
        sb.connect.perCpuSecond,
        uws?.connect.perCpuSecond,
        (v) => `${v.toFixed(0)}/CPU-s`,
      ),
      target(
        'connects per gateway CPU-second (HS256)',
        '≥ 3000/s',
        sb.connect.perCpuSecond,
        3000,
        false,
        (v) => `${v.toFixed(0)}/s`,
      ),
    );
  }
  const cluster = at(
    latencies.filter((l) => l.setup === 'cluster'),
    20_000,
    (l) => l.offeredDeliveryRate,
  );
  if (cluster) {
    rows.push(
      target(
        `publish→deliver p99, HAProxy + NATS + ${cluster.gateways} gateways at ${count(cluster.offeredDeliveryRate)} deliveries/s`,
        '< 10 ms',
        cluster.p99,
        10,
        true,
        ms,
      ),
    );
  }
  const variant = (v: HotVariant) => hot.find((h) => h.variant === v);
  const on = variant('switchboard-coalesce');
  const off = variant('switchboard');
  const bare = variant('uws');
  const scenario = (h: HotResult) => `hot channel 1 × ${count(h.subscribers)} at ${count(h.offeredRate)}/s`;
  // The setting took only if frames carried more than one push (at 2 pushes per window, well above 1).
  const uncoalesced = (h: HotResult) =>
    h.linesPerMessage < 1.05
      ? ` (no coalescing seen: ${h.linesPerMessage.toFixed(2)} pushes per message)`
      : '';
  if (on) {
    rows.push(
      ...versusUws(
        `${scenario(on)}, deliveries/CPU-s with coalescing (${on.coalesceWindowMs} ms) vs bare uWS`,
        '≥ 2.00×',
        2,
        false,
        on.perCpuSecond,
        bare?.perCpuSecond,
        perCpu,
      ).map((r) => ({ ...r, detail: r.detail + uncoalesced(on) })),
    );
  }
  if (on && off) {
    const overloaded = [on, off].filter((h) => !h.sustained).map((h) => HOT_LABELS[h.variant]);
    rows.push(
      target(
        `${scenario(on)}, p99 publish→deliver added by coalescing (${on.coalesceWindowMs} ms)`,
        '≤ 2.00 ms',
        on.p99 - off.p99,
        2,
        true,
        ms,
        `with ${ms(on.p99)}, without ${ms(off.p99)}` +
          (overloaded.length > 0 ? ` (not sustained: ${overloaded.join(', ')})` : '') +
          uncoalesced(on),
      ),
    );
  }
  return rows;
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(2)} MB`;

/** The hot channel's variants side by side, one column each, and Switchboard's ratios to bare uWS. */
export function formatHot(hot: HotResult[]): string {
  if (hot.length === 0) return '';
  const runs = HOT_VARIANTS.map((v) => hot.find((h) => h.variant === v)).filter(
    (h): h is HotResult => h !== undefined,
  );
  const first = runs[0]!;
  const bare = runs.find((h) => h.variant === 'uws');
  const row = (name: string, cell: (h: HotResult) => string) => [name, ...runs.map(cell)];
  const rows = [
    row('coalescing window', (h) => (h.coalesceWindowMs === undefined ? '–' : `${h.coalesceWindowMs} ms`)),
    row('subscribers', (h) => String(h.subscribers)),
    row('delivered / expected', (h) => `${h.delivered} / ${h.expected}`),
    row('lost / duplicated / reordered', (h) => `${h.lost} / ${h.duplicated} / ${h.reordered}`),
    row('publish errors', (h) => String(h.publishErrors)),
    row('wall s (planned)', (h) => `${h.seconds.toFixed(2)} (${h.plannedSeconds.toFixed(2)})`),
    row('deliveries/s', (h) => h.perSecond.toFixed(0)),
    row('server CPU s', (h) => h.cpuSeconds.toFixed(2)),
    row('server CPU, share of its core', (h) => `${(h.serverCpu * 100).toFixed(0)} %`),
    row('deliveries per server CPU-second', (h) => h.perCpuSecond.toFixed(0)),
    row('÷ bare uWS', (h) => (bare ? ratio(h.perCpuSecond, bare.perCpuSecond) : '–')),
    row(
      "server's core: busy, of which softirq",
      (h) => `${(h.serverCoreBusy * 100).toFixed(0)} %, ${(h.serverCoreSoftirq * 100).toFixed(0)} %`,
    ),
    row('deliveries per (server CPU + softirq) s', (h) => h.perCpuSecondWithSoftirq.toFixed(0)),
    row('÷ bare uWS ', (h) => (bare ? ratio(h.perCpuSecondWithSoftirq, bare.perCpuSecondWithSoftirq) : '–')),
    row('pushes per WebSocket message', (h) => h.linesPerMessage.toFixed(2)),
    row('WebSocket messages per TCP read', (h) => h.messagesPerRead.toFixed(1)),
    row('p50 ms', (h) => h.p50.toFixed(2)),
    row('p99 ms', (h) => h.p99.toFixed(2)),
    row('p999 ms', (h) => h.p999.toFixed(2)),
    row('latency samples', (h) => String(h.latencySamples)),
    row('drain s (last publish reply → last delivery)', (h) => h.drainSeconds.toFixed(2)),
    row('load generator CPU, share of core 0', (h) => `${(h.generatorCpu * 100).toFixed(0)} %`),
    row('most bytes unread by the generator (kernel)', (h) => mb(h.maxGeneratorBacklogBytes)),
    row("most bytes in the server's send queues (kernel)", (h) => mb(h.maxServerSendQueueBytes)),
    row('sustained', (h) => (h.sustained ? 'yes' : 'no')),
    row(
      'connection errors and closes',
      (h) =>
        Object.entries(h.errors)
          .map(([what, n]) => `${what}: ${n}`)
          .join(', ') || 'none',
    ),
  ];
  // The names left-aligned: padded to one width, table's right alignment leaves them so.
  const width = Math.max(...rows.map((r) => r[0]!.length));
  for (const r of rows) r[0] = r[0]!.padEnd(width);
  return (
    `Hot channel: 1 channel × ${first.subscribers} subscribers × ${first.offeredRate} publications/s ` +
    `(${first.offeredDeliveryRate.toLocaleString('en-US')} deliveries/s offered) for ` +
    `${first.plannedSeconds.toFixed(1)} s; lean subscribers\n` +
    `${table([''.padEnd(width), ...runs.map((h) => HOT_LABELS[h.variant])], rows)}\n`
  );
}

export function formatTargets(rows: TargetRow[]): string {
  return `Targets (issue 14; Switchboard ÷ bare uWS measured in the same run)\n${table(
    ['', 'target', 'measured', 'margin', 'what', 'figures'],
    rows.map((r) => [
      r.pass ? 'PASS' : 'MISS',
      r.target,
      r.measured,
      `${r.margin >= 0 ? '+' : ''}${(r.margin * 100).toFixed(0)}%`,
      r.name,
      r.detail,
    ]),
  )}\n`;
}
