/**
 * Centrifugo's cache recovery mode (`force_recovery_mode: "cache"`): a
 * recovering subscriber gets the channel's latest publication rather than
 * the ones it missed; and positioning (`force_positioning`,
 * `allow_positioning`): a gateway that misses a publication (an offset gap
 * on its live subject, provoked here by a publication injected on NATS)
 * sends its positioned subscribers to recover. With the real centrifuge-js,
 * raw frames and in a cluster over nats-server.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Centrifuge, PublicationContext } from 'centrifuge';
import { ConfigError, loadConfig } from '../src/config.js';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Subjects } from '@switchboard/protocol';
import { type Cluster, startCluster } from './cluster.js';
import {
  api,
  client,
  type Gateway,
  nextEvent,
  RawClient,
  startGateway,
  token,
  waitUntil,
} from './harness.js';

const NAMESPACES = JSON.stringify([
  {
    name: 'kv',
    history_size: 1,
    history_ttl: 300,
    recovery: true,
    force_recovery_mode: 'cache',
    allow_subscribe_for_client: true,
  },
  {
    name: 'pos',
    history_size: 10,
    history_ttl: 300,
    force_positioning: true,
    allow_subscribe_for_client: true,
  },
  {
    name: 'optin',
    history_size: 10,
    history_ttl: 300,
    allow_positioning: true,
    allow_subscribe_for_client: true,
  },
]);

const publish = (gateway: Pick<Gateway, 'internalUrl'>, channel: string, n: number) =>
  api(gateway, 'publish', { channel, data: { n } });

/** A raw connection of `user`, connected. */
async function raw(gateway: Gateway, user: string, claims: Record<string, unknown> = {}): Promise<RawClient> {
  const c = new RawClient(gateway.wsUrl);
  await c.open();
  c.send({ id: 1, connect: { token: await token({ sub: user, ...claims }) } });
  await c.expect((m) => m.id === 1 && m.connect);
  return c;
}

describe('force_recovery_mode configuration', () => {
  const load = (ns: object) => loadConfig({ SWITCHBOARD_NAMESPACES: JSON.stringify([ns]) });

  test('cache needs recovery, and only stream or cache are known', () => {
    assert.throws(
      () => load({ name: 'a', history_size: 1, history_ttl: 5, force_recovery_mode: 'cache' }),
      (err: Error) =>
        err instanceof ConfigError && /force_recovery_mode "cache" needs recovery/.test(err.message),
    );
    assert.throws(
      () =>
        load({ name: 'a', history_size: 1, history_ttl: 5, recovery: true, force_recovery_mode: 'latest' }),
      (err: Error) => err instanceof ConfigError && /must be "stream" or "cache"/.test(err.message),
    );
    assert.throws(() =>
      load({ name: 'a', history_size: 1, history_ttl: 5, recovery: true, force_recovery_mode: 1 }),
    );
    assert.throws(
      () => load({ name: 'a', history_size: 1, history_ttl: 5, force_positioning: 'yes' }),
      (err: Error) => err instanceof ConfigError && /force_positioning must be a boolean/.test(err.message),
    );
    for (const option of ['force_positioning', 'allow_positioning'])
      assert.throws(
        () => load({ name: 'a', [option]: true }),
        (err: Error) => err instanceof ConfigError && /positioning needs history_size > 0/.test(err.message),
      );
    const ok = load({
      name: 'a',
      history_size: 1,
      history_ttl: 5,
      recovery: true,
      force_recovery_mode: 'cache',
    });
    assert.equal(ok.namespaces.get('a')?.force_recovery_mode, 'cache');
  });
});

