#!/usr/bin/env node
/**
 * `make soak`: one real gateway (embedded mode, the bench's settings, pinned
 * to core 1; this generator on core 0) holds `--connections` authenticated
 * WebSocket clients, each subscribed to one of `--channels` channels, for
 * `--minutes` while a slice of them is closed and reopened every few seconds
 * (`--churn` of them per minute) and one publisher client publishes
 * `--rate` publications per second round robin over the channels. Every
 * `--sample-seconds` it reads the gateway's RSS (/proc/<pid>/status), JS
 * heap (its Prometheus metrics), open fds (/proc/<pid>/fd) and connections
 * gauge, and the deliveries (soak-ledger.ts); and after every mark-compact
 * (V8's GC trace, trace-gc.ts) the heap it left and the RSS. At the end:
 * slopes per hour after the warm-up and the verdict (soak-report.ts),
 * soak.json and a plot in --out.
 *   node loadtest/dist/src/bench/soak.js [--minutes 10] [--connections 19000] [--churn 0.1] [--rate 100] [--out dir]
 */

import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { GATEWAY_NODE_FLAG } from '@switchboard/gateway/dist/test/harness.js';
import { centrifugo, type Connection } from '../connection.js';
import { Fleet, loopbackAddresses } from '../fleet.js';
import { Histogram } from '../histogram.js';
import { signHs256 } from '../jwt.js';
import { now, type Payload, payload } from '../tracker.js';
import { majorGcs } from './gc-trace.js';
import { chart, renderCharts, type Series } from './plot.js';
import { connectionCeiling, cpuSeconds, machine, pin, rssBytes, settledRss } from './proc.js';
import { Ledger, type Session } from './soak-ledger.js';
import {
  BOUNDS,
  ChurnSchedule,
  formatSamples,
  formatVerdict,
  judge,
  metricValue,
  pickRandom,
  type Sample,
  type SeenGc,
  seededRandom,
  timeTicks,
  type VerdictRow,
  warmupEnd,
} from './soak-report.js';
import { startServer } from './servers.js';

const SECRET = 'bench-secret-hs256';
const SERVER_CORE = 1;
const LOAD_CORE = 0;
/** A session is judged on publications answered this long before it ended (soak-ledger.ts). */
const GRACE_MS = 5000;
const TIMEOUT_MS = 30_000;
const TRACE_GC = fileURLToPath(new URL('./trace-gc.js', import.meta.url));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

/** A connection slot's state. */
const DOWN = 0;
const JOINING = 1;
const UP = 2;
const LEAVING = 3;
/** Closing after a refused subscribe: tried again at the next churn tick, not at once. */
const RETRY = 4;

/** GET on the gateway's internal port with a connection of its own, closed after the answer (no fd left behind). */
function scrape(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(url, { agent: false, headers: { connection: 'close' }, timeout: TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () =>
        res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: HTTP ${res.statusCode}`)),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: timed out`)));
    req.on('error', reject);
  });
}

