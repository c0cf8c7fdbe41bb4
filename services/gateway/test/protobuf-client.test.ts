/**
 * The Protobuf client protocol end to end: centrifuge-js's protobuf build
 * (its codec is Protobuf: WebSocket subprotocol `centrifuge-protobuf`, and
 * HTTP-streaming with `application/octet-stream` bodies) against the real
 * gateway, beside a JSON client on the same channels: publications both ways
 * and from the server API, history and presence, server-side subscriptions
 * from the token, recovery after a dropped connection, Fossil deltas applied
 * by the client, coalesced pushes in one binary frame, emulation requests
 * routed to the stream's gateway over NATS, and hostile frames (garbage,
 * oversized, data that is not JSON, a JSON command to a Protobuf stream)
 * refused with only their own connection or command affected.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Centrifuge as JsonCentrifuge, SubscribedContext } from 'centrifuge';
import { Centrifuge, type PublicationContext, type Subscription } from 'centrifuge/build/protobuf';
import WebSocket from 'ws';
import { EventSource } from 'eventsource';
import { type Cluster, startCluster } from './cluster.js';
import {
  api,
  client,
  endpointOf,
  flakyNetwork,
  type Gateway,
  nextEvent,
  startGateway,
  token,
  waitUntil,
} from './harness.js';

const NAMESPACES = JSON.stringify([
  {
    name: 'chat',
    history_size: 100,
    history_ttl: 300,
    recovery: true,
    presence: true,
    join_leave: true,
    allow_subscribe_for_client: true,
    allow_publish_for_subscriber: true,
    allow_history_for_subscriber: true,
    allow_presence_for_subscriber: true,
    allowed_delta_types: ['fossil'],
  },
  {
    name: 'kv',
    history_size: 1,
    history_ttl: 300,
    recovery: true,
    force_recovery_mode: 'cache',
    allow_subscribe_for_client: true,
    allow_tags_filter: true,
  },
]);

const utf8 = new TextEncoder();
const text = new TextDecoder();
const bytes = (value: unknown) => utf8.encode(JSON.stringify(value));
const json = (data: Uint8Array): unknown => JSON.parse(text.decode(data));

/**
 * centrifuge-js keeps its Protobuf codec internal; a client holds it as the
 * protected `_codec`, the very code a browser runs: raw sockets here speak
 * through it.
 */
interface ClientCodec {
  encodeCommands(commands: object[]): Uint8Array;
  decodeReplies(data: Uint8Array): Record<string, any>[];
}
class CodecClient extends Centrifuge {
  codec(): ClientCodec {
    return this._codec as ClientCodec;
  }
}
const codec = new CodecClient('ws://127.0.0.1:9/connection/websocket').codec();

/** A `ws` socket speaking Protobuf: frames as they came, replies decoded by centrifuge-js's codec. */
class RawProtobuf {
  readonly ws: WebSocket;
  readonly frames: Uint8Array[] = [];
  closed: Promise<{ code: number; reason: string }>;

