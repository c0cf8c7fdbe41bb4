/**
 * The hot channel: one channel, many subscribers, publications at a rate
 * that makes per-message costs dominate. Run against Switchboard with push
 * coalescing (SWITCHBOARD_PUSH_COALESCE_WINDOW > 0: one channel's pushes
 * within the window leave as one frame of newline-separated lines),
 * Switchboard without it, and bare uWS, at two sizes: `throughput`, the
 * issue's 1,000 × 2,000/s (2 million deliveries per second offered, more than
 * one core sends a frame each: the servers that do fall behind, and the run
 * ends a grace period after the last publication whatever is still queued),
 * and `latency`, subscribers cut to what every variant keeps up with, so that
 * the latency coalescing adds is a difference of two sustained runs. The
 * subscribers are lean clients (src/lean-client.ts) so that one generator
 * process can read what a server core sends; the publisher is the ordinary
 * Connection.
 */

import { centrifugo } from '../connection.js';
import { loopbackAddresses } from '../fleet.js';
import { LeanStats, leanFleet } from '../lean-client.js';
import { openLoop, payload, waitForDeliveries as waitFor } from '../tracker.js';
import { type DeliveryRun, deliveryRun, per, type Plan, tokens } from './measure.js';
import { coreTimes, cpuSeconds, tcpQueues } from './proc.js';
import { startServer } from './servers.js';

export const HOT_VARIANTS = ['switchboard-coalesce', 'switchboard', 'uws'] as const;
export type HotVariant = (typeof HOT_VARIANTS)[number];

/** `latency`: plan.hot.subscribers, every variant keeps up; `throughput`: plan.hot.throughputSubscribers, the size. */
export const HOT_SCENARIOS = ['latency', 'throughput'] as const;
export type HotScenario = (typeof HOT_SCENARIOS)[number];

/**
 * How long a `throughput` run goes on after its planned end for what is
 * still queued: a server that fell behind is measured over what it
 * delivered by then, on the CPU it spent.
 */
export const THROUGHPUT_GRACE_MS = 2000;

