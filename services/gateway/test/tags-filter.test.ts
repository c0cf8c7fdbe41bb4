/**
 * Publication tags filters (centrifuge-js `tagsFilter`, the subscribe `tf`)
 * against the real gateway: a filtered subscriber gets only the publications
 * whose tags match, in order, while an unfiltered one on the same channel
 * gets them all; recovery applies the filter; a namespace without
 * `allow_tags_filter` and a malformed filter refuse the subscribe with 107
 * and leave the connection and its other subscriptions alone; the same over
 * a NATS cluster.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type {
  Centrifuge,
  Options,
  PublicationContext,
  SubscribedContext,
  UnsubscribedContext,
} from 'centrifuge';
import WebSocket from 'ws';
import { type NatsGateways, startNatsGateways } from './cluster.js';
import {
  api,
  client,
  flakyNetwork,
  type Gateway,
  nextEvent,
  RawClients,
  startGateway,
  token,
  waitUntil,
} from './harness.js';

const NAMESPACES = JSON.stringify([
  {
    name: 'market',
    history_size: 100,
    history_ttl: 300,
    recovery: true,
    presence: true,
    join_leave: true,
    allow_subscribe_for_client: true,
    allow_publish_for_subscriber: true,
    allow_tags_filter: true,
  },
  { name: 'plain', history_size: 10, history_ttl: 60, recovery: true, allow_subscribe_for_client: true },
  {
    name: 'echoless',
    allow_subscribe_for_client: true,
    allow_publish_for_subscriber: true,
    skip_sender: true,
    allow_tags_filter: true,
  },
]);

const AAPL = { key: 'ticker', cmp: 'eq', val: 'AAPL' } as const;

/** The clients of the running describe block, disconnected at its end. */
const clients: Centrifuge[] = [];
const disconnectAll = () => {
  for (const c of clients.splice(0)) c.disconnect();
};

/** A connected centrifuge-js client of `user` to `gateway`; `websocket` stands in for `ws` (to cut the network). */
async function connected(gateway: Gateway, user: string, websocket: Options['websocket'] = WebSocket) {
  const c = client(gateway, { token: await token({ sub: user }), websocket });
  clients.push(c);
  const ready = nextEvent(c, 'connected');
  c.connect();
  await ready;
  return c;
}

/** A subscription, subscribed, with the data of every publication it gets (in arrival order). */
async function subscribed(
  c: Centrifuge,
  channel: string,
  options: Parameters<Centrifuge['newSubscription']>[1] = {},
) {
  const sub = c.newSubscription(channel, options);
  const got: PublicationContext[] = [];
  sub.on('publication', (ctx) => got.push(ctx));
  sub.subscribe();
  await sub.ready(5000);
  return { sub, got, ns: () => got.map((p) => (p.data as { n: number }).n) };
}

/** A subscribe the gateway refuses: the unsubscribed event it ends in. */
async function refusedSubscribe(
  c: Centrifuge,
  channel: string,
  tagsFilter: unknown,
): Promise<UnsubscribedContext> {
  const sub = c.newSubscription(channel, { tagsFilter: tagsFilter as never });
  const unsubscribed = nextEvent<UnsubscribedContext>(sub, 'unsubscribed');
  sub.subscribe();
  const ctx = await unsubscribed;
  c.removeSubscription(sub);
  return ctx;
}

async function publish(gateway: Gateway, channel: string, n: number, tags?: Record<string, string>) {
  const res = await api(gateway, 'publish', { channel, data: { n }, ...(tags ? { tags } : {}) });
  assert.equal(res.status, 200);
  assert.equal(res.body.error, undefined, JSON.stringify(res.body));
  return res.body.result as { offset: number; epoch: string };
}

async function waitForCount(list: { length: number }, n: number, what: string): Promise<void> {
  await waitUntil(
    () => list.length >= n,
    5000,
    () => `${n} ${what}, got ${list.length}`,
  );
}

