#!/usr/bin/env node
/**
 * `make bench`: Switchboard side by side with bare uWebSockets.js, `ws`,
 * Socket.IO and SocketCluster on this machine, in one run. Each server runs
 * as its own process pinned to core 1, this load generator on core 0 (each
 * server's memory, fan-out and connect passes in a fresh generator of their
 * own, server-pass.ts).
 * Prints the tables, ratios and targets; writes results.json (and the plot)
 * to --out. `--quick` is the CI smoke size; `--only hot` (or `latency`,
 * `servers`, `pusher`, `protobuf`, comma-separated) runs some passes alone. The `pusher`
 * pass puts Switchboard's Pusher edge beside Soketi 1.6 (pusher.ts); the `protobuf`
 * pass Switchboard's Protobuf clients beside its JSON ones (protobuf-json.ts).
 */

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { hotChannel, type HotResult, type HotScenario, type HotVariant } from './hot.js';
import { type LatencyResult, latency, type Plan, type ServerResult } from './measure.js';
import { renderPlot } from './plot.js';
import { connectionCeiling, machine, pin } from './proc.js';
import { topFunctions } from './profile.js';
import { formatProtobufVsJson, protobufPlan, type ProtobufVsJson, protobufVsJson } from './protobuf-json.js';
import { type PusherResults, pusherPass } from './pusher.js';
import {
  formatHot,
  formatPusher,
  formatResults,
  formatTargets,
  judgePusherTargets,
  judgeTargets,
} from './report.js';
import { serverPass } from './server-pass.js';
import { SERVERS, type ServerKind } from './servers.js';

const SECRET = 'bench-secret-hs256';
const SERVER_CORE = 1;
const LOAD_CORE = 0;
const PROFILER = fileURLToPath(new URL('./cpu-profile.js', import.meta.url));

