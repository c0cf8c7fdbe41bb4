#!/usr/bin/env node
/**
 * Protobuf vs JSON, Centrifugo's client protocol (issue 16): bytes and server
 * CPU per delivery. One Switchboard gateway (embedded mode, started and
 * pinned as servers.ts starts it); the same number of subscribers of one
 * channel, once speaking JSON and once Protobuf (WebSocket subprotocol
 * `centrifuge-protobuf`, binary frames), alternately for `rounds` rounds;
 * each run the server HTTP API publishes a fixed number of 64-byte JSON
 * payloads open-loop. Per protocol: deliveries per server CPU-second (utime +
 * stime of the gateway, and with its core's softirq), bytes per delivery as
 * the subscribers received them (WebSocket message payloads, and with the
 * frame headers) and as the gateway counted them
 * (switchboard_transport_bytes_total{transport="websocket",direction="out"}),
 * and Protobuf ÷ JSON. Every delivery is checked: anything but subscribers ×
 * publications, each once and in order, fails the run.
 *
 * The subscribers are raw `ws` sockets around centrifuge-js's own codecs
 * (the JSON build's and the protobuf build's encodeCommands/decodeReplies):
 * their commands and replies are the bytes centrifuge-js writes and reads.
 * Part of `make bench` (main.ts: `--only protobuf`, `--no-protobuf`); alone,
 * after the build:
 *   node loadtest/dist/src/bench/protobuf-json.js [--subscribers 2000] [--publications 100] [--rate 10]
 *     [--rounds 3] [--coalesce-window ms] [--quick]
 */

import { once } from 'node:events';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { api, metric } from '@switchboard/gateway/dist/test/harness.js';
import { Centrifuge as JsonCentrifuge } from 'centrifuge';
import { Centrifuge as ProtobufCentrifuge } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';
import { type Connection, type Dialect, ProtocolError } from '../connection.js';
import { DeliveryTracker, now, openLoop } from '../tracker.js';
import { Clients, type DeliveryRun, deliveryRun, median, per } from './measure.js';
import { coreTimes, cpuSeconds, machine, pin } from './proc.js';
import { ratio, table } from './report.js';
import { type RunningServer, startServer } from './servers.js';

export interface ProtobufPlan {
  /** Subscribers of the one channel, in every run. */
  subscribers: number;
  /** Publications per run (after a warm-up of its own), and their rate per second. */
  publications: number;
  rate: number;
  /** Rounds of one JSON and one Protobuf run (the order alternating). */
  rounds: number;
  timeoutMs: number;
}

export function protobufPlan(quick: boolean): ProtobufPlan {
  return quick
    ? { subscribers: 100, publications: 20, rate: 50, rounds: 1, timeoutMs: 10_000 }
    : // 200k deliveries a run at 20k/s offered, what the `ws` subscribers read without falling
      // behind on this 2-core machine (at pass A's 60k/s they lag, and the kernel's queues change
      // how the server writes): 10 s a run, ~14 s with connecting and the warm-up.
      { subscribers: 2000, publications: 100, rate: 10, rounds: 3, timeoutMs: 30_000 };
}

export const PROTOCOLS = ['json', 'protobuf'] as const;
export type Protocol = (typeof PROTOCOLS)[number];
const LABEL: Record<Protocol, string> = { json: 'JSON', protobuf: 'Protobuf' };

export interface ProtocolRun extends DeliveryRun {
  protocol: Protocol;
  round: number;
  /** The server core's softirq seconds over the run (loopback TCP work accounted to no process). */
  softirqSeconds: number;
  perCpuSecondWithSoftirq: number;
  /** WebSocket messages the subscribers received in the run, their payload bytes and with frame headers. */
  messages: number;
  bytesPerDelivery: number;
  frameBytesPerDelivery: number;
  /** What the gateway's switchboard_transport_bytes_total (websocket, out) grew by, per delivery. */
  gatewayBytesPerDelivery: number;
  /** Load generator CPU over the run, as a share of one core. */
  generatorCpu: number;
}

export interface ProtobufVsJson {
  plan: ProtobufPlan;
  payloadBytes: number;
  pinned: boolean;
  runs: ProtocolRun[];
}

