#!/usr/bin/env node
/**
 * `make bench-scale`: the cluster scaled out on this machine. For each G of
 * `--gateways`, one nats-server and G gateways in cluster mode (each its own
 * process; nothing pinned: on 2 cores a pinned gateway would only wait for
 * its core), `--per-gateway` clients connected directly to each gateway (no
 * HAProxy: the split is exact) by forked load generators (scale-worker.ts),
 * each client subscribed to one of its gateway's channels. Per gateway:
 * connections held (its gauge), RSS per connection, deliveries per gateway
 * CPU-second and NATS bytes in during a fan-out; and a check of
 * interest-based routing: publications to channels only gw2's clients hold
 * reach no other gateway. Prints a table per G, writes scale.json and
 * scale.png to `--out`; exits 1 when a run is not valid (a failed connect,
 * a lost delivery, a leaked publication). `--quick` is the smoke size.
 */

import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type Nats, startNats } from '@switchboard/gateway/dist/test/cluster.js';
import { type Gateway, metric, startGateway, waitUntil } from '@switchboard/gateway/dist/test/harness.js';
import { Subjects } from '@switchboard/protocol';
import { centrifugo, type Connection } from '../connection.js';
import { openLoop, payload } from '../tracker.js';
import { per, tokens } from './measure.js';
import { chart, renderCharts } from './plot.js';
import { connectionCeiling, cpuSeconds, machine, settledRss } from './proc.js';
import { kb, table } from './report.js';
import type {
  Connected,
  Deliveries,
  Finished,
  WorkerCommand,
  WorkerJob,
  WorkerReply,
  WorkerRequest,
} from './scale-worker.js';
import { SWITCHBOARD_BENCH_ENV } from './servers.js';

const SECRET = 'bench-secret-hs256';
const WORKER = fileURLToPath(new URL('./scale-worker.js', import.meta.url));
const NATS_PREFIX = 'sb';
const SUBJECTS = new Subjects(NATS_PREFIX);
/**
 * The routing check: a gateway none of whose clients subscribe to the
 * channels published to may receive at most this share of the NATS bytes the
 * subscribed one received (its own heartbeat acknowledgements, not publications).
 */
const ROUTING_LEAK_SHARE = 0.05;

interface Plan {
  /** Gateway counts, one run each. */
  gateways: number[];
  perGateway: number;
  /** Channels per gateway; client i of a gateway subscribes to its channel i % channels. */
  channels: number;
  /** Connection attempts per second, all load generators together. */
  connectRate: number;
  /** Fan-out: deliveries per second offered to each gateway, for `fanoutSeconds`. */
  deliveryRate: number;
  fanoutSeconds: number;
  /** Routing check: publications from gw1's publisher to gw2's channels, and their rate. */
  routingPublications: number;
  routingRate: number;
  payloadBytes: number;
  timeoutMs: number;
  /** Longest wait for a gateway's RSS to settle before it is read. */
  settleMs: number;
  /** How long each gateway's CPU is read while it only holds its clients. */
  idleSeconds: number;
}

function plan(quick: boolean): Plan {
  const common = { channels: 100, payloadBytes: 64 };
  return quick
    ? {
        ...common,
        gateways: [2],
        perGateway: 200,
        connectRate: 1000,
        deliveryRate: 2000,
        fanoutSeconds: 2,
        routingPublications: 200,
        routingRate: 200,
        timeoutMs: 10_000,
        settleMs: 1000,
        idleSeconds: 1,
      }
    : {
        ...common,
        gateways: [1, 2, 4, 6],
        // 6 × 16,667 = 100,002 clients.
        perGateway: 16_667,
        connectRate: 2500,
        deliveryRate: 5000,
        fanoutSeconds: 10,
        routingPublications: 300,
        routingRate: 100,
        timeoutMs: 30_000,
        settleMs: 5000,
        idleSeconds: 5,
      };
}

