/**
 * The measurements, one server at a time: memory per idle connection and
 * 1-channel fan-out as connections grow (pass A, which also times the
 * connects), N channels × 1 subscriber (pass B), and publish-to-deliver
 * latency through the cluster and embedded.
 */

import { startCluster } from '@switchboard/gateway/dist/test/cluster.js';
import { centrifugo, type Connection, type Dialect } from '../connection.js';
import { Fleet, loopbackAddresses } from '../fleet.js';
import type { Histogram } from '../histogram.js';
import { signHs256 } from '../jwt.js';
import { DeliveryTracker, openLoop, payload } from '../tracker.js';
import { cpuSeconds, mainThreadCpuSeconds, settledRss } from './proc.js';
import type { PusherPlan } from './pusher.js';
import { type ServerKind, startServer, SWITCHBOARD_BENCH_ENV } from './servers.js';

export interface Plan {
  /** Connection counts of pass A (memory, 1 × N fan-out, connect rate). */
  levels: number[];
  /**
   * The connect rate's warm-up: the ramp's levels are timed once this many
   * connections are open (the last level always is). V8 tiers a server's
   * connect path up to optimised code over its first few thousand connects.
   */
  connectWarmup: number;
  /** Channel counts of pass B (N × 1 fan-out). */
  channelLevels: number[];
  /** Deliveries per 1 × N measurement, and the delivery rate offered. */
  fanoutDeliveries: number;
  fanoutDeliveryRate: number;
  /** Publications per N × 1 measurement, and their rate. */
  channelMessages: number;
  channelRate: number;
  /**
   * Seconds of traffic at a measurement's own rate before each fan-out
   * measurement, untimed: V8 compiles a server's hot paths meanwhile (on its
   * own threads, counted in the server's CPU), for every server alike.
   */
  warmupSeconds: number;
  /**
   * Latency runs: subscribers of one channel, delivery rates (one run each),
   * seconds per run. Few subscribers and many publications keep each
   * publication's burst short: the generator reads deliveries one at a time.
   */
  latencySubscribers: number;
  latencyDeliveryRates: number[];
  latencySeconds: number;
  payloadBytes: number;
  timeoutMs: number;
  /** Longest wait for the server's RSS to settle before it is read. */
  settleMs: number;
  /** The hot channel (hot.ts): 1 channel × `subscribers`, `rate` publications/s for `seconds`. */
  hot: {
    /** Subscribers of the `latency` runs (every variant keeps up), and of the `throughput` ones (the size; 0: none). */
    subscribers: number;
    throughputSubscribers: number;
    /** Runs of the latency pair (with and without coalescing), alternating. */
    latencyPairs: number;
    rate: number;
    seconds: number;
    warmupSeconds: number;
    /** One latency recorded per this many deliveries of each subscriber. */
    latencyEvery: number;
    /** SWITCHBOARD_PUSH_COALESCE_WINDOW (ms) of the "with coalescing" run. */
    coalesceWindowMs: number;
  };
  /** The Pusher pass (pusher.ts). */
  pusher: PusherPlan;
}

export interface MemoryPoint {
  connections: number;
  rssBytes: number;
  bytesPerConnection: number;
}

export interface DeliveryRun {
  /** Subscribers (1 × N) or channels (N × 1). */
  n: number;
  published: number;
  expected: number;
  delivered: number;
  lost: number;
  duplicated: number;
  /** Delivered, but after a later publication of the same channel. */
  reordered: number;
  publishErrors: number;
  seconds: number;
  /** Server CPU seconds while publishing and delivering; 0 where not measured (cluster). */
  cpuSeconds: number;
  perCpuSecond: number;
  perSecond: number;
  p50: number;
  p99: number;
  p999: number;
}

export interface ConnectRun {
  /** Connections timed: those of the levels after the warm-up (see ConnectClock). */
  connections: number;
  /** Connections of the warm-up levels, not timed. */
  warmup: number;
  /** The warm-up's server CPU; absent in results before 2026-12-04. */
  warmupCpuSeconds?: number;
  warmupPerCpuSecond?: number;
  failed: number;
  seconds: number;
  perSecond: number;
  cpuSeconds: number;
  perCpuSecond: number;
  /** Of cpuSeconds, the main thread's (the rest: V8's worker threads); absent in results before 2026-12-03. */
  mainThreadCpuSeconds?: number;
  perMainThreadCpuSecond?: number;
}

