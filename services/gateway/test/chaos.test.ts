/**
 * Chaos on a real network: three nats-servers (a JetStream cluster) and
 * three gateways, each in a network namespace of its own with its own
 * address, one veth link per pair (netns.ts), HAProxy and the clients
 * outside. Under steady publishing on a history channel, with subscribers
 * on every gateway through HAProxy, a test cuts links, stops processes,
 * slows links, and counts what was lost, duplicated, refused or reordered.
 */

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import type { Centrifuge } from 'centrifuge';
import { type Haproxy, type NatsCluster, startHaproxy, startNatsCluster } from './cluster.js';
import { delayProxy } from './delay-proxy.js';
import { api, client, type Gateway, metric, nextEvent, startGateway, token, waitUntil } from './harness.js';
import { createNet, OUTSIDE, type TestNet } from './netns.js';
import {
  assertGotExactly,
  connectionsOn,
  deliveryLatency,
  finishTraffic,
  numbers,
  type Publisher,
  publisher,
  type Subscriber,
  subscribe,
} from './traffic.js';

const NATS = ['n1', 'n2', 'n3'];
const GATEWAYS = ['g1', 'g2', 'g3'];
/** A gateway that reaches NATS only through the delaying proxy (outside). */
const SLOW = 'g4';
const PRESENCE_TTL = 3;
const OUTAGE_DISCONNECT = 2;

const NAMESPACES = JSON.stringify([
  // History long enough to bridge every disruption here (2,000 publications, 20 s at the publisher's rate).
  { name: 'chat', history_size: 2000, history_ttl: 300, recovery: true, allow_subscribe_for_client: true },
  { name: 'room', presence: true, allow_subscribe_for_client: true },
]);