/** What one gateway did in one phase: counted at its clients, its CPU, what NATS sent it. */
interface PhaseGateway extends Deliveries {
  cpuSeconds: number;
  natsBytesIn: number;
  natsMsgsIn: number;
}

interface Phase {
  publications: number;
  publishErrors: number;
  seconds: number;
  gateways: PhaseGateway[];
}

interface GatewayResult {
  node: string;
  clients: number;
  connected: number;
  failed: number;
  /** The gateway's own `switchboard_connections` gauge once every client connected. */
  held: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  bytesPerConnection: number;
  /** Live subjects of `scale:` channels the gateway subscribes to in NATS: its own channels, nobody else's. */
  natsSubscriptions: number;
  /** Share of a core the gateway used holding its clients, nothing published (session ticks, pings, heartbeats). */
  idleCpu: number;
  fanout: PhaseGateway & { perCpuSecond: number };
  routing?: PhaseGateway;
}

interface ScaleRun {
  gateways: number;
  workers: number;
  connectSeconds: number;
  rows: GatewayResult[];
  total: {
    clients: number;
    connected: number;
    failed: number;
    held: number;
    bytesPerConnection: number;
    expected: number;
    delivered: number;
    lost: number;
    duplicated: number;
    cpuSeconds: number;
    /** Aggregate deliveries per gateway CPU-second, and per wall-clock second. */
    perCpuSecond: number;
    perSecond: number;
  };
  fanout: { publications: number; publishErrors: number; seconds: number };
  routing?: {
    from: string;
    to: string;
    publications: number;
    publishErrors: number;
    targetBytes: number;
    /** The most NATS bytes any other gateway received meanwhile. */
    othersMaxBytes: number;
    ok: boolean;
  };
  /** Client connections that closed during the run, and every error the load generators counted. */
  closed: number;
  errors: Record<string, number>;
  problems: string[];
  valid: boolean;
}

/** Each process's CPU use (cores) over `seconds` of doing nothing but what it does anyway. */
async function idleCpu(pids: number[], seconds: number): Promise<number[]> {
  const before = pids.map(cpuSeconds);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  return pids.map((pid, k) => (cpuSeconds(pid) - before[k]!) / seconds);
}

const sum = <T>(items: T[], f: (item: T) => number) => items.reduce((a, item) => a + f(item), 0);
const prefixOf = (node: string) => `scale:${node}-`;

/** A forked scale-worker.ts and its requests in flight. */
class Worker {
  private readonly child: ChildProcess;
  private readonly exited: Promise<unknown>;
  private readonly pending = new Map<number, { resolve(reply: unknown): void; reject(err: Error): void }>();
  private nextId = 1;

  constructor(
    /** Index of its gateway. */
    readonly gateway: number,
    job: WorkerJob,
  ) {
    this.child = fork(WORKER, [JSON.stringify(job)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.exited = once(this.child, 'exit');
    this.child.on('message', (message: WorkerReply) => {
      const p = this.pending.get(message.id);
      this.pending.delete(message.id);
      if ('error' in message) p?.reject(new Error(`load generator: ${message.error}`));
      else p?.resolve(message.reply);
    });
    this.child.once('exit', (code, signal) => {
      for (const p of this.pending.values()) p.reject(new Error(`load generator exited (${code ?? signal})`));
      this.pending.clear();
    });
  }

  private ask<T>(command: WorkerCommand): Promise<T> {
    if (!this.child.connected) return Promise.reject(new Error('load generator gone'));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (reply: unknown) => void, reject });
      this.child.send({ id, ...command } satisfies WorkerRequest);
    });
  }

  connect = () => this.ask<Connected>({ type: 'connect' });
  reset = () => this.ask<null>({ type: 'reset' });
  deliveries = (publications: Record<string, number>, timeoutMs: number) =>
    this.ask<Deliveries>({ type: 'deliveries', publications, timeoutMs });
  finish = () => this.ask<Finished>({ type: 'finish' });

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill();
    await this.exited;
  }
}

interface NatsConnz {
  connections: {
    name?: string;
    out_bytes: number;
    out_msgs: number;
    subscriptions_list?: string[];
  }[];
}

