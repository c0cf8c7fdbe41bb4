/**
 * The load scenarios, the same as the k6 ones (loadtest/k6): connect storm,
 * idle connections answering pings, fan-out (one channel, many subscribers),
 * many channels with one subscriber each, RPC round trips, and a reconnect
 * storm (run it, then kill a gateway behind the load balancer).
 */

import { centrifugo, type Connection } from './connection.js';
import { Fleet } from './fleet.js';
import { signHs256 } from './jwt.js';
import { DeliveryTracker, now, openLoop, payload } from './tracker.js';
import { Histogram } from './histogram.js';

export const SCENARIOS = ['connect', 'idle', 'fanout', 'channels', 'rpc', 'reconnect'] as const;
export type Scenario = (typeof SCENARIOS)[number];

export interface ScenarioOptions {
  scenario: Scenario;
  url: string;
  connections: number;
  /** Connection attempts per second. */
  connectRate: number;
  /** Publications (fanout, channels) or RPCs (rpc) per second. */
  rate: number;
  durationMs: number;
  /** Channel name (fanout) or prefix (`<channel>-<i>`, channels). */
  channel: string;
  payloadBytes: number;
  /** HS256 secret to mint one token per connection (user `load-<i>`), or a fixed token for all. */
  secret?: string;
  token?: string;
  localAddresses: string[];
  timeoutMs: number;
  /** Publish over the server HTTP API (`<apiUrl>/api/publish`) instead of as a client. */
  apiUrl?: string;
  apiKey?: string;
  rpcMethod: string;
}

export interface Report {
  scenario: Scenario;
  connections: number;
  connected: number;
  failed: number;
  /** Closed by the server or network while the scenario ran. */
  dropped: number;
  connectSeconds: number;
  connectsPerSecond: number;
  connectLatency: Histogram;
  sent: number;
  sendErrors: number;
  expected: number;
  delivered: number;
  lost: number;
  duplicated: number;
  /** Delivered, but after a later publication of the same channel. */
  reordered: number;
  deliveriesPerSecond: number;
  /** Publish-to-deliver (fanout, channels), round trip (rpc), close-to-reconnected (reconnect). */
  latency: Histogram;
  reconnects: number;
  errors: Record<string, number>;
}

export interface Progress {
  elapsedMs: number;
  open: number;
  connected: number;
  failed: number;
  delivered: number;
  sent: number;
  latency: Histogram;
}

export function tokenSource(options: Pick<ScenarioOptions, 'secret' | 'token'>): (i: number) => string {
  if (options.token !== undefined) {
    const token = options.token;
    return () => token;
  }
  const secret = options.secret;
  if (secret === undefined) throw new Error('give --secret (HS256 key to mint tokens) or --token');
  const exp = Math.floor(Date.now() / 1000) + 3600;
  return (i) => signHs256({ sub: `load-${i}`, exp }, secret);
}