describe('cache recovery mode (one gateway)', () => {
  let gateway: Gateway;
  const clients: Centrifuge[] = [];
  const raws: RawClient[] = [];

  before(async () => {
    gateway = await startGateway({ SWITCHBOARD_NAMESPACES: NAMESPACES });
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    for (const r of raws) r.ws.close();
    await gateway.stop();
  });

  test('centrifuge-js with since {} gets the latest publication first, then the live ones', async () => {
    for (let n = 1; n <= 3; n++) assert.ok((await publish(gateway, 'kv:now-playing', n)).body.result);
    const c = client(gateway, { token: await token({ sub: 'ann' }) });
    clients.push(c);
    c.connect();
    const sub = c.newSubscription('kv:now-playing', { since: {} });
    const got: number[] = [];
    sub.on('publication', (ctx: PublicationContext) => got.push((ctx.data as { n: number }).n));
    const subscribed = nextEvent<{
      recovered: boolean;
      wasRecovering: boolean;
      streamPosition?: { offset: number };
    }>(sub, 'subscribed');
    sub.subscribe();
    const ctx = await subscribed;
    assert.equal(ctx.wasRecovering, true);
    assert.equal(ctx.recovered, true);
    await waitUntil(
      () => got.length === 1,
      3000,
      () => 'the cached publication',
    );
    assert.deepEqual(got, [3]);
    await publish(gateway, 'kv:now-playing', 4);
    await waitUntil(
      () => got.length === 2,
      3000,
      () => `the live publication, got ${got}`,
    );
    assert.deepEqual(got, [3, 4]);
  });

  test('a resubscribe far behind gets only the latest publication; one at the top gets none', async () => {
    const channel = 'kv:score';
    const first = (await publish(gateway, channel, 1)).body.result as { offset: number; epoch: string };
    for (let n = 2; n <= 5; n++) await publish(gateway, channel, n);
    const r = await raw(gateway, 'bob');
    raws.push(r);
    r.send({ id: 2, subscribe: { channel, recover: true, offset: first.offset, epoch: first.epoch } });
    const behind = (await r.expect((m) => m.id === 2)).subscribe;
    assert.equal(behind.recovered, true);
    assert.equal(behind.was_recovering, true);
    assert.equal(behind.offset, first.offset + 4);
    assert.deepEqual(
      behind.publications.map((p: { data: unknown; offset: number }) => [p.data, p.offset]),
      [[{ n: 5 }, first.offset + 4]],
    );
    r.send({ id: 3, unsubscribe: { channel } });
    await r.expect((m) => m.id === 3);
    r.send({ id: 4, subscribe: { channel, recover: true, offset: behind.offset, epoch: first.epoch } });
    const current = (await r.expect((m) => m.id === 4)).subscribe;
    assert.equal(current.recovered, true);
    assert.deepEqual(current.publications ?? [], []);
  });

  test('an empty channel: not recovered, nothing sent, then live publications arrive', async () => {
    const r = await raw(gateway, 'cid');
    raws.push(r);
    r.send({ id: 2, subscribe: { channel: 'kv:empty', recover: true } });
    const reply = (await r.expect((m) => m.id === 2)).subscribe;
    assert.equal(reply.recovered ?? false, false);
    assert.deepEqual(reply.publications ?? [], []);
    await publish(gateway, 'kv:empty', 7);
    const push = await r.expect((m) => m.push?.channel === 'kv:empty' && m.push.pub);
    assert.deepEqual(push.push.pub.data, { n: 7 });
  });

  test('a subscribe with positioned or recover of the wrong type closes that connection alone (3501)', async () => {
    const bystander = await raw(gateway, 'eli');
    raws.push(bystander);
    for (const bad of [{ positioned: 'yes' }, { recover: 1 }, { recover: true, offset: -1 }]) {
      const r = await raw(gateway, 'fox');
      raws.push(r);
      r.send({ id: 2, subscribe: { channel: 'kv:bad', ...bad } });
      assert.equal((await r.closed()).code, 3501, JSON.stringify(bad));
    }
    bystander.send({ id: 2, subscribe: { channel: 'kv:bad', recover: true } });
    assert.ok((await bystander.expect((m) => m.id === 2)).subscribe, 'the other connection is served on');
  });

  test('another epoch gets the latest publication (the client learns the new state)', async () => {
    await publish(gateway, 'kv:epoch', 1);
    const r = await raw(gateway, 'dan');
    raws.push(r);
    r.send({ id: 2, subscribe: { channel: 'kv:epoch', recover: true, offset: 1, epoch: 'gone' } });
    const reply = (await r.expect((m) => m.id === 2)).subscribe;
    assert.equal(reply.recovered, true);
    assert.deepEqual(
      reply.publications.map((p: { data: unknown }) => p.data),
      [{ n: 1 }],
    );
  });
});