function plan(quick: boolean): Plan {
  if (quick) {
    return {
      // 900 timed connects: bare uWS spends ~40 ms on them, enough clock ticks (10 ms) to count.
      levels: [100, 1000],
      connectWarmup: 100,
      channelLevels: [100],
      // Enough work that bare uWS's CPU spans several 10 ms clock ticks (about 60 ms for 50,000 deliveries here).
      fanoutDeliveries: 50_000,
      fanoutDeliveryRate: 100_000,
      channelMessages: 5000,
      channelRate: 5000,
      warmupSeconds: 0.2,
      latencySubscribers: 50,
      latencyDeliveryRates: [2000],
      latencySeconds: 1,
      payloadBytes: 64,
      timeoutMs: 10_000,
      settleMs: 1000,
      hot: {
        subscribers: 100,
        throughputSubscribers: 300,
        latencyPairs: 1,
        rate: 2000,
        seconds: 1,
        warmupSeconds: 0.5,
        latencyEvery: 8,
        coalesceWindowMs: 1,
      },
      pusher: {
        levels: [100, 1000],
        cluster: { subscribers: 20, rate: 200, seconds: 1, warmupSeconds: 0.5 },
      },
    };
  }
  const most = connectionCeiling();
  const levels = [...[1000, 5000, 10_000].filter((n) => n < most), most];
  return {
    levels,
    // Through 1,000 → 5,000 V8 still tiers Switchboard's connect path up (13 functions to Maglev,
    // 12 to TurboFan in that batch, against 2 and 5 for bare uWS's): the rate is read from 5,000 on.
    connectWarmup: 5000,
    channelLevels: [1000, 5000, 10_000].filter((n) => n <= most),
    fanoutDeliveries: 500_000,
    fanoutDeliveryRate: 60_000,
    channelMessages: 30_000,
    channelRate: 5000,
    warmupSeconds: 2,
    latencySubscribers: 100,
    latencyDeliveryRates: [5000, 10_000, 20_000, 40_000],
    latencySeconds: 10,
    payloadBytes: 64,
    timeoutMs: 30_000,
    settleMs: 5000,
    // Issue 14's hot channel is 1,000 subscribers × 2,000/s: 2M deliveries/s, about 7× what one
    // server core here sends a frame each for (bare uWS ~300k/s, softirq included): the throughput
    // runs. The latency runs keep the rate (coalescing needs several pushes per window) with the
    // subscribers cut to what every variant sustains, so that what coalescing adds is measurable.
    hot: {
      subscribers: 100,
      throughputSubscribers: 1000,
      latencyPairs: 3,
      rate: 2000,
      seconds: 8,
      warmupSeconds: 1,
      latencyEvery: 8,
      // The widest window whose added p99 stayed within the 2 ms bound here (2 ms added 8–10 ms on the AMD machine).
      coalesceWindowMs: 1,
    },
    // The memory, fan-out and connect rows at the other memory rows' levels; across two nodes
    // 100 subscribers × 200 events/s, the 20k deliveries/s of the cluster latency target.
    pusher: {
      levels,
      cluster: { subscribers: 100, rate: 200, seconds: 10, warmupSeconds: 1 },
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      servers: { type: 'string', default: SERVERS.join(',') },
      cluster: { type: 'boolean', default: true },
      'no-cluster': { type: 'boolean', default: false },
      plot: { type: 'boolean', default: true },
      'no-plot': { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      levels: { type: 'string' },
      'channel-levels': { type: 'string' },
      replot: { type: 'boolean', default: false },
      only: { type: 'string' },
      'no-hot': { type: 'boolean', default: false },
      'coalesce-window': { type: 'string' },
      'hot-subscribers': { type: 'string' },
      'hot-throughput-subscribers': { type: 'string' },
      'hot-rate': { type: 'string' },
      'hot-seconds': { type: 'string' },
      'pusher-levels': { type: 'string' },
      'pusher-subscribers': { type: 'string' },
      'pusher-rate': { type: 'string' },
      'no-protobuf': { type: 'boolean', default: false },
      'protobuf-subscribers': { type: 'string' },
      'protobuf-publications': { type: 'string' },
      'protobuf-rounds': { type: 'string' },
    },
  });
  const quick = values.quick;
  const PASSES = ['latency', 'servers', 'hot', 'pusher', 'protobuf'] as const;
  const only = values.only?.split(',').map((s) => s.trim());
  for (const pass of only ?? [])
    if (!(PASSES as readonly string[]).includes(pass))
      throw new Error(`unknown pass ${pass} (${PASSES.join(', ')})`);
  const runs = (pass: (typeof PASSES)[number]) =>
    (only === undefined || only.includes(pass)) &&
    !(pass === 'hot' && values['no-hot']) &&
    !(pass === 'protobuf' && values['no-protobuf']);
  // Some passes alone never overwrite the committed results of a whole run.
  const out =
    values.out ??
    (only ? `test-output/bench-${only.join('-')}` : quick ? 'test-output/bench-quick' : 'docs/benchmarks');
  const kinds = values.servers.split(',').map((s) => s.trim()) as ServerKind[];
  for (const kind of kinds)
    if (!SERVERS.includes(kind)) throw new Error(`unknown server ${kind} (${SERVERS.join(', ')})`);
  if (values.replot) {
    // Draw the plot again from the results of an earlier run.
    const earlier = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
      results: ServerResult[];
      latencies: LatencyResult[];
    };
    console.log(`plot: ${await renderPlot(earlier.results, earlier.latencies, join(out, 'growth'))}`);
    return;
  }
  const p = plan(quick);
  const counts = (text: string) => text.split(',').map((n) => Math.max(1, Math.floor(Number(n))));
  if (values.levels) p.levels = p.pusher.levels = counts(values.levels);
  if (values['pusher-levels']) p.pusher.levels = counts(values['pusher-levels']);
  if (values['channel-levels']) p.channelLevels = counts(values['channel-levels']);
  const number = (text: string | undefined, name: string) => {
    const v = Number(text);
    if (text === undefined || !Number.isFinite(v) || v < 0) throw new Error(`--${name} wants a number`);
    return v;
  };
  if (values['coalesce-window'] !== undefined)
    p.hot.coalesceWindowMs = number(values['coalesce-window'], 'coalesce-window');
  if (values['hot-subscribers'] !== undefined)
    p.hot.subscribers = Math.max(1, Math.floor(number(values['hot-subscribers'], 'hot-subscribers')));
  if (values['hot-throughput-subscribers'] !== undefined)
    p.hot.throughputSubscribers = Math.max(
      0,
      Math.floor(number(values['hot-throughput-subscribers'], 'hot-throughput-subscribers')),
    );
  if (values['hot-rate'] !== undefined) p.hot.rate = Math.max(1, number(values['hot-rate'], 'hot-rate'));
  if (values['hot-seconds'] !== undefined) p.hot.seconds = number(values['hot-seconds'], 'hot-seconds');
  if (values['pusher-subscribers'] !== undefined)
    p.pusher.cluster.subscribers = Math.max(
      1,
      Math.floor(number(values['pusher-subscribers'], 'pusher-subscribers')),
    );
  if (values['pusher-rate'] !== undefined)
    p.pusher.cluster.rate = Math.max(1, number(values['pusher-rate'], 'pusher-rate'));
  const pb = protobufPlan(quick);
  for (const key of ['subscribers', 'publications', 'rounds'] as const) {
    const text = values[`protobuf-${key}`];
    if (text !== undefined) pb[key] = Math.max(1, Math.floor(number(text, `protobuf-${key}`)));
  }
  mkdirSync(out, { recursive: true });
  const pinned = pin(process.pid, LOAD_CORE);
  pin(process.pid, 'all');
  const started = new Date();
  console.log(`Switchboard benchmark (${quick ? 'quick' : 'full'}), ${started.toISOString()}`);
  console.log(`machine: ${JSON.stringify(machine())}`);
  console.log(
    `servers pinned to core ${SERVER_CORE}, load generator to core ${LOAD_CORE} (not for latency runs): ${pinned ? 'yes' : 'no (taskset missing)'}`,
  );
  console.log(`plan: ${JSON.stringify({ ...p, protobuf: pb })}\n`);

  const latencies: LatencyResult[] = [];
  // Latency first, while this process's heap is small: a major GC here would be measured as latency.
  if (runs('latency') && kinds.includes('switchboard')) {
    console.error('switchboard: publish-to-deliver latency, embedded');
    latencies.push(...(await latency('embedded', p, SECRET)));
    if (values.cluster && !values['no-cluster']) {
      console.error('switchboard: publish-to-deliver latency, HAProxy + NATS + 3 gateways');
      latencies.push(...(await latency('cluster', p, SECRET)));
    }
  }
  pin(process.pid, LOAD_CORE);

  // The hot channel next, while this process's heap is still small (its latency is measured too).
  const hot: HotResult[] = [];
  const variants: HotVariant[] = [
    ...(kinds.includes('switchboard') ? (['switchboard-coalesce', 'switchboard'] as const) : []),
    ...(kinds.includes('uws') ? (['uws'] as const) : []),
  ];
  // The pair with and without coalescing alternates `latencyPairs` times: what coalescing adds is
  // a difference of two p99s, each the median of its runs. Without coalescing nobody keeps up at
  // the throughput size: that run would measure a backlog twice.
  const paired = variants.filter((v) => v !== 'uws');
  const hotRuns: [HotVariant, HotScenario][] = [
    ...Array.from({ length: p.hot.latencyPairs }, () => paired).flat(),
    ...variants.filter((v) => v === 'uws'),
  ].map((v): [HotVariant, HotScenario] => [v, 'latency']);
  if (p.hot.throughputSubscribers > 0)
    hotRuns.push(
      ...variants.filter((v) => v !== 'switchboard').map((v): [HotVariant, HotScenario] => [v, 'throughput']),
    );
  for (const [variant, scenario] of runs('hot') ? hotRuns : []) {
    const subscribers = scenario === 'throughput' ? p.hot.throughputSubscribers : p.hot.subscribers;
    console.error(
      `${variant}: hot channel (${scenario}), 1 × ${subscribers} at ${p.hot.rate} publications/s for ${p.hot.seconds} s`,
    );
    hot.push(await hotChannel(variant, scenario, p, SECRET, SERVER_CORE));
  }

  const results: ServerResult[] = [];
  for (const kind of runs('servers') ? kinds : []) {
    const t0 = performance.now();
    const profiled = (pass: string): Record<string, string> =>
      values.profile && kind === 'switchboard'
        ? { NODE_OPTIONS: `--import=${PROFILER}`, BENCH_CPU_PROFILE_DIR: resolve(out, `profile-${pass}`) }
        : {};
    const job = {
      kind,
      plan: p,
      secret: SECRET,
      serverCore: SERVER_CORE,
      loadCore: LOAD_CORE,
      env: { a: profiled('a'), b: profiled('b') },
    };
    results.push(await serverPass(job, (line) => console.error(line)));
    console.error(`${kind}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }

  // Switchboard's Pusher edge beside Soketi; the two-node part unpinned, as the latency runs are.
  let pusher: PusherResults | undefined;
  if (runs('pusher')) {
    pusher = await pusherPass(
      p,
      SECRET,
      SERVER_CORE,
      (line) => console.error(line),
      async (run) => {
        pin(process.pid, 'all');
        try {
          return await run();
        } finally {
          pin(process.pid, LOAD_CORE);
        }
      },
    );
  }

  // Protobuf beside JSON on one gateway; a failed delivery check fails the bench after the rest is printed.
  let protobuf: ProtobufVsJson | undefined;
  let protobufFailed: unknown;
  if (runs('protobuf'))
    protobuf = await protobufVsJson(pb, SECRET, SERVER_CORE, (line) => console.error(line)).catch(
      (err: unknown) => void (protobufFailed = err),
    );

  const targets = judgeTargets(results, latencies, hot);
  const pusherTargets = judgePusherTargets(pusher);
  if (results.length > 0 || latencies.length > 0) console.log(formatResults(results, latencies));
  if (hot.length > 0) console.log(formatHot(hot));
  if (pusher) console.log(formatPusher(pusher));
  if (protobuf) console.log(formatProtobufVsJson(protobuf));
  if (targets.length > 0 || !pusher) console.log(formatTargets(targets));
  if (pusher)
    console.log(
      formatTargets(
        pusherTargets,
        "Pusher targets (Switchboard's Pusher edge ÷ Soketi 1.6.1 measured in the same run; nothing lost or duplicated)",
      ),
    );
  if (values.profile)
    for (const [pass, what] of [
      ['a', 'memory, 1×N fan-out, connects'],
      ['b', 'N×1 fan-out'],
    ] as const)
      console.log(
        `Switchboard CPU profile (${what}), top functions by self time\n${topFunctions(join(out, `profile-${pass}`), 25)}`,
      );
  const command = `node loadtest/dist/src/bench/main.js ${process.argv.slice(2).join(' ')}`.trim();
  const resultsFile = join(out, 'results.json');
  writeFileSync(
    resultsFile,
    `${JSON.stringify({ date: started.toISOString(), command, machine: machine(), plan: p, results, latencies, hot, targets, pusher, pusherTargets, protobuf }, null, 2)}\n`,
  );
  console.log(`results: ${resultsFile}`);
  if (values.plot && !values['no-plot'] && results.length > 0) {
    const png = await renderPlot(results, latencies, join(out, 'growth'));
    console.log(png ? `plot: ${png}` : 'plot: skipped (no chromium; scripts/ensure-packages.sh chromium)');
  }
  if (protobufFailed !== undefined) throw protobufFailed;
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
