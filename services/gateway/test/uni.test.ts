/**
 * Unidirectional transports with plain clients, no SDK: `ws` as a browser's
 * WebSocket, the `eventsource` package (the EventSource API) and Node's fetch.
 * The connect push, publications without the push envelope, pings that need
 * no pong, disconnect pushes, and hostile connect requests.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { EventSource } from 'eventsource';
import WebSocket from 'ws';
import { uniLine } from '../src/transport/uni.js';
import { connectRequestJson, protoPush } from '../src/transport/uni-grpc.js';
import { api, freePort, type Gateway, startGateway, token, waitUntil } from './harness.js';

describe('uniLine: a bidirectional frame line as a unidirectional client sees it', () => {
  test('pushes lose their envelope, the connect reply becomes the connect push, errors a disconnect', () => {
    assert.deepEqual(uniLine('{"push":{"channel":"a","pub":{"data":1}}}'), {
      frame: '{"channel":"a","pub":{"data":1}}',
    });
    assert.deepEqual(uniLine('{"id":1,"connect":{"client":"c","ping":25}}'), {
      frame: '{"connect":{"client":"c","ping":25}}',
    });
    assert.deepEqual(uniLine('{}'), { ping: true });
    assert.deepEqual(uniLine('{"id":1,"error":{"code":109,"message":"token expired"}}'), {
      close: { code: 3005, reason: 'token expired' },
    });
    assert.deepEqual(uniLine('{"id":1,"error":{"code":101,"message":"unauthorized"}}'), {
      close: { code: 3500, reason: 'invalid token' },
    });
    assert.deepEqual(uniLine('{"id":1,"error":{"code":107,"message":"bad request"}}'), {
      close: { code: 3501, reason: 'bad request' },
    });
    assert.deepEqual(uniLine('{"id":2,"publish":{}}'), { drop: true });
    assert.deepEqual(uniLine('not json'), { drop: true });
  });
});

describe('uni_grpc conversions', () => {
  test('JSON values of a push become bytes of JSON text, the rest stays', () => {
    const push = protoPush({
      channel: 'a',
      pub: { data: { n: 1 }, info: { user: 'u', client: 'c', conn_info: { name: 'Ann' } }, offset: 3 },
    }) as {
      channel: string;
      pub: { data: Buffer; info: { user: string; conn_info: Buffer }; offset: number };
    };
    assert.equal(push.channel, 'a');
    assert.equal(push.pub.offset, 3);
    assert.equal(push.pub.info.user, 'u');
    assert.deepEqual(JSON.parse(push.pub.data.toString()), { n: 1 });
    assert.deepEqual(JSON.parse(push.pub.info.conn_info.toString()), { name: 'Ann' });
  });

  test('a ConnectRequest message becomes the JSON request; data that is not JSON is refused', () => {
    assert.equal(
      connectRequestJson({ token: 't', data: Buffer.from('{"a":1}'), name: '', subs: {} }, 16),
      '{"token":"t","data":{"a":1}}',
    );
    assert.equal(connectRequestJson({ token: 't', data: Buffer.from('{nope') }, 16), undefined);
    assert.equal(
      connectRequestJson({ data: Buffer.from('[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]') }, 16),
      undefined,
    );
  });
});

const CHANNEL = 'chat:uni';

/** Messages of a plain WebSocket, parsed, with a way to wait for the n-th. */
function socket(url: string) {
  const ws = new WebSocket(url);
  const got: unknown[] = [];
  let closed: { code: number; reason: string } | undefined;
  ws.on('message', (data) => got.push(JSON.parse(String(data))));
  ws.on('close', (code, reason) => (closed = { code, reason: String(reason) }));
  return {
    ws,
    got,
    closed: () => closed,
    opened: new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    }),
  };
}

/** The newline-delimited JSON of a streaming response, parsed as it arrives. */
function lines(res: Response) {
  const got: unknown[] = [];
  let ended = false;
  void (async () => {
    const decoder = new TextDecoder();
    let text = '';
    try {
      for await (const chunk of res.body!) {
        text += decoder.decode(chunk as Uint8Array, { stream: true });
        let nl: number;
        while ((nl = text.indexOf('\n')) >= 0) {
          got.push(JSON.parse(text.slice(0, nl)));
          text = text.slice(nl + 1);
        }
      }
    } catch {
      // aborted by the test
    }
    ended = true;
  })();
  return { got, ended: () => ended };
}

const publications = (got: unknown[]) =>
  got
    .filter(
      (m): m is { channel: string; pub: { data: { n: number } } } =>
        typeof m === 'object' && m !== null && 'pub' in m,
    )
    .map((m) => [m.channel, m.pub.data.n]);

