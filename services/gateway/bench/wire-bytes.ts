/**
 * Bytes on the wire per transport: the same scenario over WebSocket,
 * HTTP-streaming and SSE, from a Node centrifuge client and from the same
 * client in headless Chromium (which sends a browser's request headers),
 * measured as TCP payload bytes (HTTP headers, framing and all) by a counting
 * proxy in front of one embedded gateway. HTTP short polling of the same
 * publications is measured for comparison. Prints Markdown for
 * docs/benchmarks.md.
 *
 *   node services/gateway/dist/bench/wire-bytes.js [--publications 1000] [--commands 100] [--no-browser]
 */

import { createServer as createHttpServer } from 'node:http';
import { createConnection, createServer, type Server } from 'node:net';
import { parseArgs } from 'node:util';
import type { Centrifuge } from 'centrifuge';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../test/browser-harness.js';
import type { CentrifugoTransport as Transport } from '../src/metrics.js';
import {
  api,
  endpointOf,
  type Gateway,
  nextEvent,
  startGateway,
  token,
  transportClient,
  waitUntil,
} from '../test/harness.js';

interface Counted {
  up: number;
  down: number;
}

/** A TCP proxy to `port` that adds up the bytes each way, over all its connections. */
async function countingProxy(port: number): Promise<{ port: number; bytes: Counted; server: Server }> {
  const bytes: Counted = { up: 0, down: 0 };
  const server = createServer((client) => {
    const upstream = createConnection(port, '127.0.0.1');
    client.on('data', (d) => {
      bytes.up += d.byteLength;
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      bytes.down += d.byteLength;
      client.write(d);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no proxy port');
  return { port: address.port, bytes, server };
}

const { values } = parseArgs({
  options: {
    publications: { type: 'string', default: '1000' },
    commands: { type: 'string', default: '100' },
    'no-browser': { type: 'boolean', default: false },
  },
});
const publications = Number(values.publications);
const commands = Number(values.commands);
const payload = (n: number) => ({ n, text: 'hello, world' });

/** One client of the scenario, driven step by step. */
interface Driver {
  connectAndSubscribe(channel: string): Promise<void>;
  received(): Promise<number>;
  publishes(count: number): Promise<void>;
  rpcs(count: number): Promise<void>;
  disconnect(): Promise<void>;
}

function nodeDriver(base: string, transport: Transport, jwt: string): Driver {
  const client = transportClient(base, [transport], { token: jwt });
  let sub: ReturnType<Centrifuge['newSubscription']> | undefined;
  let count = 0;
  return {
    async connectAndSubscribe(channel) {
      client.connect();
      await nextEvent(client, 'connected', 10_000);
      sub = client.newSubscription(channel);
      sub.on('publication', () => count++);
      sub.subscribe();
      await sub.ready(10_000);
    },
    received: async () => count,
    async publishes(n) {
      for (let i = 1; i <= n; i++) await sub!.publish(payload(i));
    },
    async rpcs(n) {
      for (let i = 1; i <= n; i++) await client.rpc('echo', payload(i));
    },
    async disconnect() {
      client.disconnect();
    },
  };
}

/** The same client in Chromium, on a page of the gateway (same origin, so no CORS preflights). */
async function browserDriver(
  browser: Browser,
  base: string,
  transport: Transport,
  jwt: string,
): Promise<Driver> {
  const page = await browser.newPage();
  await page.goto(`http://${base}/`);
  await page.waitForFunction(() => 'Centrifuge' in globalThis);
  const endpoint = endpointOf(base, transport);
  type Scripted = { client: Centrifuge; sub: ReturnType<Centrifuge['newSubscription']>; count: number };
  return {
    async connectAndSubscribe(channel) {
      await page.evaluate(
        async ({ transport, endpoint, jwt, channel }) => {
          const g = globalThis as unknown as { bench: Scripted; Centrifuge: typeof Centrifuge };
          const client = new g.Centrifuge([{ transport, endpoint }], {
            emulationEndpoint: '/emulation',
            token: jwt,
          });
          const sub = client.newSubscription(channel);
          g.bench = { client, sub, count: 0 };
          sub.on('publication', () => g.bench.count++);
          client.connect();
          sub.subscribe();
          await sub.ready(10_000).catch((err: unknown) => {
            throw new Error(`subscribe over ${transport} failed: ${JSON.stringify(err)}`);
          });
        },
        { transport, endpoint, jwt, channel },
      );
    },
    received: () => page.evaluate(() => (globalThis as unknown as { bench: Scripted }).bench.count),
    async publishes(n) {
      await page.evaluate(async (n) => {
        const { sub } = (globalThis as unknown as { bench: Scripted }).bench;
        for (let i = 1; i <= n; i++) await sub.publish({ n: i, text: 'hello, world' });
      }, n);
    },
    async rpcs(n) {
      await page.evaluate(async (n) => {
        const { client } = (globalThis as unknown as { bench: Scripted }).bench;
        for (let i = 1; i <= n; i++) await client.rpc('echo', { n: i, text: 'hello, world' });
      }, n);
    },
    async disconnect() {
      await page.evaluate(() => (globalThis as unknown as { bench: Scripted }).bench.client.disconnect());
      await page.close();
    },
  };
}

const PHASES = {
  'connect + subscribe': 1,
  'server → client publications': publications,
  'client → server publishes': commands,
  'RPC round trips': commands,
} as const;
type Phase = keyof typeof PHASES;

/** Runs the scenario with one client through a fresh counting proxy; bytes per phase. */
async function measure(
  gateway: Gateway,
  transport: Transport,
  makeDriver: (base: string, jwt: string) => Promise<Driver> | Driver,
): Promise<Record<Phase, Counted>> {
  const proxy = await countingProxy(gateway.clientPort);
  const driver = await makeDriver(`127.0.0.1:${proxy.port}`, await token({ sub: 'wire' }));
  // A page load before the scenario is not part of it.
  let mark = { ...proxy.bytes };
  const phases = {} as Record<Phase, Counted>;
  const phase = (name: Phase) => {
    phases[name] = { up: proxy.bytes.up - mark.up, down: proxy.bytes.down - mark.down };
    mark = { ...proxy.bytes };
  };
  const channel = `chat:wire-${transport}-${Math.random().toString(36).slice(2)}`;
  await driver.connectAndSubscribe(channel);
  phase('connect + subscribe');
  for (let n = 1; n <= publications; n++) await api(gateway, 'publish', { channel, data: payload(n) });
  await waitUntil(
    async () => (await driver.received()) === publications,
    30_000,
    () => 'publications',
  );
  phase('server → client publications');
  await driver.publishes(commands);
  await waitUntil(
    async () => (await driver.received()) === publications + commands,
    30_000,
    () => 'own publications',
  );
  phase('client → server publishes');
  await driver.rpcs(commands);
  phase('RPC round trips');
  await driver.disconnect();
  proxy.server.close();
  return phases;
}

/**
 * The seed's comparison: short polling at its best (a message waits at every
 * poll), one keep-alive GET per publication carrying the same push frame,
 * through the same counting proxy, from Node or from the browser.
 */
async function pollingBytesPerMessage(browser: Browser | undefined): Promise<number> {
  const server = createHttpServer((req, res) => {
    const n = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('after')) + 1;
    res.setHeader('content-type', 'application/json');
    res.setHeader('cache-control', 'no-cache');
    res.end(JSON.stringify({ push: { channel: 'chat:wire', pub: { data: payload(n), offset: n } } }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no polling port');
  const proxy = await countingProxy(address.port);
  const base = `http://127.0.0.1:${proxy.port}`;
  let before = { ...proxy.bytes };
  if (browser) {
    const page = await browser.newPage();
    await page.goto(`${base}/poll?after=0`);
    before = { ...proxy.bytes };
    await page.evaluate(async (n) => {
      for (let i = 0; i < n; i++) await (await fetch(`/poll?after=${i}`)).text();
    }, publications);
    await page.close();
  } else {
    for (let n = 0; n < publications; n++) await (await fetch(`${base}/poll?after=${n}`)).text();
  }
  proxy.server.close();
  server.closeAllConnections();
  server.close();
  return Math.round((proxy.bytes.up - before.up + proxy.bytes.down - before.down) / publications);
}

const TRANSPORTS = ['websocket', 'http_stream', 'sse'] as const;

/** One Markdown table: bytes per item, ratio to WebSocket in brackets. */
function table(title: string, rows: Record<Transport, Record<Phase, Counted>>, polling: number): void {
  const per = (c: Counted, n: number) => Math.round((c.up + c.down) / n);
  const ratio = (value: number, base: number) => `${value} (${(value / base).toFixed(1)}×)`;
  console.log(`\n**${title}**\n`);
  console.log(`| bytes per item (up + down) | ${TRANSPORTS.join(' | ')} | HTTP short polling |`);
  console.log(`| --- | ${TRANSPORTS.map(() => '---:').join(' | ')} | ---: |`);
  for (const [name, n] of Object.entries(PHASES) as [Phase, number][]) {
    const base = per(rows.websocket[name], n);
    const cells = TRANSPORTS.map((t) => (t === 'websocket' ? `${base}` : ratio(per(rows[t][name], n), base)));
    const poll = name === 'server → client publications' ? ratio(polling, base) : '';
    console.log(`| ${name} | ${cells.join(' | ')} | ${poll} |`);
  }
  const total = (t: Transport) => Object.values(rows[t]).reduce((sum, c) => sum + c.up + c.down, 0);
  const cells = TRANSPORTS.map((t) =>
    t === 'websocket' ? `${total(t)}` : ratio(total(t), total('websocket')),
  );
  console.log(`| whole scenario (total bytes) | ${cells.join(' | ')} | |`);
}

// The command rate limit would throttle the scripted client; bytes are what is measured here.
const gateway = await startGateway({
  SWITCHBOARD_COMMANDS_PER_SECOND: '100000',
  SWITCHBOARD_CONNECTS_PER_IP_PER_SECOND: '0',
  SWITCHBOARD_EMULATION_REQUESTS_PER_IP_PER_SECOND: '0',
  SWITCHBOARD_ALLOWED_ORIGINS: '*',
});
const browser = values['no-browser'] ? undefined : await launchChromium();
try {
  console.log(
    `${publications} publications of \`${JSON.stringify(payload(1))}\`, then ${commands} client publishes and ${commands} RPCs; TCP payload bytes incl. HTTP headers and framing; ratio to WebSocket in brackets.`,
  );
  const nodeRows = {} as Record<Transport, Record<Phase, Counted>>;
  for (const t of TRANSPORTS)
    nodeRows[t] = await measure(gateway, t, (base, jwt) => nodeDriver(base, t, jwt));
  table(
    'Node client (centrifuge 5.8 on Node 20: fetch, ws, eventsource)',
    nodeRows,
    await pollingBytesPerMessage(undefined),
  );
  if (browser) {
    const browserRows = {} as Record<Transport, Record<Phase, Counted>>;
    for (const t of TRANSPORTS)
      browserRows[t] = await measure(gateway, t, (base, jwt) => browserDriver(browser, base, t, jwt));
    table(
      `Headless Chromium ${browser.version()} (same client, a browser's request headers)`,
      browserRows,
      await pollingBytesPerMessage(browser),
    );
  }
} finally {
  await browser?.close();
  await gateway.stop();
}