  constructor(url: string) {
    this.ws = new WebSocket(url, 'centrifuge-protobuf');
    this.ws.binaryType = 'nodebuffer';
    this.ws.on('message', (data: Buffer) => this.frames.push(new Uint8Array(data)));
    this.closed = new Promise((resolve) =>
      this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
  }

  replies(): Record<string, any>[] {
    return this.frames.flatMap((f) => codec.decodeReplies(f));
  }

  send(...commands: object[]): void {
    this.ws.send(codec.encodeCommands(commands));
  }

  async reply(id: number): Promise<Record<string, any>> {
    let found: Record<string, any> | undefined;
    await waitUntil(
      () => (found = this.replies().find((r) => r.id === id)) !== undefined,
      5000,
      () => `reply ${id}`,
    );
    return found!;
  }

  async connected(user: string): Promise<this> {
    await nextEvent(this.ws, 'open');
    assert.equal(this.ws.protocol, 'centrifuge-protobuf');
    this.send({ id: 1, connect: { token: await token({ sub: user }) } });
    assert.ok((await this.reply(1)).connect, 'connected');
    return this;
  }
}

describe('the Protobuf client protocol (centrifuge-js protobuf build)', () => {
  let gateway: Gateway;
  const clients: (Centrifuge | JsonCentrifuge)[] = [];
  const raws: RawProtobuf[] = [];

  before(async () => {
    gateway = await startGateway({
      SWITCHBOARD_NAMESPACES: NAMESPACES,
      // Publications of a channel within 20 ms share a frame: binary frames are concatenated.
      SWITCHBOARD_PUSH_COALESCE_WINDOW: '20',
    });
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    for (const r of raws) r.ws.terminate();
    await gateway.stop();
  });

  async function protobufClient(
    user: string,
    websocket: unknown = WebSocket,
    claims: object = {},
    transport: 'websocket' | 'http_stream' = 'websocket',
  ) {
    const hostPort = `127.0.0.1:${gateway.clientPort}`;
    const c = new Centrifuge(
      transport === 'websocket' ? gateway.wsUrl : [{ transport, endpoint: endpointOf(hostPort, transport) }],
      {
        websocket,
        eventsource: EventSource,
        emulationEndpoint: `http://${hostPort}/emulation`,
        token: await token({ sub: user, ...claims }),
        minReconnectDelay: 50,
        maxReconnectDelay: 300,
      },
    );
    clients.push(c);
    const ready = nextEvent<{ transport: string }>(c, 'connected');
    c.connect();
    assert.equal((await ready).transport, transport);
    return c;
  }

  async function subscribed(c: Centrifuge, channel: string, options: { delta?: 'fossil' } = {}) {
    const sub = c.newSubscription(channel, options);
    const got: PublicationContext[] = [];
    sub.on('publication', (ctx) => got.push(ctx));
    sub.subscribe();
    await sub.ready(5000);
    return { sub, got, data: () => got.map((p) => json(p.data)) };
  }

  const raw = (): RawProtobuf => {
    const r = new RawProtobuf(gateway.wsUrl);
    raws.push(r);
    return r;
  };

  for (const transport of ['websocket', 'http_stream'] as const)
    test(`${transport}: a Protobuf and a JSON client share a channel: publications both ways and from the API, history, presence`, async () => {
      const channel = `chat:shared-${transport}`;
      const pb = await protobufClient('pb-user', WebSocket, {}, transport);
      const mine = await subscribed(pb, channel);
      const js = client(gateway, { token: await token({ sub: 'json-user' }) });
      clients.push(js);
      const jsGot: unknown[] = [];
      const jsSub = js.newSubscription(channel);
      jsSub.on('publication', (ctx) => jsGot.push(ctx.data));
      jsSub.subscribe();
      js.connect();
      await jsSub.ready(5000);

      await mine.sub.publish(bytes({ from: 'protobuf', n: 1 }));
      await jsSub.publish({ from: 'json', n: 2 });
      await api(gateway, 'publish', { channel, data: { from: 'api', n: 3 } });
      const sent = [
        { from: 'protobuf', n: 1 },
        { from: 'json', n: 2 },
        { from: 'api', n: 3 },
      ];
      await waitUntil(
        () => mine.got.length === 3 && jsGot.length === 3,
        5000,
        () => `3 each, got ${mine.got.length} and ${jsGot.length}`,
      );
      assert.deepEqual(mine.data(), sent);
      assert.deepEqual(jsGot, sent);
      assert.deepEqual(
        mine.got.map((p) => p.offset),
        [1, 2, 3],
      );
      // The publisher's client info travels as JSON bytes too (conn_info absent here).
      assert.equal(mine.got[1]!.info?.user, 'json-user');

      const history = await mine.sub.history({ limit: 10 });
      assert.deepEqual(
        history.publications.map((p) => json(p.data)),
        sent,
      );
      const presence = await mine.sub.presence();
      assert.deepEqual(
        Object.values(presence.clients)
          .map((c) => c.user)
          .sort(),
        ['json-user', 'pb-user'],
      );
      const stats = await mine.sub.presenceStats();
      assert.deepEqual(stats, { numClients: 2, numUsers: 2 });
    });

  test('server-side subscriptions from the token: subscribed on connect, publications pushed', async () => {
    const got: unknown[] = [];
    const c = new Centrifuge(gateway.wsUrl, {
      websocket: WebSocket,
      token: await token({ sub: 'server-side', channels: ['chat:server-side'] }),
    });
    clients.push(c);
    const subscribedCtx = nextEvent<{ channel: string }>(c, 'subscribed');
    c.on('publication', (ctx) => got.push(json(ctx.data)));
    c.connect();
    assert.equal((await subscribedCtx).channel, 'chat:server-side');
    await api(gateway, 'publish', { channel: 'chat:server-side', data: { n: 1 } });
    await waitUntil(
      () => got.length === 1,
      5000,
      () => 'the server-side publication',
    );
    assert.deepEqual(got, [{ n: 1 }]);
  });

  test('recovery after a dropped connection, and delta compression the client applies', async () => {
    const channel = 'chat:recovery';
    const { state, FlakyWebSocket } = flakyNetwork(() => gateway);
    const c = await protobufClient('recovering', FlakyWebSocket);
    const s = await subscribed(c, channel, { delta: 'fossil' });
    const doc = (n: number) => ({ id: 'doc', revision: n, body: 'x'.repeat(600), rows: [1, 2, 3] });
    const publish = (n: number) => api(gateway, 'publish', { channel, data: doc(n), delta: true });
    await publish(1);
    await publish(2);
    await waitUntil(() => s.got.length === 2);
    state.offline = true;
    const dropped = nextEvent(c, 'connecting');
    await api(gateway, 'disconnect', { user: 'recovering', disconnect: { code: 3011, reason: 'reconnect' } });
    await dropped;
    for (const n of [3, 4, 5]) await publish(n);
    const resubscribed = nextEvent<SubscribedContext>(s.sub as unknown as Subscription, 'subscribed', 10_000);
    state.offline = false;
    const ctx = await resubscribed;
    assert.equal(ctx.wasRecovering, true);
    assert.equal(ctx.recovered, true);
    await publish(6);
    await waitUntil(
      () => s.got.length === 6,
      5000,
      () => `6 publications, got ${s.got.length}`,
    );
    assert.deepEqual(s.data(), [1, 2, 3, 4, 5, 6].map(doc));
    // The recovered ones after the first, and the live ones after their first, came as deltas.
    assert.ok(s.sub.deltaStats().numDeltaPayloads >= 3, JSON.stringify(s.sub.deltaStats()));
  });

  test('a tags filter (nested nodes, as Protobuf FilterNode messages) and cache recovery (the latest publication on subscribe)', async () => {
    const channel = 'kv:prices';
    const publish = (n: number, tags: Record<string, string>) =>
      api(gateway, 'publish', { channel, data: { n }, tags });
    await publish(1, { ticker: 'AAPL', price: '99' });
    await publish(2, { ticker: 'MSFT', price: '400' });
    const c = await protobufClient('filtered');
    // Cache mode: `since: {}` asks for recovery on the first subscribe, and the latest publication comes.
    const cached = c.newSubscription(channel, { since: {} });
    const latest: unknown[] = [];
    cached.on('publication', (ctx) => latest.push(json(ctx.data)));
    cached.subscribe();
    // One subscription per channel and client: the filtered one is another client's.
    const other = await protobufClient('filtered-2');
    const sub = other.newSubscription(channel, {
      tagsFilter: {
        op: 'and',
        nodes: [
          { key: 'ticker', cmp: 'eq', val: 'AAPL' },
          { key: 'price', cmp: 'gte', val: '100' },
        ],
      } as never,
    });
    const matching: unknown[] = [];
    sub.on('publication', (ctx) => matching.push(json(ctx.data)));
    sub.subscribe();
    await Promise.all([cached.ready(5000), sub.ready(5000)]);
    await waitUntil(
      () => latest.length === 1,
      5000,
      () => 'the cached publication',
    );
    assert.deepEqual(latest, [{ n: 2 }]);
    await publish(3, { ticker: 'AAPL', price: '150' });
    await publish(4, { ticker: 'AAPL', price: '50' });
    await publish(5, { ticker: 'MSFT', price: '500' });
    await publish(6, { ticker: 'AAPL', price: '100' });
    await waitUntil(
      () => latest.length === 5 && matching.length === 2,
      5000,
      () => `all 4 live to the unfiltered, 2 to the filtered: ${JSON.stringify({ latest, matching })}`,
    );
    assert.deepEqual(matching, [{ n: 3 }, { n: 6 }]);
  });

  test('coalesced publications arrive as several Replies in one binary frame, each decoded', async () => {
    const r = await raw().connected('coalesced');
    r.send({ id: 2, subscribe: { channel: 'chat:burst' } });
    await r.reply(2);
    const before = r.frames.length;
    // One batch for the server API: all ten within the window.
    await api(gateway, 'batch', {
      commands: Array.from({ length: 10 }, (_, i) => ({
        publish: { channel: 'chat:burst', data: { n: i } },
      })),
    });
    const pubs = () => r.replies().filter((m) => m.push?.pub);
    await waitUntil(
      () => pubs().length === 10,
      5000,
      () => `10 pushes, got ${pubs().length}`,
    );
    assert.deepEqual(
      pubs().map((m) => json(m.push.pub.data)),
      Array.from({ length: 10 }, (_, n) => ({ n })),
    );
    assert.ok(r.frames.length - before < 10, `${r.frames.length - before} frames for 10 pushes`);
  });

  test('hostile frames: garbage closes that connection (3501), data that is not JSON is refused (107), others carry on', async () => {
    const bystander = await raw().connected('bystander');
    bystander.send({ id: 2, subscribe: { channel: 'chat:hostile' } });
    await bystander.reply(2);

    const liar = await raw().connected('liar');
    liar.send({ id: 2, subscribe: { channel: 'chat:hostile' } });
    await liar.reply(2);
    liar.send({ id: 3, publish: { channel: 'chat:hostile', data: utf8.encode('{not json') } });
    assert.equal((await liar.reply(3)).error?.code, 107);
    liar.send({ id: 4, publish: { channel: 'chat:hostile', data: bytes({ ok: true }) } });
    assert.equal((await liar.reply(4)).error ?? undefined, undefined, 'the next publish is taken');

    const garbage = await raw().connected('garbage');
    // A length past the end of the frame.
    garbage.ws.send(new Uint8Array([0x7f, 0x08, 0x01]));
    assert.equal((await garbage.closed).code, 3501);

    const tooBig = await raw().connected('too-big');
    tooBig.send({ id: 2, publish: { channel: 'chat:hostile', data: bytes('x'.repeat(70_000)) } });
    assert.equal((await tooBig.closed).code, 1009);

    // Nothing of it reached the bystander but the one good publication, and it is still connected.
    await waitUntil(() => bystander.replies().some((m) => m.push?.pub));
    assert.deepEqual(
      bystander
        .replies()
        .filter((m) => m.push?.pub)
        .map((m) => json(m.push.pub.data)),
      [{ ok: true }],
    );
    assert.equal(bystander.ws.readyState, WebSocket.OPEN);
  });

  test('commands past the per-connection rate get 111 (many commands in one frame), a sustained flood closes with 3013', async () => {
    const fast = await raw().connected('fast');
    const history = (first: number, count: number) =>
      Array.from({ length: count }, (_, i) => ({ id: first + i, history: { channel: 'chat:rate' } }));
    // One frame of 120: the bucket (100 a second, the connect took one) lets 99 or 100 through.
    fast.send(...history(10, 120));
    await fast.reply(129);
    const refused = fast.replies().filter((r) => r.id >= 10 && r.error?.code === 111);
    assert.ok(
      refused.length === 20 || refused.length === 21,
      `20 or 21 of 120 refused, got ${refused.length}`,
    );
    assert.equal(refused[0]!.error.temporary, true);
    assert.ok(
      fast.replies().every((r) => r.id < 10 || r.error?.code === 111 || r.error?.code === 103),
      'the commands let through were answered (103: not subscribed)',
    );
    // More than a second's worth refused in a row (however many tokens the wait earned): the connection goes.
    fast.send(...history(200, 400));
    assert.equal((await fast.closed).code, 3013);
  });

  test('hostile HTTP-streaming: a garbage connect ends its stream with 3501, a garbage EmulationRequest is 400', async () => {
    const octets = { 'content-type': 'application/octet-stream' };
    const stream = await fetch(endpointOf(`127.0.0.1:${gateway.clientPort}`, 'http_stream'), {
      method: 'POST',
      headers: octets,
      body: new Uint8Array([0x7f, 0x08, 0x01]),
    });
    assert.equal(stream.headers.get('content-type'), 'application/octet-stream');
    const replies = codec.decodeReplies(new Uint8Array(await stream.arrayBuffer()));
    assert.equal(replies.at(-1)?.push?.disconnect?.code, 3501);
    const emulation = await fetch(`http://127.0.0.1:${gateway.clientPort}/emulation`, {
      method: 'POST',
      headers: octets,
      body: new Uint8Array([0x0a, 0x7f, 0x01]),
    });
    assert.equal(emulation.status, 400);
    assert.match(await emulation.text(), /past the end/);
  });
});

describe("Protobuf HTTP-streaming in a cluster: emulation requests routed to the stream's gateway", () => {
  let cluster: Cluster;
  const clients: Centrifuge[] = [];

  before(async () => {
    cluster = await startCluster({ gateways: 2, env: { SWITCHBOARD_NAMESPACES: NAMESPACES } });
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    await cluster?.stop();
  });

  test('the stream on one gateway, every command posted to the other: subscribe, publish, history', async () => {
    const [streamSide, otherSide] = cluster.gateways as [Gateway, Gateway];
    const channel = 'chat:routed';
    const c = new Centrifuge(
      [
        {
          transport: 'http_stream',
          endpoint: endpointOf(`127.0.0.1:${streamSide.clientPort}`, 'http_stream'),
        },
      ],
      {
        emulationEndpoint: `http://127.0.0.1:${otherSide.clientPort}/emulation`,
        token: await token({ sub: 'routed' }),
      },
    );
    clients.push(c);
    const sub = c.newSubscription(channel);
    const got: unknown[] = [];
    sub.on('publication', (ctx) => got.push(json(ctx.data)));
    sub.subscribe();
    c.connect();
    await sub.ready(10_000);
    await sub.publish(bytes({ n: 1 }));
    await api(otherSide, 'publish', { channel, data: { n: 2 } });
    await waitUntil(
      () => got.length === 2,
      5000,
      () => `2 publications, got ${got.length}`,
    );
    assert.deepEqual(got, [{ n: 1 }, { n: 2 }]);
    const history = await sub.history({ limit: 10 });
    assert.deepEqual(
      history.publications.map((p) => json(p.data)),
      [{ n: 1 }, { n: 2 }],
    );
    const routed = await fetch(`${otherSide.internalUrl}/metrics`).then((r) => r.text());
    assert.match(routed, /switchboard_emulation_requests_total\{outcome="routed"\} [1-9]/);
  });
});