export interface ServerResult {
  kind: ServerKind;
  pinned: boolean;
  baselineRssBytes: number;
  memory: MemoryPoint[];
  fanout: DeliveryRun[];
  channels: DeliveryRun[];
  connect: ConnectRun;
  errors: Record<string, number>;
}

export interface LatencyResult extends DeliveryRun {
  setup: 'embedded' | 'cluster';
  gateways: number;
  offeredDeliveryRate: number;
}

const SOURCE_ADDRESSES = loopbackAddresses(4);

/** One HS256 token per connection index (user `bench-<i>`), valid for an hour. */
export function tokens(secret: string): (i: number) => string {
  const exp = Math.floor(Date.now() / 1000) + 3600;
  return (i) => signHs256({ sub: `bench-${i}`, exp }, secret);
}

/**
 * The connect rate over a ramp of levels. The levels opened before
 * `warmupConnections` are open warm the server up (V8 compiles its connect
 * path meanwhile) and are timed apart; the last level is always timed.
 */
export class ConnectClock {
  private levels = 0;
  private opened = 0;
  private seconds = 0;
  private cpu = 0;
  private mainCpu = 0;
  private timed = 0;
  private warmup = 0;
  private warmupCpu = 0;

  constructor(
    private readonly pid: number,
    private readonly levelCount: number,
    private readonly warmupConnections: number,
  ) {}

  /** Opens one level's connections with `open`; `connected()` counts the server's connections so far. */
  async level(open: () => Promise<unknown>, connected: () => number): Promise<void> {
    const last = ++this.levels === this.levelCount;
    const timed = last || this.opened >= this.warmupConnections;
    const before = connected();
    const cpuBefore = cpuSeconds(this.pid);
    const mainBefore = mainThreadCpuSeconds(this.pid);
    const started = performance.now();
    await open();
    const opened = connected() - before;
    this.opened += opened;
    if (!timed) {
      this.warmup += opened;
      this.warmupCpu += cpuSeconds(this.pid) - cpuBefore;
      return;
    }
    this.seconds += (performance.now() - started) / 1000;
    // The main thread's window inside the process's: read before it here, after it at the start.
    this.mainCpu += mainThreadCpuSeconds(this.pid) - mainBefore;
    this.cpu += cpuSeconds(this.pid) - cpuBefore;
    this.timed += opened;
  }

  result(failed: number): ConnectRun {
    return {
      connections: this.timed,
      warmup: this.warmup,
      warmupCpuSeconds: this.warmupCpu,
      warmupPerCpuSecond: per(this.warmup, this.warmupCpu),
      failed,
      seconds: this.seconds,
      perSecond: per(this.timed, this.seconds),
      cpuSeconds: this.cpu,
      perCpuSecond: per(this.timed, this.cpu),
      mainThreadCpuSeconds: this.mainCpu,
      perMainThreadCpuSecond: per(this.timed, this.mainCpu),
    };
  }
}

/** `count` per `amount` (a second, a CPU-second, a message): 0 when the amount is none. */
export const per = (count: number, amount: number) => (amount > 0 ? count / amount : 0);

/** The middle value (the mean of the two middle ones for an even count); NaN for none. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Deliveries of an untimed warm-up before a measurement at `rate` per second: at least `least`. */
export function warmupCount(plan: Plan, rate: number, least: number): number {
  return Math.max(least, Math.round(rate * plan.warmupSeconds));
}

/** Where the connections' publications go: swapped for a fresh tracker per measurement. */
interface Sink {
  tracker: DeliveryTracker;
}

interface PublishPlan {
  count: number;
  rate: number;
  channel(i: number): string;
  seq(i: number): number;
  expected: number;
}

async function deliver(
  sink: Sink,
  publisher: Connection,
  plan: PublishPlan,
  n: number,
  payloadBytes: number,
  timeoutMs: number,
  pid?: number,
): Promise<DeliveryRun> {
  const tracker = (sink.tracker = new DeliveryTracker());
  let publishErrors = 0;
  const cpuBefore = pid === undefined ? 0 : cpuSeconds(pid);
  const started = performance.now();
  await openLoop(
    plan.count,
    plan.rate,
    (i) => publisher.publish(plan.channel(i), payload(plan.seq(i), payloadBytes)),
    () => publishErrors++,
  );
  await tracker.waitFor(plan.expected, timeoutMs);
  const seconds = (performance.now() - started) / 1000;
  const cpu = pid === undefined ? 0 : cpuSeconds(pid) - cpuBefore;
  return deliveryRun(tracker, {
    n,
    published: plan.count,
    expected: plan.expected,
    publishErrors,
    seconds,
    cpuSeconds: cpu,
  });
}