/**
 * Each gateway's NATS connection (named `switchboard <node>`) as nats-server's
 * monitoring sees it: what the server sent it so far (out_bytes: the
 * gateway's bytes in) and the subjects it subscribes to.
 */
async function natsView(nats: Nats, nodes: string[]) {
  const res = await fetch(`http://127.0.0.1:${nats.monitorPort}/connz?subs=1`, {
    signal: AbortSignal.timeout(5000),
  });
  const { connections } = (await res.json()) as NatsConnz;
  return nodes.map((node) => {
    const mine = connections.filter((c) => c.name === `switchboard ${node}`);
    if (mine.length === 0) throw new Error(`no NATS connection named "switchboard ${node}"`);
    return {
      bytes: sum(mine, (c) => c.out_bytes),
      msgs: sum(mine, (c) => c.out_msgs),
      subjects: new Set(mine.flatMap((c) => c.subscriptions_list ?? [])),
    };
  });
}

/** One run's processes and clients. */
interface Running {
  nats: Nats;
  nodes: string[];
  gateways: Gateway[];
  /** Per gateway, the channels its clients subscribe to. */
  channels: string[][];
  workers: Worker[];
  publishers: Connection[];
}

/** `count` publications from the publisher on gateway `from`, round robin over gateway `to`'s channels. */
interface Send {
  from: number;
  to: number;
  count: number;
  rate: number;
}

/**
 * Publishes `sends` open-loop (all at once) and waits until every client got
 * what its channel was sent; per gateway the deliveries, its CPU time and
 * the NATS bytes it received, from the publishing's start to the last delivery.
 */
async function phase(run: Running, sends: Send[], plan: Plan): Promise<Phase> {
  await Promise.all(run.workers.map((w) => w.reset()));
  const publications: Record<string, number> = {};
  for (const { to, count } of sends) {
    const channels = run.channels[to]!;
    for (let i = 0; i < count; i++) {
      const channel = channels[i % channels.length]!;
      publications[channel] = (publications[channel] ?? 0) + 1;
    }
  }
  const pids = run.gateways.map((g) => g.process.pid!);
  const natsBefore = await natsView(run.nats, run.nodes);
  const cpuBefore = pids.map(cpuSeconds);
  const started = performance.now();
  let publishErrors = 0;
  await Promise.all(
    sends.map(({ from, to, count, rate }) => {
      const channels = run.channels[to]!;
      return openLoop(
        count,
        rate,
        (i) =>
          run.publishers[from]!.publish(
            channels[i % channels.length]!,
            payload(Math.floor(i / channels.length), plan.payloadBytes),
          ),
        () => publishErrors++,
      );
    }),
  );
  const counts = await Promise.all(run.workers.map((w) => w.deliveries(publications, plan.timeoutMs)));
  const seconds = (performance.now() - started) / 1000;
  const cpu = pids.map((pid, k) => cpuSeconds(pid) - cpuBefore[k]!);
  const natsAfter = await natsView(run.nats, run.nodes);
  return {
    publications: sum(sends, (s) => s.count),
    publishErrors,
    seconds,
    gateways: run.gateways.map((_, k) => {
      const mine = counts.filter((_, w) => run.workers[w]!.gateway === k);
      return {
        expected: sum(mine, (c) => c.expected),
        delivered: sum(mine, (c) => c.delivered),
        duplicated: sum(mine, (c) => c.duplicated),
        reordered: sum(mine, (c) => c.reordered),
        cpuSeconds: cpu[k]!,
        natsBytesIn: natsAfter[k]!.bytes - natsBefore[k]!.bytes,
        natsMsgsIn: natsAfter[k]!.msgs - natsBefore[k]!.msgs,
      };
    }),
  };
}