/** A Reply as either centrifuge-js codec decodes it (Protobuf: absent messages null, id 0). */
interface WireReply {
  id?: number;
  error?: { code: number; message: string } | null;
  connect?: { pong?: boolean } | null;
  rpc?: { data?: unknown } | null;
  push?: { channel: string; pub?: { data: unknown } | null } | null;
}

interface ClientCodec {
  encodeCommands(commands: object[]): string | Uint8Array;
  decodeReplies(data: string | Uint8Array): WireReply[];
}

/** centrifuge-js keeps its codec internal: a client holds it as the protected `_codec`. */
const jsonCodec = new (class extends JsonCentrifuge {
  codec = (): ClientCodec => this._codec as ClientCodec;
})('ws://127.0.0.1:9/').codec();
const protobufCodec = new (class extends ProtobufCentrifuge {
  codec = (): ClientCodec => this._codec as ClientCodec;
})('ws://127.0.0.1:9/').codec();

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** How one protocol goes over the WebSocket, as centrifuge-js does it. */
interface Wire {
  protocol: Protocol;
  subprotocol: string | undefined;
  binary: boolean;
  codec: ClientCodec;
  decode(message: Buffer): WireReply[];
  /** A publication's data as the application sees it (Protobuf: JSON text in bytes). */
  data(data: unknown): unknown;
}

const WIRES: Record<Protocol, Wire> = {
  json: {
    protocol: 'json',
    subprotocol: undefined,
    binary: false,
    codec: jsonCodec,
    decode: (message) => jsonCodec.decodeReplies(message.toString()),
    data: (data) => data,
  },
  protobuf: {
    protocol: 'protobuf',
    subprotocol: 'centrifuge-protobuf',
    binary: true,
    codec: protobufCodec,
    decode: (message) => protobufCodec.decodeReplies(message),
    data: (data) => JSON.parse(fromUtf8.decode(data as Uint8Array)) as unknown,
  },
};

/** What the subscribers of a run received from the measurement's start. */
interface Received {
  messages: number;
  bytes: number;
  frameBytes: number;
  /** Text frames in a Protobuf session, or binary ones in a JSON session. */
  wrongKind: number;
}

const frameHeader = (length: number) => (length < 126 ? 2 : length < 65_536 ? 4 : 10);

/** A subscriber on `ws` with a centrifuge-js codec: commands with ids, pushes, the protocol's pings. */
class CodecConnection implements Connection {
  onPublication: (channel: string, data: unknown) => void = () => {};
  onClose: (code: number, reason: string) => void = () => {};
  pong = false;
  private nextId = 1;
  private readonly waiting = new Map<number, (reply: WireReply) => void>();

  constructor(
    private readonly ws: WebSocket,
    private readonly wire: Wire,
    private readonly received: Received,
    private readonly timeoutMs: number,
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => this.receive(data, isBinary));
    ws.on('close', (code, reason) => {
      for (const settle of this.waiting.values()) settle({ error: { code, message: 'closed' } });
      this.waiting.clear();
      this.onClose(code, reason.toString());
    });
  }

  async request(method: string, body: object): Promise<WireReply> {
    const id = this.nextId++;
    const reply = await new Promise<WireReply>((resolve) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        resolve({ error: { code: 0, message: `${method} timed out` } });
      }, this.timeoutMs);
      this.waiting.set(id, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.ws.send(this.wire.codec.encodeCommands([{ id, [method]: body }]));
    });
    if (reply.error) throw new ProtocolError(reply.error.code, reply.error.message);
    return reply;
  }

  async subscribe(channel: string): Promise<void> {
    await this.request('subscribe', { channel });
  }

  async publish(channel: string, data: unknown): Promise<void> {
    await this.request('publish', { channel, data: this.outgoing(data) });
  }

  async rpc(method: string, data: unknown): Promise<unknown> {
    return (await this.request('rpc', { method, data: this.outgoing(data) })).rpc?.data;
  }

  close(): void {
    this.ws.close();
  }

  /** Data as the protocol carries it: JSON, or in Protobuf JSON text in bytes. */
  private outgoing(data: unknown): unknown {
    return this.wire.binary ? utf8.encode(JSON.stringify(data)) : data;
  }

  private receive(data: Buffer, isBinary: boolean): void {
    const r = this.received;
    r.messages++;
    r.bytes += data.byteLength;
    r.frameBytes += data.byteLength + frameHeader(data.byteLength);
    if (isBinary !== this.wire.binary) r.wrongKind++;
    for (const reply of this.wire.decode(data)) {
      if (reply.id) {
        const settle = this.waiting.get(reply.id);
        this.waiting.delete(reply.id);
        settle?.(reply);
      } else if (reply.push) {
        if (reply.push.pub) this.onPublication(reply.push.channel, this.wire.data(reply.push.pub.data));
      } else if (this.pong) {
        this.ws.send(this.wire.codec.encodeCommands([{}])); // the answer to the protocol's ping
      }
    }
  }
}

