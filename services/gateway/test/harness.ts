/**
 * Test harness: starts the real gateway process (built `dist/src/main.js`) on
 * free ports, mints tokens, builds centrifuge-js clients, calls the HTTP API,
 * and waits for events with timeouts instead of sleeping.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Centrifuge, type Options } from 'centrifuge';
import { EventSource } from 'eventsource';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import type { CentrifugoTransport as Transport } from '../src/metrics.js';
import { inNamespace } from './netns.js';

export const SECRET = 'test-secret-key-for-hs256';
export const API_KEY = 'test-api-key';

export const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));

/**
 * The Node flag every launcher runs the gateway with (the image, compose, the
 * chart, scripts/cluster.sh, make run: launchers.test.ts checks them): a young
 * generation of at most 2 × 4 MB. V8's default lets it grow to 32 MB after a
 * burst of connects and keep it, a fixed cost that was a third of an idle
 * connection's memory at 19k connections (docs/benchmarks.md).
 */
export const GATEWAY_NODE_FLAG = '--max-semi-space-size=4';

/**
 * Ports this process handed out already: the kernel may offer a port it just
 * released again, and a gateway's three listeners (or two gateways) given the
 * same one fail with EADDRINUSE.
 */
const handedOut = new Set<number>();

export async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    server.close();
    if (typeof address !== 'object' || address === null) throw new Error('no port');
    if (handedOut.has(address.port)) continue;
    handedOut.add(address.port);
    return address.port;
  }
}

export interface Gateway {
  /** The address its listeners bind to: 127.0.0.1, or its host's in a test network. */
  host: string;
  clientPort: number;
  internalPort: number;
  grpcPort: number;
  wsUrl: string;
  internalUrl: string;
  process: ChildProcess;
  /** Everything the process printed so far. */
  output(): string;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface GatewayPlacement {
  /** A network namespace to run in (a host of a test network, netns.ts), at `host`. */
  netns?: string;
  host?: string;
  timeoutMs?: number;
}

export async function startGateway(
  env: Record<string, string> = {},
  { netns, host = '127.0.0.1', timeoutMs = 15_000 }: GatewayPlacement = {},
): Promise<Gateway> {
  const [clientPort, internalPort, grpcPort] = [await freePort(), await freePort(), await freePort()];
  const [program, args] = inNamespace(netns, process.execPath, [GATEWAY_NODE_FLAG, MAIN]);
  const child = spawn(program, args, {
    env: {
      PATH: process.env.PATH ?? '',
      SWITCHBOARD_HOST: host,
      SWITCHBOARD_CLIENT_PORT: String(clientPort),
      SWITCHBOARD_INTERNAL_PORT: String(internalPort),
      SWITCHBOARD_GRPC_PORT: String(grpcPort),
      SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: SECRET,
      SWITCHBOARD_API_KEY: API_KEY,
      SWITCHBOARD_LOG_LEVEL: 'warn',
      // Every test client comes from 127.0.0.1: the per-IP limits are tested where they are meant.
      SWITCHBOARD_CONNECTS_PER_IP_PER_SECOND: '0',
      SWITCHBOARD_EMULATION_REQUESTS_PER_IP_PER_SECOND: '0',
      SWITCHBOARD_DEMO_TOKENS_PER_IP_PER_SECOND: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    out += d;
  });
  const internalUrl = `http://${host}:${internalPort}`;
  const exited = once(child, 'exit');
  const gateway: Gateway = {
    host,
    clientPort,
    internalPort,
    grpcPort,
    wsUrl: `ws://${host}:${clientPort}/connection/websocket`,
    internalUrl,
    process: child,
    output: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const [code] = await exited;
      return code as number | null;
    },
  };
  try {
    await waitUntil(
      async () => {
        if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}:\n${out}`);
        const res = await fetch(`${internalUrl}/readyz`).catch(() => undefined);
        return res?.status === 200;
      },
      timeoutMs,
      () => `gateway not ready:\n${out}`,
    );
  } catch (err) {
    // A gateway that never became ready must not outlive the test (nor keep its process running).
    await gateway.stop('SIGKILL');
    throw err;
  }
  return gateway;
}

/** Polls `check` every 20 ms until it returns true; fails after the timeout. */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  describe: () => string = () => 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${describe()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves with the first event's argument; rejects after the timeout. */
export function nextEvent<T = unknown>(
  emitter: { once(event: string, fn: (arg: T) => void): unknown },
  event: string,
  timeoutMs = 5000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${event}`)), timeoutMs);
    emitter.once(event, (arg: T) => {
      clearTimeout(timer);
      resolve(arg);
    });
  });
}

export async function token(
  claims: Record<string, unknown>,
  options: { expiresIn?: number | string; secret?: string } = {},
): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt();
  if (options.expiresIn !== undefined) {
    jwt.setExpirationTime(
      typeof options.expiresIn === 'number'
        ? Math.floor(Date.now() / 1000) + options.expiresIn
        : options.expiresIn,
    );
  }
  return jwt.sign(new TextEncoder().encode(options.secret ?? SECRET));
}

/** A centrifuge-js client over the `ws` package, not yet connected. */
export function client(gateway: Pick<Gateway, 'wsUrl'>, options: Partial<Options> = {}): Centrifuge {
  return new Centrifuge(gateway.wsUrl, {
    websocket: WebSocket,
    minReconnectDelay: 50,
    maxReconnectDelay: 300,
    ...options,
  });
}

/**
 * A WebSocket class for centrifuge-js whose (re)connects go to a closed port
 * while `state.offline` (as if the network were down), then to `target()`.
 */