function gatewayEnv(node: string, nats: Nats): Record<string, string> {
  return {
    ...SWITCHBOARD_BENCH_ENV,
    // No history: publications go straight to the channels' live subjects.
    SWITCHBOARD_NAMESPACES: JSON.stringify([
      { name: 'scale', allow_subscribe_for_client: true, allow_publish_for_client: true },
    ]),
    SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: SECRET,
    SWITCHBOARD_GRPC_PORT: '0',
    SWITCHBOARD_NODE_ID: node,
    SWITCHBOARD_BROKER: 'nats',
    SWITCHBOARD_NATS_URL: nats.url,
    SWITCHBOARD_NATS_PREFIX: NATS_PREFIX,
  };
}

/** One run with `count` gateways: start, connect, routing check, fan-out, stop. */
async function scaleRun(count: number, plan: Plan): Promise<ScaleRun> {
  const nats = await startNats();
  const nodes = Array.from({ length: count }, (_, k) => `gw${k + 1}`);
  const run: Running = { nats, nodes, gateways: [], channels: [], workers: [], publishers: [] };
  try {
    // One after the other: six starting at once on 2 cores could outlast the harness's start timeout.
    for (const node of nodes) run.gateways.push(await startGateway(gatewayEnv(node, nats)));
    const pids = run.gateways.map((g) => g.process.pid!);
    const rssBefore = await Promise.all(pids.map((pid) => settledRss(pid, plan.settleMs)));

    // Each gateway's clients from load generators of their own, at most ~18,000 sockets each.
    const perWorker = connectionCeiling() - 1000;
    const clients = count * plan.perGateway;
    run.gateways.forEach((gateway, k) => {
      for (let from = 0; from < plan.perGateway; from += perWorker) {
        const n = Math.min(perWorker, plan.perGateway - from);
        const job: WorkerJob = {
          url: gateway.wsUrl,
          from,
          count: n,
          channelPrefix: prefixOf(nodes[k]!),
          channels: plan.channels,
          connectRate: (plan.connectRate * n) / clients,
          secret: SECRET,
          timeoutMs: plan.timeoutMs,
        };
        run.workers.push(new Worker(k, job));
      }
    });
    // Answered once a load generator has loaded: its start-up is not connect time.
    await Promise.all(run.workers.map((w) => w.reset()));
    const connectStarted = performance.now();
    const connects = await Promise.all(run.workers.map((w) => w.connect()));
    const connectSeconds = (performance.now() - connectStarted) / 1000;
    const ofGateway = <T>(values: T[], k: number) => values.filter((_, w) => run.workers[w]!.gateway === k);
    const connected = nodes.map((_, k) => sum(ofGateway(connects, k), (c) => c.connected));
    run.channels = nodes.map((_, k) => [...new Set(ofGateway(connects, k).flatMap((c) => c.channels))]);

    // The gateways count their clients, and NATS knows every subscribed channel, before anything is published.
    let held: number[] = [];
    await waitUntil(
      async () => {
        held = await Promise.all(run.gateways.map((g) => metric(g, 'switchboard_connections')));
        return held.every((n, k) => n === connected[k]);
      },
      plan.timeoutMs,
      () => `gateways to hold their clients: ${held.join(', ')} of ${connected.join(', ')}`,
    );
    await waitUntil(
      async () =>
        (await natsView(nats, nodes)).every((view, k) =>
          run.channels[k]!.every((channel) => view.subjects.has(SUBJECTS.live('scale', channel))),
        ),
      plan.timeoutMs,
      () => 'every gateway subscribed to its channels in NATS',
    );
    const allLive = new Set(run.channels.flat().map((channel) => SUBJECTS.live('scale', channel)));
    const subscriptions = (await natsView(nats, nodes)).map(
      (view) => [...view.subjects].filter((s) => allLive.has(s)).length,
    );
    const rssAfter = await Promise.all(pids.map((pid) => settledRss(pid, plan.settleMs)));
    const idle = await idleCpu(pids, plan.idleSeconds);

    const token = tokens(SECRET);
    run.publishers = await Promise.all(
      run.gateways.map((g) => centrifugo({ url: g.wsUrl, token: token(-1), timeoutMs: plan.timeoutMs })),
    );
    const routing =
      count >= 2
        ? await phase(
            run,
            [{ from: 0, to: 1, count: plan.routingPublications, rate: plan.routingRate }],
            plan,
          )
        : undefined;
    // Each gateway's publisher to its own channels: deliveryRate deliveries per second each, for
    // `share` of fanoutSeconds. A fifth of it first, unmeasured: JIT and buffers warm.
    const fanoutSends = (share: number): Send[] =>
      run.channels.map((channels, k) => {
        const rate = (plan.deliveryRate * channels.length) / Math.max(1, connected[k]!);
        return { from: k, to: k, count: Math.max(1, Math.round(rate * plan.fanoutSeconds * share)), rate };
      });
    await phase(run, fanoutSends(0.2), plan);
    const fanout = await phase(run, fanoutSends(1), plan);
    const finished = await Promise.all(run.workers.map((w) => w.finish()));

    const rows: GatewayResult[] = nodes.map((node, k) => {
      const f = fanout.gateways[k]!;
      return {
        node,
        clients: plan.perGateway,
        connected: connected[k]!,
        failed: sum(ofGateway(connects, k), (c) => c.failed),
        held: held[k]!,
        rssBeforeBytes: rssBefore[k]!,
        rssAfterBytes: rssAfter[k]!,
        bytesPerConnection: per(rssAfter[k]! - rssBefore[k]!, held[k]!),
        natsSubscriptions: subscriptions[k]!,
        idleCpu: idle[k]!,
        fanout: { ...f, perCpuSecond: per(f.delivered, f.cpuSeconds) },
        ...(routing ? { routing: routing.gateways[k]! } : {}),
      };
    });
    const errors: Record<string, number> = {};
    for (const e of [...connects, ...finished].flatMap((r) => Object.entries(r.errors)))
      errors[e[0]] = (errors[e[0]] ?? 0) + e[1];
    const totalOf = (f: (r: GatewayResult) => number) => sum(rows, f);
    const cpu = totalOf((r) => r.fanout.cpuSeconds);
    const delivered = totalOf((r) => r.fanout.delivered);
    const expected = totalOf((r) => r.fanout.expected);
    const total = {
      clients,
      connected: totalOf((r) => r.connected),
      failed: totalOf((r) => r.failed),
      held: totalOf((r) => r.held),
      bytesPerConnection:
        totalOf((r) => r.rssAfterBytes - r.rssBeforeBytes) /
        Math.max(
          1,
          totalOf((r) => r.held),
        ),
      expected,
      delivered,
      lost: Math.max(0, expected - delivered),
      duplicated: totalOf((r) => r.fanout.duplicated),
      cpuSeconds: cpu,
      perCpuSecond: per(delivered, cpu),
      perSecond: delivered / fanout.seconds,
    };
    const routingResult = routing && routingCheck(routing, nodes);
    const closed = sum(finished, (f) => f.closed);
    const problems = [
      ...(total.failed > 0 ? [`${total.failed} connects failed`] : []),
      ...(closed > 0 ? [`${closed} connections closed during the run`] : []),
      ...rows.filter((r) => r.held !== plan.perGateway).map((r) => `${r.node} holds ${r.held}`),
      ...(total.lost > 0 ? [`${total.lost} fan-out deliveries lost`] : []),
      ...(total.duplicated > 0 ? [`${total.duplicated} fan-out deliveries duplicated`] : []),
      ...(fanout.publishErrors + (routing?.publishErrors ?? 0) > 0 ? ['publish errors'] : []),
      ...(routingResult && !routingResult.ok ? ['routing check failed'] : []),
    ];
    return {
      gateways: count,
      workers: run.workers.length,
      connectSeconds,
      rows,
      total,
      fanout: {
        publications: fanout.publications,
        publishErrors: fanout.publishErrors,
        seconds: fanout.seconds,
      },
      ...(routingResult ? { routing: routingResult } : {}),
      closed,
      errors,
      problems,
      valid: problems.length === 0,
    };
  } finally {
    for (const publisher of run.publishers) publisher.close();
    await Promise.all(run.workers.map((w) => w.stop()));
    await Promise.all(
      run.gateways.map(async (g) => {
        // Stopped with clients left, a gateway would drain them in pauses over seconds: wait for them to go.
        await waitUntil(async () => (await metric(g, 'switchboard_connections')) === 0, plan.timeoutMs).catch(
          () => undefined,
        );
        await g.stop();
      }),
    );
    await nats.stop();
  }
}

