/**
 * The published centrifuge-js client against the real gateway process:
 * connect, subscribe, publish, join/leave, presence, history, recovery,
 * token refresh, RPC, server-side subscriptions, API disconnects.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Centrifuge, PublicationContext, Subscription } from 'centrifuge';
import WebSocket from 'ws';
import { DEFAULT_NAMESPACES } from '../src/config.js';
import {
  api,
  client,
  type Gateway,
  nextEvent,
  RawClient,
  rawConnect,
  startGateway,
  token,
  waitUntil,
} from './harness.js';

/** The defaults (`""` and `chat`) plus a token-only namespace and one that skips the sender. */
const NAMESPACES = JSON.stringify([
  ...DEFAULT_NAMESPACES,
  { name: 'private', history_size: 10, history_ttl: 60, recovery: true },
  {
    name: 'echoless',
    allow_subscribe_for_client: true,
    allow_publish_for_subscriber: true,
    skip_sender: true,
  },
]);

let gateway: Gateway;
const clients: Centrifuge[] = [];

before(async () => {
  gateway = await startGateway({ SWITCHBOARD_NAMESPACES: NAMESPACES, SWITCHBOARD_EXPIRED_CLOSE_DELAY: '1' });
});

after(async () => {
  for (const c of clients) c.disconnect();
  await gateway.stop();
});

async function connected(
  user: string,
  options: Parameters<typeof client>[1] = {},
  claims: Record<string, unknown> = {},
) {
  const c = client(gateway, { token: await token({ sub: user, ...claims }), ...options });
  clients.push(c);
  const ready = nextEvent(c, 'connected');
  c.connect();
  await ready;
  return c;
}

async function subscribed(c: Centrifuge, channel: string, options = {}): Promise<Subscription> {
  const sub = c.newSubscription(channel, options);
  sub.subscribe();
  await sub.ready(5000);
  return sub;
}

/** Collects the data of a subscription's publications. */
function collect(sub: { on(e: 'publication', fn: (ctx: PublicationContext) => void): unknown }) {
  const got: PublicationContext[] = [];
  sub.on('publication', (ctx) => got.push(ctx));
  return got;
}

