/**
 * Unidirectional transports with plain clients, no SDK: `ws` as a browser's
 * WebSocket, the `eventsource` package (the EventSource API) and Node's fetch.
 * The connect push, publications without the push envelope, pings that need
 * no pong, disconnect pushes, and hostile connect requests.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { EventSource } from 'eventsource';
import WebSocket from 'ws';
import { uniLine } from '../src/transport/uni.js';
import { api, type Gateway, startGateway, token, waitUntil } from './harness.js';

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