describe('cache recovery mode and positioning (cluster over NATS)', () => {
  let cluster: Cluster;
  let nc: NatsConnection;
  const raws: RawClient[] = [];
  const clients: Centrifuge[] = [];
  const subjects = new Subjects('sb');

  before(async () => {
    cluster = await startCluster({ gateways: 2, env: { SWITCHBOARD_NAMESPACES: NAMESPACES } });
    nc = await connect({ servers: cluster.nats.url });
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    for (const r of raws) r.ws.close();
    await nc?.close();
    await cluster?.stop();
  });

  /**
   * A publication at `offset` on the channel's live subject, as the history
   * stream republishes one: published after a real one at offset - 2, the
   * gateways see that they missed offset - 1.
   */
  async function inject(channel: string, offset: number, epoch: string): Promise<void> {
    const envelope = { t: 'pub', pub: { data: { injected: offset }, offset, epoch }, ts: Date.now() };
    nc.publish(subjects.live(channel.slice(0, channel.indexOf(':')), channel), JSON.stringify(envelope));
    await nc.flush();
  }

  /** A raw connection of gw1 subscribed to `channel` (with `positioned` asked or not), and its reply. */
  async function subscribedRaw(user: string, channel: string, positioned: boolean) {
    const r = await raw(cluster.gateways[0]!, user);
    raws.push(r);
    r.send({ id: 2, subscribe: { channel, ...(positioned ? { positioned: true } : {}) } });
    return { r, reply: (await r.expect((m) => m.id === 2)).subscribe };
  }

  test('force_positioning: a gap on the gateway unsubscribes its subscriber with 2500 insufficient state', async () => {
    const channel = 'pos:gap';
    const first = (await publish(cluster.gateways[1]!, channel, 1)).body.result as {
      offset: number;
      epoch: string;
    };
    const { r, reply } = await subscribedRaw('fay', channel, false);
    assert.equal(reply.positioned, true);
    assert.equal(reply.offset, first.offset);
    await publish(cluster.gateways[1]!, channel, 2);
    await r.expect((m) => m.push?.pub?.offset === first.offset + 1);
    await inject(channel, first.offset + 3, first.epoch);
    const push = await r.expect((m) => m.push?.channel === channel && m.push.unsubscribe);
    assert.deepEqual(push.push.unsubscribe, { code: 2500, reason: 'insufficient state' });
    // The gapped publication never reached it: the unsubscribe came first and ended the subscription.
    assert.equal(
      r.received.some((m) => m.push?.pub?.offset === first.offset + 3),
      false,
    );
  });

  test('allow_positioning: only the subscriber that asked is sent to recover; the other gets the publication', async () => {
    const channel = 'optin:gap';
    const first = (await publish(cluster.gateways[1]!, channel, 1)).body.result as {
      offset: number;
      epoch: string;
    };
    const asked = await subscribedRaw('gus', channel, true);
    const plain = await subscribedRaw('hal', channel, false);
    assert.equal(asked.reply.positioned, true);
    assert.equal(plain.reply.positioned ?? false, false);
    await inject(channel, first.offset + 2, first.epoch);
    const push = await asked.r.expect((m) => m.push?.channel === channel && m.push.unsubscribe);
    assert.equal(push.push.unsubscribe.code, 2500);
    await plain.r.expect((m) => m.push?.pub?.offset === first.offset + 2);
    // A reply after the publication: an unsubscribe (sent before the publication) would be in between.
    plain.r.send({ id: 3, presence_stats: { channel } });
    await plain.r.expect((m) => m.id === 3);
    assert.equal(
      plain.r.received.some((m) => m.push?.unsubscribe),
      false,
    );
  });

  test('centrifuge-js with positioned: true resubscribes after a gap', async () => {
    const channel = 'optin:js';
    const first = (await publish(cluster.gateways[1]!, channel, 1)).body.result as {
      offset: number;
      epoch: string;
    };
    const c = client(cluster.gateways[0]!, { token: await token({ sub: 'ida' }) });
    clients.push(c);
    c.connect();
    const sub = c.newSubscription(channel, { positioned: true });
    const subscribed = nextEvent<{ positioned: boolean; streamPosition?: { offset: number } }>(
      sub,
      'subscribed',
    );
    sub.subscribe();
    const ctx = await subscribed;
    assert.equal(ctx.positioned, true);
    assert.equal(ctx.streamPosition?.offset, first.offset);
    const subscribing = nextEvent<{ code: number }>(sub, 'subscribing');
    const again = new Promise<void>((resolve) => sub.on('subscribed', () => resolve()));
    await inject(channel, first.offset + 2, first.epoch);
    assert.equal((await subscribing).code, 2500);
    await again;
  });

  test('a positioned server-side subscription reconnects with 3010 insufficient state', async () => {
    const channel = 'pos:server-side';
    const first = (await publish(cluster.gateways[1]!, channel, 1)).body.result as {
      offset: number;
      epoch: string;
    };
    const r = await raw(cluster.gateways[0]!, 'jon', { channels: [channel] });
    raws.push(r);
    const connected = r.received.find((m) => m.id === 1).connect;
    assert.equal(connected.subs[channel].positioned, true);
    await inject(channel, first.offset + 2, first.epoch);
    assert.deepEqual(await r.closed(), { code: 3010, reason: 'insufficient state' });
  });

  test('published through one gateway, the latest publication reaches a subscriber of the other', async () => {
    const [gw1, gw2] = cluster.gateways as [Gateway, Gateway];
    for (let n = 1; n <= 3; n++) assert.ok((await publish(gw1, 'kv:cluster', n)).body.result);
    const r = await raw(gw2, 'eve');
    raws.push(r);
    r.send({ id: 2, subscribe: { channel: 'kv:cluster', recover: true } });
    const reply = (await r.expect((m) => m.id === 2)).subscribe;
    assert.equal(reply.recovered, true);
    assert.deepEqual(
      reply.publications.map((p: { data: unknown }) => p.data),
      [{ n: 3 }],
    );
    await publish(gw1, 'kv:cluster', 4);
    const push = await r.expect((m) => m.push?.channel === 'kv:cluster' && m.push.pub);
    assert.deepEqual(push.push.pub.data, { n: 4 });
  });
});