describe('centrifuge-js against the gateway', () => {
  test('publish from a client reaches every subscriber with offsets and client info', async () => {
    const alice = await connected('alice', {}, { info: { name: 'Alice' } });
    const bob = await connected('bob');
    const a = await subscribed(alice, 'chat:room1');
    const b = await subscribed(bob, 'chat:room1');
    const received = nextEvent<PublicationContext>(b, 'publication');
    await a.publish({ text: 'hi bob' });
    const pub = await received;
    assert.deepEqual(pub.data, { text: 'hi bob' });
    assert.equal(pub.info?.user, 'alice');
    assert.deepEqual(pub.info?.connInfo, { name: 'Alice' });
    assert.ok((pub.offset ?? 0) >= 1);
  });

  test('join and leave are pushed; presence and presence stats list subscribers', async () => {
    const carol = await connected('carol');
    const dave = await connected('dave');
    const c = await subscribed(carol, 'chat:presence');
    const joins: string[] = [];
    c.on('join', (ctx) => joins.push(ctx.info.user));
    const d = await subscribed(dave, 'chat:presence');
    await waitUntil(
      () => joins.includes('dave'),
      3000,
      () => 'dave to join',
    );
    const presence = await c.presence();
    assert.deepEqual(
      Object.values(presence.clients)
        .map((i) => i.user)
        .sort(),
      ['carol', 'dave'],
    );
    const stats = await c.presenceStats();
    assert.deepEqual(stats, { numClients: 2, numUsers: 2 });
    const left = nextEvent<{ info: { user: string } }>(c, 'leave');
    d.unsubscribe();
    assert.equal((await left).info.user, 'dave');
    await waitUntil(
      async () => (await c.presenceStats()).numClients === 1,
      3000,
      () => 'presence to shrink',
    );
  });

  test('history returns the latest publications with the stream position', async () => {
    const erin = await connected('erin');
    const sub = await subscribed(erin, 'chat:history');
    for (let i = 1; i <= 5; i++) await sub.publish({ n: i });
    const history = await sub.history({ limit: 3, reverse: true });
    assert.deepEqual(
      history.publications.map((p) => (p.data as { n: number }).n),
      [5, 4, 3],
    );
    assert.equal(history.offset, 5);
    assert.ok(history.epoch.length > 0);
    const all = await sub.history({ limit: 10, since: { offset: 2, epoch: history.epoch } });
    assert.deepEqual(
      all.publications.map((p) => (p.data as { n: number }).n),
      [3, 4, 5],
    );
  });

  test('publications from the HTTP API reach subscribers', async () => {
    const frank = await connected('frank');
    const sub = await subscribed(frank, 'chat:api');
    const received = nextEvent<PublicationContext>(sub, 'publication');
    const res = await api(gateway, 'publish', { channel: 'chat:api', data: { from: 'api' } });
    assert.equal(res.status, 200);
    assert.equal(res.body.result.offset, 1);
    assert.deepEqual((await received).data, { from: 'api' });
    const broadcast = await api(gateway, 'broadcast', { channels: ['chat:api', 'nope:x'], data: { n: 2 } });
    assert.equal(broadcast.body.result.responses[0].result.offset, 2);
    assert.equal(broadcast.body.result.responses[1].error.code, 102);
  });

  test('a dropped connection recovers every missed publication, in order, without duplicates', async () => {
    let offline = false;
    // Reconnects go to a closed port while "offline", as if the network were down.
    class FlakyWebSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(offline ? 'ws://127.0.0.1:9/' : url, protocols);
      }
    }
    const grace = await connected('grace', { websocket: FlakyWebSocket });
    const sub = await subscribed(grace, 'chat:recovery');
    const got = collect(sub);
    await api(gateway, 'publish', { channel: 'chat:recovery', data: { n: 1 } });
    await waitUntil(
      () => got.length === 1,
      3000,
      () => 'first publication',
    );
    offline = true;
    const dropped = nextEvent(grace, 'connecting');
    await api(gateway, 'disconnect', {
      user: 'grace',
      disconnect: { code: 3011, reason: 'force reconnect' },
    });
    await dropped;
    for (let n = 2; n <= 6; n++) await api(gateway, 'publish', { channel: 'chat:recovery', data: { n } });
    const resubscribed = nextEvent<{ recovered: boolean; wasRecovering: boolean }>(sub, 'subscribed', 10_000);
    offline = false;
    const ctx = await resubscribed;
    assert.equal(ctx.wasRecovering, true);
    assert.equal(ctx.recovered, true);
    await waitUntil(
      () => got.length >= 6,
      5000,
      () => `6 publications, got ${got.length}`,
    );
    assert.deepEqual(
      got.map((p) => (p.data as { n: number }).n),
      [1, 2, 3, 4, 5, 6],
    );
  });

  test('an expiring connection token is refreshed through getToken and the connection lives on', async () => {
    let refreshes = 0;
    const c = client(gateway, {
      token: await token({ sub: 'heidi' }, { expiresIn: 2 }),
      getToken: async () => {
        refreshes++;
        return token({ sub: 'heidi' }, { expiresIn: 60 });
      },
    });
    clients.push(c);
    c.connect();
    await nextEvent(c, 'connected');
    let disconnected = false;
    c.on('disconnected', () => {
      disconnected = true;
    });
    c.on('connecting', () => {
      disconnected = true;
    });
    const expiry = Date.now() + 2000; // plus SWITCHBOARD_EXPIRED_CLOSE_DELAY=1
    await waitUntil(
      () => refreshes === 1,
      5000,
      () => 'token refresh',
    );
    // Past the first token's expiry (plus the server's one-second check), still connected.
    await waitUntil(() => Date.now() > expiry + 2500, 5000);
    assert.equal(disconnected, false);
    assert.equal(c.state, 'connected');
  });

  test('a connection whose token expires without refresh is disconnected with 3005', async () => {
    const raw = new RawClient(gateway.wsUrl);
    await raw.open();
    raw.send({ id: 1, connect: { token: await token({ sub: 'ivan' }, { expiresIn: 1 }) } });
    const reply = await raw.expect((m) => m.id === 1);
    assert.equal(reply.connect.expires, true);
    assert.ok(reply.connect.ttl >= 1);
    const closed = await raw.closed(6000);
    assert.deepEqual(closed, { code: 3005, reason: 'connection expired' });
  });

  test('an expired token on connect gets 109 and getToken is asked for a fresh one', async () => {
    let asked = 0;
    const c = client(gateway, {
      token: await token({ sub: 'judy' }, { expiresIn: -10 }),
      getToken: async () => {
        asked++;
        return token({ sub: 'judy' }, { expiresIn: 60 });
      },
    });
    clients.push(c);
    const errors: { error: { code: number } }[] = [];
    c.on('error', (e) => errors.push(e as never));
    c.connect();
    await nextEvent(c, 'connected');
    assert.equal(asked, 1);
    assert.equal(errors[0]?.error.code, 109);
  });

  test('rpc goes to the in-process handler; unknown methods get 104', async () => {
    const c = await connected('kate');
    assert.deepEqual((await c.rpc('echo', { a: 1 })).data, { a: 1 });
    await assert.rejects(c.rpc('missing', {}), (err: { code: number }) => err.code === 104);
  });

  test('send messages come back as message pushes from the embedded handler', async () => {
    const c = await connected('leo');
    const message = nextEvent<{ data: unknown }>(c, 'message');
    await c.send({ ping: 1 });
    assert.deepEqual((await message).data, { ping: 1 });
  });

  test('server-side subscriptions from the token channels claim deliver publications', async () => {
    const c = client(gateway, { token: await token({ sub: 'mia', channels: ['chat:server-side'] }) });
    clients.push(c);
    const serverSubscribed = nextEvent<{ channel: string }>(c, 'subscribed');
    c.connect();
    assert.equal((await serverSubscribed).channel, 'chat:server-side');
    const pub = nextEvent<PublicationContext>(c, 'publication');
    await api(gateway, 'publish', { channel: 'chat:server-side', data: { hello: 'mia' } });
    const got = await pub;
    assert.equal(got.channel, 'chat:server-side');
    assert.deepEqual(got.data, { hello: 'mia' });
  });

  test('API subscribe and unsubscribe act on a live connection', async () => {
    const c = await connected('nina');
    const added = nextEvent<{ channel: string }>(c, 'subscribed');
    const res = await api(gateway, 'subscribe', { user: 'nina', channel: 'chat:pushed' });
    assert.deepEqual(res.body, { result: {} });
    assert.equal((await added).channel, 'chat:pushed');
    const channels = await api(gateway, 'channels', { pattern: 'chat:push*' });
    assert.deepEqual(channels.body.result.channels, { 'chat:pushed': { num_clients: 1 } });
    const removed = nextEvent<{ channel: string }>(c, 'unsubscribed');
    await api(gateway, 'unsubscribe', { user: 'nina', channel: 'chat:pushed' });
    assert.equal((await removed).channel, 'chat:pushed');
  });

  test('API disconnect: a terminal code stops the client, a reconnect code brings it back', async () => {
    const olga = await connected('olga');
    const gone = nextEvent<{ code: number }>(olga, 'disconnected');
    await api(gateway, 'disconnect', { user: 'olga' });
    assert.equal((await gone).code, 3503);

    const paul = await connected('paul');
    const reconnecting = nextEvent<{ code: number }>(paul, 'connecting');
    await api(gateway, 'disconnect', { user: 'paul', disconnect: { code: 3001, reason: 'shutdown' } });
    assert.equal((await reconnecting).code, 3001);
    await nextEvent(paul, 'connected');
  });

  test('private channels need a subscription token for the right user and channel', async () => {
    const c = await connected('quinn');
    const denied = c.newSubscription('private:vault');
    const unsubscribed = nextEvent<{ code: number }>(denied, 'unsubscribed');
    denied.subscribe();
    assert.equal((await unsubscribed).code, 103);
    c.removeSubscription(denied);

    const wrong = c.newSubscription('private:other', {
      token: await token({ sub: 'quinn', channel: 'private:vault' }),
    });
    const wrongResult = nextEvent<{ code: number }>(wrong, 'unsubscribed');
    wrong.subscribe();
    assert.equal((await wrongResult).code, 103);

    const allowed = c.newSubscription('private:vault', {
      getToken: async () => token({ sub: 'quinn', channel: 'private:vault' }, { expiresIn: 60 }),
    });
    allowed.subscribe();
    await allowed.ready(5000);
  });

  test('an expiring subscription token is refreshed with sub_refresh and the subscription lives on', async () => {
    const c = await connected('victor');
    let refreshes = 0;
    const sub = c.newSubscription('private:expiring', {
      token: await token({ sub: 'victor', channel: 'private:expiring' }, { expiresIn: 2 }),
      getToken: async () => {
        refreshes++;
        return token({ sub: 'victor', channel: 'private:expiring' }, { expiresIn: 60 });
      },
    });
    sub.subscribe();
    await sub.ready(5000);
    let left = false;
    sub.on('unsubscribed', () => {
      left = true;
    });
    sub.on('subscribing', () => {
      left = true;
    });
    const expiry = Date.now() + 2000;
    await waitUntil(
      () => refreshes === 1,
      5000,
      () => 'subscription token refresh',
    );
    await waitUntil(() => Date.now() > expiry + 2500, 5000);
    assert.equal(left, false);
    const received = nextEvent<PublicationContext>(sub, 'publication');
    await api(gateway, 'publish', { channel: 'private:expiring', data: { still: 'subscribed' } });
    assert.deepEqual((await received).data, { still: 'subscribed' });
  });

  test('a subscription whose token expires without refresh ends with unsubscribe 2501', async () => {
    const raw = await rawConnect(gateway, 'wendy');
    raw.send({
      id: 2,
      subscribe: {
        channel: 'private:short',
        token: await token({ sub: 'wendy', channel: 'private:short' }, { expiresIn: 1 }),
      },
    });
    const reply = await raw.expect((m) => m.id === 2);
    assert.equal(reply.subscribe.expires, true);
    const push = await raw.expect((m) => m.push?.unsubscribe, 6000);
    assert.deepEqual(push.push, {
      channel: 'private:short',
      unsubscribe: { code: 2501, reason: 'subscription expired' },
    });
    raw.ws.close();
  });

  test('user-limited channels admit only the named users', async () => {
    const rita = await connected('rita');
    await subscribed(rita, '#rita');
    const sam = await connected('sam');
    const sub = sam.newSubscription('#rita');
    const denied = nextEvent<{ code: number }>(sub, 'unsubscribed');
    sub.subscribe();
    assert.equal((await denied).code, 103);
  });

  test('skip_sender namespaces deliver to everyone but the publishing connection', async () => {
    const tom = await connected('tom');
    const uma = await connected('uma');
    const t = await subscribed(tom, 'echoless:room');
    const u = await subscribed(uma, 'echoless:room');
    const tomGot = collect(t);
    const umaGot = collect(u);
    await t.publish({ from: 'tom' });
    await api(gateway, 'publish', { channel: 'echoless:room', data: { from: 'api' } });
    await waitUntil(
      () => umaGot.length === 2 && tomGot.length === 1,
      3000,
      () => 'deliveries',
    );
    assert.deepEqual(
      umaGot.map((p) => p.data),
      [{ from: 'tom' }, { from: 'api' }],
    );
    assert.deepEqual(tomGot[0]?.data, { from: 'api' });
  });

  test('metrics answer how long connects take, how long connections live and how full the gateway is', async () => {
    const text = await (await fetch(`${gateway.internalUrl}/metrics`)).text();
    const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? Number.NaN);
    assert.ok(value(/^switchboard_connect_duration_seconds_count\{transport="websocket"\} (\d+)/m) >= 10);
    assert.ok(value(/^switchboard_connection_lifespan_seconds_count\{[^}]*reason="api"[^}]*\} (\d+)/m) >= 1);
    const capacity = value(/^switchboard_capacity_ratio (\S+)/m);
    assert.ok(capacity > 0 && capacity < 0.01, `capacity ${capacity}`);
    const busy = value(/^switchboard_event_loop_utilization (\S+)/m);
    assert.ok(busy >= 0 && busy <= 1, `event loop utilization ${busy}`);
  });

  test('connecting without a token is refused when anonymous access is off', async () => {
    const c = client(gateway);
    clients.push(c);
    const gone = nextEvent<{ code: number }>(c, 'disconnected');
    c.connect();
    assert.equal((await gone).code, 101);
  });
});

describe('anonymous access where configured', () => {
  let open: Gateway;

  before(async () => {
    open = await startGateway({
      SWITCHBOARD_ALLOW_ANONYMOUS: 'true',
      SWITCHBOARD_NAMESPACES: JSON.stringify([
        ...DEFAULT_NAMESPACES,
        { name: 'public', allow_subscribe_for_anonymous: true },
      ]),
    });
  });

  after(async () => {
    await open.stop();
  });

  test('a client without a token connects as user "" and reaches only anonymous namespaces', async () => {
    const c = client(open);
    c.connect();
    await nextEvent(c, 'connected');
    const pub = c.newSubscription('public:news');
    pub.subscribe();
    await pub.ready(5000);
    const chat = c.newSubscription('chat:lobby');
    const denied = nextEvent<{ code: number }>(chat, 'unsubscribed');
    chat.subscribe();
    assert.equal((await denied).code, 103);
    const presence = await api(open, 'channels', {});
    assert.deepEqual(presence.body.result.channels, { 'public:news': { num_clients: 1 } });
    c.disconnect();
  });
});