describe('unidirectional transports', () => {
  let gw: Gateway;
  const origin = { origin: 'http://localhost:8000' };

  before(async () => {
    gw = await startGateway({
      SWITCHBOARD_UNI_TRANSPORTS: 'websocket,sse,http_stream',
      SWITCHBOARD_PING_INTERVAL: '1',
      SWITCHBOARD_PONG_TIMEOUT: '1',
      SWITCHBOARD_ALLOWED_ORIGINS: 'http://localhost:8000',
    });
  });

  after(async () => {
    await gw.stop();
  });

  const base = () => `${gw.host}:${gw.clientPort}`;
  const publish = async (n: number) => {
    const res = await api(gw, 'publish', { channel: CHANNEL, data: { n } });
    assert.ok(res.body.result, JSON.stringify(res.body));
  };

  test('uni_websocket: the connect request as first message; connect push, publications without envelope, pings that want no pong', async () => {
    const c = socket(`ws://${base()}/connection/uni_websocket`);
    await c.opened;
    c.ws.send(JSON.stringify({ token: await token({ sub: 'uni-ws', channels: [CHANNEL] }) }));
    await waitUntil(
      () => c.got.length >= 1,
      5000,
      () => `connect push: ${JSON.stringify(c.got)}`,
    );
    const connect = c.got[0] as {
      connect: { client: string; subs: Record<string, unknown>; pong?: boolean };
    };
    assert.equal(typeof connect.connect.client, 'string');
    assert.ok(CHANNEL in connect.connect.subs, JSON.stringify(connect));
    assert.notEqual(connect.connect.pong, true);
    for (const n of [1, 2, 3]) await publish(n);
    await waitUntil(
      () => publications(c.got).length >= 3,
      5000,
      () => JSON.stringify(c.got),
    );
    assert.deepEqual(publications(c.got), [
      [CHANNEL, 1],
      [CHANNEL, 2],
      [CHANNEL, 3],
    ]);
    assert.ok(!c.got.some((m) => typeof m === 'object' && m !== null && 'push' in m), 'no push envelope');
    // Pings every second, a pong timeout of one: three pings unanswered and still connected.
    await waitUntil(
      () => c.got.filter((m) => JSON.stringify(m) === '{}').length >= 3,
      10_000,
      () => `pings: ${JSON.stringify(c.got)} ${JSON.stringify(c.closed())}`,
    );
    assert.equal(c.closed(), undefined);
    // A second message: a unidirectional client has nothing to say.
    c.ws.send('{"id":2,"publish":{"channel":"chat:uni","data":{"n":99}}}');
    await waitUntil(
      () => c.closed() !== undefined,
      5000,
      () => 'closed after a second message',
    );
    assert.equal(c.closed()!.code, 3501);
  });

  test('uni_websocket: the connect request in cf_connect; a bad token closes with 3500, a malformed request with 3501', async () => {
    const request = encodeURIComponent(
      JSON.stringify({ token: await token({ sub: 'uni-q', channels: [CHANNEL] }) }),
    );
    const c = socket(`ws://${base()}/connection/uni_websocket?cf_connect=${request}`);
    await waitUntil(
      () => c.got.length >= 1,
      5000,
      () => 'connect push',
    );
    assert.ok('connect' in (c.got[0] as object));
    await publish(10);
    await waitUntil(
      () => publications(c.got).length >= 1,
      5000,
      () => JSON.stringify(c.got),
    );
    assert.deepEqual(publications(c.got), [[CHANNEL, 10]]);
    c.ws.close();

    const bad = socket(`ws://${base()}/connection/uni_websocket`);
    await bad.opened;
    bad.ws.send(JSON.stringify({ token: 'not.a.token' }));
    await waitUntil(
      () => bad.closed() !== undefined,
      5000,
      () => 'closed for a bad token',
    );
    assert.equal(bad.closed()!.code, 3500);

    for (const request of [
      '[1,2]',
      'not json',
      `{}}\n{"id":2,"publish":{"channel":"${CHANNEL}","data":{"n":666}}}`,
    ]) {
      const m = socket(`ws://${base()}/connection/uni_websocket`);
      await m.opened;
      m.ws.send(request);
      await waitUntil(
        () => m.closed() !== undefined,
        5000,
        () => `closed for ${request}`,
      );
      assert.equal(m.closed()!.code, 3501, request);
    }
  });

  test('uni_sse: EventSource with cf_connect gets the connect push and publications as unnamed events, pings as named ones', async () => {
    const request = JSON.stringify({ token: await token({ sub: 'uni-sse', channels: [CHANNEL] }) });
    const url = new URL(`http://${base()}/connection/uni_sse`);
    url.searchParams.set('cf_connect', request);
    const es = new EventSource(url, {
      fetch: (u, init) => fetch(u, { ...init, headers: { ...init?.headers, ...origin } }),
    });
    const got: unknown[] = [];
    let pings = 0;
    es.onmessage = (e) => got.push(JSON.parse(e.data));
    es.addEventListener('ping', () => pings++);
    try {
      await waitUntil(
        () => got.length >= 1,
        5000,
        () => 'connect push over SSE',
      );
      assert.ok('connect' in (got[0] as object), JSON.stringify(got));
      for (const n of [21, 22]) await publish(n);
      await waitUntil(
        () => publications(got).length >= 2,
        5000,
        () => JSON.stringify(got),
      );
      assert.deepEqual(publications(got), [
        [CHANNEL, 21],
        [CHANNEL, 22],
      ]);
      await waitUntil(
        () => pings >= 2,
        10_000,
        () => `pings: ${pings}`,
      );
      assert.equal(es.readyState, EventSource.OPEN);
    } finally {
      es.close();
    }
  });

  test('uni_http_stream: fetch POST with the connect request; null pings; a server disconnect arrives as a disconnect push', async () => {
    const controller = new AbortController();
    const res = await fetch(`http://${base()}/connection/uni_http_stream`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...origin },
      body: JSON.stringify({ token: await token({ sub: 'uni-http', channels: [CHANNEL] }) }),
      signal: controller.signal,
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('access-control-allow-origin'), origin.origin);
    const stream = lines(res);
    try {
      await waitUntil(
        () => stream.got.length >= 1,
        5000,
        () => 'connect push',
      );
      assert.ok('connect' in (stream.got[0] as object));
      await publish(31);
      await waitUntil(
        () => publications(stream.got).length >= 1,
        5000,
        () => JSON.stringify(stream.got),
      );
      assert.deepEqual(publications(stream.got), [[CHANNEL, 31]]);
      await waitUntil(
        () => stream.got.includes(null),
        10_000,
        () => `a null ping: ${JSON.stringify(stream.got)}`,
      );
      const dis = await api(gw, 'disconnect', {
        user: 'uni-http',
        disconnect: { code: 4000, reason: 'bye' },
      });
      assert.ok(dis.body.result, JSON.stringify(dis.body));
      await waitUntil(
        () => stream.ended(),
        5000,
        () => `stream ended: ${JSON.stringify(stream.got)}`,
      );
      assert.deepEqual(stream.got.at(-1), { disconnect: { code: 4000, reason: 'bye' } });
    } finally {
      controller.abort();
    }
  });

  test('hostile connect requests over HTTP: refused with 400/413, nothing published; another origin refused', async () => {
    const post = (body: string, headers: Record<string, string> = origin) =>
      fetch(`http://${base()}/connection/uni_http_stream`, { method: 'POST', headers, body });
    const before = (await api(gw, 'history', { channel: CHANNEL, limit: 0 })).body;
    assert.ok(before.result, 'the channel keeps history: a publication would show in its offset');
    for (const body of [
      'not json',
      '[1]',
      `{}}\n{"id":2,"publish":{"channel":"${CHANNEL}","data":{"n":666}}}`,
    ]) {
      const res = await post(body);
      assert.equal(res.status, 400, body);
      await res.body?.cancel();
    }
    const huge = await post(JSON.stringify({ data: 'x'.repeat(70_000) }));
    assert.equal(huge.status, 413);
    await huge.body?.cancel();
    const foreign = await post('{}', { origin: 'https://evil.example' });
    assert.equal(foreign.status, 403);
    await foreign.body?.cancel();
    const afterwards = (await api(gw, 'history', { channel: CHANNEL, limit: 0 })).body;
    assert.deepEqual(afterwards, before, 'nothing published by a smuggled command');
  });
});