/** Of one variant's runs at one size, the one with the median p99 (the lower middle of an even count). */
export function medianP99Run(runs: readonly HotResult[]): HotResult | undefined {
  const sorted = [...runs].sort((a, b) => a.p99 - b.p99);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

export const HOT_LABELS: Record<HotVariant, string> = {
  'switchboard-coalesce': 'Switchboard, coalescing',
  switchboard: 'Switchboard, no coalescing',
  uws: 'bare uWS',
};

export interface HotResult extends DeliveryRun {
  variant: HotVariant;
  scenario: HotScenario;
  /** SWITCHBOARD_PUSH_COALESCE_WINDOW given (ms); undefined for bare uWS. */
  coalesceWindowMs: number | undefined;
  offeredRate: number;
  offeredDeliveryRate: number;
  /** Subscribers that connected and subscribed (of plan.subscribers). */
  subscribers: number;
  /** Lines (pushes) per WebSocket message, and messages per TCP read, as the subscribers saw them. */
  linesPerMessage: number;
  messagesPerRead: number;
  /** Seconds from the last publication sent to the last delivery read. */
  drainSeconds: number;
  /** Load generator CPU (user + system) over the run, as a fraction of one core. */
  generatorCpu: number;
  /** Server CPU over the run as a fraction of one core. */
  serverCpu: number;
  /**
   * The server's core over the run, as fractions of it: busy (any process or
   * kernel work), and softirq alone: the loopback TCP work of the server's
   * sends, which the kernel accounts to no process (so not to cpuSeconds).
   */
  serverCoreBusy: number;
  serverCoreSoftirq: number;
  /** Deliveries per server CPU-second counting the core's softirq time as the server's too. */
  perCpuSecondWithSoftirq: number;
  /** Seconds the publications were planned to take. */
  plannedSeconds: number;
  /**
   * The server kept up: nothing lost, no publish error, every delivery in
   * within half a second of the planned end. When false, latency is mostly
   * queueing in an overloaded server (or generator: see generatorCpu).
   */
  sustained: boolean;
  /** Largest kernel backlog seen (sampled every second): bytes waiting for the generator, in the server's send queues. */
  maxGeneratorBacklogBytes: number;
  maxServerSendQueueBytes: number;
  latencySamples: number;
  errors: Record<string, number>;
}

const CHANNEL = 'hot';

/** One variant at one size: its own server process pinned to `core`, the scenario's lean subscribers, one publisher. */
export async function hotChannel(
  variant: HotVariant,
  scenario: HotScenario,
  plan: Plan,
  secret: string,
  core: number,
): Promise<HotResult> {
  const hot = plan.hot;
  const size = scenario === 'throughput' ? hot.throughputSubscribers : hot.subscribers;
  const kind = variant === 'uws' ? 'uws' : 'switchboard';
  const window = variant === 'switchboard-coalesce' ? hot.coalesceWindowMs : 0;
  const env: Record<string, string> =
    kind === 'switchboard' ? { SWITCHBOARD_PUSH_COALESCE_WINDOW: String(window) } : {};
  const server = await startServer(kind, secret, core, env);
  const port = Number(new URL(server.url).port);
  const token = tokens(secret);
  const stats = new LeanStats();
  stats.latencyEvery = hot.latencyEvery;
  const { subscribers, errors } = await leanFleet(size, CHANNEL, {
    url: server.url,
    timeoutMs: plan.timeoutMs,
    stats,
    token,
    localAddresses: loopbackAddresses(4),
  });
  const publisher = await centrifugo({ url: server.url, token: token(-1), timeoutMs: plan.timeoutMs });
  let publishErrors = 0;
  let seq = 0;
  const publish = (count: number) =>
    openLoop(
      count,
      hot.rate,
      () => publisher.publish(CHANNEL, payload(seq++, plan.payloadBytes)),
      () => publishErrors++,
    );
  const live = () => subscribers.filter((s) => !s.closed).length;
  let sending: Promise<void> | undefined;
  try {
    const warmup = Math.max(1, Math.round(hot.rate * hot.warmupSeconds));
    await publish(warmup);
    await waitFor(stats, warmup * live(), plan.timeoutMs);
    stats.reset();
    publishErrors = 0;

    const count = Math.max(1, Math.round(hot.rate * hot.seconds));
    const receivers = live();
    const expected = count * receivers;
    let maxGeneratorBacklogBytes = 0;
    let maxServerSendQueueBytes = 0;
    const sample = setInterval(() => {
      const q = tcpQueues(port);
      maxGeneratorBacklogBytes = Math.max(maxGeneratorBacklogBytes, q.clientReceive);
      maxServerSendQueueBytes = Math.max(maxServerSendQueueBytes, q.serverSend);
    }, 1000);
    const cpuBefore = cpuSeconds(server.pid);
    const coreBefore = coreTimes(core);
    const generatorBefore = process.cpuUsage();
    const started = performance.now();
    let published: number | undefined;
    sending = publish(count).then(() => void (published = performance.now()));
    if (scenario === 'latency') {
      await sending;
      await waitFor(stats, expected, plan.timeoutMs);
    } else {
      await waitFor(stats, expected, hot.seconds * 1000 + THROUGHPUT_GRACE_MS);
    }
    // Publish replies still awaited (a server behind): the run ends now all the same.
    published ??= performance.now();
    // The end is the last read: a wait that gave up after a quiet while does not count.
    const ended = Math.max(published, Math.min(performance.now(), stats.lastReadAt - performance.timeOrigin));
    clearInterval(sample);
    const generator = process.cpuUsage(generatorBefore);
    const cpu = cpuSeconds(server.pid) - cpuBefore;
    const coreAfter = coreTimes(core);
    const softirq = coreAfter.softirq - coreBefore.softirq;
    const seconds = (ended - started) / 1000;
    return {
      variant,
      scenario,
      coalesceWindowMs: kind === 'switchboard' ? window : undefined,
      offeredRate: hot.rate,
      offeredDeliveryRate: hot.rate * receivers,
      subscribers: receivers,
      ...deliveryRun(stats, {
        n: receivers,
        published: count,
        expected,
        publishErrors,
        seconds,
        cpuSeconds: cpu,
      }),
      linesPerMessage: per(stats.lines, stats.messages),
      messagesPerRead: per(stats.messages, stats.reads),
      drainSeconds: (ended - published) / 1000,
      generatorCpu: (generator.user + generator.system) / 1e6 / seconds,
      serverCpu: cpu / seconds,
      serverCoreBusy: (coreAfter.busy - coreBefore.busy) / seconds,
      serverCoreSoftirq: softirq / seconds,
      perCpuSecondWithSoftirq: per(stats.delivered, cpu + softirq),
      plannedSeconds: count / hot.rate,
      sustained: stats.delivered >= expected && publishErrors === 0 && seconds <= count / hot.rate + 0.5,
      maxGeneratorBacklogBytes,
      maxServerSendQueueBytes,
      latencySamples: stats.latency.count,
      errors: Object.fromEntries(errors),
    };
  } finally {
    publisher.close();
    for (const s of subscribers) s.close();
    await server.stop();
    // Replies the stopped server never sent: their requests fail with its close.
    await sending;
  }
}