/** gw1 published to gw2's channels: gw2's clients got all of it, and no other gateway received it. */
function routingCheck(routing: Phase, nodes: string[]): NonNullable<ScaleRun['routing']> {
  const [target, others] = [routing.gateways[1]!, routing.gateways.filter((_, k) => k !== 1)];
  const othersMaxBytes = Math.max(...others.map((g) => g.natsBytesIn));
  return {
    from: nodes[0]!,
    to: nodes[1]!,
    publications: routing.publications,
    publishErrors: routing.publishErrors,
    targetBytes: target.natsBytesIn,
    othersMaxBytes,
    ok:
      routing.publishErrors === 0 &&
      target.expected > 0 &&
      target.delivered === target.expected &&
      target.duplicated === 0 &&
      othersMaxBytes <= ROUTING_LEAK_SHARE * target.natsBytesIn,
  };
}

const percent = (share: number) => `${(share * 100).toFixed(1)} %`;

function formatRun(run: ScaleRun, plan: Plan): string {
  const t = run.total;
  const rows = run.rows.map((r) => [
    r.node,
    String(r.connected),
    String(r.failed),
    String(r.held),
    kb(r.bytesPerConnection),
    String(r.natsSubscriptions),
    percent(r.idleCpu),
    String(r.fanout.delivered),
    String(Math.max(0, r.fanout.expected - r.fanout.delivered)),
    r.fanout.cpuSeconds.toFixed(2),
    r.fanout.perCpuSecond.toFixed(0),
    kb(r.fanout.natsBytesIn),
    r.routing ? kb(r.routing.natsBytesIn) : '–',
  ]);
  rows.push([
    'total',
    String(t.connected),
    String(t.failed),
    String(t.held),
    kb(t.bytesPerConnection),
    String(sum(run.rows, (r) => r.natsSubscriptions)),
    percent(sum(run.rows, (r) => r.idleCpu)),
    String(t.delivered),
    String(t.lost),
    t.cpuSeconds.toFixed(2),
    t.perCpuSecond.toFixed(0),
    kb(sum(run.rows, (r) => r.fanout.natsBytesIn)),
    run.routing ? kb(sum(run.rows, (r) => r.routing?.natsBytesIn ?? 0)) : '–',
  ]);
  const lines = [
    `${run.gateways} gateway${run.gateways > 1 ? 's' : ''} × ${plan.perGateway} clients (${plan.channels} channels each), ${run.workers} load generators`,
    table(
      [
        'gateway',
        'connected',
        'failed',
        'held',
        'RSS/conn',
        'NATS subs',
        'idle CPU',
        'delivered',
        'lost',
        'CPU s',
        'deliveries/CPU-s',
        'NATS in, fan-out',
        'NATS in, routing',
      ],
      rows,
    ),
    `connect: ${t.connected} clients in ${run.connectSeconds.toFixed(1)} s (${(t.connected / run.connectSeconds).toFixed(0)}/s)`,
    `fan-out: ${run.fanout.publications} publications (${plan.deliveryRate} deliveries/s offered per gateway) in ${run.fanout.seconds.toFixed(1)} s: ` +
      `${t.perSecond.toFixed(0)} deliveries/s aggregate, ${t.perCpuSecond.toFixed(0)} per gateway CPU-second`,
  ];
  if (run.routing) {
    const r = run.routing;
    lines.push(
      `routing: ${r.publications} publications from ${r.from} to ${r.to}'s channels: ${r.to} received ${kb(r.targetBytes)} from NATS, ` +
        `every other gateway at most ${kb(r.othersMaxBytes)} (limit ${(ROUTING_LEAK_SHARE * 100).toFixed(0)} %): ${r.ok ? 'PASS' : 'FAIL'}`,
    );
  }
  const errors = Object.entries(run.errors).map(([what, n]) => `${what}: ${n}`);
  lines.push(`errors: ${errors.join(', ') || 'none'}`);
  lines.push(`valid: ${run.valid ? 'yes' : `no (${run.problems.join('; ')})`}`);
  return `${lines.join('\n')}\n`;
}

