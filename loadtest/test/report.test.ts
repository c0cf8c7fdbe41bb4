/**
 * Issue 14's targets as judgeTargets reads them off a run's results, and the
 * Pusher pass's as judgePusherTargets does (pure, no servers).
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { HotResult, HotScenario, HotVariant } from '../src/bench/hot.js';
import {
  ConnectClock,
  type DeliveryRun,
  type LatencyResult,
  type ServerResult,
} from '../src/bench/measure.js';
import type { PusherClusterResult, PusherKind, PusherServerResult } from '../src/bench/pusher.js';
import {
  formatHot,
  formatPusher,
  formatTargets,
  judgePusherTargets,
  judgeTargets,
} from '../src/bench/report.js';
import type { ServerKind } from '../src/bench/servers.js';

const run = (n: number, perCpuSecond: number, p99 = 1): DeliveryRun => ({
  n,
  published: 1,
  expected: n,
  delivered: n,
  lost: 0,
  duplicated: 0,
  reordered: 0,
  publishErrors: 0,
  seconds: 1,
  cpuSeconds: 1,
  perCpuSecond,
  perSecond: n,
  p50: p99 / 2,
  p99,
  p999: p99,
});

const server = (
  kind: ServerKind,
  {
    kbPerConn,
    fanout,
    channels,
    connects,
  }: { kbPerConn: number; fanout: number; channels: number; connects: number },
): ServerResult => ({
  kind,
  pinned: true,
  baselineRssBytes: 50e6,
  memory: [
    { connections: 1000, rssBytes: 0, bytesPerConnection: 10_000 },
    { connections: 19_000, rssBytes: 0, bytesPerConnection: kbPerConn * 1024 },
  ],
  fanout: [run(1000, 1), run(19_000, fanout)],
  channels: [run(1000, 1), run(10_000, channels)],
  connect: {
    connections: 18_000,
    warmup: 1000,
    failed: 0,
    seconds: 1,
    perSecond: 1,
    cpuSeconds: 1,
    perCpuSecond: connects,
  },
  errors: {},
});

const hot = (
  variant: HotVariant,
  perCpuSecond: number,
  p99: number,
  sustained = true,
  scenario: HotScenario = 'latency',
): HotResult => ({
  ...run(scenario === 'latency' ? 100 : 1000, perCpuSecond, p99),
  variant,
  scenario,
  coalesceWindowMs: variant === 'uws' ? undefined : variant === 'switchboard' ? 0 : 1,
  offeredRate: 2000,
  offeredDeliveryRate: scenario === 'latency' ? 200_000 : 2_000_000,
  subscribers: scenario === 'latency' ? 100 : 1000,
  linesPerMessage: variant === 'switchboard-coalesce' ? 2 : 1,
  messagesPerRead: 10,
  drainSeconds: 0.01,
  generatorCpu: 0.5,
  serverCpu: 0.9,
  serverCoreBusy: 1,
  serverCoreSoftirq: 0.1,
  perCpuSecondWithSoftirq: perCpuSecond * 0.9,
  plannedSeconds: 8,
  sustained,
  maxGeneratorBacklogBytes: 0,
  maxServerSendQueueBytes: 0,
  latencySamples: 1000,
  errors: {},
});

const cluster: LatencyResult = {
  ...run(100, 0, 9),
  setup: 'cluster',
  gateways: 3,
  offeredDeliveryRate: 20_000,
};

const byTarget = (rows: ReturnType<typeof judgeTargets>) =>
  Object.fromEntries(rows.map((r) => [`${r.target} ${r.name}`, r]));

describe('ConnectClock', () => {
  /** A level that "opens" `n` connections. */
  const opening = (state: { open: number }, n: number) => async () => void (state.open += n);

  test('the first of several levels warms up: counted apart, left out of the rate', async () => {
    const state = { open: 0 };
    const clock = new ConnectClock(process.pid, 2, 1000);
    await clock.level(opening(state, 1000), () => state.open);
    await clock.level(opening(state, 4000), () => state.open);
    const run = clock.result(3);
    assert.equal(run.warmup, 1000);
    assert.equal(run.connections, 4000);
    assert.equal(run.failed, 3);
    assert.ok(run.seconds > 0);
    assert.equal(run.perSecond, 4000 / run.seconds);
  });

  const ramps = [
    {
      name: 'every level before the warm-up count is open warms up; the ones after it are timed',
      warmup: 5000,
      levels: [1000, 4000, 5000, 9000],
      untimed: 5000,
      timed: 14_000,
    },
    {
      name: 'the last level is timed even before the warm-up count',
      warmup: 5000,
      levels: [100, 900],
      untimed: 100,
      timed: 900,
    },
  ];
  for (const ramp of ramps)
    test(ramp.name, async () => {
      const state = { open: 0 };
      const clock = new ConnectClock(process.pid, ramp.levels.length, ramp.warmup);
      for (const n of ramp.levels) await clock.level(opening(state, n), () => state.open);
      const run = clock.result(0);
      assert.equal(run.warmup, ramp.untimed);
      assert.equal(run.connections, ramp.timed);
    });

  test('a single level is timed', async () => {
    const state = { open: 0 };
    const clock = new ConnectClock(process.pid, 1, 0);
    await clock.level(opening(state, 300), () => state.open);
    const run = clock.result(0);
    assert.equal(run.warmup, 0);
    assert.equal(run.connections, 300);
  });

  test("the main thread's CPU is measured apart, as part of the process's", async () => {
    const state = { open: 0 };
    const clock = new ConnectClock(process.pid, 1, 0);
    // 100 ms of work on this (the main) thread: ten clock ticks at least.
    await clock.level(
      async () => {
        const until = performance.now() + 100;
        while (performance.now() < until) state.open += 0;
        state.open = 10;
      },
      () => state.open,
    );
    const run = clock.result(0);
    assert.ok(run.mainThreadCpuSeconds! >= 0.05, `main thread ${run.mainThreadCpuSeconds} s`);
    assert.ok(
      run.mainThreadCpuSeconds! <= run.cpuSeconds + 0.01,
      `${run.mainThreadCpuSeconds} > ${run.cpuSeconds}`,
    );
    assert.equal(run.perMainThreadCpuSecond, 10 / run.mainThreadCpuSeconds!);
  });
});

