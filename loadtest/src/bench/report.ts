/**
 * Tables side by side with ratios, and the issue's targets as PASS/MISS with
 * the margin.
 */

import {
  HOT_LABELS,
  medianP99Run,
  HOT_SCENARIOS,
  HOT_VARIANTS,
  type HotResult,
  type HotScenario,
  type HotVariant,
} from './hot.js';
import type { ConnectRun, DeliveryRun, LatencyResult, MemoryPoint, ServerResult } from './measure.js';
import { PUSHER_LABELS, type PusherKind, type PusherResults } from './pusher.js';
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
/** a ÷ b as a ratio (1.23×), '–' when either is none. */
export const ratio = (a: number, b: number) => (a > 0 && b > 0 ? `${(a / b).toFixed(2)}×` : '–');

/** Right-aligned columns under a header and a rule. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/** One row per level, one column per server, then Switchboard's ratio to each peer. */
function sideBySide<R extends { kind: string }>(
  title: string,
  firstColumn: string,
  results: R[],
  points: (r: R) => { n: number; value: number }[],
  format: (v: number) => string,
  label: (r: R) => string,
): string {
  const sb = results.find((r) => r.kind === 'switchboard');
  const peers = results.filter((r) => r.kind !== 'switchboard');
  const levels = Math.max(...results.map((r) => points(r).length));
  const rows: string[][] = [];
  for (let i = 0; i < levels; i++) {
    const n = Math.max(...results.map((r) => points(r)[i]?.n ?? 0));
    const value = (r: R | undefined) => (r ? (points(r)[i]?.value ?? 0) : 0);
    rows.push([
      count(n),
      ...results.map((r) => (points(r)[i] ? format(value(r)) : '–')),
      ...(sb ? peers.map((p) => ratio(value(sb), value(p))) : []),
    ]);
  }
  const header = [firstColumn, ...results.map(label), ...(sb ? peers.map((p) => `SB ÷ ${label(p)}`) : [])];
  return `${title}\n${table(header, rows)}\n`;
}

const serverLabel = (r: ServerResult) => LABELS[r.kind];

const deliveries = (runs: DeliveryRun[]) => runs.map((r) => ({ n: r.n, value: r.perCpuSecond }));

const errorList = (errors: Record<string, number>) =>
  Object.entries(errors)
    .map(([what, n]) => `${what}: ${n}`)
    .join(', ') || 'none';

const CONNECT_HEADER = [
  'connections',
  'warm-up',
  'warm-up connects/CPU-s',
  'failed',
  'wall s',
  'connects/s',
  'server CPU s',
  'connects/CPU-s',
  'main thread CPU s',
  'connects/main-thread CPU-s',
];
const connectCells = (c: ConnectRun) => [
  String(c.connections),
  String(c.warmup),
  c.warmupPerCpuSecond?.toFixed(0) ?? '–',
  String(c.failed),
  c.seconds.toFixed(2),
  c.perSecond.toFixed(0),
  c.cpuSeconds.toFixed(2),
  c.perCpuSecond.toFixed(0),
  c.mainThreadCpuSeconds?.toFixed(2) ?? '–',
  c.perMainThreadCpuSecond?.toFixed(0) ?? '–',
];

/** The delivery check's columns after the server's: sums over `runs`, then the connections' errors. */
const checkHeader = (publishErrors: string) => [
  'delivered',
  'expected',
  'lost',
  'duplicated',
  'reordered',
  publishErrors,
  'connection errors and closes',
];
function checkCells(runs: DeliveryRun[], errors: Record<string, number>): string[] {
  const sum = (f: (d: DeliveryRun) => number) => String(runs.reduce((a, d) => a + f(d), 0));
  return [
    sum((d) => d.delivered),
    sum((d) => d.expected),
    sum((d) => d.lost),
    sum((d) => d.duplicated),
    sum((d) => d.reordered),
    sum((d) => d.publishErrors),
    errorList(errors),
  ];
}