export async function runScenario(
  o: ScenarioOptions,
  onProgress: (p: Progress) => void = () => {},
): Promise<Report> {
  const started = performance.now();
  const token = tokenSource(o);
  const fleet = new Fleet({
    dialect: centrifugo,
    url: o.url,
    token,
    localAddresses: o.localAddresses,
    timeoutMs: o.timeoutMs,
  });
  const tracker = new DeliveryTracker();
  const rpcLatency = new Histogram();
  const reconnectLatency = new Histogram();
  let sent = 0;
  let sendErrors = 0;
  let reconnects = 0;
  let dropped = 0;
  const latency =
    o.scenario === 'rpc' ? rpcLatency : o.scenario === 'reconnect' ? reconnectLatency : tracker.latency;
  const progress = setInterval(
    () =>
      onProgress({
        elapsedMs: performance.now() - started,
        open: fleet.open,
        connected: fleet.connected,
        failed: fleet.failed,
        delivered: tracker.delivered,
        sent,
        latency,
      }),
    1000,
  );
  const end = started + o.durationMs;
  const channelOf = (i: number) => (o.scenario === 'channels' ? `${o.channel}-${i}` : o.channel);
  const subscribes = o.scenario === 'fanout' || o.scenario === 'channels';
  const setup = async (conn: Connection, i: number) => {
    conn.onPublication = (channel, data) => tracker.receive(i, channel, data);
    if (subscribes) await conn.subscribe(channelOf(i));
  };
  fleet.onClose = (index) => {
    if (performance.now() >= end) return;
    dropped++;
    if (o.scenario !== 'reconnect') return;
    // Reconnect with jitter, as clients do after a gateway goes away.
    const closedAt = performance.now();
    setTimeout(async () => {
      const conn = await fleet.connect(index);
      if (!conn) return;
      reconnects++;
      reconnectLatency.record(performance.now() - closedAt);
      await setup(conn, index).catch((err: unknown) => fleet.countError(err));
    }, Math.random() * 1000);
  };

  try {
    const connectStart = performance.now();
    await fleet.openMany(0, o.connections, o.connectRate, setup, end);
    const connectSeconds = (performance.now() - connectStart) / 1000;
    const live = fleet.connections.filter(Boolean);

    let expected = 0;
    const deliverStart = performance.now();
    const remainingMs = Math.max(0, end - performance.now());
    const count = Math.floor((o.rate * remainingMs) / 1000);
    const onError = (err: unknown) => {
      sendErrors++;
      fleet.countError(err);
    };
    if (o.scenario === 'fanout' || o.scenario === 'channels') {
      const publisher =
        o.apiUrl === undefined
          ? await centrifugo({ url: o.url, token: token(o.connections), timeoutMs: o.timeoutMs })
          : undefined;
      const n = o.connections;
      const publish = async (i: number) => {
        sent++;
        const channel = o.scenario === 'fanout' ? o.channel : channelOf(i % n);
        const seq = o.scenario === 'fanout' ? i : Math.floor(i / n);
        const data = payload(seq, o.payloadBytes);
        if (publisher) return publisher.publish(channel, data);
        const res = await fetch(`${o.apiUrl}/api/publish`, {
          method: 'POST',
          headers: { 'X-API-Key': o.apiKey ?? '', 'content-type': 'application/json' },
          body: JSON.stringify({ channel, data }),
        });
        const body = (await res.json()) as { error?: { code: number; message: string } };
        if (body.error) throw new Error(`api ${body.error.code} ${body.error.message}`);
      };
      await openLoop(count, o.rate, publish, onError);
      if (o.scenario === 'fanout') expected = sent * live.length;
      else for (let i = 0; i < sent; i++) if (fleet.connections[i % n]) expected++;
      await tracker.waitFor(expected, o.timeoutMs);
      publisher?.close();
    } else if (o.scenario === 'rpc' && live.length > 0) {
      await openLoop(
        count,
        o.rate,
        async (i) => {
          sent++;
          const t = now();
          await live[i % live.length]!.rpc(o.rpcMethod, { t });
          rpcLatency.record(now() - t);
        },
        onError,
      );
    } else {
      // connect, idle, reconnect: hold the connections (answering pings) until the end.
      while (performance.now() < end) await new Promise((r) => setTimeout(r, 50));
    }
    const deliverSeconds = (performance.now() - deliverStart) / 1000;
    return {
      scenario: o.scenario,
      connections: o.connections,
      connected: fleet.connected,
      failed: fleet.failed,
      dropped,
      connectSeconds,
      connectsPerSecond: connectSeconds > 0 ? fleet.connected / connectSeconds : 0,
      connectLatency: fleet.connectLatency,
      sent,
      sendErrors,
      expected,
      delivered: tracker.delivered,
      lost: Math.max(0, expected - tracker.delivered),
      duplicated: tracker.duplicated,
      reordered: tracker.reordered,
      deliveriesPerSecond: deliverSeconds > 0 ? tracker.delivered / deliverSeconds : 0,
      latency,
      reconnects,
      errors: Object.fromEntries(fleet.errors),
    };
  } finally {
    clearInterval(progress);
    fleet.closeAll();
  }
}

const ms = (v: number) => `${v.toFixed(2)} ms`;

export function formatReport(r: Report): string {
  const lines = [
    `scenario            ${r.scenario}`,
    `connections         ${r.connected}/${r.connections} connected, ${r.failed} failed, ${r.dropped} dropped`,
    `connect rate        ${r.connectsPerSecond.toFixed(0)}/s over ${r.connectSeconds.toFixed(2)} s (latency p50 ${ms(r.connectLatency.percentile(50))}, p99 ${ms(r.connectLatency.percentile(99))})`,
  ];
  if (r.scenario === 'fanout' || r.scenario === 'channels') {
    lines.push(
      `published           ${r.sent} (${r.sendErrors} errors)`,
      `delivered           ${r.delivered}/${r.expected}: ${r.lost} lost, ${r.duplicated} duplicated, ${r.reordered} reordered, ${r.deliveriesPerSecond.toFixed(0)}/s`,
    );
  }
  if (r.scenario === 'rpc') lines.push(`rpc calls           ${r.sent} (${r.sendErrors} errors)`);
  if (r.scenario === 'reconnect') lines.push(`reconnects          ${r.reconnects}`);
  if (r.latency.count > 0) {
    const what =
      r.scenario === 'rpc'
        ? 'rpc round trip'
        : r.scenario === 'reconnect'
          ? 'reconnect time'
          : 'publish→deliver';
    lines.push(
      `${what.padEnd(20)}p50 ${ms(r.latency.percentile(50))}  p99 ${ms(r.latency.percentile(99))}  p999 ${ms(r.latency.percentile(99.9))}  max ${ms(r.latency.max)}`,
    );
  }
  const errors = Object.entries(r.errors);
  lines.push(
    `errors              ${errors.length === 0 ? 'none' : errors.map(([k, v]) => `${k}: ${v}`).join(', ')}`,
  );
  return lines.join('\n');
}
