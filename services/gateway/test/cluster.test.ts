/**
 * The cluster for real: nats-server with JetStream, three gateways in NATS
 * mode, HAProxy in front, centrifuge-js clients. Publications cross gateways,
 * per-channel order holds with publishers on several gateways, clients of a
 * killed gateway recover everything through HAProxy, a NATS restart loses
 * nothing that was accepted, and hostile channel names stay in their lane.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import { type Cluster, startCluster, startNats } from './cluster.js';
import { api, client, type Gateway, nextEvent, startGateway, token, waitUntil } from './harness.js';
import {
  assertGotExactly,
  connectionsOn,
  finishTraffic,
  killDuringTraffic,
  numbers,
  publisher,
  subscribe,
} from './traffic.js';

const clients: Centrifuge[] = [];

after(() => {
  for (const c of clients) c.disconnect();
});

async function connectTo(target: Gateway | string, user: string): Promise<Centrifuge> {
  const options = { token: await token({ sub: user }) };
  const c =
    typeof target === 'string'
      ? new Centrifuge(target, {
          websocket: WebSocket,
          minReconnectDelay: 50,
          maxReconnectDelay: 500,
          ...options,
        })
      : client(target, options);
  clients.push(c);
  c.connect();
  await nextEvent(c, 'connected', 10_000);
  return c;
}

describe('three gateways over NATS', () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({ env: { SWITCHBOARD_PRESENCE_TTL: '3' } });
  });

  after(async () => {
    await cluster.stop();
  });

  test('clients on different gateways exchange publications, joins and presence', async () => {
    const [g1, g2, g3] = cluster.gateways as [Gateway, Gateway, Gateway];
    const ann = await connectTo(g1, 'ann');
    const ben = await connectTo(g2, 'ben');
    const a = await subscribe(ann, 'chat:cross');
    const joins: string[] = [];
    a.sub.on('join', (ctx) => joins.push(ctx.info.user));
    const b = await subscribe(ben, 'chat:cross');
    await waitUntil(
      () => joins.includes('ben'),
      5000,
      () => 'ben to join across gateways',
    );
    await b.sub.publish({ n: 1 });
    await api(g3, 'publish', { channel: 'chat:cross', data: { n: 2 } });
    await waitUntil(
      () => a.got.length === 2 && b.got.length === 2,
      5000,
      () => 'both publications on both',
    );
    assert.deepEqual(numbers(a.got), [1, 2]);
    assert.deepEqual(
      a.got.map((p) => p.offset),
      [1, 2],
    );
    const presence = await api(g3, 'presence', { channel: 'chat:cross' });
    assert.deepEqual(
      Object.values(presence.body.result.presence as Record<string, { user: string }>)
        .map((i) => i.user)
        .sort(),
      ['ann', 'ben'],
    );
    const channels = await api(g3, 'channels', { pattern: 'chat:cro*' });
    assert.deepEqual(channels.body.result.channels, { 'chat:cross': { num_clients: 2 } });
    const info = await api(g2, 'info', {});
    assert.deepEqual(info.body.result.nodes.map((n: { uid: string }) => n.uid).sort(), ['gw1', 'gw2', 'gw3']);
  });

  test('API actions reach connections on every gateway', async () => {
    const [g1, g2] = cluster.gateways as [Gateway, Gateway];
    const cleo = await connectTo(g2, 'cleo');
    const gone = nextEvent<{ code: number }>(cleo, 'disconnected');
    await api(g1, 'disconnect', { user: 'cleo' });
    assert.equal((await gone).code, 3503);
  });

  test('per-channel order holds with concurrent publishers on different gateways', async () => {
    const [g1, g2, g3] = cluster.gateways as [Gateway, Gateway, Gateway];
    const watcher = await connectTo(g3, 'watcher');
    const w = await subscribe(watcher, 'chat:order');
    const each = 40;
    await Promise.all([
      ...Array.from({ length: each }, (_, i) =>
        api(g1, 'publish', { channel: 'chat:order', data: { n: i } }),
      ),
      ...Array.from({ length: each }, (_, i) =>
        api(g2, 'publish', { channel: 'chat:order', data: { n: i } }),
      ),
    ]);
    await waitUntil(
      () => w.got.length === 2 * each,
      10_000,
      () => `${2 * each} publications, got ${w.got.length}`,
    );
    assert.deepEqual(
      w.got.map((p) => p.offset),
      Array.from({ length: 2 * each }, (_, i) => i + 1),
    );
    const history = await w.sub.history({ limit: 100 });
    assert.deepEqual(
      history.publications.map((p) => p.offset),
      Array.from({ length: 2 * each }, (_, i) => i + 1),
    );
  });

  test('hostile channel names cannot reach other channels or wildcards', async () => {
    const [g1, g2] = cluster.gateways as [Gateway, Gateway];
    const nc = await connect({ servers: cluster.nats.url });
    const subjects: string[] = [];
    nc.subscribe('sb.live.>', {
      callback: (_err, msg) => {
        subjects.push(msg.subject);
      },
    });
    await nc.flush();
    const eve = await connectTo(g1, 'eve');
    const dotted = await subscribe(eve, 'chat:a.b');
    const lookalike = await subscribe(eve, 'chat:a_2Eb');
    const prefix = await subscribe(eve, 'chat:a');
    for (const channel of ['chat:a.b', 'chat:a_2Eb', 'chat:a.b.c', 'chat:a#x', 'chat:a,b', '#a.b']) {
      await api(g2, 'publish', { channel, data: { n: channel } });
    }
    await waitUntil(
      () => dotted.got.length === 1 && lookalike.got.length === 1,
      5000,
      () => 'one publication each',
    );
    assert.deepEqual(numbers(dotted.got), ['chat:a.b']);
    assert.deepEqual(numbers(lookalike.got), ['chat:a_2Eb']);
    assert.equal(prefix.got.length, 0);
    for (const bad of ['chat:a.*', 'chat:a.>', 'chat:a b', 'chat:ä']) {
      const res = await api(g2, 'publish', { channel: bad, data: {} });
      assert.equal(res.body.error?.code, 107, bad);
    }
    await waitUntil(
      () => subjects.length >= 6,
      5000,
      () => 'publications on NATS',
    );
    for (const subject of subjects) {
      const tokens = subject.split('.');
      assert.equal(tokens.length, 4, subject);
      for (const t of tokens) assert.match(t, /^[A-Za-z0-9_-]+$/, subject);
    }
    await nc.close();
  });

  test('presence of a killed gateway expires', async () => {
    const [, , g3] = cluster.gateways as [Gateway, Gateway, Gateway];
    const doomed = await connectTo(g3, 'doomed');
    await subscribe(doomed, 'chat:ghosts');
    const count = async () =>
      (await api(cluster.gateways[0]!, 'presence_stats', { channel: 'chat:ghosts' })).body.result;
    assert.equal((await count()).num_clients, 1);
    await g3.stop('SIGKILL');
    await waitUntil(
      async () => (await count()).num_clients === 0,
      10_000,
      () => 'the dead presence to expire',
    );
    const info = await api(cluster.gateways[0]!, 'info', {});
    await waitUntil(
      async () => (await api(cluster.gateways[0]!, 'info', {})).body.result.nodes.length === 2,
      10_000,
      () => `gw3 to leave the registry: ${JSON.stringify(info.body)}`,
    );
  });
});

describe('failures under steady publishing', () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster();
  });

  after(async () => {
    await cluster.stop();
  });

  test('a SIGKILLed gateway: its clients reconnect through HAProxy and recover, nothing lost or doubled', async () => {
    const subscribers = await Promise.all(
      Array.from({ length: 9 }, async (_, i) =>
        subscribe(await connectTo(cluster.haproxy.url, `k${i}`), 'chat:kill'),
      ),
    );
    // The gateway with the most of them dies; the publisher uses another one.
    const counts = await Promise.all(cluster.gateways.map((g) => connectionsOn(g)));
    const victim = counts.indexOf(Math.max(...counts));
    const accepted = await killDuringTraffic(cluster.gateways, victim, 'chat:kill', subscribers);
    for (const [i, s] of subscribers.entries()) assertGotExactly(s, accepted, `subscriber ${i}`);
    assert.ok(counts[victim]! > 0, 'the killed gateway had clients');
    const recovered = subscribers.filter((s) => s.recoveries > 0).length;
    assert.equal(recovered, counts[victim], 'each client of the killed gateway recovered once');
  });

  test('a NATS restart during traffic: gateways recover by themselves, every accepted publication is delivered', async () => {
    const live = cluster.gateways.filter((g) => g.process.exitCode === null && g.process.signalCode === null);
    const subscribers = await Promise.all(
      live.map(async (g, i) => subscribe(await connectTo(g, `n${i}`), 'chat:restart')),
    );
    const pub = publisher(() => live[0]!, 'chat:restart');
    await waitUntil(
      () => pub.accepted.length >= 20,
      10_000,
      () => 'traffic before the restart',
    );
    await cluster.nats.restart();
    await waitUntil(
      async () =>
        (await Promise.all(live.map((g) => fetch(`${g.internalUrl}/readyz`)))).every((r) => r.status === 200),
      20_000,
      () => 'gateways ready again',
    );
    await finishTraffic(pub, subscribers, 20, 'the restart');
    for (const [i, s] of subscribers.entries()) assertGotExactly(s, pub.accepted, `subscriber ${i}`);
  });
});

describe('NATS with credentials', () => {
  test('a gateway logs in with user and password; with a wrong one it exits and says why', async () => {
    const nats = await startNats(['--user', 'switchboard', '--pass', 's3cret']);
    const env = {
      SWITCHBOARD_BROKER: 'nats',
      SWITCHBOARD_NATS_URL: nats.url,
      SWITCHBOARD_NATS_USER: 'switchboard',
    };
    const good = await startGateway({ ...env, SWITCHBOARD_NATS_PASSWORD: 's3cret' });
    try {
      const c = await connectTo(good, 'cred');
      const { got, sub } = await subscribe(c, 'chat:creds');
      await sub.publish({ n: 1 });
      await waitUntil(
        () => got.length === 1,
        5000,
        () => 'a publication',
      );
      await assert.rejects(
        startGateway({ ...env, SWITCHBOARD_NATS_PASSWORD: 'wrong' }, { timeoutMs: 3000 }),
        /exited with 1[\s\S]*Authorization Violation/,
      );
    } finally {
      await good.stop();
      await nats.stop();
    }
  });
});