/** What a run counted (a DeliveryTracker, the lean clients' LeanStats): deliveries, duplicates, latency. */
export interface Counted {
  delivered: number;
  duplicated: number;
  reordered: number;
  latency: Histogram;
}

/** A DeliveryRun of what `counted` counted over a run of `seconds` with `cpuSeconds` of server CPU. */
export function deliveryRun(
  counted: Counted,
  run: Pick<DeliveryRun, 'n' | 'published' | 'expected' | 'publishErrors' | 'seconds' | 'cpuSeconds'>,
): DeliveryRun {
  const { delivered, latency } = counted;
  return {
    ...run,
    delivered,
    lost: Math.max(0, run.expected - delivered),
    duplicated: counted.duplicated,
    reordered: counted.reordered,
    perCpuSecond: per(delivered, run.cpuSeconds),
    perSecond: delivered / run.seconds,
    p50: latency.percentile(50),
    p99: latency.percentile(99),
    p999: latency.percentile(99.9),
  };
}

/** The clients of one measurement: subscribers, a publisher, and the tracker their publications go to. */
export class Clients {
  readonly sink: Sink = { tracker: new DeliveryTracker() };
  readonly fleet: Fleet;
  private publisherConnection: Connection | undefined;
  private readonly token: (i: number) => string;

  constructor(
    private readonly dialect: Dialect,
    private readonly url: string,
    secret: string,
    private readonly timeoutMs: number,
  ) {
    this.token = tokens(secret);
    this.fleet = new Fleet({ dialect, url, token: this.token, localAddresses: SOURCE_ADDRESSES, timeoutMs });
  }

  /** Subscribers `from` .. `to - 1`, subscriber i to `channelOf(i)`, as fast as they connect. */
  grow(from: number, to: number, channelOf: (i: number) => string): Promise<void> {
    return this.fleet.openMany(from, to - from, Infinity, async (conn, i) => {
      conn.onPublication = (channel, data) => this.sink.tracker.receive(i, channel, data);
      await conn.subscribe(channelOf(i));
    });
  }

  async publisher(): Promise<Connection> {
    this.publisherConnection ??= await this.dialect({
      url: this.url,
      token: this.token(-1),
      timeoutMs: this.timeoutMs,
    });
    return this.publisherConnection;
  }

  close(): void {
    this.publisherConnection?.close();
    this.fleet.closeAll();
  }
}

/** One channel, N subscribers: every publication reaches all of them. */
function oneChannel(channel: string, n: number, deliveries: number, deliveryRate: number): PublishPlan {
  const count = Math.max(5, Math.ceil(deliveries / n));
  return {
    count,
    rate: Math.max(1, deliveryRate / n),
    channel: () => channel,
    seq: (i) => i,
    expected: count * n,
  };
}

/**
 * Pass A: connections (authenticated, each subscribed to one channel) grow
 * through `plan.levels`; at each level the RSS growth per connection, then
 * deliveries per CPU-second of 1 channel × N subscribers.
 */
export async function passA(
  kind: ServerKind,
  plan: Plan,
  secret: string,
  core: number,
  extraEnv: Record<string, string> = {},
): Promise<ServerResult> {
  const server = await startServer(kind, secret, core, extraEnv);
  const clients = new Clients(server.dialect, server.url, secret, plan.timeoutMs);
  const { fleet, sink } = clients;
  try {
    const baselineRssBytes = await settledRss(server.pid, plan.settleMs);
    const memory: MemoryPoint[] = [];
    const fanout: DeliveryRun[] = [];
    const connects = new ConnectClock(server.pid, plan.levels.length, plan.connectWarmup);
    let opened = 0;
    const publisher = await clients.publisher();
    for (const level of plan.levels) {
      await connects.level(
        () => clients.grow(opened, level, () => 'fan'),
        () => fleet.connected,
      );
      opened = level;
      const rss = await settledRss(server.pid, plan.settleMs);
      const live = fleet.open;
      memory.push({ connections: live, rssBytes: rss, bytesPerConnection: (rss - baselineRssBytes) / live });
      const warmup = oneChannel(
        'fan',
        live,
        warmupCount(plan, plan.fanoutDeliveryRate, 5 * live),
        plan.fanoutDeliveryRate,
      );
      await deliver(sink, publisher, warmup, live, plan.payloadBytes, plan.timeoutMs);
      const run = oneChannel('fan', live, plan.fanoutDeliveries, plan.fanoutDeliveryRate);
      fanout.push(await deliver(sink, publisher, run, live, plan.payloadBytes, plan.timeoutMs, server.pid));
    }
    return {
      kind,
      pinned: server.pinned,
      baselineRssBytes,
      memory,
      fanout,
      channels: [],
      connect: connects.result(fleet.failed),
      errors: Object.fromEntries(fleet.errors),
    };
  } finally {
    clients.close();
    await server.stop();
  }
}