const UNISTREAM_PROTO = fileURLToPath(
  new URL('../../proto/centrifugal/centrifugo/unistream/unistream.proto', import.meta.url),
);

/** A client generated (at run time, by proto-loader) from Centrifugo's unistream.proto. */
function uniStreamClient(port: number) {
  const definition = protoLoader.loadSync(UNISTREAM_PROTO, { keepCase: true, longs: Number, defaults: true });
  const Client = grpc.makeGenericClientConstructor(
    definition['centrifugal.centrifugo.unistream.CentrifugoUniStream'] as grpc.ServiceDefinition,
    'CentrifugoUniStream',
  );
  return new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
}

type UniPush = {
  channel: string;
  connect: { client: string; subs: Record<string, unknown> } | null;
  pub: { data: Buffer } | null;
  disconnect: { code: number; reason: string } | null;
};

/** Consume's stream: pushes as they arrive, and how it ended. */
function consume(stub: grpc.Client, request: object) {
  const got: UniPush[] = [];
  let ended: { status?: number } | undefined;
  const call = (
    stub as unknown as Record<string, (r: object) => grpc.ClientReadableStream<UniPush>>
  ).Consume!.call(stub, request);
  call.on('data', (push: UniPush) => got.push(push));
  call.on('error', (err: grpc.ServiceError) => (ended = { status: err.code }));
  call.on('end', () => (ended ??= {}));
  return { call, got, ended: () => ended };
}