async function main(): Promise<boolean> {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '10' },
      connections: { type: 'string' },
      churn: { type: 'string', default: '0.1' },
      rate: { type: 'string', default: '100' },
      channels: { type: 'string', default: '100' },
      'sample-seconds': { type: 'string', default: '10' },
      'churn-seconds': { type: 'string', default: '5' },
      warmup: { type: 'string', default: '0.2' },
      'connect-rate': { type: 'string', default: '2000' },
      'payload-bytes': { type: 'string', default: '64' },
      seed: { type: 'string', default: '1' },
      out: { type: 'string' },
      plot: { type: 'boolean', default: true },
      'no-plot': { type: 'boolean', default: false },
    },
  });
  const number = (name: keyof typeof values, min: number) => {
    const v = Number(values[name]);
    if (!Number.isFinite(v) || v < min) throw new Error(`--${name} must be a number ≥ ${min}`);
    return v;
  };
  const ceiling = connectionCeiling();
  const asked = values.connections === undefined ? 19_000 : Math.floor(number('connections', 1));
  const plan = {
    minutes: number('minutes', 0.1),
    connections: Math.min(asked, ceiling),
    churnPerMinute: number('churn', 0),
    publicationsPerSecond: number('rate', 0),
    channels: Math.floor(number('channels', 1)),
    sampleSeconds: Math.floor(number('sample-seconds', 1)),
    churnSeconds: Math.floor(number('churn-seconds', 1)),
    warmup: number('warmup', 0),
    connectRate: number('connect-rate', 1),
    payloadBytes: Math.floor(number('payload-bytes', 0)),
    seed: Math.floor(number('seed', 0)),
    graceMs: GRACE_MS,
    bounds: BOUNDS,
  };
  if (plan.warmup >= 1) throw new Error('--warmup is a fraction of the run, below 1');
  const out = values.out ?? (plan.minutes >= 60 ? 'docs/benchmarks' : 'test-output/soak');
  mkdirSync(out, { recursive: true });

  const pinned = pin(process.pid, LOAD_CORE);
  const started = new Date();
  console.log(`Switchboard soak, ${started.toISOString()}`);
  console.log(`machine: ${JSON.stringify(machine())}`);
  if (asked > ceiling) console.log(`connections: ${asked} asked, ${ceiling} held (the open-files limit)`);
  console.log(`plan: ${JSON.stringify(plan)}`);

  // V8's GC trace on: the heap each mark-compact leaves is what a leak would grow. The harness
  // adds the Node flag every launcher runs the gateway with (GATEWAY_NODE_FLAG).
  const gatewayNodeOptions = `${GATEWAY_NODE_FLAG} --import=${TRACE_GC}`;
  const server = await startServer('switchboard', SECRET, SERVER_CORE, {
    NODE_OPTIONS: `--import=${TRACE_GC}`,
    // The hour runs with the gateway's default pings (25 s), as users run it, not the bench's long interval.
    SWITCHBOARD_PING_INTERVAL: '25',
  });
  const { pid, internalUrl } = server;
  if (!internalUrl) throw new Error('the gateway has no internal URL');
  console.log(
    `gateway pid ${pid} pinned to core ${SERVER_CORE}, load generator to core ${LOAD_CORE}: ${server.pinned && pinned ? 'yes' : 'no (taskset missing)'}\n`,
  );

  const n = plan.connections;
  const channelOf = (i: number) => i % plan.channels;
  const channelName = (c: number) => `soak-${c}`;
  // Tokens outlive the run: a reconnect in its last minute must not be refused as expired.
  const exp = Math.floor(Date.now() / 1000) + Math.ceil(plan.minutes * 60) + 3600;
  const token = (i: number) => signHs256({ sub: i < 0 ? 'soak-publisher' : `soak-${i}`, exp }, SECRET);
  const fleet = new Fleet({
    dialect: centrifugo,
    url: server.url,
    token,
    localAddresses: loopbackAddresses(4),
    timeoutMs: TIMEOUT_MS,
  });
  const ledger = new Ledger(plan.channels, GRACE_MS);
  const state = new Uint8Array(n);
  const sessions: (Session | undefined)[] = new Array<Session | undefined>(n);
  const random = seededRandom(plan.seed);
  const schedule = new ChurnSchedule(n, plan.churnPerMinute, plan.churnSeconds);
  const drops = new Map<string, number>();
  let reconnects = 0;
  let dropped = 0;
  let stopping = false;
  // Deliveries and their latency in the current sample interval.
  const windowLatency = new Histogram();
  let windowDeliveries = 0;

  /** Subscribes connection i (just connected) to its channel; its session starts with the reply. */
  const subscribe = async (conn: Connection, i: number): Promise<void> => {
    const channel = channelOf(i);
    const session = ledger.openSession(channel);
    sessions[i] = session;
    state[i] = JOINING;
    conn.onPublication = (_channel, data) => {
      const p = data as Payload;
      session.receive(p.s);
      windowLatency.record(now() - p.t);
      windowDeliveries++;
    };
    try {
      await conn.subscribe(channelName(channel));
    } catch (err) {
      // Closed meanwhile: onClose has dealt with it. Refused: close it, it comes back like a churned one.
      if (session.closed) return;
      ledger.closeSession(session, performance.now());
      sessions[i] = undefined;
      state[i] = RETRY;
      conn.close();
      throw err;
    }
    if (session.closed) return;
    session.start(ledger.sent[channel]!);
    state[i] = UP;
  };

  const rejoin = async (i: number): Promise<void> => {
    state[i] = JOINING;
    const conn = await fleet.connect(i);
    if (!conn) {
      state[i] = DOWN; // counted by the fleet; tried again at the next churn tick
      return;
    }
    await subscribe(conn, i).catch((err: unknown) => {
      fleet.countError(err);
      fleet.failed++;
    });
  };

  let finished = false;
  fleet.onClose = (i, code) => {
    if (finished) return;
    const session = sessions[i];
    if (session) ledger.closeSession(session, performance.now());
    sessions[i] = undefined;
    const was = state[i];
    state[i] = DOWN;
    if (was === LEAVING) {
      reconnects++;
      if (!stopping) void rejoin(i);
    } else if (was !== RETRY) {
      // Not closed by us: counted, and reconnected at the next churn tick (as a client would, after a delay).
      dropped++;
      drops.set(`close ${code}`, (drops.get(`close ${code}`) ?? 0) + 1);
    }
  };

  const leave = (i: number) => {
    const session = sessions[i];
    if (session) ledger.closeSession(session, performance.now());
    sessions[i] = undefined;
    state[i] = LEAVING;
    fleet.connections[i]!.close();
  };

  const churn = () => {
    const up: number[] = [];
    for (let i = 0; i < n; i++) {
      if (state[i] === UP) up.push(i);
      else if (state[i] === DOWN) void rejoin(i);
    }
    for (const i of pickRandom(up, schedule.next(), random)) leave(i);
  };

  // One publisher client, reconnected if it drops; publications wait while it is away.
  let publisher: Connection | undefined;
  let publisherDrops = 0;
  const connectPublisher = async (): Promise<void> => {
    const conn = await centrifugo({ url: server.url, token: token(-1), timeoutMs: TIMEOUT_MS });
    conn.onClose = () => {
      publisher = undefined;
      if (stopping) return;
      publisherDrops++;
      void retryPublisher();
    };
    publisher = conn;
  };
  const retryPublisher = async (): Promise<void> => {
    while (!stopping && !publisher) {
      await sleep(1000);
      await connectPublisher().catch((err: unknown) => fleet.countError(err));
    }
  };

  let published = 0;
  let inFlight = 0;
  let publishTimer: NodeJS.Timeout | undefined;
  const startPublishing = () => {
    let base = performance.now();
    let sentSinceBase = 0;
    publishTimer = setInterval(() => {
      if (!publisher) {
        base = performance.now(); // no burst to catch up once it is back
        sentSinceBase = 0;
        return;
      }
      const due = Math.floor(((performance.now() - base) * plan.publicationsPerSecond) / 1000);
      for (; sentSinceBase < due; sentSinceBase++) {
        const channel = published++ % plan.channels;
        const seq = ledger.nextSeq(channel);
        inFlight++;
        publisher
          .publish(channelName(channel), payload(seq, plan.payloadBytes))
          .then(
            () => ledger.settle(channel, seq, true),
            () => ledger.settle(channel, seq, false),
          )
          .finally(() => inFlight--);
      }
    }, 5);
  };

  let lastCpu = cpuSeconds(pid);
  let lastOwn = process.cpuUsage();
  let lastWall = performance.now();
  let steadyStart = performance.now();
  // The mark-compacts V8 printed, looked for every second, with the RSS right after each.
  const gcs: SeenGc[] = [];
  let outputRead = 0;
  const watchGcs = () => {
    const text = server.output();
    const end = text.lastIndexOf('\n') + 1;
    if (end <= outputRead) return;
    const found = majorGcs(text.slice(outputRead, end));
    outputRead = end;
    if (found.length === 0) return;
    const seconds = Math.round((performance.now() - steadyStart) / 100) / 10;
    const rss = rssBytes(pid);
    for (const gc of found) gcs.push({ ...gc, seconds, rssBytes: rss });
  };
  const readGateway = async () => {
    const fds = readdirSync(`/proc/${pid}/fd`).length;
    const rss = rssBytes(pid);
    const text = await scrape(`${internalUrl}/metrics`);
    const value = (name: string, label?: string) => {
      const v = metricValue(text, name, label);
      if (!Number.isFinite(v))
        throw new Error(`the gateway's metrics lack ${name}${label ? `{${label}}` : ''}`);
      return v;
    };
    const heapUsedBytes = value('switchboard_nodejs_heap_size_used_bytes');
    const young =
      value('switchboard_nodejs_heap_space_size_used_bytes', 'space="new"') +
      value('switchboard_nodejs_heap_space_size_used_bytes', 'space="new_large_object"');
    return {
      fds,
      rss,
      gatewayConnections: value('switchboard_connections'),
      heapUsedBytes,
      heapOldBytes: heapUsedBytes - young,
      heapTotalBytes: value('switchboard_nodejs_heap_size_total_bytes'),
      externalBytes: value('switchboard_nodejs_external_memory_bytes'),
    };
  };
  const sample = async (): Promise<Sample> => {
    const g = await readGateway();
    const wall = performance.now();
    const cpu = cpuSeconds(pid);
    const ownNow = process.cpuUsage();
    const own = ownNow.user - lastOwn.user + ownNow.system - lastOwn.system;
    lastOwn = ownNow;
    const interval = (wall - lastWall) / 1000;
    const count = ledger.count(wall);
    const seconds = Math.round((wall - steadyStart) / 100) / 10;
    watchGcs();
    const s: Sample = {
      seconds,
      rssBytes: g.rss,
      heapUsedBytes: g.heapUsedBytes,
      heapOldBytes: g.heapOldBytes,
      majorGcs: gcs.length,
      liveHeapBytes: gcs.at(-1)?.afterBytes ?? 0,
      heapTotalBytes: g.heapTotalBytes,
      externalBytes: g.externalBytes,
      fds: g.fds,
      gatewayConnections: g.gatewayConnections,
      clientConnections: fleet.open + (publisher ? 1 : 0),
      cpuPercent: interval > 0 ? ((cpu - lastCpu) / interval) * 100 : 0,
      loadCpuPercent: interval > 0 ? (own / 1e6 / interval) * 100 : 0,
      published,
      reconnects,
      dropped,
      delivered: count.delivered,
      lost: count.lost,
      duplicated: count.duplicated,
      deliveriesPerSecond: interval > 0 ? windowDeliveries / interval : 0,
      p99Ms: windowLatency.percentile(99),
    };
    lastCpu = cpu;
    lastWall = wall;
    windowDeliveries = 0;
    windowLatency.reset();
    return s;
  };

  const samples: Sample[] = [];
  try {
    const baselineRss = await settledRss(pid, 3000);
    const baselineFds = readdirSync(`/proc/${pid}/fd`).length;
    watchGcs();
    const startupGcs = gcs.splice(0).length;
    console.error(`soak: connecting ${n} clients over ${plan.channels} channels`);
    const connectStarted = performance.now();
    await fleet.openMany(0, n, plan.connectRate, subscribe);
    await connectPublisher();
    const connectSeconds = (performance.now() - connectStarted) / 1000;
    const connectFailed = fleet.failed;
    console.error(
      `soak: ${fleet.open} connected in ${connectSeconds.toFixed(1)} s (${connectFailed} failed); ${plan.minutes} min of churn and publishing`,
    );

    steadyStart = performance.now();
    lastWall = steadyStart;
    lastCpu = cpuSeconds(pid);
    lastOwn = process.cpuUsage();
    windowDeliveries = 0;
    windowLatency.reset();
    startPublishing();
    const endAt = steadyStart + plan.minutes * 60_000;
    const sampleOffset = Math.floor(plan.churnSeconds / 2) % plan.sampleSeconds;
    for (let t = 0; ; t++) {
      await sleep(steadyStart + t * 1000 - performance.now());
      ledger.remember(performance.now());
      watchGcs();
      if (performance.now() >= endAt) break;
      // Samples fall between churn ticks, when the reconnects of the last one are done.
      if (t % plan.sampleSeconds === sampleOffset) {
        const s = await sample();
        samples.push(s);
        console.error(
          `soak: ${(s.seconds / 60).toFixed(1)} min  clients ${s.clientConnections}  RSS ${(s.rssBytes / 2 ** 20).toFixed(1)} MB  ` +
            `heap ${(s.heapUsedBytes / 2 ** 20).toFixed(1)} MB (old ${(s.heapOldBytes / 2 ** 20).toFixed(1)}, ` +
            `after ${s.majorGcs} major GCs ${(s.liveHeapBytes / 2 ** 20).toFixed(1)})  fds−conns ${s.fds - s.gatewayConnections}  ` +
            `${s.deliveriesPerSecond.toFixed(0)} deliveries/s  lost ${s.lost}  dup ${s.duplicated}  reconnects ${s.reconnects}`,
        );
      }
      if (t > 0 && t % plan.churnSeconds === 0) churn();
    }

    // Stop: no more publications, churned clients settle, then every answered publication gets GRACE_MS to arrive.
    stopping = true;
    clearInterval(publishTimer);
    const settleUntil = performance.now() + TIMEOUT_MS + 5000;
    while (
      (inFlight > 0 || state.some((s) => s === JOINING || s === LEAVING || s === RETRY)) &&
      performance.now() < settleUntil
    )
      await sleep(100);
    ledger.remember(performance.now());
    await sleep(GRACE_MS + 200);
    ledger.remember(performance.now());
    const deliveries = ledger.count(performance.now());
    const held = fleet.open + (publisher ? 1 : 0);
    let gauge = metricValue(await scrape(`${internalUrl}/metrics`), 'switchboard_connections');
    for (let tries = 0; gauge !== held && tries < 20; tries++) {
      await sleep(250);
      gauge = metricValue(await scrape(`${internalUrl}/metrics`), 'switchboard_connections');
    }
    const connectFailures = fleet.failed;
    const end = samples.at(-1)?.seconds ?? 0;
    const keptFrom = warmupEnd(end, plan.warmup, gcs[0]?.seconds);
    const rows = judge(samples, gcs, keptFrom, {
      lost: deliveries.lost,
      duplicated: deliveries.duplicated,
      publishErrors: ledger.publishErrors,
      connectFailures,
      dropped: dropped + publisherDrops,
      gaugeDifference: gauge - held,
    });
    const errors = Object.fromEntries([...fleet.errors].filter(([label]) => !label.startsWith('close ')));

    console.log(
      `Samples (${samples.length}, every ${plan.sampleSeconds} s; ${Math.min(samples.length, 16)} shown)`,
    );
    console.log(formatSamples(samples));
    console.log('');
    console.log(formatVerdict(rows, keptFrom));
    console.log('');
    console.log(
      `connect: ${n} clients in ${connectSeconds.toFixed(1)} s (${connectFailed} failed); baseline RSS ${(baselineRss / 2 ** 20).toFixed(1)} MB, ${baselineFds} fds`,
    );
    console.log(
      `churn: ${reconnects} reconnects (${((reconnects / Math.max(1, n) / Math.max(plan.minutes, 1e-9)) * 100).toFixed(1)} % of the clients per minute), ` +
        `${dropped} dropped by the gateway${drops.size > 0 ? ` (${[...drops].map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''}, publisher dropped ${publisherDrops}×`,
    );
    console.log(
      `publishing: ${published} publications (${ledger.publishErrors} errors); deliveries judged ${deliveries.expected}: ` +
        `${deliveries.delivered} delivered, ${deliveries.lost} lost, ${deliveries.duplicated} duplicated, ${deliveries.reordered} reordered (${deliveries.received} received in all)`,
    );
    console.log(
      `errors: ${
        Object.entries(errors)
          .map(([k, v]) => `${k}: ${v}`)
          .join(', ') || 'none'
      }`,
    );

    const file = join(out, 'soak.json');
    writeFileSync(
      file,
      `${JSON.stringify(
        {
          date: started.toISOString(),
          command: `node loadtest/dist/src/bench/soak.js ${process.argv.slice(2).join(' ')}`.trim(),
          machine: machine(),
          plan: { ...plan, connectionsAsked: asked },
          pinned: server.pinned && pinned,
          gatewayNodeOptions,
          baseline: { rssBytes: baselineRss, fds: baselineFds },
          connect: { connections: n, seconds: connectSeconds, failed: connectFailed },
          churn: { reconnects, dropped, drops: Object.fromEntries(drops), publisherDrops },
          publishing: { published, publishErrors: ledger.publishErrors },
          deliveries,
          end: { gatewayConnections: gauge, clientConnections: held },
          errors,
          warmupSeconds: keptFrom,
          verdict: rows,
          samples,
          startupGcs,
          majorGcs: gcs,
        },
        null,
        2,
      )}\n`,
    );
    console.log(`results: ${file}`);
    if (values.plot && !values['no-plot']) {
      const png = await renderCharts(soakCharts(samples, gcs, rows), join(out, 'soak'));
      console.log(png ? `plot: ${png}` : 'plot: skipped (no chromium; scripts/ensure-packages.sh chromium)');
    }
    return true;
  } finally {
    stopping = true;
    finished = true;
    clearInterval(publishTimer);
    publisher?.close();
    fleet.closeAll();
    await server.stop();
  }
}

/** Memory, fds beyond connections, connections and deliveries over the run, with the fitted lines. */
function soakCharts(samples: Sample[], gcs: SeenGc[], rows: VerdictRow[]): string[] {
  const MB = 2 ** 20;
  const minutes = (s: { seconds: number }) => s.seconds / 60;
  const ticks = timeTicks(samples.at(-1)?.seconds ?? 0);
  const fitted = (row: VerdictRow | undefined, label: string, scale: number): Series[] => {
    const fit = row?.fit;
    if (!fit) return [];
    const at = (sec: number): [number, number] => [
      sec / 60,
      (fit.intercept + fit.slopePerSecond * sec) / scale,
    ];
    return [{ label, points: [at(fit.fromSeconds), at(fit.toSeconds)] }];
  };
  const [rss, heap, fds] = rows;
  return [
    chart(
      'Gateway RSS',
      'minutes',
      'MB',
      [
        { label: 'sampled', points: samples.map((s) => [minutes(s), s.rssBytes / MB]) },
        { label: 'after each major GC', points: gcs.map((g) => [minutes(g), g.rssBytes / MB]) },
        ...fitted(rss, 'fit after the warm-up', MB),
      ],
      ticks,
    ),
    chart(
      'Gateway JS heap',
      'minutes',
      'MB',
      [
        { label: 'used (sampled)', points: samples.map((s) => [minutes(s), s.heapUsedBytes / MB]) },
        {
          label: 'outside the young generation',
          points: samples.map((s) => [minutes(s), s.heapOldBytes / MB]),
        },
        { label: 'after each major GC', points: gcs.map((g) => [minutes(g), g.afterBytes / MB]) },
        ...fitted(heap, 'fit after the warm-up', MB),
      ],
      ticks,
    ),
    chart(
      'Gateway fds beyond its connections',
      'minutes',
      'fds − connections',
      [
        {
          label: 'fds − connections',
          points: samples.map((s) => [minutes(s), s.fds - s.gatewayConnections]),
        },
        ...fitted(fds, 'fit', 1),
      ],
      ticks,
    ),
    chart(
      'Connections',
      'minutes',
      'connections',
      [
        { label: 'gateway gauge', points: samples.map((s) => [minutes(s), s.gatewayConnections]) },
        { label: 'clients held', points: samples.map((s) => [minutes(s), s.clientConnections]) },
      ],
      ticks,
    ),
    chart(
      'Deliveries and CPU',
      'minutes',
      'deliveries per second; CPU % × 100',
      [
        { label: 'deliveries/s', points: samples.map((s) => [minutes(s), s.deliveriesPerSecond]) },
        { label: 'gateway CPU % × 100', points: samples.map((s) => [minutes(s), s.cpuPercent * 100]) },
        {
          label: 'load generator CPU % × 100',
          points: samples.map((s) => [minutes(s), s.loadCpuPercent * 100]),
        },
      ],
      ticks,
    ),
  ];
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