export function flakyNetwork(target: () => Pick<Gateway, 'wsUrl'>): {
  state: { offline: boolean };
  FlakyWebSocket: new (url: string, protocols?: string | string[]) => WebSocket;
} {
  const state = { offline: false };
  class FlakyWebSocket extends WebSocket {
    constructor(_url: string, protocols?: string | string[]) {
      super(state.offline ? 'ws://127.0.0.1:9/' : target().wsUrl, protocols);
    }
  }
  return { state, FlakyWebSocket };
}

/** A centrifuge-js client connected to `gateway` as `user`, added to `opened` (for the test to disconnect). */
export async function connectedClient(
  gateway: Pick<Gateway, 'wsUrl'>,
  user: string,
  opened: Centrifuge[],
): Promise<Centrifuge> {
  const c = client(gateway, { token: await token({ sub: user }) });
  opened.push(c);
  c.connect();
  await nextEvent(c, 'connected');
  return c;
}

/** The client URL of `transport` at host:port. */
export function endpointOf(hostPort: string, transport: Transport): string {
  return transport === 'websocket'
    ? `ws://${hostPort}/connection/websocket`
    : `http://${hostPort}/connection/${transport}`;
}

/**
 * A centrifuge-js client trying `transports` in order at host:port, with what
 * Node needs for each (ws, EventSource, the absolute `/emulation` URL); not yet connected.
 */
export function transportClient(
  hostPort: string,
  transports: Transport[],
  options: Partial<Options> = {},
): Centrifuge {
  return new Centrifuge(
    transports.map((transport) => ({ transport, endpoint: endpointOf(hostPort, transport) })),
    {
      websocket: WebSocket,
      eventsource: EventSource,
      emulationEndpoint: `http://${hostPort}/emulation`,
      minReconnectDelay: 50,
      maxReconnectDelay: 500,
      ...options,
    },
  );
}

export async function api(
  gateway: Pick<Gateway, 'internalUrl'>,
  method: string,
  params: unknown,
  key = API_KEY,
) {
  const res = await fetch(`${gateway.internalUrl}/api/${method}`, {
    method: 'POST',
    headers: { 'X-API-Key': key, 'content-type': 'application/json' },
    body: JSON.stringify(params),
  });
  return {
    status: res.status,
    body: (await res.json()) as { result?: any; error?: { code: number; message: string } },
  };
}

/** The HTTP status of a WebSocket upgrade to `url`: 101 when it opens (closed again at once), else the refusal's. */
export function upgradeStatus(url: string, options: WebSocket.ClientOptions = {}): Promise<number> {
  const ws = new WebSocket(url, options);
  return new Promise((resolve, reject) => {
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('open', () => {
      ws.terminate();
      resolve(101);
    });
    ws.on('error', reject);
  });
}

/** A raw WebSocket to the gateway, with a queue of received frames split into JSON lines. */
export class RawClient {
  readonly ws: WebSocket;
  readonly received: any[] = [];
  closeCode: number | undefined;
  closeReason = '';
  private waiters: (() => void)[] = [];

  constructor(url: string, headers: Record<string, string> = {}) {
    this.ws = new WebSocket(url, { headers });
    this.ws.on('message', (data) => {
      for (const line of data.toString().split('\n')) if (line.trim()) this.received.push(JSON.parse(line));
      this.wake();
    });
    this.ws.on('close', (code, reason) => {
      this.closeCode = code;
      this.closeReason = reason.toString();
      this.wake();
    });
    this.ws.on('error', () => this.wake());
  }

  async open(): Promise<void> {
    if (this.ws.readyState === WebSocket.OPEN) return;
    await nextEvent(this.ws, 'open');
  }

  send(frame: string | object): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** Waits for a received message matching `match`, and returns it. */
  async expect(match: (msg: any) => boolean, timeoutMs = 5000): Promise<any> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.received.find(match);
      if (found) return found;
      if (Date.now() > deadline)
        throw new Error(`timed out; received ${JSON.stringify(this.received).slice(0, 2000)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
  }

  async closed(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    await waitUntil(
      () => this.closeCode !== undefined,
      timeoutMs,
      () => 'socket close',
    );
    return { code: this.closeCode!, reason: this.closeReason };
  }

  private wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }
}

/** Connects a raw client with a token and waits for the connect reply. */
export async function rawConnect(
  gateway: Gateway,
  user: string,
  headers: Record<string, string> = {},
): Promise<RawClient> {
  const raw = new RawClient(gateway.wsUrl, headers);
  await raw.open();
  raw.send({ id: 1, connect: { token: await token({ sub: user }) } });
  await raw.expect((m) => m.id === 1);
  return raw;
}

/** A gateway's metric, summed over the series whose labels contain every `k="v"` of `labels`. */
export async function metric(
  gateway: Pick<Gateway, 'internalUrl'>,
  name: string,
  labels: string[] = [],
): Promise<number> {
  const text = await (await fetch(`${gateway.internalUrl}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
    .filter((l) => labels.every((p) => l.includes(p)))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

/** The raw clients of one test file's gateway, all ended by `terminate()` after the tests. */
export class RawClients {
  private readonly all: RawClient[] = [];

  constructor(private readonly gateway: () => Gateway) {}

  /** Connected with a token for `user`, the connect reply received. */
  async connect(user: string, headers: Record<string, string> = {}): Promise<RawClient> {
    const raw = await rawConnect(this.gateway(), user, headers);
    this.all.push(raw);
    return raw;
  }

  /** Opening, nothing sent yet. */
  open(headers: Record<string, string> = {}): RawClient {
    const raw = new RawClient(this.gateway().wsUrl, headers);
    this.all.push(raw);
    return raw;
  }

  /** Keeps `raw` to be ended with the others. */
  add(raw: RawClient): RawClient {
    this.all.push(raw);
    return raw;
  }

  terminate(): void {
    for (const raw of this.all) raw.ws.terminate();
  }
}