describe('chaos on a real network: three NATS nodes, three gateways, HAProxy', () => {
  let net: TestNet;
  let nats: NatsCluster;
  let haproxy: Haproxy;
  const gateways: Gateway[] = [];
  const clients: Centrifuge[] = [];

  const env = (urls: string) => ({
    SWITCHBOARD_BROKER: 'nats',
    SWITCHBOARD_NATS_URL: urls,
    SWITCHBOARD_NAMESPACES: NAMESPACES,
    // Loss of NATS noticed within about 1.5 s, clients sent elsewhere 2 s later.
    SWITCHBOARD_NATS_PING_INTERVAL: '500',
    SWITCHBOARD_BROKER_OUTAGE_DISCONNECT: String(OUTAGE_DISCONNECT),
    // Server pings every second, so that clients of a hung gateway notice it soon.
    SWITCHBOARD_PING_INTERVAL: '1',
    SWITCHBOARD_PRESENCE_TTL: String(PRESENCE_TTL),
  });

  before(async () => {
    const hosts = [...NATS, ...GATEWAYS, SLOW];
    const links: [string, string][] = hosts.map((h) => [OUTSIDE, h]);
    for (const [i, a] of NATS.entries()) for (const b of NATS.slice(i + 1)) links.push([a, b]);
    for (const g of GATEWAYS) for (const n of NATS) links.push([g, n]);
    net = await createNet(hosts, links);
    nats = await startNatsCluster(3, { net, hosts: NATS });
    for (const g of GATEWAYS)
      gateways.push(
        await startGateway(
          { ...env(nats.urls), SWITCHBOARD_NODE_ID: g },
          { netns: net.namespace(g), host: net.address(g) },
        ),
      );
    haproxy = await startHaproxy(gateways);
  });

  // Every test starts from empty gateways, so that HAProxy (leastconn) spreads its clients over all three,
  // and from a whole NATS cluster: not in the leader elections the last test's disruption left behind.
  afterEach(async () => {
    for (const c of clients.splice(0)) c.disconnect();
    await nats.whole(60_000);
    await waitUntil(
      async () =>
        (await Promise.all(gateways.map((g) => connectionsOn(g).catch(() => 0)))).every((n) => n === 0),
      10_000,
      () => 'the clients of the last test gone',
    );
  });

  after(async () => {
    if (process.env.CHAOS_DEBUG) for (const g of gateways) console.log(g.output());
    await haproxy?.stop();
    await Promise.all(gateways.map((g) => g.stop('SIGKILL')));
    await nats?.stop();
    net?.destroy();
  });

  /** `count` subscribers of `channel` through HAProxy, spread over every gateway (leastconn). */
  async function subscribers(channel: string, count = GATEWAYS.length): Promise<Subscriber[]> {
    const subs: Subscriber[] = [];
    for (let i = 0; i < count; i++) {
      const c = client(
        { wsUrl: haproxy.url },
        // Missing pings for 2 s mean a hung gateway: reconnect (through HAProxy, elsewhere).
        { token: await token({ sub: `${channel}-${i}` }), maxServerPingDelay: 2000 },
      );
      clients.push(c);
      c.connect();
      await nextEvent(c, 'connected', 10_000);
      subs.push(await subscribe(c, channel));
    }
    return subs;
  }

  const settled = (subs: Subscriber[], n = 10) =>
    waitUntil(
      () => subs.every((s) => s.got.length >= n),
      15_000,
      () => `traffic on every subscriber: ${subs.map((s) => s.got.length).join(',')}`,
    );

  /**
   * Every subscriber got exactly what was accepted, each once and in order, and
   * the same of what may have been stored (a timed-out write JetStream stored after all).
   */
  function assertDeliveredOnce(accepted: number[], subs: Subscriber[], pub: Publisher) {
    for (const [i, s] of subs.entries()) assertGotExactly(s, accepted, `subscriber ${i}`, pub.uncertain);
    for (const [i, s] of subs.entries())
      assert.deepEqual(numbers(s.got), numbers(subs[0]!.got), `subscriber ${i} got what subscriber 0 got`);
  }

  /** Numbers the publisher tried that were refused (a temporary error), none expected where asserted. */
  const refused = (pub: Publisher, accepted: number[]) =>
    Array.from({ length: accepted.at(-1) ?? 0 }, (_, i) => i + 1).filter((n) => !pub.accepted.includes(n));

  /** The NATS server (host:port) a gateway is connected to, from its own metrics. */
  async function serverOf(gateway: Gateway): Promise<string | undefined> {
    const text = await (await fetch(`${gateway.internalUrl}/metrics`)).text();
    return /^switchboard_nats_server\{server="([^"]+)"\} 1$/m.exec(text)?.[1];
  }

  test('a minority partition of one NATS node, then healed: nothing lost or duplicated', async () => {
    const subs = await subscribers('chat:partition');
    for (const g of gateways) assert.ok((await connectionsOn(g)) >= 1, 'a subscriber on every gateway');
    const pub = publisher(() => gateways[0]!, 'chat:partition');
    await settled(subs);
    // Cut off the node the publishing gateway is connected to: publishes through it wait for a
    // leader it cannot reach, and live messages from the majority side never reach it.
    const server = await serverOf(gateways[0]!);
    const index = nats.nodes.findIndex((n) => `${n.host}:${n.port}` === server);
    assert.ok(index >= 0, `g1 is connected to a node of the cluster (${server})`);
    const isolated = NATS[index]!;
    const others = NATS.filter((n) => n !== isolated);
    for (const other of others) await net.cut(isolated, other);
    const cutAt = Date.now();
    let movedAfter: number;
    let resumedAfter: number;
    try {
      // Every gateway on the isolated node notices it sees no leader, and moves to the majority.
      await waitUntil(
        async () => (await Promise.all(gateways.map(serverOf))).every((s) => s !== server),
        20_000,
        () => 'the gateways to leave the isolated node',
      );
      movedAfter = Date.now() - cutAt;
      const before = pub.accepted.length;
      // The streams led from the isolated node elect a leader on the majority side first: raft
      // election timeouts, and a publish in flight retrying up to publish_timeout (15 s).
      await waitUntil(
        () => pub.accepted.length >= before + 20,
        40_000,
        () =>
          `traffic through the majority (${pub.accepted.length - before} accepted); g1's last output:\n` +
          gateways[0]!.output().slice(-4000),
      );
      resumedAfter = Date.now() - cutAt - movedAfter;
    } finally {
      for (const other of others) await net.heal(isolated, other);
    }
    // The node that rejoins makes the groups it is in elect again: publishes wait for that (publish_timeout).
    const healedAt = Date.now();
    await nats.whole(60_000);
    const wholeAfter = Date.now() - healedAt;
    const accepted = await finishTraffic(pub, subs, 50, 'the partition');
    assertDeliveredOnce(accepted, subs, pub);
    assert.ok((await metric(gateways[0]!, 'switchboard_nats_moves_total')) >= 1, 'g1 moved');
    console.log(
      `partition: gateways moved off the isolated node after ${movedAfter} ms, publishes accepted again ${resumedAfter} ms later, ` +
        `the cluster whole ${wholeAfter} ms after the heal; ` +
        `${accepted.length} accepted, ${refused(pub, accepted).length} refused (${pub.uncertain.length} of them maybe stored, ${pub.uncertain.filter((n) => numbers(subs[0]!.got).includes(n)).length} of those delivered)`,
    );
  });

  test('a gateway cut off from every NATS node: 503, its clients recover elsewhere, it rejoins', async () => {
    const subs = await subscribers('chat:cutoff');
    const victim = gateways[1]!;
    const onVictim = await connectionsOn(victim);
    assert.ok(onVictim >= 1, 'the victim has clients');
    const pub = publisher(() => gateways[0]!, 'chat:cutoff');
    await settled(subs);
    for (const n of NATS) await net.cut(GATEWAYS[1]!, n);
    const cutAt = Date.now();
    let notReadyAfter: number;
    try {
      await waitUntil(
        async () => (await fetch(`${victim.internalUrl}/readyz`)).status === 503,
        5000,
        () => 'readyz 503 on the cut-off gateway',
      );
      notReadyAfter = Date.now() - cutAt;
      await waitUntil(
        async () => (await haproxy.servers()).gw2 === 'DOWN',
        5000,
        () => 'HAProxy to take the gateway out',
      );
      // Its clients were sent elsewhere (3004) and came back through HAProxy on the other two.
      await waitUntil(
        async () => (await connectionsOn(victim)) === 0,
        (OUTAGE_DISCONNECT + 6) * 1000,
        () => 'the cut-off gateway to have sent its clients elsewhere',
      );
      const accepted = await finishTraffic(pub, subs, 30, 'the cut');
      assertDeliveredOnce(accepted, subs, pub);
      assert.ok(
        subs.reduce((n, s) => n + s.recoveries, 0) >= onVictim,
        'the moved clients recovered what they missed',
      );
    } finally {
      for (const n of NATS) await net.heal(GATEWAYS[1]!, n);
    }
    await waitUntil(
      async () => (await haproxy.servers()).gw2 === 'UP',
      20_000,
      () => 'the healed gateway back in HAProxy',
    );
    console.log(`cut-off: readyz 503 after ${notReadyAfter} ms`);
  });

  test('a hung gateway (SIGSTOP 10 s): its clients recover elsewhere; after SIGCONT no stale or duplicate delivery', async () => {
    const subs = await subscribers('chat:hung');
    const victim = gateways[2]!;
    assert.ok((await connectionsOn(victim)) >= 1, 'the victim has clients');
    // One client straight to the victim that waits it out: what it gets after SIGCONT must be right too.
    const patient = client(victim, { token: await token({ sub: 'patient' }), maxServerPingDelay: 30_000 });
    clients.push(patient);
    patient.connect();
    await nextEvent(patient, 'connected', 10_000);
    subs.push(await subscribe(patient, 'chat:hung'));
    const pub = publisher(() => gateways[0]!, 'chat:hung');
    await settled(subs);
    victim.process.kill('SIGSTOP');
    const stoppedAt = Date.now();
    try {
      await waitUntil(
        async () => (await haproxy.servers()).gw3 === 'DOWN',
        5000,
        () => 'HAProxy to take the hung gateway out',
      );
      const before = subs.map((s) => s.got.length);
      // The clients that came through HAProxy notice the missing pings and move (2 s here).
      await waitUntil(
        () => subs.slice(0, -1).every((s, i) => s.got.length > before[i]! + 20),
        10_000,
        () => 'the clients of the hung gateway to get traffic elsewhere',
      );
      // The hang lasts 10 s in all (its length, not a synchronisation).
      await new Promise((r) => setTimeout(r, Math.max(0, stoppedAt + 10_000 - Date.now())));
    } finally {
      victim.process.kill('SIGCONT');
    }
    await waitUntil(
      async () => (await haproxy.servers()).gw3 === 'UP',
      10_000,
      () => 'the resumed gateway back in HAProxy',
    );
    const accepted = await finishTraffic(pub, subs, 30, 'the hang');
    assertDeliveredOnce(accepted, subs, pub);
  });

  test('100 ms added each way between a gateway and NATS: every publication once, in order', async () => {
    const proxies = await Promise.all(
      nats.nodes.map((n) => delayProxy(net.address(OUTSIDE), { host: n.host, port: n.port }, 100)),
    );
    const slow = await startGateway(
      {
        ...env(proxies.map((p) => `nats://${net.address(OUTSIDE)}:${p.port}`).join(',')),
        SWITCHBOARD_NODE_ID: SLOW,
      },
      { netns: net.namespace(SLOW), host: net.address(SLOW), timeoutMs: 30_000 },
    );
    try {
      const subs: Subscriber[] = [];
      for (const [i, g] of [slow, gateways[0]!].entries()) {
        const c = client(g, { token: await token({ sub: `slow-${i}` }) });
        clients.push(c);
        c.connect();
        await nextEvent(c, 'connected', 10_000);
        subs.push(await subscribe(c, 'chat:delayed'));
      }
      const pub = publisher(() => slow, 'chat:delayed');
      await settled(subs, 50);
      const accepted = await finishTraffic(pub, subs, 50, 'the delay');
      assertDeliveredOnce(accepted, subs, pub);
      assert.deepEqual(refused(pub, accepted), [], 'refused publishes');
      const p99 = deliveryLatency(pub, subs, 0.99);
      // Publish and delivery each cross the delayed link at least twice (request, JetStream ack, delivery).
      assert.ok(p99 >= 200, `p99 ${p99} ms includes the added delay`);
      console.log(`delay 100 ms each way: ${accepted.length} publications, p99 publish→deliver ${p99} ms`);
    } finally {
      await slow.stop('SIGKILL');
      await Promise.all(proxies.map((p) => p.stop()));
    }
  });

  test('1 Mbit/s between every gateway and NATS: every publication once, in order', async () => {
    for (const g of GATEWAYS) for (const n of NATS) await net.limit(g, n, '1mbit');
    try {
      const subs = await subscribers('chat:narrow');
      const pub = publisher(() => gateways[0]!, 'chat:narrow');
      await settled(subs, 50);
      const accepted = await finishTraffic(pub, subs, 50, 'the bandwidth limit');
      assertDeliveredOnce(accepted, subs, pub);
      assert.deepEqual(refused(pub, accepted), [], 'refused publishes');
      console.log(
        `1 Mbit/s: ${accepted.length} publications, p99 publish→deliver ${deliveryLatency(pub, subs, 0.99)} ms`,
      );
    } finally {
      for (const g of GATEWAYS) for (const n of NATS) await net.limit(g, n, undefined);
    }
  });

  test('presence after a gateway dies holds no ghosts after one TTL', async () => {
    const subs = await subscribers('room:ghosts', 6);
    const presence = async () =>
      Object.keys(
        (await api(gateways[0]!, 'presence', { channel: 'room:ghosts' })).body.result?.presence ?? {},
      );
    await waitUntil(
      async () => (await presence()).length === 6,
      5000,
      () => 'six present',
    );
    const before = new Set(await presence());
    const victim = gateways[2]!;
    assert.ok((await connectionsOn(victim)) >= 1, 'the victim has clients');
    await victim.stop('SIGKILL');
    const killedAt = Date.now();
    // Its clients reconnect through HAProxy, and present themselves again under new client ids.
    await waitUntil(
      () => subs.every((s) => s.sub.state === 'subscribed'),
      10_000,
      () => 'every subscriber back',
    );
    await waitUntil(
      async () => {
        const now = await presence();
        return now.length === 6 && now.some((id) => !before.has(id));
      },
      (PRESENCE_TTL + 3) * 1000,
      () => 'presence to list exactly the six live clients',
    );
    const expiredAfter = Date.now() - killedAt;
    assert.ok(expiredAfter <= (PRESENCE_TTL + 3) * 1000);
    console.log(`presence: the dead gateway's entries gone ${expiredAfter} ms after the kill`);
  });
});
