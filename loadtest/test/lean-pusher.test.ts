/**
 * The Pusher pass's clients against small servers: the lean Pusher
 * subscriber against a `ws` server speaking the protocol's subset
 * (connection_established, subscribe, events one per frame, pings both
 * ways, refusals), and the HTTP API trigger against a server that checks
 * signatures as the gateway does.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { WebSocketServer } from 'ws';
import { verifyRequest } from '@switchboard/gateway/dist/src/pusher/signature.js';
import { LeanStats } from '../src/lean-client.js';
import { LeanPusher, PROBE, pusherFleet, pusherUrl } from '../src/lean-pusher.js';
import { PusherTrigger, refusalOf } from '../src/pusher-trigger.js';
import { now } from '../src/tracker.js';

const event = (s: number, channel = 'fan') =>
  JSON.stringify({ event: 'bench', channel, data: JSON.stringify({ s, t: now() - 5, p: 'x'.repeat(64) }) });

/** A Pusher server: key `good` only, `activity_timeout` as given, `script` after each subscribe. */
async function server(
  script: (send: (text: string) => void, ws: import('ws').WebSocket) => void,
  activityTimeout = 120,
) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await once(wss, 'listening');
  const seen = { pongs: 0, pings: 0, wsPongs: 0, subscribes: [] as string[], queries: [] as string[] };
  wss.on('connection', (ws, req) => {
    seen.queries.push(req.url ?? '');
    ws.on('pong', () => seen.wsPongs++);
    if (!req.url?.startsWith('/app/good?')) {
      ws.send(
        JSON.stringify({
          event: 'pusher:error',
          data: { code: 4001, message: 'App key bad does not exist.' },
        }),
      );
      ws.close(4001);
      return;
    }
    ws.send(
      JSON.stringify({
        event: 'pusher:connection_established',
        data: JSON.stringify({ socket_id: '123.456', activity_timeout: activityTimeout }),
      }),
    );
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as { event: string; data: { channel: string } };
      if (frame.event === 'pusher:pong') seen.pongs++;
      else if (frame.event === 'pusher:ping') {
        seen.pings++;
        ws.send('{"event":"pusher:pong","data":{}}');
      } else if (frame.event === 'pusher:subscribe') {
        const { channel } = frame.data;
        seen.subscribes.push(channel);
        if (channel === 'refused')
          ws.send(
            JSON.stringify({
              event: 'pusher:subscription_error',
              channel,
              data: { type: 'AuthError', error: 'no', status: 401 },
            }),
          );
        else {
          ws.send(JSON.stringify({ event: 'pusher_internal:subscription_succeeded', channel }));
          script((text) => ws.send(text), ws);
        }
      }
    });
  });
  const { port } = wss.address() as AddressInfo;
  return { origin: `ws://127.0.0.1:${port}`, seen, close: () => wss.close() };
}