/** Pass B: N channels with one subscriber each; publications go round robin over the channels. */
export async function passB(
  kind: ServerKind,
  plan: Plan,
  secret: string,
  core: number,
  extraEnv: Record<string, string> = {},
): Promise<{ runs: DeliveryRun[]; errors: Record<string, number> }> {
  const server = await startServer(kind, secret, core, extraEnv);
  const clients = new Clients(server.dialect, server.url, secret, plan.timeoutMs);
  const { fleet, sink } = clients;
  try {
    const runs: DeliveryRun[] = [];
    let opened = 0;
    const publisher = await clients.publisher();
    for (const n of plan.channelLevels) {
      await clients.grow(opened, n, (i) => `c-${i}`);
      opened = n;
      const live = (count: number) => {
        let expected = 0;
        for (let i = 0; i < count; i++) if (fleet.connections[i % n]) expected++;
        return expected;
      };
      const roundRobin = (count: number, rate: number): PublishPlan => ({
        count,
        rate,
        channel: (i) => `c-${i % n}`,
        seq: (i) => Math.floor(i / n),
        expected: live(count),
      });
      await deliver(
        sink,
        publisher,
        roundRobin(warmupCount(plan, plan.channelRate, Math.min(n, 500)), plan.channelRate),
        n,
        plan.payloadBytes,
        plan.timeoutMs,
      );
      runs.push(
        await deliver(
          sink,
          publisher,
          roundRobin(plan.channelMessages, plan.channelRate),
          n,
          plan.payloadBytes,
          plan.timeoutMs,
          server.pid,
        ),
      );
    }
    return { runs, errors: Object.fromEntries(fleet.errors) };
  } finally {
    clients.close();
    await server.stop();
  }
}

/**
 * Publish-to-deliver latency at fixed delivery rates: `cluster` is HAProxy +
 * NATS + 3 gateways (clients spread by HAProxy), `embedded` one gateway.
 * Nothing is pinned here: on a shared machine a pinned process waits for its
 * one core, and that wait would be measured as latency.
 */
export async function latency(
  setup: 'embedded' | 'cluster',
  plan: Plan,
  secret: string,
): Promise<LatencyResult[]> {
  const env = { ...SWITCHBOARD_BENCH_ENV, SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: secret };
  const cluster = setup === 'cluster' ? await startCluster({ env }) : undefined;
  const server = setup === 'embedded' ? await startServer('switchboard', secret, 'all') : undefined;
  const url = cluster?.haproxy.url ?? server!.url;
  const clients = new Clients(server?.dialect ?? centrifugo, url, secret, plan.timeoutMs);
  const { fleet, sink } = clients;
  try {
    await clients.grow(0, plan.latencySubscribers, () => 'latency');
    const publisher = await clients.publisher();
    const results: LatencyResult[] = [];
    for (const deliveryRate of plan.latencyDeliveryRates) {
      const live = fleet.open;
      const rate = deliveryRate / live;
      // A second at the rate first: JIT, buffers and connections warm.
      const warmup = oneChannel('latency', live, deliveryRate, deliveryRate);
      await deliver(sink, publisher, warmup, live, plan.payloadBytes, plan.timeoutMs);
      const count = Math.max(1, Math.round(rate * plan.latencySeconds));
      const run = await deliver(
        sink,
        publisher,
        { count, rate, channel: () => 'latency', seq: (i) => i, expected: count * live },
        live,
        plan.payloadBytes,
        plan.timeoutMs,
      );
      results.push({
        ...run,
        setup,
        gateways: cluster ? cluster.gateways.length : 1,
        offeredDeliveryRate: deliveryRate,
      });
    }
    return results;
  } finally {
    clients.close();
    await server?.stop();
    await cluster?.stop();
  }
}
