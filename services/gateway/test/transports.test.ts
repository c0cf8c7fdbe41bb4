/**
 * SSE and HTTP-streaming, as the centrifuge client speaks them: the whole
 * protocol over each, the wire format, `/emulation` refusing bad input
 * without harming the stream, Origin rules, slow readers, the client's
 * fallback behind a proxy that blocks WebSocket (real HAProxy), and in a
 * cluster: emulation requests routed over NATS to the gateway holding the
 * stream, and recovery after that gateway is killed.
 */

import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Centrifuge, Options } from 'centrifuge';
import type { CentrifugoTransport as Transport } from '../src/metrics.js';
import { type BlockingProxy, type Cluster, startBlockingProxy, startCluster } from './cluster.js';
import {
  api,
  client,
  type Gateway,
  nextEvent,
  startGateway,
  token,
  transportClient,
  waitUntil,
} from './harness.js';
import { assertGotExactly, connectionsOn, killDuringTraffic, numbers, subscribe } from './traffic.js';

const clients: Centrifuge[] = [];

after(() => {
  for (const c of clients) c.disconnect();
});

/** A client trying `transports` in order at 127.0.0.1:port, disconnected after the tests. */
function streamClient(port: number, transports: Transport[], options: Partial<Options> = {}): Centrifuge {
  const c = transportClient(`127.0.0.1:${port}`, transports, options);
  clients.push(c);
  return c;
}

/** Connects and resolves with the transport the client ended up on. */
async function connected(c: Centrifuge, timeoutMs = 10_000): Promise<string> {
  c.connect();
  const ctx = await nextEvent<{ transport: string }>(c, 'connected', timeoutMs);
  return ctx.transport;
}

const connectCommand = async (user: string) =>
  JSON.stringify({ connect: { token: await token({ sub: user }), name: 'test' }, id: 1 });

/** Reads a streaming response until `done(text so far)` holds. */
async function readUntil(res: Response, done: (text: string) => boolean, timeoutMs = 5000): Promise<string> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = '';
  const deadline = Date.now() + timeoutMs;
  while (!done(text)) {
    if (Date.now() > deadline) throw new Error(`stream did not deliver in time; got: ${text}`);
    const { value, done: ended } = await reader.read();
    if (ended) break;
    text += decoder.decode(value, { stream: true });
  }
  reader.releaseLock();
  return text;
}