describe('tags filter on one gateway', () => {
  let gateway: Gateway;
  const raws = new RawClients(() => gateway);

  before(async () => {
    gateway = await startGateway({ SWITCHBOARD_NAMESPACES: NAMESPACES });
  });

  after(async () => {
    disconnectAll();
    raws.terminate();
    await gateway.stop();
  });

  test('a filtered subscriber gets only the matching publications, an unfiltered one all, both in order', async () => {
    const channel = 'market:stocks';
    const all = await subscribed(await connected(gateway, 'all'), channel);
    const filterClient = await connected(gateway, 'filtered');
    const filtered = await subscribed(filterClient, channel, {
      tagsFilter: {
        op: 'and',
        nodes: [AAPL, { key: 'price', cmp: 'gte', val: '100' }],
      },
    });
    const tagged: [number, Record<string, string> | undefined][] = [
      [1, { ticker: 'AAPL', price: '150.25' }],
      [2, { ticker: 'MSFT', price: '400' }],
      [3, { ticker: 'AAPL', price: '99.5' }],
      [4, undefined],
      [5, { ticker: 'AAPL', price: '100' }],
      [6, { ticker: 'AAPL', price: 'n/a' }],
      [7, { ticker: 'AAPL', price: '1000.000000000000000001' }],
    ];
    for (const [n, tags] of tagged) await publish(gateway, channel, n, tags);
    // A client publication carries no tags: the filter holds it back like n=4.
    await all.sub.publish({ n: 8 });
    await waitForCount(all.got, 8, 'publications to the unfiltered subscriber');
    assert.deepEqual(all.ns(), [1, 2, 3, 4, 5, 6, 7, 8]);
    // The last publication matches: once it is in, everything before it has been decided.
    await publish(gateway, channel, 9, { ticker: 'AAPL', price: '101' });
    await waitForCount(filtered.got, 4, 'matching publications');
    assert.deepEqual(filtered.ns(), [1, 5, 7, 9]);
    assert.deepEqual(filtered.got[0]!.tags, { ticker: 'AAPL', price: '150.25' });
    assert.equal(filterClient.state, 'connected');
  });

  test('skip_sender with a filtered sender: the others still get its publications, the sender does not', async () => {
    const channel = 'echoless:room';
    // Untagged client publications pass `nex`.
    const sender = await subscribed(await connected(gateway, 'sender'), channel, {
      tagsFilter: { key: 'ticker', cmp: 'nex' },
    });
    const listener = await subscribed(await connected(gateway, 'listener'), channel);
    await sender.sub.publish({ n: 1 });
    await listener.sub.publish({ n: 2 });
    await waitForCount(listener.got, 1, 'publication from the sender');
    await waitForCount(sender.got, 1, 'publication from the listener');
    assert.deepEqual(listener.ns(), [1]);
    assert.deepEqual(sender.ns(), [2]);
  });

  test('joins and leaves reach a filtered subscriber: the filter is for publications only', async () => {
    const channel = 'market:joins';
    const filtered = await subscribed(await connected(gateway, 'watcher'), channel, {
      tagsFilter: AAPL,
      joinLeave: true,
    });
    const events: string[] = [];
    filtered.sub.on('join', (ctx) => events.push(`join ${ctx.info.user}`));
    filtered.sub.on('leave', (ctx) => events.push(`leave ${ctx.info.user}`));
    const other = await subscribed(await connected(gateway, 'newcomer'), channel);
    await waitUntil(
      () => events.includes('join newcomer'),
      5000,
      () => `the newcomer's join, got ${events}`,
    );
    other.sub.unsubscribe();
    await waitUntil(
      () => events.includes('leave newcomer'),
      5000,
      () => `the newcomer's leave, got ${events}`,
    );
    assert.equal(filtered.got.length, 0);
  });

  test('a namespace without allow_tags_filter refuses a filtered subscribe with 107; the connection lives on', async () => {
    const c = await connected(gateway, 'refused');
    const ctx = await refusedSubscribe(c, 'plain:quotes', AAPL);
    assert.equal(ctx.code, 107);
    assert.equal(ctx.reason, 'tags filter not allowed');
    // Without a filter the same channel is fine, on the same connection.
    const plain = await subscribed(c, 'plain:quotes');
    await publish(gateway, 'plain:quotes', 1, { ticker: 'MSFT' });
    await waitForCount(plain.got, 1, 'publication');
    assert.equal(c.state, 'connected');
  });

  test('a malformed filter refuses that subscribe with 107 and the reason; other subscriptions are untouched', async () => {
    const c = await connected(gateway, 'malformed');
    let reconnects = 0;
    c.on('connecting', () => reconnects++);
    const other = await subscribed(c, 'market:other', { tagsFilter: AAPL });
    for (const [tf, reason] of [
      [{ key: 'ticker', cmp: 'like', val: 'A' }, /unknown comparison "like"/],
      [{ op: 'not', nodes: [AAPL, AAPL] }, /not needs exactly one node/],
      [{ key: 'price', cmp: 'gt', val: 'cheap' }, /decimal number/],
      [{ key: 'ticker', cmp: 'in', vals: [1, 2] }, /vals must hold strings/],
    ] as const) {
      const ctx = await refusedSubscribe(c, 'market:bad', tf);
      assert.equal(ctx.code, 107);
      assert.match(ctx.reason, /^invalid tags filter: /);
      assert.match(ctx.reason, reason);
    }
    await publish(gateway, 'market:other', 1, { ticker: 'MSFT' });
    await publish(gateway, 'market:other', 2, { ticker: 'AAPL' });
    await waitForCount(other.got, 1, 'publication');
    assert.deepEqual(other.ns(), [2]);
    assert.equal(c.state, 'connected');
    assert.equal(reconnects, 0);
  });

  test('hostile filters (too deep, too many nodes) are answered 107 and the raw connection keeps working', async () => {
    const raw = await raws.connect('hostile');
    let deep: unknown = AAPL;
    for (let i = 0; i < 20; i++) deep = { op: 'not', nodes: [deep] };
    const wide = { op: 'or', nodes: Array.from({ length: 500 }, () => AAPL) };
    raw.send({ id: 2, subscribe: { channel: 'market:hostile', tf: deep } });
    raw.send({ id: 3, subscribe: { channel: 'market:hostile', tf: wide } });
    raw.send({
      id: 4,
      subscribe: { channel: 'market:hostile', tf: { key: 'ticker', cmp: 'eq', val: 'AAPL', x: 1 } },
    });
    const [r2, r3, r4] = [
      await raw.expect((m) => m.id === 2),
      await raw.expect((m) => m.id === 3),
      await raw.expect((m) => m.id === 4),
    ];
    assert.equal(r2.error?.code, 107);
    assert.match(r2.error.message, /nested deeper than 8 levels/);
    assert.equal(r3.error?.code, 107);
    assert.match(r3.error.message, /more than 64 nodes/);
    assert.equal(r4.error?.code, 107);
    assert.match(r4.error.message, /unknown field "x"/);
    // The same connection subscribes with a valid filter and gets only what matches.
    raw.send({ id: 5, subscribe: { channel: 'market:hostile', tf: AAPL } });
    assert.deepEqual((await raw.expect((m) => m.id === 5)).error, undefined);
    await publish(gateway, 'market:hostile', 1, { ticker: 'MSFT' });
    await publish(gateway, 'market:hostile', 2, { ticker: 'AAPL' });
    await raw.expect((m) => m.push?.pub?.data?.n === 2);
    assert.deepEqual(
      raw.received.filter((m) => m.push?.pub).map((m) => m.push.pub.data.n),
      [2],
    );
    assert.equal(raw.closeCode, undefined);
  });

  test('recovery after a dropped connection returns only the matching missed publications, then live ones', async () => {
    const channel = 'market:recovery';
    const { state, FlakyWebSocket } = flakyNetwork(() => gateway);
    const c = await connected(gateway, 'recovering', FlakyWebSocket);
    const filtered = await subscribed(c, channel, { tagsFilter: AAPL });
    await publish(gateway, channel, 1, { ticker: 'AAPL' });
    await waitForCount(filtered.got, 1, 'first publication');
    state.offline = true;
    const dropped = nextEvent(c, 'connecting');
    await api(gateway, 'disconnect', {
      user: 'recovering',
      disconnect: { code: 3011, reason: 'force reconnect' },
    });
    await dropped;
    let last = { offset: 0, epoch: '' };
    for (let n = 2; n <= 6; n++)
      last = await publish(gateway, channel, n, { ticker: n % 2 ? 'AAPL' : 'MSFT' });
    await publish(gateway, channel, 7, { ticker: 'MSFT' });
    const resubscribed = nextEvent<SubscribedContext>(filtered.sub, 'subscribed', 10_000);
    state.offline = false;
    const ctx = await resubscribed;
    assert.equal(ctx.wasRecovering, true);
    assert.equal(ctx.recovered, true);
    // The position covers the publications the filter held back too.
    assert.equal(ctx.streamPosition?.offset, last.offset + 1);
    await waitForCount(filtered.got, 3, 'recovered publications');
    await publish(gateway, channel, 8, { ticker: 'MSFT' });
    await publish(gateway, channel, 9, { ticker: 'AAPL' });
    await waitForCount(filtered.got, 4, 'live publication after recovery');
    assert.deepEqual(filtered.ns(), [1, 3, 5, 9]);
  });
});

