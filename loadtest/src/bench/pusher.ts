/**
 * The Pusher pass: Switchboard's Pusher edge (an embedded gateway with one
 * app) side by side with Soketi 1.6.1 (one app; loadtest/peers/soketi, `make
 * soketi`), each a process of its own pinned to the servers' core:
 *
 * - memory per idle connection as connections grow (connected, every one
 *   subscribed to one public channel), and at each level 1 channel × N
 *   fan-out, events triggered through the HTTP API (PusherTrigger: signed as
 *   the `pusher` SDK signs, batch_events when events queue up), deliveries
 *   per server CPU-second;
 * - connects per server CPU-second over the growth (upgrade,
 *   pusher:connection_established, pusher:subscribe to a public channel);
 * - across two nodes over NATS (one nats-server; two gateways with broker
 *   nats, two Soketi nodes with its NATS adapter), nothing pinned:
 *   subscribers on node 2, events triggered at node 1, numbered, at a fixed
 *   rate; lost, duplicated, out of order, deliveries/s and trigger→deliver
 *   latency.
 *
 * The subscribers are lean Pusher clients (lean-pusher.ts), so that one
 * process holds and reads as many as the servers do.
 */

import { execFileSync } from 'node:child_process';
import { startNats } from '@switchboard/gateway/dist/test/cluster.js';
import { SOKETI_VERSION, soketiMissing, startSoketi } from '@switchboard/gateway/dist/test/soketi.js';
import { loopbackAddresses } from '../fleet.js';
import { LeanStats } from '../lean-client.js';
import { type LeanPusher, PROBE, pusherFleet, pusherUrl } from '../lean-pusher.js';
import { type PusherApp, PusherTrigger } from '../pusher-trigger.js';
import { openLoop, payload, waitForDeliveries } from '../tracker.js';
import {
  ConnectClock,
  type ConnectRun,
  type DeliveryRun,
  deliveryRun,
  type MemoryPoint,
  type Plan,
  warmupCount,
} from './measure.js';
import { cpuSeconds, pin, settledRss } from './proc.js';
import { startServer } from './servers.js';

export const PUSHER_KINDS = ['switchboard', 'soketi'] as const;
export type PusherKind = (typeof PUSHER_KINDS)[number];

export const PUSHER_LABELS: Record<PusherKind, string> = {
  switchboard: 'Switchboard',
  soketi: `Soketi ${SOKETI_VERSION}`,
};

export interface PusherPlan {
  /** Connection counts of the memory, fan-out and connect rows (the other memory rows' by default). */
  levels: number[];
  /** Across two nodes: subscribers on node 2, events per second triggered at node 1, for `seconds`. */
  cluster: { subscribers: number; rate: number; seconds: number; warmupSeconds: number };
}

export interface PusherServerResult {
  kind: PusherKind;
  /** The Node the server ran on. */
  node: string;
  pinned: boolean;
  baselineRssBytes: number;
  memory: MemoryPoint[];
  fanout: DeliveryRun[];
  connect: ConnectRun;
  errors: Record<string, number>;
}

export interface PusherClusterResult extends DeliveryRun {
  kind: PusherKind;
  nodes: number;
  /** Events per second offered, and deliveries per second (× subscribers). */
  offeredRate: number;
  offeredDeliveryRate: number;
  plannedSeconds: number;
  /**
   * Deliveries per second over the planned time, or over the actual time
   * less 0.5 s where delivery ran later: a server that keeps up delivers
   * exactly the offered rate.
   */
  sustainedPerSecond: number;
  /** Everything delivered, no trigger error, done within 0.5 s of the planned end. */
  sustained: boolean;
  triggerRequests: number;
  errors: Record<string, number>;
}

export interface PusherResults {
  servers: PusherServerResult[];
  cluster: PusherClusterResult[];
  /** Why Soketi was left out (not installed), if it was. */
  skipped?: string;
}

/** The one app of every server. */
export const PUSHER_APP: PusherApp = { id: 'bench-app', key: 'bench-key', secret: 'bench-secret' };
const SWITCHBOARD_APPS = JSON.stringify([PUSHER_APP]);
const CHANNEL = 'fan';
const EVENT = 'bench';
const SOURCE_ADDRESSES = loopbackAddresses(4);

interface PusherServer {
  pid: number;
  /** ws://host:port */
  wsOrigin: string;
  /** The HTTP API's origin. */
  apiUrl: string;
  node: string;
  pinned: boolean;
  stop(): Promise<void>;
}

const nodeVersion = (node: string) =>
  node === process.execPath
    ? process.version
    : execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();