export function formatResults(results: ServerResult[], latencies: LatencyResult[]): string {
  const out = [
    sideBySide(
      'Memory per idle connection (server RSS growth / connections; connected, HS256-authenticated, one subscription)',
      'connections',
      results,
      (r) => r.memory.map((m) => ({ n: m.connections, value: m.bytesPerConnection })),
      kb,
      serverLabel,
    ),
    sideBySide(
      'Fan-out, 1 channel × N subscribers: deliveries per server CPU-second',
      'subscribers',
      results,
      (r) => deliveries(r.fanout),
      (v) => v.toFixed(0),
      serverLabel,
    ),
    sideBySide(
      'Fan-out, N channels × 1 subscriber: deliveries per server CPU-second (one publish command each)',
      'channels',
      results,
      (r) => deliveries(r.channels),
      (v) => v.toFixed(0),
      serverLabel,
    ),
    `Connect rate (HS256 token verified, one subscription), ramp to the largest level; the levels before the warm-up's count is open are timed apart\n${table(
      ['server', ...CONNECT_HEADER],
      results.map((r) => [LABELS[r.kind], ...connectCells(r.connect)]),
    )}\n`,
    `Delivery check (all runs): lost (never delivered), duplicated and reordered publications\n${table(
      ['server', ...checkHeader('publish errors')],
      results.map((r) => [LABELS[r.kind], ...checkCells([...r.fanout, ...r.channels], r.errors)]),
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

/** Switchboard's figure ÷ a peer's, as a target row: left out when either is missing or 0. */
function versus(
  peer: string,
  name: string,
  goal: string,
  factor: number,
  atMost: boolean,
  sb: number | undefined,
  other: number | undefined,
  unit: (v: number) => string,
): TargetRow[] {
  if (!sb || !other) return [];
  return [
    target(name, goal, sb / other, factor, atMost, times, `Switchboard ${unit(sb)}, ${peer} ${unit(other)}`),
  ];
}

/** Switchboard's figure ÷ bare uWS's, as a target row: left out when either is missing or 0. */
const versusUws = (
  name: string,
  goal: string,
  factor: number,
  atMost: boolean,
  sb: number | undefined,
  uws: number | undefined,
  unit: (v: number) => string,
): TargetRow[] => versus('bare uWS', name, goal, factor, atMost, sb, uws, unit);

/** The point measured at `n` (or the nearest), for the same level in another server's results. */
function at<T>(points: T[], n: number, nOf: (p: T) => number): T | undefined {
  return points.reduce<T | undefined>(
    (best, p) => (!best || Math.abs(nOf(p) - n) < Math.abs(nOf(best) - n) ? p : best),
    undefined,
  );
}

/** A ratio row read off two servers' series: Switchboard's largest level ÷ the peer's nearest one. */
function atLargest<P>(row: {
  peer: string;
  mine: P[] | undefined;
  theirs: P[] | undefined;
  n: (p: P) => number;
  value: (p: P) => number;
  /** The row's name, given the level (and the peer's level where it is another). */
  name: (level: string) => string;
  goal: string;
  factor: number;
  atMost: boolean;
  unit: (v: number) => string;
}): TargetRow[] {
  const last = row.mine?.at(-1);
  if (last === undefined) return [];
  const other = row.theirs && at(row.theirs, row.n(last), row.n);
  const level =
    count(row.n(last)) +
    (other && row.n(other) !== row.n(last) ? ` (${row.peer}: ${count(row.n(other))})` : '');
  return versus(
    row.peer,
    row.name(level),
    row.goal,
    row.factor,
    row.atMost,
    row.value(last),
    other && row.value(other),
    row.unit,
  );
}

const bytesPer = (m: MemoryPoint) => m.bytesPerConnection;
const connections = (m: MemoryPoint) => m.connections;
const nOf = (r: DeliveryRun) => r.n;
const perCpuOf = (r: DeliveryRun) => r.perCpuSecond;

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
  }
  const uwsRow = { peer: 'bare uWS', atMost: false, factor: 1 };
  rows.push(
    ...atLargest({
      ...uwsRow,
      mine: sb?.memory,
      theirs: uws?.memory,
      n: connections,
      value: bytesPer,
      name: (level) => `RSS per idle connection at ${level} vs bare uWS`,
      goal: '≤ 1.25×',
      factor: 1.25,
      atMost: true,
      unit: kb,
    }),
    ...atLargest({
      ...uwsRow,
      mine: sb?.fanout,
      theirs: uws?.fanout,
      n: nOf,
      value: perCpuOf,
      name: (n) => `fan-out 1 channel × ${n}, deliveries/CPU-s vs bare uWS`,
      goal: '≥ 1.00×',
      unit: perCpu,
    }),
    ...atLargest({
      ...uwsRow,
      mine: sb?.channels,
      theirs: uws?.channels,
      n: nOf,
      value: perCpuOf,
      name: (n) => `fan-out ${n} channels × 1 (a client publish each), deliveries/CPU-s vs bare uWS`,
      goal: '≥ 0.85×',
      factor: 0.85,
      unit: perCpu,
    }),
  );
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
  const variant = (v: HotVariant, scenario: HotScenario) =>
    medianP99Run(hot.filter((h) => h.variant === v && h.scenario === scenario));
  const on = variant('switchboard-coalesce', 'latency');
  const off = variant('switchboard', 'latency');
  const scenario = (h: HotResult) => `hot channel 1 × ${count(h.subscribers)} at ${count(h.offeredRate)}/s`;
  // The setting took only if frames carried more than one push (at 2 pushes per window, well above 1).
  const uncoalesced = (h: HotResult) =>
    h.linesPerMessage < 1.05
      ? ` (no coalescing seen: ${h.linesPerMessage.toFixed(2)} pushes per message)`
      : '';
  // At the issue's size, against bare uWS's best figure of the run: overloaded, it spends more per delivery.
  const loaded = variant('switchboard-coalesce', 'throughput') ?? on;
  const bares = hot.filter((h) => h.variant === 'uws');
  const bare = bares.reduce<HotResult | undefined>(
    (best, h) => (!best || h.perCpuSecond > best.perCpuSecond ? h : best),
    undefined,
  );
  if (loaded) {
    // Which of bare uWS's runs gave its best, when it ran at more than one size.
    const best =
      bare && bares.length > 1
        ? ` (its best: ${count(bare.subscribers)} subscribers; ` +
          bares
            .filter((h) => h !== bare)
            .map(
              (h) => `${perCpu(h.perCpuSecond)} at ${count(h.subscribers)}${h.sustained ? '' : ', behind'}`,
            )
            .join('; ') +
          ')'
        : '';
    rows.push(
      ...versusUws(
        `${scenario(loaded)}, deliveries/CPU-s with coalescing (${loaded.coalesceWindowMs} ms) vs bare uWS`,
        '≥ 2.00×',
        2,
        false,
        loaded.perCpuSecond,
        bare?.perCpuSecond,
        perCpu,
      ).map((r) => ({ ...r, detail: r.detail + best + uncoalesced(loaded) })),
    );
  }
  if (on && off) {
    const overloaded = [on, off].filter((h) => !h.sustained).map((h) => HOT_LABELS[h.variant]);
    const added = target(
      `${scenario(on)}, p99 publish→deliver added by coalescing (${on.coalesceWindowMs} ms)`,
      '≤ 2.00 ms',
      on.p99 - off.p99,
      2,
      true,
      ms,
      `with ${ms(on.p99)}, without ${ms(off.p99)}` +
        (overloaded.length > 0 ? ` (not sustained: ${overloaded.join(', ')})` : '') +
        uncoalesced(on),
    );
    // A run that fell behind has a p99 of its backlog: what coalescing adds cannot be told, so it does not pass.
    rows.push(overloaded.length > 0 ? { ...added, pass: false } : added);
  }
  return rows;
}

const mb = (bytes: number) => `${(bytes / 2 ** 20).toFixed(2)} MB`;

/** The hot channel's runs, a table per scenario: its variants side by side, and Switchboard's ratios to bare uWS. */
export function formatHot(hot: HotResult[]): string {
  return HOT_SCENARIOS.map((scenario) => hotTable(hot.filter((h) => h.scenario === scenario)))
    .filter((t) => t !== '')
    .join('\n');
}

const SCENARIO_TITLES: Record<HotScenario, string> = {
  latency: 'every variant keeps up: the latency coalescing adds',
  throughput: "the issue's size: deliveries per CPU-second with and without coalescing",
};

function hotTable(hot: HotResult[]): string {
  if (hot.length === 0) return '';
  // A variant run more than once shows its median-p99 run, and every run's p99 below.
  const runs = HOT_VARIANTS.map((v) => medianP99Run(hot.filter((h) => h.variant === v))).filter(
    (h): h is HotResult => h !== undefined,
  );
  const p99s = (v: HotVariant) =>
    hot
      .filter((h) => h.variant === v)
      .map((h) => h.p99.toFixed(2))
      .join(', ');
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
    ...(runs.length < hot.length ? [row('p99 ms, each run (the median shown)', (h) => p99s(h.variant))] : []),
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
    `Hot channel (${first.scenario}, ${SCENARIO_TITLES[first.scenario]}): 1 channel × ${first.subscribers} ` +
    `subscribers × ${first.offeredRate} publications/s ` +
    `(${first.offeredDeliveryRate.toLocaleString('en-US')} deliveries/s offered) for ` +
    `${first.plannedSeconds.toFixed(1)} s; lean subscribers\n` +
    `${table([''.padEnd(width), ...runs.map((h) => HOT_LABELS[h.variant])], rows)}\n`
  );
}

export function formatTargets(
  rows: TargetRow[],
  title = 'Targets (issue 14; Switchboard ÷ bare uWS measured in the same run)',
): string {
  return `${title}\n${table(
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

const pusherLabel = (r: { kind: PusherKind }) => PUSHER_LABELS[r.kind];
/** The Pusher pass's tables: Switchboard's Pusher edge and Soketi side by side (pusher.ts). */
export function formatPusher(pusher: PusherResults): string {
  const { servers, cluster } = pusher;
  const out: string[] = [];
  if (pusher.skipped) out.push(`Pusher: ${pusher.skipped}; Switchboard alone\n`);
  if (servers.length > 0) {
    out.push(
      sideBySide(
        'Pusher: memory per idle connection (server RSS growth / connections; connected, pusher:connection_established, subscribed to one public channel)',
        'connections',
        servers,
        (r) => r.memory.map((m) => ({ n: m.connections, value: m.bytesPerConnection })),
        kb,
        pusherLabel,
      ),
      sideBySide(
        'Pusher: fan-out, 1 channel × N subscribers, events through the HTTP API (signed, batch_events): deliveries per server CPU-second',
        'subscribers',
        servers,
        (r) => deliveries(r.fanout),
        (v) => v.toFixed(0),
        pusherLabel,
      ),
      `Pusher: connect rate (upgrade, pusher:connection_established, pusher:subscribe to a public channel), ramp to the largest level; the levels before the warm-up's count is open are timed apart\n${table(
        ['server', 'runs on', ...CONNECT_HEADER],
        servers.map((r) => [pusherLabel(r), `Node ${r.node.replace(/^v/, '')}`, ...connectCells(r.connect)]),
      )}\n`,
      `Pusher: delivery check (fan-out runs): lost (never delivered), duplicated and reordered events\n${table(
        ['server', ...checkHeader('trigger errors')],
        servers.map((r) => [pusherLabel(r), ...checkCells(r.fanout, r.errors)]),
      )}\n`,
    );
  }
  if (cluster.length > 0) {
    out.push(
      `Pusher across 2 nodes over NATS (one nats-server; nothing pinned): subscribers on node 2, numbered events triggered at node 1's HTTP API\n${table(
        [
          'server',
          'subscribers',
          'events/s',
          'offered/s',
          'delivered / expected',
          'lost',
          'duplicated',
          'out of order',
          'trigger errors',
          'deliveries/s',
          'p50 ms',
          'p99 ms',
          'p999 ms',
          'sustained',
          'connection errors and closes',
        ],
        cluster.map((c) => [
          pusherLabel(c),
          String(c.n),
          c.offeredRate.toFixed(0),
          c.offeredDeliveryRate.toFixed(0),
          `${c.delivered} / ${c.expected}`,
          String(c.lost),
          String(c.duplicated),
          String(c.reordered),
          String(c.publishErrors),
          c.sustainedPerSecond.toFixed(0),
          c.p50.toFixed(2),
          c.p99.toFixed(2),
          c.p999.toFixed(2),
          c.sustained ? 'yes' : 'no',
          errorList(c.errors),
        ]),
      )}\n`,
    );
  }
  return out.join('\n');
}

/** A count that must be 0. */
function none(name: string, measured: number, detail: string): TargetRow {
  return {
    name,
    target: '= 0',
    measured: String(measured),
    pass: measured === 0,
    margin: measured === 0 ? 0 : -1,
    detail,
  };
}

/**
 * The Pusher pass's targets: Switchboard's Pusher edge ≥ Soketi on every row
 * (memory per connection ≤, deliveries and connects per CPU-second ≥, across
 * two nodes deliveries/s ≥ and p99 ≤), nothing lost or duplicated; rows
 * whose data is missing (Soketi not installed) are left out, but for the
 * lost and duplicated counts.
 */
export function judgePusherTargets(pusher: PusherResults | undefined): TargetRow[] {
  if (!pusher) return [];
  const rows: TargetRow[] = [];
  const of = <T extends { kind: PusherKind }>(list: T[], kind: PusherKind) =>
    list.find((r) => r.kind === kind);
  const sb = of(pusher.servers, 'switchboard');
  const soketi = of(pusher.servers, 'soketi');
  const peer = PUSHER_LABELS.soketi;
  const soketiRow = { peer, atMost: false, factor: 1, goal: '≥ 1.00×' };
  rows.push(
    ...atLargest({
      ...soketiRow,
      mine: sb?.memory,
      theirs: soketi?.memory,
      n: connections,
      value: bytesPer,
      name: (level) =>
        `Pusher: RSS per idle connection at ${level} (subscribed to a public channel) vs ${peer}`,
      goal: '≤ 1.00×',
      atMost: true,
      unit: kb,
    }),
    ...atLargest({
      ...soketiRow,
      mine: sb?.fanout,
      theirs: soketi?.fanout,
      n: nOf,
      value: perCpuOf,
      name: (n) => `Pusher: fan-out 1 channel × ${n} (HTTP API), deliveries/CPU-s vs ${peer}`,
      unit: perCpu,
    }),
  );
  if (sb) {
    rows.push(
      ...versus(
        peer,
        `Pusher: connects/CPU-s (upgrade, connection_established, subscribe) vs ${peer}`,
        '≥ 1.00×',
        1,
        false,
        sb.connect.perCpuSecond,
        soketi?.connect.perCpuSecond,
        (v) => `${v.toFixed(0)}/CPU-s`,
      ),
    );
  }
  const sbCluster = of(pusher.cluster, 'switchboard');
  const soketiCluster = of(pusher.cluster, 'soketi');
  if (sbCluster) {
    const scenario = `Pusher, 2 nodes over NATS, ${sbCluster.n} subscribers at ${count(sbCluster.offeredDeliveryRate)} deliveries/s`;
    rows.push(
      ...versus(
        peer,
        `${scenario}: deliveries/s vs ${peer}`,
        '≥ 1.00×',
        1,
        false,
        sbCluster.sustainedPerSecond,
        soketiCluster?.sustainedPerSecond,
        (v) => `${v.toFixed(0)}/s`,
      ),
      ...versus(
        peer,
        `${scenario}: p99 trigger→deliver vs ${peer}`,
        '≤ 1.00×',
        1,
        true,
        sbCluster.p99,
        soketiCluster?.p99,
        ms,
      ),
    );
  }
  const runs = (kind: PusherKind): DeliveryRun[] => [
    ...(of(pusher.servers, kind)?.fanout ?? []),
    ...(of(pusher.cluster, kind) ? [of(pusher.cluster, kind)!] : []),
  ];
  const total = (kind: PusherKind, f: (d: DeliveryRun) => number) => runs(kind).reduce((a, d) => a + f(d), 0);
  if (runs('switchboard').length > 0) {
    const theirs = (f: (d: DeliveryRun) => number) =>
      runs('soketi').length > 0 ? `${peer}: ${total('soketi', f)}` : '';
    rows.push(
      none(
        'Pusher, Switchboard: events lost (fan-out runs and 2 nodes)',
        total('switchboard', (d) => d.lost),
        theirs((d) => d.lost),
      ),
      none(
        'Pusher, Switchboard: events duplicated (fan-out runs and 2 nodes)',
        total('switchboard', (d) => d.duplicated),
        theirs((d) => d.duplicated),
      ),
    );
  }
  return rows;
}