describe("uni_grpc: Centrifugo's CentrifugoUniStream", () => {
  let gw: Gateway;
  let port: number;

  before(async () => {
    port = await freePort();
    gw = await startGateway({ SWITCHBOARD_UNI_TRANSPORTS: 'grpc', SWITCHBOARD_UNI_GRPC_PORT: String(port) });
  });

  after(async () => {
    await gw.stop();
  });

  test('Consume: the connect push, publications with their data as JSON bytes, a server disconnect as the last push', async () => {
    const stub = uniStreamClient(port);
    try {
      const c = consume(stub, { token: await token({ sub: 'uni-grpc', channels: [CHANNEL] }) });
      await waitUntil(
        () => c.got.length >= 1,
        5000,
        () => 'connect push',
      );
      assert.equal(typeof c.got[0]!.connect?.client, 'string');
      assert.ok(CHANNEL in c.got[0]!.connect!.subs);
      for (const n of [1, 2, 3]) await api(gw, 'publish', { channel: CHANNEL, data: { n } });
      const pubs = () =>
        c.got.filter((p) => p.pub).map((p) => [p.channel, JSON.parse(p.pub!.data.toString()).n]);
      await waitUntil(
        () => pubs().length >= 3,
        5000,
        () => JSON.stringify(c.got),
      );
      assert.deepEqual(pubs(), [
        [CHANNEL, 1],
        [CHANNEL, 2],
        [CHANNEL, 3],
      ]);
      await api(gw, 'disconnect', { user: 'uni-grpc', disconnect: { code: 4001, reason: 'bye' } });
      await waitUntil(
        () => c.ended() !== undefined,
        5000,
        () => 'stream ended',
      );
      assert.deepEqual(c.got.at(-1)!.disconnect, { code: 4001, reason: 'bye', reconnect: false });
    } finally {
      stub.close();
    }
  });

  test('a bad token ends the stream with 3500, data that is not JSON with 3501, an oversized request RESOURCE_EXHAUSTED; other clients unaffected', async () => {
    const stub = uniStreamClient(port);
    try {
      const good = consume(stub, { token: await token({ sub: 'uni-grpc-2', channels: [CHANNEL] }) });
      await waitUntil(
        () => good.got.length >= 1,
        5000,
        () => 'connect push',
      );
      const bad = consume(stub, { token: 'not.a.token' });
      await waitUntil(
        () => bad.ended() !== undefined,
        5000,
        () => 'bad token ended',
      );
      assert.equal(bad.got.at(-1)?.disconnect?.code, 3500);
      const junk = consume(stub, { token: await token({ sub: 'x' }), data: Buffer.from('{not json') });
      await waitUntil(
        () => junk.ended() !== undefined,
        5000,
        () => 'junk ended',
      );
      assert.equal(junk.got.at(-1)?.disconnect?.code, 3501);
      // A request past SWITCHBOARD_MAX_MESSAGE_SIZE (64 KiB by default) is refused by gRPC itself, unread.
      const huge = consume(stub, { token: 'x', data: Buffer.from(JSON.stringify('x'.repeat(70_000))) });
      await waitUntil(
        () => huge.ended() !== undefined,
        5000,
        () => 'oversized request ended',
      );
      assert.equal(huge.ended()!.status, grpc.status.RESOURCE_EXHAUSTED);
      assert.deepEqual(huge.got, []);
      await api(gw, 'publish', { channel: CHANNEL, data: { n: 7 } });
      await waitUntil(
        () => good.got.some((p) => p.pub),
        5000,
        () => JSON.stringify(good.got),
      );
      assert.equal(good.ended(), undefined);
      good.call.cancel();
    } finally {
      stub.close();
    }
  });
});

describe('unidirectional transports off (the default)', () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway();
  });
  after(async () => {
    await gw.stop();
  });

  test('their endpoints answer 404', async () => {
    for (const path of ['uni_sse', 'uni_http_stream']) {
      const res = await fetch(`http://${gw.host}:${gw.clientPort}/connection/${path}`, {
        method: 'POST',
        body: '{}',
      });
      assert.equal(res.status, 404, path);
      await res.body?.cancel();
    }
    const ws = new WebSocket(`ws://${gw.host}:${gw.clientPort}/connection/uni_websocket`);
    const status = await new Promise<number>((resolve) => {
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => resolve(-1));
    });
    assert.equal(status, 404);
  });
});