/** One server of `kind` on `core` ('all': unpinned); `nats` makes it a node of a cluster. */
async function startPusher(
  kind: PusherKind,
  secret: string,
  core: number | 'all',
  nats?: { url: string; node: number },
): Promise<PusherServer> {
  if (kind === 'switchboard') {
    const server = await startServer('switchboard', secret, core, {
      SWITCHBOARD_PUSHER_APPS: SWITCHBOARD_APPS,
      ...(nats
        ? {
            SWITCHBOARD_NODE_ID: `gw${nats.node}`,
            SWITCHBOARD_BROKER: 'nats',
            SWITCHBOARD_NATS_URL: nats.url,
          }
        : {}),
    });
    return {
      pid: server.pid,
      wsOrigin: `ws://${new URL(server.url).host}`,
      apiUrl: server.internalUrl!,
      node: process.version,
      pinned: server.pinned,
      stop: server.stop,
    };
  }
  const soketi = await startSoketi(
    { appId: PUSHER_APP.id, key: PUSHER_APP.key, secret: PUSHER_APP.secret },
    nats
      ? {
          SOKETI_ADAPTER_DRIVER: 'nats',
          SOKETI_ADAPTER_NATS_SERVERS: JSON.stringify([nats.url]),
          // Without it, every cluster-wide query asks nats-server's $SYS account how many nodes there are.
          SOKETI_ADAPTER_NATS_NODES_NUMBER: '2',
        }
      : {},
  );
  const pid = soketi.process.pid!;
  return {
    pid,
    wsOrigin: `ws://${soketi.host}:${soketi.port}`,
    apiUrl: soketi.url,
    node: nodeVersion(soketi.node),
    pinned: pin(pid, core),
    stop: soketi.stop,
  };
}

const alive = (subscribers: LeanPusher[]) => subscribers.filter((s) => !s.closed);

/**
 * `count` events on CHANNEL at `rate` per second, numbered from 0 for every
 * subscriber (their sequences reset), each carrying tracker.ts's payload as
 * its JSON data; waits for the deliveries. Server CPU read of `pid`.
 */
async function fanout(
  trigger: PusherTrigger,
  stats: LeanStats,
  subscribers: LeanPusher[],
  count: number,
  rate: number,
  plan: Plan,
  pid?: number,
): Promise<DeliveryRun> {
  const receivers = alive(subscribers);
  for (const s of receivers) s.resetSequence();
  stats.reset();
  const expected = count * receivers.length;
  let publishErrors = 0;
  const cpuBefore = pid === undefined ? 0 : cpuSeconds(pid);
  const started = performance.now();
  await openLoop(
    count,
    rate,
    (i) => trigger.trigger(CHANNEL, EVENT, JSON.stringify(payload(i, plan.payloadBytes))),
    () => publishErrors++,
  );
  const published = performance.now();
  await waitForDeliveries(stats, expected, plan.timeoutMs);
  // The end is the last read: a wait that gave up after a quiet while does not count.
  const ended = Math.max(published, Math.min(performance.now(), stats.lastReadAt - performance.timeOrigin));
  const seconds = (ended - started) / 1000;
  const cpu = pid === undefined ? 0 : cpuSeconds(pid) - cpuBefore;
  return deliveryRun(stats, {
    n: receivers.length,
    published: count,
    expected,
    publishErrors,
    seconds,
    cpuSeconds: cpu,
  });
}

/** 1 × N events for `deliveries` deliveries at `deliveryRate` deliveries/s (measure.ts's oneChannel). */
const oneChannel = (n: number, deliveries: number, deliveryRate: number) => ({
  count: Math.max(5, Math.ceil(deliveries / Math.max(1, n))),
  rate: Math.max(1, deliveryRate / Math.max(1, n)),
});

/** Memory, 1 × N fan-out and connect rate of one server, pinned to `core`. */
export async function pusherServer(
  kind: PusherKind,
  plan: Plan,
  secret: string,
  core: number,
): Promise<PusherServerResult> {
  const server = await startPusher(kind, secret, core);
  const stats = new LeanStats();
  stats.latencyEvery = 8;
  const trigger = new PusherTrigger(server.apiUrl, PUSHER_APP, plan.timeoutMs);
  const subscribers: LeanPusher[] = [];
  const errors = new Map<string, number>();
  try {
    const baselineRssBytes = await settledRss(server.pid, plan.settleMs);
    const memory: MemoryPoint[] = [];
    const fanouts: DeliveryRun[] = [];
    const connects = new ConnectClock(server.pid, plan.pusher.levels.length, plan.connectWarmup);
    let opened = 0;
    for (const level of plan.pusher.levels) {
      await connects.level(
        async () => {
          const more = await pusherFleet(level - opened, CHANNEL, {
            url: pusherUrl(server.wsOrigin, PUSHER_APP.key),
            timeoutMs: plan.timeoutMs,
            stats,
            localAddresses: SOURCE_ADDRESSES,
            first: opened,
            errors,
          });
          subscribers.push(...more.subscribers);
        },
        () => subscribers.length,
      );
      opened = Math.max(opened, level);
      const rss = await settledRss(server.pid, plan.settleMs);
      const live = alive(subscribers).length;
      memory.push({ connections: live, rssBytes: rss, bytesPerConnection: (rss - baselineRssBytes) / live });
      const warmup = oneChannel(
        live,
        warmupCount(plan, plan.fanoutDeliveryRate, 5 * live),
        plan.fanoutDeliveryRate,
      );
      await fanout(trigger, stats, subscribers, warmup.count, warmup.rate, plan);
      const run = oneChannel(live, plan.fanoutDeliveries, plan.fanoutDeliveryRate);
      fanouts.push(await fanout(trigger, stats, subscribers, run.count, run.rate, plan, server.pid));
    }
    return {
      kind,
      node: server.node,
      pinned: server.pinned,
      baselineRssBytes,
      memory,
      fanout: fanouts,
      connect: connects.result(opened - subscribers.length),
      errors: Object.fromEntries(errors),
    };
  } finally {
    trigger.close();
    for (const s of subscribers) s.close();
    await server.stop();
  }
}