describe('tags filter in a NATS cluster', () => {
  let cluster: NatsGateways;
  let g1: Gateway;
  let g2: Gateway;

  before(async () => {
    cluster = await startNatsGateways({ gateways: 2, env: { SWITCHBOARD_NAMESPACES: NAMESPACES } });
    [g1, g2] = cluster.gateways as [Gateway, Gateway];
  });

  after(async () => {
    disconnectAll();
    await cluster?.stop();
  });

  test('publications from another gateway are filtered, and recovery on another gateway filters its history', async () => {
    const channel = 'market:cluster';
    let target = g2;
    const { state, FlakyWebSocket } = flakyNetwork(() => target);
    const remote = await connected(g2, 'remote', FlakyWebSocket);
    const filtered = await subscribed(remote, channel, {
      tagsFilter: { key: 'ticker', cmp: 'in', vals: ['AAPL', 'NVDA'] },
    });
    const all = await subscribed(await connected(g1, 'local'), channel);
    for (const [n, ticker] of [
      [1, 'AAPL'],
      [2, 'MSFT'],
      [3, 'NVDA'],
    ] as const)
      await publish(g1, channel, n, { ticker });
    await waitForCount(all.got, 3, 'publications on gw1');
    await waitForCount(filtered.got, 2, 'matching publications on gw2');
    assert.deepEqual(all.ns(), [1, 2, 3]);
    // The client's network drops; it comes back to gw1, recovering from the stream in NATS.
    state.offline = true;
    target = g1;
    const dropped = nextEvent(remote, 'connecting');
    await api(g2, 'disconnect', { user: 'remote', disconnect: { code: 3011, reason: 'force reconnect' } });
    await dropped;
    for (const [n, ticker] of [
      [4, 'MSFT'],
      [5, 'NVDA'],
      [6, 'MSFT'],
    ] as const)
      await publish(g2, channel, n, { ticker });
    const resubscribed = nextEvent<SubscribedContext>(filtered.sub, 'subscribed', 10_000);
    state.offline = false;
    const ctx = await resubscribed;
    assert.equal(ctx.recovered, true);
    await publish(g2, channel, 7, { ticker: 'AAPL' });
    await waitForCount(filtered.got, 4, 'recovered and live publications');
    assert.deepEqual(filtered.ns(), [1, 3, 5, 7]);
    await waitForCount(all.got, 7, 'every publication on gw1');
    assert.deepEqual(all.ns(), [1, 2, 3, 4, 5, 6, 7]);
  });
});