const until = async (ok: () => boolean, ms = 5000) => {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('lean Pusher subscriber', () => {
  test('connects, subscribes, counts events, answers pusher:ping and WebSocket pings', async () => {
    const srv = await server((send, ws) => {
      send(event(0));
      send('{"event":"pusher:ping","data":{}}');
      ws.ping();
      send(event(1));
      send(JSON.stringify({ event: PROBE, channel: 'fan', data: 'probe' }));
      send(event(3));
      send(event(2)); // out of order
      send(event(2)); // a duplicate
    });
    const stats = new LeanStats();
    try {
      const c = await LeanPusher.connect({ url: pusherUrl(srv.origin, 'good'), timeoutMs: 5000, stats });
      assert.equal(c.socketId, '123.456');
      assert.equal(c.activityTimeout, 120);
      await c.subscribe('fan');
      await until(() => stats.delivered + stats.duplicated >= 5);
      await until(() => srv.seen.pongs === 1 && srv.seen.wsPongs === 1);
      assert.deepEqual([stats.delivered, stats.duplicated, stats.reordered], [4, 1, 1]);
      assert.equal(c.probes, 1);
      assert.ok(stats.latency.percentile(50) >= 4, `latency ${stats.latency.percentile(50)}`);
      assert.match(srv.seen.queries[0]!, /^\/app\/good\?protocol=7&/);
      c.resetSequence();
      stats.reset();
      c.close();
    } finally {
      srv.close();
    }
  });

  test('refusals are errors; a fleet counts them and the server closing', async () => {
    const srv = await server((_send, ws) => setTimeout(() => ws.close(4200, 'bye'), 50));
    const stats = new LeanStats();
    try {
      await assert.rejects(
        LeanPusher.connect({ url: pusherUrl(srv.origin, 'bad'), timeoutMs: 5000, stats }),
        /4001 App key bad does not exist/,
      );
      const c = await LeanPusher.connect({ url: pusherUrl(srv.origin, 'good'), timeoutMs: 5000, stats });
      await assert.rejects(c.subscribe('refused'), /401 no/);
      c.close();
      const { subscribers, errors } = await pusherFleet(3, 'fan', {
        url: pusherUrl(srv.origin, 'good'),
        timeoutMs: 5000,
        stats,
        localAddresses: ['127.0.0.1'],
      });
      assert.equal(subscribers.length, 3);
      await until(() => subscribers.every((s) => s.closed));
      assert.deepEqual(Object.fromEntries(errors), { 'close 4200': 3 });
    } finally {
      srv.close();
    }
  });

  test('pings the server after activity_timeout without a message, as pusher-js does', async () => {
    const srv = await server(() => {}, 1);
    const stats = new LeanStats();
    try {
      const c = await LeanPusher.connect({ url: pusherUrl(srv.origin, 'good'), timeoutMs: 5000, stats });
      await c.subscribe('fan');
      await until(() => srv.seen.pings >= 1, 4000);
      c.close();
    } finally {
      srv.close();
    }
  });
});

describe('Pusher HTTP API trigger', () => {
  const app = { id: 'app-1', key: 'key-1', secret: 'secret-1' };

  /** Checks each request's signature; `answer` picks the reply. */
  async function api(answer: (path: string, body: string) => [number, string] = () => [200, '{}']) {
    const bodies: { path: string; body: unknown }[] = [];
    let inFlight = 0;
    let mostInFlight = 0;
    const srv = http.createServer((req, res) => {
      inFlight++;
      mostInFlight = Math.max(mostInFlight, inFlight);
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        const url = new URL(req.url!, 'http://x');
        const checked = verifyRequest({
          method: req.method!,
          path: req.url!.split('?')[0]!,
          query: url.searchParams,
          body: Buffer.from(body),
          nowSeconds: Date.now() / 1000,
          lookup: (key) => (key === app.key ? app : undefined),
        });
        bodies.push({ path: url.pathname, body: JSON.parse(body) });
        const [status, text] = checked.ok ? answer(url.pathname, body) : [401, checked.message];
        // Answered late: what is triggered meanwhile queues for the next request.
        setTimeout(() => {
          inFlight--;
          res.writeHead(status, { 'content-type': 'application/json' }).end(text);
        }, 20);
      });
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const { port } = srv.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      bodies,
      mostInFlight: () => mostInFlight,
      close: () => srv.close(),
    };
  }

  test('signed; one request at a time, what queued meanwhile batched by 10, in order', async () => {
    const srv = await api();
    const trigger = new PusherTrigger(srv.url, app);
    try {
      const sent = Array.from({ length: 23 }, (_, i) => trigger.trigger('fan', 'bench', String(i)));
      await Promise.all(sent);
      assert.equal(srv.mostInFlight(), 1);
      assert.deepEqual(
        srv.bodies.map((b) => b.path),
        [
          '/apps/app-1/events',
          '/apps/app-1/batch_events',
          '/apps/app-1/batch_events',
          '/apps/app-1/batch_events',
        ],
      );
      const data = srv.bodies.flatMap(({ body }) => {
        const b = body as { data?: string; batch?: { data: string; channel: string; name: string }[] };
        return b.batch ? b.batch.map((e) => e.data) : [b.data!];
      });
      assert.deepEqual(
        data,
        Array.from({ length: 23 }, (_, i) => String(i)),
      );
      assert.equal(srv.bodies[0]!.body && (srv.bodies[0]!.body as { channel: string }).channel, 'fan');
      assert.deepEqual([trigger.requests, trigger.events], [4, 23]);
    } finally {
      trigger.close();
      srv.close();
    }
  });

  test("refusals fail the request's events: a status, or Soketi's 200 with an error", async () => {
    const srv = await api((_path, body) =>
      body.includes('"soketi"') ? [200, '{"error":"no","code":400}'] : [413, 'too big'],
    );
    const trigger = new PusherTrigger(srv.url, app);
    try {
      await assert.rejects(trigger.trigger('fan', 'bench', 'x'), /HTTP 413/);
      await assert.rejects(trigger.trigger('fan', 'bench', 'soketi'), /HTTP 200 with error 400/);
      const wrong = new PusherTrigger(srv.url, { ...app, secret: 'other' });
      await assert.rejects(wrong.trigger('fan', 'bench', 'x'), /HTTP 401/);
      wrong.close();
    } finally {
      trigger.close();
      srv.close();
    }
    assert.equal(refusalOf(200, '{}'), undefined);
    assert.equal(refusalOf(200, '{"ok":true}'), undefined);
    assert.equal(refusalOf(200, 'nope'), 'HTTP 200 without JSON');
  });
});