/** Triggers a probe event every 100 ms until every subscriber saw one (subscriptions reached every node). */
async function probe(trigger: PusherTrigger, subscribers: LeanPusher[], timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (alive(subscribers).some((s) => s.probes === 0)) {
    if (performance.now() > deadline) throw new Error('probe events did not reach every subscriber');
    await trigger.trigger(CHANNEL, PROBE, 'probe').catch(() => {});
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Two nodes of `kind` and one nats-server, nothing pinned (a pinned process
 * waiting for its core would be measured as latency): subscribers on node 2,
 * events triggered at node 1.
 */
export async function pusherCluster(
  kind: PusherKind,
  plan: Plan,
  secret: string,
): Promise<PusherClusterResult> {
  const { subscribers: count, rate, seconds, warmupSeconds } = plan.pusher.cluster;
  const nats = await startNats();
  const nodes: PusherServer[] = [];
  const stats = new LeanStats();
  const subscribers: LeanPusher[] = [];
  let trigger: PusherTrigger | undefined;
  try {
    for (const node of [1, 2]) nodes.push(await startPusher(kind, secret, 'all', { url: nats.url, node }));
    const [first, second] = nodes as [PusherServer, PusherServer];
    const fleet = await pusherFleet(count, CHANNEL, {
      url: pusherUrl(second.wsOrigin, PUSHER_APP.key),
      timeoutMs: plan.timeoutMs,
      stats,
      localAddresses: SOURCE_ADDRESSES,
    });
    subscribers.push(...fleet.subscribers);
    trigger = new PusherTrigger(first.apiUrl, PUSHER_APP, plan.timeoutMs);
    await probe(trigger, subscribers, plan.timeoutMs);
    await fanout(trigger, stats, subscribers, Math.max(1, Math.round(rate * warmupSeconds)), rate, plan);
    const events = Math.max(1, Math.round(rate * seconds));
    const run = await fanout(trigger, stats, subscribers, events, rate, plan);
    const plannedSeconds = events / rate;
    return {
      ...run,
      kind,
      nodes: nodes.length,
      offeredRate: rate,
      offeredDeliveryRate: rate * run.n,
      plannedSeconds,
      sustainedPerSecond: run.delivered / Math.max(plannedSeconds, run.seconds - 0.5),
      sustained: run.lost === 0 && run.publishErrors === 0 && run.seconds <= plannedSeconds + 0.5,
      triggerRequests: trigger.requests,
      errors: Object.fromEntries(fleet.errors),
    };
  } finally {
    trigger?.close();
    for (const s of subscribers) s.close();
    await Promise.all(nodes.map((n) => n.stop()));
    await nats.stop();
  }
}

/** The whole pass: both servers alone, pinned, then both clusters; Soketi left out when it is not installed. */
export async function pusherPass(
  plan: Plan,
  secret: string,
  core: number,
  log: (line: string) => void,
  unpinned: <T>(run: () => Promise<T>) => Promise<T>,
): Promise<PusherResults> {
  const skipped = soketiMissing();
  const kinds = PUSHER_KINDS.filter((k) => k !== 'soketi' || !skipped);
  if (skipped) log(`pusher: Soketi left out: ${skipped}`);
  const results: PusherResults = { servers: [], cluster: [], ...(skipped ? { skipped } : {}) };
  for (const kind of kinds) {
    const t0 = performance.now();
    log(
      `pusher, ${PUSHER_LABELS[kind]}: memory, 1×N fan-out, connect rate (${plan.pusher.levels.join(', ')})`,
    );
    results.servers.push(await pusherServer(kind, plan, secret, core));
    log(`pusher, ${PUSHER_LABELS[kind]}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const { subscribers, rate, seconds } = plan.pusher.cluster;
  for (const kind of kinds) {
    log(
      `pusher, ${PUSHER_LABELS[kind]}: 2 nodes over NATS, ${subscribers} subscribers on node 2, ${rate} events/s for ${seconds} s`,
    );
    results.cluster.push(await unpinned(() => pusherCluster(kind, plan, secret)));
  }
  return results;
}