describe('SSE and HTTP-streaming on one gateway', () => {
  let gw: Gateway;

  before(async () => {
    gw = await startGateway({ SWITCHBOARD_ALLOW_ANONYMOUS: 'false' });
  });

  after(async () => {
    await gw.stop();
  });

  for (const transport of ['http_stream', 'sse'] as const) {
    test(`${transport} carries the whole protocol: subscribe, publish both ways, presence, history, RPC, server disconnect`, async () => {
      const user = `u-${transport}`;
      const c = streamClient(gw.clientPort, [transport], { token: await token({ sub: user }) });
      assert.equal(await connected(c), transport);
      const channel = `chat:${transport}`;
      const mine = await subscribe(c, channel);

      const ws = client(gw, { token: await token({ sub: 'ws-peer' }) });
      clients.push(ws);
      ws.connect();
      await nextEvent(ws, 'connected');
      const theirs = await subscribe(ws, channel);

      await mine.sub.publish({ n: 1 });
      assert.equal((await api(gw, 'publish', { channel, data: { n: 2 } })).status, 200);
      await waitUntil(
        () => mine.got.length === 2 && theirs.got.length === 2,
        5000,
        () => 'both publications on both clients',
      );
      assert.deepEqual(numbers(mine.got), [1, 2]);
      assert.deepEqual(numbers(theirs.got), [1, 2]);

      const presence = await mine.sub.presence();
      assert.deepEqual(
        Object.values(presence.clients)
          .map((i) => i.user)
          .sort(),
        [user, 'ws-peer'],
      );
      const history = await mine.sub.history({ limit: 10 });
      assert.deepEqual(
        history.publications.map((p) => (p.data as { n: number }).n),
        [1, 2],
      );
      assert.deepEqual((await c.rpc('echo', { hello: transport })).data, { hello: transport });

      const gone = nextEvent<{ code: number; reason: string }>(c, 'disconnected');
      const res = await api(gw, 'disconnect', { user, disconnect: { code: 4501, reason: 'bye' } });
      assert.equal(res.status, 200);
      assert.deepEqual(await gone, { code: 4501, reason: 'bye' });
      await waitUntil(
        async () => (await connectionsOn(gw, transport)) === 0,
        5000,
        () => 'stream closed',
      );
    });
  }

  test('the wire: SSE unnamed events and NDJSON lines, the connect reply names session and node', async () => {
    const base = `http://127.0.0.1:${gw.clientPort}`;
    const sse = await fetch(
      `${base}/connection/sse?cf_connect=${encodeURIComponent(await connectCommand('w1'))}`,
    );
    assert.equal(sse.status, 200);
    assert.match(sse.headers.get('content-type') ?? '', /^text\/event-stream/);
    const event = await readUntil(sse, (t) => t.includes('\n\n'));
    assert.match(event, /^data: \{.*\}\n\n$/);
    const reply = JSON.parse(event.slice('data: '.length)) as {
      id: number;
      connect: Record<string, unknown>;
    };
    assert.equal(reply.id, 1);
    assert.equal(typeof reply.connect.session, 'string');
    assert.ok((reply.connect.session as string).length >= 20, 'an unguessable session id');
    assert.equal(typeof reply.connect.node, 'string');
    await sse.body?.cancel();

    const stream = await fetch(`${base}/connection/http_stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: await connectCommand('w2'),
    });
    assert.equal(stream.status, 200);
    const line = await readUntil(stream, (t) => t.includes('\n'));
    assert.match(line, /^\{"id":1,"connect":\{.*\}\}\n$/);
    await stream.body?.cancel();
  });

  test('/emulation refuses bad requests with a clear status and leaves the stream working', async () => {
    const base = `http://127.0.0.1:${gw.clientPort}`;
    const stream = await fetch(`${base}/connection/http_stream`, {
      method: 'POST',
      body: await connectCommand('e1'),
    });
    const first = await readUntil(stream, (t) => t.includes('\n'));
    const { session, node } = (JSON.parse(first) as { connect: { session: string; node: string } }).connect;
    const emulate = (body: string) =>
      fetch(`${base}/emulation`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const command = (id: number) => JSON.stringify({ subscribe: { channel: 'chat:emu' }, id });

    const bad = await emulate('{not json');
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /malformed/);
    assert.equal((await emulate(JSON.stringify({ session: 'nope', node, data: command(2) }))).status, 404);
    assert.equal(
      (await emulate(JSON.stringify({ session, node: 'elsewhere', data: command(2) }))).status,
      404,
    );
    const huge = await emulate(JSON.stringify({ session, node, data: 'x'.repeat(70_000) }));
    assert.equal(huge.status, 413);

    const ok = await emulate(JSON.stringify({ session, node, data: command(3) }));
    assert.equal(ok.status, 204);
    const rest = await readUntil(stream, (t) => t.includes('"id":3'));
    assert.match(rest, /\{"id":3,"subscribe":\{/);
    assert.doesNotMatch(rest, /"id":2/);
    await stream.body?.cancel();
  });

  test('a stream whose connect command is too large or missing is refused before it opens', async () => {
    const base = `http://127.0.0.1:${gw.clientPort}`;
    const big = await fetch(`${base}/connection/http_stream`, { method: 'POST', body: 'x'.repeat(70_000) });
    assert.equal(big.status, 413);
    const none = await fetch(`${base}/connection/sse`);
    assert.equal(none.status, 400);
    assert.match(await none.text(), /cf_connect/);
  });

  test('a stream reader that stops reading is disconnected as slow; the gateway carries on', async () => {
    const slowGw = await startGateway({ SWITCHBOARD_MAX_BACKPRESSURE: '65536' });
    try {
      // A raw socket that sends the request, then never reads: the kernel buffers fill, then our queue.
      const socket = tcpConnect(slowGw.clientPort, '127.0.0.1');
      const body = await connectCommand('slow');
      socket.write(
        `POST /connection/http_stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
      let head = '';
      await new Promise<void>((resolve) => {
        const onData = (d: Buffer) => {
          head += d.toString();
          if (!head.includes('"connect"')) return;
          socket.off('data', onData);
          socket.pause();
          resolve();
        };
        socket.on('data', onData);
      });
      const { session, node } = JSON.parse(
        head.slice(head.indexOf('{"id":1'), head.indexOf('\n', head.indexOf('{"id":1'))),
      ).connect as { session: string; node: string };
      const emulated = await fetch(`http://127.0.0.1:${slowGw.clientPort}/emulation`, {
        method: 'POST',
        body: JSON.stringify({
          session,
          node,
          data: JSON.stringify({ subscribe: { channel: 'chat:flood' }, id: 2 }),
        }),
      });
      assert.equal(emulated.status, 204);
      await waitUntil(
        async () =>
          (await api(slowGw, 'presence_stats', { channel: 'chat:flood' })).body.result?.num_clients === 1,
        5000,
        () => 'the slow reader to be subscribed',
      );
      const payload = 'y'.repeat(32_000);
      const slowDisconnects = async () => {
        const text = await (await fetch(`${slowGw.internalUrl}/metrics`)).text();
        return /^switchboard_disconnects_total\{transport="http_stream",reason="slow",code="3008"\} 1$/m.test(
          text,
        );
      };
      await waitUntil(
        async () => {
          await api(slowGw, 'publish', { channel: 'chat:flood', data: { payload } });
          return slowDisconnects();
        },
        20_000,
        () => 'the slow reader to be disconnected',
      );
      socket.destroy();
      const c = streamClient(slowGw.clientPort, ['http_stream'], { token: await token({ sub: 'fine' }) });
      assert.equal(await connected(c), 'http_stream');
    } finally {
      await slowGw.stop();
    }
  });
});

describe('Origin allow-list and CORS on the HTTP transports', () => {
  let gw: Gateway;
  const good = 'https://app.example';

  before(async () => {
    gw = await startGateway({ SWITCHBOARD_ALLOWED_ORIGINS: good });
  });

  after(async () => {
    await gw.stop();
  });

  test('a foreign Origin is refused on every endpoint; an allowed one gets CORS headers', async () => {
    const base = `http://127.0.0.1:${gw.clientPort}`;
    const evil = { origin: 'https://evil.example' };
    const connect = await connectCommand('o1');
    const refused = [
      await fetch(`${base}/connection/http_stream`, { method: 'POST', headers: evil, body: connect }),
      await fetch(`${base}/connection/sse?cf_connect=${encodeURIComponent(connect)}`, { headers: evil }),
      await fetch(`${base}/emulation`, { method: 'POST', headers: evil, body: '{}' }),
      await fetch(`${base}/emulation`, { method: 'OPTIONS', headers: evil }),
    ];
    assert.deepEqual(
      refused.map((r) => r.status),
      [403, 403, 403, 403],
    );

    const preflight = await fetch(`${base}/emulation`, {
      method: 'OPTIONS',
      headers: { origin: good, 'access-control-request-method': 'POST' },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), good);
    assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /content-type/);

    const stream = await fetch(`${base}/connection/http_stream`, {
      method: 'POST',
      headers: { origin: good },
      body: connect,
    });
    assert.equal(stream.status, 200);
    assert.equal(stream.headers.get('access-control-allow-origin'), good);
    await stream.body?.cancel();
  });
});

describe('fallback when WebSocket is blocked', () => {
  let gw: Gateway;
  let proxy: BlockingProxy;

  before(async () => {
    gw = await startGateway();
    proxy = await startBlockingProxy(gw.clientPort);
  });

  after(async () => {
    await proxy.stop();
    await gw.stop();
  });

  for (const [port, expected] of [
    [() => proxy.wsBlocked, 'http_stream'],
    [() => proxy.streamBlocked, 'sse'],
  ] as const) {
    test(`the client falls back from WebSocket to ${expected} and works there`, async () => {
      const c = streamClient(port(), ['websocket', 'http_stream', 'sse'], {
        token: await token({ sub: `fb-${expected}` }),
      });
      assert.equal(await connected(c, 15_000), expected);
      const s = await subscribe(c, `chat:fallback-${expected}`);
      await api(gw, 'publish', { channel: `chat:fallback-${expected}`, data: { n: 7 } });
      await waitUntil(
        () => s.got.length === 1,
        5000,
        () => 'the publication',
      );
      assert.deepEqual(numbers(s.got), [7]);
      assert.deepEqual((await c.rpc('echo', { via: expected })).data, { via: expected });
    });
  }
});

describe('HTTP transports in a cluster behind HAProxy', () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster();
  });

  after(async () => {
    // The clients first: left connected, they would reconnect into the cluster while it stops.
    for (const c of clients.splice(0)) c.disconnect();
    await cluster.stop();
  });

  const emulationCounts = async (gateway: Gateway) => {
    const text = await (await fetch(`${gateway.internalUrl}/metrics`)).text();
    const count = (outcome: string) =>
      Number(
        new RegExp(`^switchboard_emulation_requests_total\\{outcome="${outcome}"\\} (\\d+)`, 'm').exec(
          text,
        )?.[1] ?? 0,
      );
    return { local: count('local'), routed: count('routed') };
  };

  test('emulation requests land on any gateway and reach the stream over NATS; the gateway holding it is killed: clients recover, nothing lost or doubled', async () => {
    const transports = ['sse', 'http_stream'] as const;
    const streamClients: Centrifuge[] = [];
    const subscribers = await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const transport = transports[i % 2]!;
        const c = streamClient(cluster.haproxy.port, [transport], { token: await token({ sub: `s${i}` }) });
        streamClients.push(c);
        assert.equal(await connected(c), transport);
        return subscribe(c, 'chat:streams');
      }),
    );
    const counts = await Promise.all(
      cluster.gateways.map(
        async (g) => (await connectionsOn(g, 'sse')) + (await connectionsOn(g, 'http_stream')),
      ),
    );
    assert.equal(
      counts.reduce((a, b) => a + b, 0),
      6,
    );
    // HAProxy spreads the emulation POSTs (leastconn), not always away from the stream's gateway: a
    // request for a stream posted to each of the other gateways must reach it over NATS.
    const { _session: session, _node: node } = streamClients[0] as unknown as {
      _session: string;
      _node: string;
    };
    for (const [i, g] of cluster.gateways.entries()) {
      if (`gw${i + 1}` === node) continue;
      const res = await fetch(`http://127.0.0.1:${g.clientPort}/emulation`, {
        method: 'POST',
        body: JSON.stringify({ session, node, data: '{"send":{"data":"probe"}}' }),
      });
      assert.equal(res.status, 204, `emulation through gw${i + 1} to ${node}`);
    }
    const emulation = await Promise.all(cluster.gateways.map(emulationCounts));
    assert.ok(
      emulation.reduce((sum, e) => sum + e.routed, 0) >= 2,
      `the emulation requests were routed: ${JSON.stringify(emulation)}`,
    );

    const victim = counts.indexOf(Math.max(...counts));
    const accepted = await killDuringTraffic(cluster.gateways, victim, 'chat:streams', subscribers);
    for (const [i, s] of subscribers.entries()) assertGotExactly(s, accepted, `subscriber ${i}`);
    const recovered = subscribers.filter((s) => s.recoveries > 0).length;
    assert.equal(recovered, counts[victim], 'each stream client of the killed gateway recovered once');
  });
});