function scaleCharts(runs: ScaleRun[]): string[] {
  const points = (f: (r: ScaleRun) => number) => runs.map((r): [number, number] => [r.gateways, f(r)]);
  return [
    chart('Connections held', 'gateways', 'client connections (all gateways)', [
      { label: 'held', points: points((r) => r.total.held) },
    ]),
    chart('Fan-out across gateways', 'gateways', 'deliveries (all gateways)', [
      { label: 'per gateway CPU-second', points: points((r) => r.total.perCpuSecond) },
      { label: 'per second', points: points((r) => r.total.perSecond) },
    ]),
  ];
}

async function main(): Promise<boolean> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      out: { type: 'string' },
      gateways: { type: 'string' },
      'per-gateway': { type: 'string' },
      rate: { type: 'string' },
      'connect-rate': { type: 'string' },
      plot: { type: 'boolean', default: true },
      'no-plot': { type: 'boolean', default: false },
    },
  });
  const p = plan(values.quick);
  const positive = (text: string) => Math.max(1, Math.floor(Number(text)));
  if (values.gateways) p.gateways = values.gateways.split(',').map(positive);
  if (values['per-gateway']) p.perGateway = positive(values['per-gateway']);
  if (values.rate) p.deliveryRate = positive(values.rate);
  if (values['connect-rate']) p.connectRate = positive(values['connect-rate']);
  if (p.gateways.some(Number.isNaN) || [p.perGateway, p.deliveryRate, p.connectRate].some(Number.isNaN))
    throw new Error('--gateways, --per-gateway, --rate and --connect-rate take numbers');
  if (p.perGateway > connectionCeiling())
    throw new Error(
      `--per-gateway ${p.perGateway}: a gateway holds at most ${connectionCeiling()} here (ulimit -n)`,
    );
  const out = values.out ?? (values.quick ? 'test-output/bench-scale-quick' : 'docs/benchmarks');
  mkdirSync(out, { recursive: true });

  const started = new Date();
  console.log(
    `Switchboard scale-out benchmark (${values.quick ? 'quick' : 'full'}), ${started.toISOString()}`,
  );
  console.log(`machine: ${JSON.stringify(machine())}`);
  console.log('pinning: none (NATS, the gateways and the load generators share every core)');
  console.log(`plan: ${JSON.stringify(p)}\n`);
  const runs: ScaleRun[] = [];
  for (const count of p.gateways) {
    const t0 = performance.now();
    console.error(`${count} gateways × ${p.perGateway} clients`);
    const run = await scaleRun(count, p);
    console.error(`${count} gateways: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    console.log(formatRun(run, p));
    runs.push(run);
  }
  const command = `node loadtest/dist/src/bench/scale.js ${process.argv.slice(2).join(' ')}`.trim();
  const file = join(out, 'scale.json');
  writeFileSync(
    file,
    `${JSON.stringify({ date: started.toISOString(), command, machine: machine(), pinning: 'none', plan: p, runs }, null, 2)}\n`,
  );
  console.log(`results: ${file}`);
  if (values.plot && !values['no-plot']) {
    const png = await renderCharts(scaleCharts(runs), join(out, 'scale'));
    console.log(png ? `plot: ${png}` : 'plot: skipped (no chromium; scripts/ensure-packages.sh chromium)');
  }
  return runs.every((r) => r.valid);
}

main().then(
  (valid) => process.exit(valid ? 0 : 1),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