/** Opens a WebSocket in `wire`'s protocol (failing unless the server agreed to it) and connects with the token. */
function codecDialect(wire: Wire, received: Received): Dialect {
  return async ({ url, token, localAddress, timeoutMs }) => {
    const ws = new WebSocket(url, wire.subprotocol === undefined ? [] : [wire.subprotocol], {
      localAddress,
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
    });
    await once(ws, 'open');
    ws.on('error', () => {});
    if (ws.protocol !== (wire.subprotocol ?? '')) {
      ws.terminate();
      throw new Error(`subprotocol "${ws.protocol}" accepted, not "${wire.subprotocol ?? ''}"`);
    }
    const conn = new CodecConnection(ws, wire, received, timeoutMs);
    try {
      conn.pong = (await conn.request('connect', { token })).connect?.pong === true;
    } catch (err) {
      ws.terminate();
      throw err;
    }
    return conn;
  };
}

const CHANNEL = 'prices';
export const PAYLOAD_BYTES = 64;

/** A price tick of exactly 64 bytes of JSON, with the tracker's sequence `s` and send time `t` (ms). */
export function tick(seq: number): { s: number; t: number; sym: string; px: number; p: string } {
  const tick = { s: seq, t: Math.round(now()), sym: 'AAPL', px: 190.12, p: '' };
  const pad = PAYLOAD_BYTES - JSON.stringify(tick).length;
  if (pad < 0) throw new Error(`sequence ${seq}: the tick is over ${PAYLOAD_BYTES} bytes`);
  tick.p = 'x'.repeat(pad);
  return tick;
}

const gatewayBytesOut = (server: RunningServer) =>
  metric({ internalUrl: server.internalUrl! }, 'switchboard_transport_bytes_total', [
    'transport="websocket"',
    'direction="out"',
  ]);

/**
 * `count` publications of channel CHANNEL through the server HTTP API at `rate`/s, each request
 * sent once the one before was answered (concurrent requests may arrive out of order); resolves
 * with the failures.
 */
async function publish(server: RunningServer, count: number, rate: number): Promise<number> {
  let errors = 0;
  let previous: Promise<unknown> = Promise.resolve();
  const send = async (i: number) => {
    await previous;
    const res = await api({ internalUrl: server.internalUrl! }, 'publish', {
      channel: CHANNEL,
      data: tick(i),
    });
    if (res.status !== 200 || res.body.error) throw new Error(JSON.stringify(res.body));
  };
  await openLoop(
    count,
    rate,
    (i) => (previous = send(i).catch(() => errors++)),
    () => errors++,
  );
  return errors;
}

