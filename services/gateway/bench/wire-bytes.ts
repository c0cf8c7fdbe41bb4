/**
 * Bytes on the wire per transport: the same scenario over WebSocket,
 * HTTP-streaming and SSE, measured as TCP payload bytes (HTTP headers,
 * framing and all) by a counting proxy between the centrifuge client and one
 * embedded gateway. Prints a Markdown table for docs/benchmarks.md.
 *
 *   node services/gateway/dist/bench/wire-bytes.js [--publications 1000] [--commands 100]
 */

import { createServer as createHttpServer } from 'node:http';
import { createConnection, createServer, type Server } from 'node:net';
import { parseArgs } from 'node:util';
import { Centrifuge } from 'centrifuge';
import { EventSource } from 'eventsource';
import WebSocket from 'ws';
import { api, nextEvent, startGateway, token, waitUntil } from '../test/harness.js';

type TransportName = 'websocket' | 'http_stream' | 'sse';

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
  },
});
const publications = Number(values.publications);
const commands = Number(values.commands);
const payload = (n: number) => ({ n, text: 'hello, world' });

// The command rate limit would throttle the scripted client; bytes are what is measured here.
const gateway = await startGateway({ SWITCHBOARD_COMMANDS_PER_SECOND: '100000' });
const rows: { transport: TransportName; phases: Record<string, Counted> }[] = [];
try {
  for (const transport of ['websocket', 'http_stream', 'sse'] as const) {
    const proxy = await countingProxy(gateway.clientPort);
    const base = `127.0.0.1:${proxy.port}`;
    const endpoint =
      transport === 'websocket'
        ? `ws://${base}/connection/websocket`
        : `http://${base}/connection/${transport}`;
    const client = new Centrifuge([{ transport, endpoint }], {
      websocket: WebSocket,
      eventsource: EventSource,
      emulationEndpoint: `http://${base}/emulation`,
      token: await token({ sub: 'wire' }),
    });
    const phases: Record<string, Counted> = {};
    let mark = { ...proxy.bytes };
    const phase = (name: string) => {
      phases[name] = { up: proxy.bytes.up - mark.up, down: proxy.bytes.down - mark.down };
      mark = { ...proxy.bytes };
    };

    client.connect();
    await nextEvent(client, 'connected', 10_000);
    const channel = `chat:wire-${transport}`;
    const sub = client.newSubscription(channel);
    let received = 0;
    sub.on('publication', () => received++);
    sub.subscribe();
    await sub.ready(10_000);
    phase('connect + subscribe');

    for (let n = 1; n <= publications; n++) await api(gateway, 'publish', { channel, data: payload(n) });
    await waitUntil(
      () => received === publications,
      30_000,
      () => `${publications} publications`,
    );
    phase('server → client publications');

    for (let n = 1; n <= commands; n++) await sub.publish(payload(n));
    await waitUntil(
      () => received === publications + commands,
      30_000,
      () => 'own publications back',
    );
    phase('client → server publishes');

    for (let n = 1; n <= commands; n++) await client.rpc('echo', payload(n));
    phase('RPC round trips');

    client.disconnect();
    await waitUntil(() => proxy.bytes.up === mark.up && proxy.bytes.down === mark.down, 2000).catch(() => {});
    proxy.server.close();
    rows.push({ transport, phases });
  }
} finally {
  await gateway.stop();
}

/**
 * The seed's comparison: short polling at its best (a message waits at every
 * poll), one keep-alive GET per publication carrying the same push frame,
 * through the same counting proxy.
 */
async function pollingBytesPerMessage(): Promise<number> {
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
  for (let n = 0; n < publications; n++) {
    const res = await fetch(`http://127.0.0.1:${proxy.port}/poll?after=${n}`);
    await res.text();
  }
  proxy.server.close();
  server.closeAllConnections();
  server.close();
  return Math.round((proxy.bytes.up + proxy.bytes.down) / publications);
}
const polling = await pollingBytesPerMessage();

const per = (c: Counted, n: number) => Math.round((c.up + c.down) / n);
const perItem: Record<string, number> = {
  'connect + subscribe': 1,
  'server → client publications': publications,
  'client → server publishes': commands,
  'RPC round trips': commands,
};
const ws = rows[0]!;
console.log(
  `Bytes per item (up + down, TCP payload incl. HTTP headers and framing); ${publications} publications, ${commands} publishes and RPCs; ratio to WebSocket in brackets.\n`,
);
console.log(`| phase | ${rows.map((r) => r.transport).join(' | ')} | HTTP short polling |`);
console.log(`| --- | ${rows.map(() => '---:').join(' | ')} | ---: |`);
for (const [name, n] of Object.entries(perItem)) {
  const base = per(ws.phases[name]!, n);
  const cells = rows.map((r) => {
    const value = per(r.phases[name]!, n);
    return r === ws ? `${value}` : `${value} (${(value / base).toFixed(1)}×)`;
  });
  const poll = name === 'server → client publications' ? `${polling} (${(polling / base).toFixed(1)}×)` : '';
  console.log(`| ${name} (per item) | ${cells.join(' | ')} | ${poll} |`);
}
const total = (r: (typeof rows)[number]) =>
  Object.values(r.phases).reduce((sum, c) => sum + c.up + c.down, 0);
console.log(
  `| whole scenario (total bytes) | ${rows.map((r) => (r === ws ? `${total(r)}` : `${total(r)} (${(total(r) / total(ws)).toFixed(1)}×)`)).join(' | ')} | |`,
);