describe('judgeTargets', () => {
  const results = [
    server('switchboard', { kbPerConn: 1.9, fanout: 110_000, channels: 17_000, connects: 5000 }),
    server('uws', { kbPerConn: 1.6, fanout: 100_000, channels: 20_000, connects: 6000 }),
  ];
  const hotRuns = [
    hot('switchboard-coalesce', 650_000, 6.5),
    hot('switchboard', 280_000, 5),
    hot('uws', 300_000, 4),
    hot('switchboard-coalesce', 2_600_000, 40, true, 'throughput'),
    hot('uws', 150_000, 60_000, false, 'throughput'),
  ];
  const rows = judgeTargets(results, [cluster], hotRuns);

  test('every target of issue 14, in order, each against bare uWS of the same run', () => {
    assert.deepEqual(
      rows.map((r) => r.target),
      [
        '≤ 2.00 KB',
        '≤ 1.25×',
        '≥ 1.00×',
        '≥ 0.85×',
        '≥ 0.90×',
        '≥ 3000/s',
        '< 10 ms',
        '≥ 2.00×',
        '≤ 2.00 ms',
      ],
    );
    assert.match(rows[0]!.name, /at 19k/);
    assert.match(rows[2]!.name, /1 channel × 19k/);
    assert.match(rows[3]!.name, /10k channels × 1/);
  });

  test('ratios, PASS and MISS with their margins and figures', () => {
    const [memory, memoryRatio, fanout, channels, connects, connectsAbs, p99, hotRatio, added] = rows;
    assert.deepEqual([memory!.pass, memory!.measured], [true, '1.90 KB']);
    // 1.9 / 1.6 = 1.19× ≤ 1.25×
    assert.deepEqual([memoryRatio!.pass, memoryRatio!.measured], [true, '1.19×']);
    assert.equal(memoryRatio!.detail, 'Switchboard 1.90 KB, bare uWS 1.60 KB');
    assert.deepEqual([fanout!.pass, fanout!.measured], [true, '1.10×']);
    // 17k / 20k = 0.85×: exactly at the target passes.
    assert.deepEqual([channels!.pass, channels!.measured], [true, '0.85×']);
    // 5000 / 6000 = 0.83× < 0.9×: missed by 7 %.
    assert.deepEqual([connects!.pass, connects!.measured], [false, '0.83×']);
    assert.ok(Math.abs(connects!.margin - (5000 / 6000 - 0.9) / 0.9) < 1e-9);
    assert.equal(connectsAbs!.pass, true);
    assert.equal(p99!.pass, true);
    // At the size (1000), against bare uWS's best of the run (300k at 100, not its 150k behind): 8.67×
    assert.deepEqual([hotRatio!.pass, hotRatio!.measured], [true, '8.67×']);
    assert.match(hotRatio!.name, /hot channel 1 × 1000 at 2000\/s/);
    assert.equal(
      hotRatio!.detail,
      'Switchboard 2600k/CPU-s, bare uWS 300k/CPU-s (its best: 100 subscribers; 150k/CPU-s at 1000, behind)',
    );
    // 6.5 - 5 = 1.5 ms added ≤ 2 ms
    assert.deepEqual(
      [added!.pass, added!.measured, added!.detail],
      [true, '1.50 ms', 'with 6.50 ms, without 5.00 ms'],
    );
  });

  test('misses: more memory than 2 KB or 1.25× uWS, coalescing short of 2×, more than 2 ms added', () => {
    const worse = judgeTargets(
      [
        server('switchboard', { kbPerConn: 2.5, fanout: 90_000, channels: 10_000, connects: 7000 }),
        server('uws', { kbPerConn: 1.6, fanout: 100_000, channels: 20_000, connects: 6000 }),
      ],
      [],
      [
        hot('switchboard-coalesce', 500_000, 9, false),
        hot('switchboard', 280_000, 5),
        hot('uws', 300_000, 4),
      ],
    );
    const t = byTarget(worse);
    assert.equal(t['≤ 2.00 KB RSS per idle connection at 19k (authenticated, subscribed)']!.pass, false);
    assert.equal(t['≤ 1.25× RSS per idle connection at 19k vs bare uWS']!.measured, '1.56×');
    assert.equal(worse.find((r) => r.target === '≥ 1.00×')!.pass, false);
    assert.equal(worse.find((r) => r.target === '≥ 0.90×')!.pass, true);
    // No throughput run: the latency run's ratio is judged.
    assert.equal(worse.find((r) => r.target === '≥ 2.00×')!.measured, '1.67×');
    const added = worse.find((r) => r.target === '≤ 2.00 ms')!;
    assert.deepEqual([added.pass, added.measured], [false, '4.00 ms']);
    assert.match(added.detail, /not sustained: Switchboard, coalescing/);
    assert.doesNotMatch(added.detail, /no coalescing seen/);
    // A gateway that ignored the setting: one push per message, and the rows say so.
    const ignored = judgeTargets(
      [],
      [],
      [{ ...hot('switchboard-coalesce', 1, 1), linesPerMessage: 1 }, hot('uws', 1, 1)],
    );
    assert.match(ignored[0]!.detail, /\(no coalescing seen: 1\.00 pushes per message\)$/);
    // The run without coalescing fell behind: its p99 is a backlog's, so "added" (negative here) does not pass.
    const behind = judgeTargets(
      [],
      [],
      [
        hot('switchboard-coalesce', 500_000, 9),
        hot('switchboard', 200_000, 600, false),
        hot('uws', 300_000, 4),
      ],
    ).find((r) => r.target === '≤ 2.00 ms')!;
    assert.deepEqual([behind.pass, behind.measured], [false, '-591.00 ms']);
    assert.match(behind.detail, /not sustained: Switchboard, no coalescing/);
    // No cluster latency measured: no p99 row.
    assert.equal(
      worse.some((r) => r.target === '< 10 ms'),
      false,
    );
  });

  test('rows whose data is missing are left out', () => {
    const sbOnly = judgeTargets(
      [server('switchboard', { kbPerConn: 1.9, fanout: 1, channels: 1, connects: 5000 })],
      [],
    );
    assert.deepEqual(
      sbOnly.map((r) => r.target),
      ['≤ 2.00 KB', '≥ 3000/s'],
    );
    // The hot channel alone (bench --only hot).
    assert.deepEqual(
      judgeTargets([], [], hotRuns).map((r) => r.target),
      ['≥ 2.00×', '≤ 2.00 ms'],
    );
    assert.deepEqual(judgeTargets([], [], [hot('uws', 1, 1)]), []);
  });

  test('formatted: PASS/MISS lines with the figures; the hot table side by side', () => {
    const text = formatTargets(rows);
    assert.match(
      text,
      /^MISS {2}.*connects\/CPU-s with HS256 vs bare uWS +Switchboard 5000\/CPU-s, bare uWS 6000\/CPU-s$/m,
    );
    const [latency, throughput] = formatHot(hotRuns).split(/\n(?=Hot channel)/);
    assert.match(latency!, /^Hot channel \(latency, .*200,000 deliveries\/s offered/);
    assert.match(latency!, /Switchboard, coalescing +Switchboard, no coalescing +bare uWS$/m);
    assert.match(latency!, /^deliveries per server CPU-second +650000 +280000 +300000$/m);
    assert.match(latency!, /^÷ bare uWS +2\.17× +0\.93× +1\.00×$/m);
    assert.match(latency!, /^pushes per WebSocket message +2\.00 +1\.00 +1\.00$/m);
    // Its own table, its own bare uWS: the variants run at that size only.
    assert.match(throughput!, /^Hot channel \(throughput, .*2,000,000 deliveries\/s offered/);
    assert.match(throughput!, /Switchboard, coalescing +bare uWS$/m);
    assert.match(throughput!, /^÷ bare uWS +17\.33× +1\.00×$/m);
    assert.match(throughput!, /^sustained +yes +no$/m);
    assert.doesNotMatch(latency!, /each run/);
  });

  test('a latency pair run three times: each p99 is the median run, the table shows it and every run', () => {
    const repeated = [
      hot('switchboard-coalesce', 600_000, 9),
      hot('switchboard', 280_000, 2),
      hot('switchboard-coalesce', 650_000, 4),
      hot('switchboard', 290_000, 30),
      hot('switchboard-coalesce', 640_000, 3.5),
      hot('switchboard', 270_000, 2.5),
      hot('uws', 300_000, 2),
    ];
    const added = judgeTargets([], [], repeated).find((r) => r.target === '≤ 2.00 ms')!;
    // Medians: 4 with coalescing, 2.5 without (the 30 ms outlier and the 9 ms one left aside).
    assert.deepEqual(
      [added.pass, added.measured, added.detail],
      [true, '1.50 ms', 'with 4.00 ms, without 2.50 ms'],
    );
    const table = formatHot(repeated);
    assert.match(table, /^p99 ms +4\.00 +2\.50 +2\.00$/m);
    assert.match(
      table,
      /^p99 ms, each run \(the median shown\) +9\.00, 4\.00, 3\.50 +2\.00, 30\.00, 2\.50 +2\.00$/m,
    );
    assert.match(table, /^deliveries per server CPU-second +650000 +270000 +300000$/m);
  });
});

describe('judgePusherTargets', () => {
  const pusherServer = (
    kind: PusherKind,
    kbPerConn: number,
    fanout: number,
    connects: number,
  ): PusherServerResult => {
    const {
      pinned,
      baselineRssBytes,
      memory,
      fanout: runs,
      connect,
      errors,
    } = server('switchboard', {
      kbPerConn,
      fanout,
      channels: 0,
      connects,
    });
    return { kind, node: 'v20.20.2', pinned, baselineRssBytes, memory, fanout: runs, connect, errors };
  };
  const twoNodes = (kind: PusherKind, perSecond: number, p99: number, lost = 0): PusherClusterResult => ({
    ...run(100, 0, p99),
    lost,
    kind,
    nodes: 2,
    offeredRate: 200,
    offeredDeliveryRate: 20_000,
    plannedSeconds: 10,
    sustainedPerSecond: perSecond,
    sustained: lost === 0,
    triggerRequests: 1000,
    errors: {},
  });
  const pusher = {
    servers: [pusherServer('switchboard', 1.5, 300_000, 4000), pusherServer('soketi', 9, 80_000, 4500)],
    cluster: [twoNodes('switchboard', 20_000, 3, 2), twoNodes('soketi', 20_000, 6)],
  };
  const rows = judgePusherTargets(pusher);

  test('Switchboard ÷ Soketi on every row, and nothing lost or duplicated', () => {
    assert.deepEqual(
      rows.map((r) => [r.pass ? 'PASS' : 'MISS', r.target, r.measured]),
      [
        ['PASS', '≤ 1.00×', '0.17×'],
        ['PASS', '≥ 1.00×', '3.75×'],
        ['MISS', '≥ 1.00×', '0.89×'],
        ['PASS', '≥ 1.00×', '1.00×'],
        ['PASS', '≤ 1.00×', '0.50×'],
        ['MISS', '= 0', '2'],
        ['PASS', '= 0', '0'],
      ],
    );
    assert.match(rows[0]!.name, /RSS per idle connection at 19k/);
    assert.equal(rows[5]!.detail, 'Soketi 1.6.1: 0');
    assert.deepEqual(judgePusherTargets(undefined), []);
  });

  test('without Soketi only the lost and duplicated rows; the tables side by side', () => {
    const alone = { servers: [pusher.servers[0]!], cluster: [pusher.cluster[0]!], skipped: 'not installed' };
    assert.deepEqual(
      judgePusherTargets(alone).map((r) => r.target),
      ['= 0', '= 0'],
    );
    const text = formatPusher(pusher);
    assert.match(text, /^connections +Switchboard +Soketi 1\.6\.1 +SB ÷ Soketi 1\.6\.1$/m);
    assert.match(text, /^ +19k +1\.50 KB +9\.00 KB +0\.17×$/m);
    assert.match(text, /^ +19k +300000 +80000 +3\.75×$/m);
    assert.match(text, /Pusher across 2 nodes over NATS/);
    assert.match(formatPusher(alone), /^Pusher: not installed; Switchboard alone$/m);
  });
});