/** Connects `plan.subscribers` subscribers in `protocol`, warms up, measures one run, disconnects them. */
async function run(
  server: RunningServer,
  protocol: Protocol,
  round: number,
  plan: ProtobufPlan,
  secret: string,
  core: number,
): Promise<ProtocolRun> {
  const wire = WIRES[protocol];
  const received: Received = { messages: 0, bytes: 0, frameBytes: 0, wrongKind: 0 };
  const clients = new Clients(codecDialect(wire, received), server.url, secret, plan.timeoutMs);
  const { fleet, sink } = clients;
  const n = plan.subscribers;
  try {
    await clients.grow(0, n, () => CHANNEL);
    if (fleet.open !== n)
      throw new Error(`${protocol}: ${fleet.open} of ${n} subscribed: ${JSON.stringify([...fleet.errors])}`);
    // Warm-up: the encode and send paths of this protocol hot, then a fresh count from sequence 0.
    const warmup = Math.min(plan.publications, 20);
    const warmupErrors = await publish(server, warmup, plan.rate);
    await sink.tracker.waitFor(warmup * n, plan.timeoutMs);
    if (warmupErrors > 0 || sink.tracker.delivered !== warmup * n)
      throw new Error(`${protocol} warm-up: ${sink.tracker.delivered} of ${warmup * n} delivered`);
    const tracker = (sink.tracker = new DeliveryTracker());
    Object.assign(received, { messages: 0, bytes: 0, frameBytes: 0, wrongKind: 0 });
    const expected = plan.publications * n;

    const bytesBefore = await gatewayBytesOut(server);
    const cpuBefore = cpuSeconds(server.pid);
    const coreBefore = coreTimes(core);
    const generatorBefore = process.cpuUsage();
    const started = performance.now();
    const publishErrors = await publish(server, plan.publications, plan.rate);
    await tracker.waitFor(expected, plan.timeoutMs);
    const seconds = (performance.now() - started) / 1000;
    const generator = process.cpuUsage(generatorBefore);
    const cpu = cpuSeconds(server.pid) - cpuBefore;
    const softirq = coreTimes(core).softirq - coreBefore.softirq;
    const bytesOut = (await gatewayBytesOut(server)) - bytesBefore;

    const result: ProtocolRun = {
      protocol,
      round,
      ...deliveryRun(tracker, {
        n,
        published: plan.publications,
        expected,
        publishErrors,
        seconds,
        cpuSeconds: cpu,
      }),
      softirqSeconds: softirq,
      perCpuSecondWithSoftirq: per(tracker.delivered, cpu + softirq),
      messages: received.messages,
      bytesPerDelivery: received.bytes / tracker.delivered,
      frameBytesPerDelivery: received.frameBytes / tracker.delivered,
      gatewayBytesPerDelivery: bytesOut / tracker.delivered,
      generatorCpu: (generator.user + generator.system) / 1e6 / seconds,
    };
    // Every delivery checked: each subscriber got each publication once, in order, in its own protocol.
    const wrong = [
      result.delivered !== expected && `${result.delivered} of ${expected} delivered`,
      result.duplicated > 0 && `${result.duplicated} duplicated`,
      result.reordered > 0 && `${result.reordered} reordered`,
      publishErrors > 0 && `${publishErrors} publish errors`,
      received.wrongKind > 0 && `${received.wrongKind} frames of the other kind (text/binary)`,
      fleet.open !== n && `${n - fleet.open} subscribers closed: ${JSON.stringify([...fleet.errors])}`,
    ].filter((w): w is string => typeof w === 'string');
    if (wrong.length > 0) throw new Error(`${LABEL[protocol]} run ${round}: ${wrong.join(', ')}`);
    return result;
  } finally {
    clients.close();
    // The next run starts on an idle gateway: these connections gone.
    const deadline = performance.now() + plan.timeoutMs;
    while (
      (await metric({ internalUrl: server.internalUrl! }, 'switchboard_connections')) > 0 &&
      performance.now() < deadline
    )
      await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * The whole section: one gateway pinned to `core` (with `env` added to the bench's), JSON and
 * Protobuf runs alternating for `plan.rounds` rounds.
 */
export async function protobufVsJson(
  plan: ProtobufPlan,
  secret: string,
  core: number,
  progress: (line: string) => void = () => {},
  env: Record<string, string> = {},
): Promise<ProtobufVsJson> {
  const server = await startServer('switchboard', secret, core, env);
  try {
    const runs: ProtocolRun[] = [];
    for (let round = 1; round <= plan.rounds; round++) {
      const order = round % 2 === 1 ? PROTOCOLS : [...PROTOCOLS].reverse();
      for (const protocol of order) {
        progress(
          `switchboard: ${LABEL[protocol]}, 1 × ${plan.subscribers}, ${plan.publications} publications (round ${round})`,
        );
        runs.push(await run(server, protocol, round, plan, secret, core));
      }
    }
    return { plan, payloadBytes: PAYLOAD_BYTES, pinned: server.pinned, runs };
  } finally {
    await server.stop();
  }
}

export function formatProtobufVsJson(result: ProtobufVsJson): string {
  const { plan, runs } = result;
  const of = (p: Protocol) => runs.filter((r) => r.protocol === p);
  const mid = (p: Protocol, value: (r: ProtocolRun) => number) => median(of(p).map(value));
  const protobufOverJson = (value: (r: ProtocolRun) => number) =>
    ratio(mid('protobuf', value), mid('json', value));
  const row = (name: string, cell: (p: Protocol) => string, r = '') => [name, ...PROTOCOLS.map(cell), r];
  const medianCell = (value: (r: ProtocolRun) => number, digits: number) => (p: Protocol) =>
    mid(p, value).toFixed(digits);
  const cpu = (r: ProtocolRun) => r.perCpuSecond;
  const withSoftirq = (r: ProtocolRun) => r.perCpuSecondWithSoftirq;
  const rows = [
    row('delivered / expected, every run', (p) =>
      of(p).every((r) => r.delivered === r.expected) ? `${of(p)[0]?.expected ?? 0} ✓` : 'no',
    ),
    row(
      'bytes per delivery (WebSocket payload)',
      medianCell((r) => r.bytesPerDelivery, 1),
      protobufOverJson((r) => r.bytesPerDelivery),
    ),
    row(
      '  with frame header',
      medianCell((r) => r.frameBytesPerDelivery, 1),
      protobufOverJson((r) => r.frameBytesPerDelivery),
    ),
    row(
      "  gateway's count (bytes_total)",
      medianCell((r) => r.gatewayBytesPerDelivery, 1),
    ),
    row('deliveries per server CPU-second', medianCell(cpu, 0), protobufOverJson(cpu)),
    row('  each run', (p) =>
      of(p)
        .map((r) => r.perCpuSecond.toFixed(0))
        .join(', '),
    ),
    row(
      '  with the core softirq',
      (p) => (result.pinned ? mid(p, withSoftirq).toFixed(0) : '–'),
      result.pinned ? protobufOverJson(withSoftirq) : '',
    ),
    row(
      'server CPU s',
      medianCell((r) => r.cpuSeconds, 2),
    ),
    row(
      `wall s (planned ${(plan.publications / plan.rate).toFixed(1)})`,
      medianCell((r) => r.seconds, 2),
    ),
    row('p50 / p99 ms', (p) => `${mid(p, (r) => r.p50).toFixed(1)} / ${mid(p, (r) => r.p99).toFixed(1)}`),
    row(
      'load generator CPU, share of a core',
      (p) => `${(mid(p, (r) => r.generatorCpu) * 100).toFixed(0)} %`,
    ),
  ];
  const width = Math.max(...rows.map((r) => r[0]!.length));
  for (const r of rows) r[0] = r[0]!.padEnd(width);
  return (
    `Protobuf vs JSON (Centrifugo protocol): 1 channel × ${plan.subscribers} subscribers, ` +
    `${plan.publications} publications of a ${result.payloadBytes}-byte JSON payload via the server HTTP API ` +
    `at ${plan.rate}/s per run, ${plan.rounds} round(s) of JSON and Protobuf alternately (medians); ` +
    `raw ws subscribers with centrifuge-js's codecs\n` +
    `${table([''.padEnd(width), ...PROTOCOLS.map((p) => LABEL[p]), 'Protobuf ÷ JSON'], rows)}\n`
  );
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      subscribers: { type: 'string' },
      publications: { type: 'string' },
      rate: { type: 'string' },
      rounds: { type: 'string' },
      'coalesce-window': { type: 'string', default: '0' },
    },
  });
  const plan = protobufPlan(values.quick);
  for (const key of ['subscribers', 'publications', 'rate', 'rounds'] as const) {
    const text = values[key];
    if (text === undefined) continue;
    const v = Math.floor(Number(text));
    if (!Number.isFinite(v) || v < 1) throw new Error(`--${key} wants a whole number ≥ 1`);
    plan[key] = v;
  }
  const pinned = pin(process.pid, 0);
  console.log(`Protobuf vs JSON, ${new Date().toISOString()}, ${JSON.stringify(machine())}`);
  console.log(`gateway pinned to core 1, this process to core 0: ${pinned ? 'yes' : 'no (taskset missing)'}`);
  console.log(`plan: ${JSON.stringify(plan)}\n`);
  const env = { SWITCHBOARD_PUSH_COALESCE_WINDOW: values['coalesce-window'] };
  const result = await protobufVsJson(plan, 'bench-secret-hs256', 1, (line) => console.error(line), env);
  console.log(formatProtobufVsJson(result));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href)
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
