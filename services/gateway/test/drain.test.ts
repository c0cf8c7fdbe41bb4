/**
 * Graceful drain for real: clients connected through HAProxy to three
 * gateways while publications flow; SIGTERM one gateway. Its /readyz turns
 * 503, its clients get 3001 in jittered batches, reconnect through HAProxy to
 * the other gateways and recover from history, with nothing lost and nothing
 * doubled; it drains NATS and exits within SWITCHBOARD_SHUTDOWN_TIMEOUT.
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import { type Cluster, startCluster } from './cluster.js';
import { type Gateway, nextEvent, token, waitUntil } from './harness.js';
import { assertGotExactly, connectionsOn, finishTraffic, publisher, subscribe } from './traffic.js';

const SHUTDOWN_TIMEOUT = 4;
const CLIENTS = 15;
const CHANNEL = 'chat:drain';

let cluster: Cluster;
const clients: Centrifuge[] = [];

before(async () => {
  cluster = await startCluster({
    env: { SWITCHBOARD_SHUTDOWN_TIMEOUT: String(SHUTDOWN_TIMEOUT), SWITCHBOARD_LOG_LEVEL: 'info' },
  });
});

after(async () => {
  for (const c of clients) c.disconnect();
  await cluster.stop();
});

/** A subscribed client through HAProxy, with the codes of its reconnects and when they began. */
async function viewer(i: number) {
  const c = new Centrifuge(cluster.haproxy.url, {
    websocket: WebSocket,
    token: await token({ sub: `viewer-${i}` }),
    minReconnectDelay: 50,
    maxReconnectDelay: 500,
  });
  clients.push(c);
  const reconnects: { code: number; at: number }[] = [];
  c.on('connecting', (ctx) => {
    if (ctx.code !== 0) reconnects.push({ code: ctx.code, at: Date.now() });
  });
  c.connect();
  await nextEvent(c, 'connected', 10_000);
  return Object.assign(await subscribe(c, CHANNEL), { reconnects });
}

const alive = (g: Gateway) => g.process.exitCode === null && g.process.signalCode === null;

test(
  'SIGTERM: readiness 503, clients handed over in batches with 3001, nothing lost or doubled, exit in time',
  { timeout: 60_000 },
  async (t) => {
    const viewers: Awaited<ReturnType<typeof viewer>>[] = [];
    for (let i = 0; i < CLIENTS; i++) viewers.push(await viewer(i));
    const counts = await Promise.all(cluster.gateways.map((g) => connectionsOn(g)));
    assert.equal(
      counts.reduce((a, b) => a + b, 0),
      CLIENTS,
    );
    const victimIndex = counts.indexOf(Math.max(...counts));
    const victim = cluster.gateways[victimIndex]!;
    const onVictim = counts[victimIndex]!;
    assert.ok(onVictim >= 3, `the drained gateway has clients: ${counts}`);
    const survivors = cluster.gateways.filter((g) => g !== victim);

    // Publications every 10 ms through the surviving gateways, alternately.
    let turn = 0;
    const pub = publisher(() => survivors[turn++ % 2]!, CHANNEL);
    await waitUntil(
      () => viewers.every((v) => v.got.length >= 10),
      10_000,
      () => 'traffic before the drain',
    );

    const signalledAt = Date.now();
    const exited = victim.stop('SIGTERM');
    // Readiness turns 503 at once, while the internal port stays up.
    let readiness = 0;
    await waitUntil(
      async () => {
        readiness = (await fetch(`${victim.internalUrl}/readyz`).catch(() => undefined))?.status ?? -1;
        return readiness !== 200;
      },
      2000,
      () => 'readiness to change',
    );
    assert.equal(readiness, 503);
    const code = await exited;
    const tookMs = Date.now() - signalledAt;
    assert.equal(code, 0, `exit code; output:\n${victim.output()}`);
    assert.ok(tookMs < SHUTDOWN_TIMEOUT * 1000, `exited after ${tookMs} ms`);
    assert.match(victim.output(), /"msg":"shutdown complete"/);
    // Its NATS connection is gone (drained and closed, not left to time out).
    const connz = (await (await fetch(`http://127.0.0.1:${cluster.nats.monitorPort}/connz`)).json()) as {
      connections?: { name?: string }[];
    };
    const names = (connz.connections ?? []).map((c) => c.name);
    assert.ok(!names.includes(`switchboard gw${victimIndex + 1}`), `still connected: ${names}`);

    // Exactly the drained gateway's clients were told 3001, in more than one batch, spread out.
    const handedOver = viewers.filter((v) => v.reconnects.length > 0);
    assert.equal(handedOver.length, onVictim);
    for (const v of handedOver)
      assert.deepEqual(
        v.reconnects.map((r) => r.code),
        [3001],
      );
    const times = handedOver.map((v) => v.reconnects[0]!.at).sort((a, b) => a - b);
    t.diagnostic(
      `${onVictim} clients handed over within ${times.at(-1)! - times[0]!} ms; exit ${tookMs} ms after SIGTERM`,
    );
    assert.ok(times.at(-1)! - times[0]! >= 300, `disconnects spread over ${times.at(-1)! - times[0]!} ms`);

    // They reconnected through HAProxy to the others, and the traffic goes on.
    await waitUntil(
      async () =>
        (await Promise.all(survivors.map((g) => connectionsOn(g)))).reduce((a, b) => a + b) === CLIENTS,
      10_000,
      () => 'every client back on the surviving gateways',
    );
    assert.ok(!alive(victim));
    const accepted = await finishTraffic(pub, viewers, 30, 'the drain');
    for (const v of viewers) {
      assertGotExactly(v, accepted, 'every accepted publication once, in order');
      const offsets = v.got.map((p) => p.offset);
      assert.deepEqual(
        offsets,
        offsets.map((_, i) => offsets[0]! + i),
        'offsets without gaps or repeats',
      );
    }
    assert.equal(
      handedOver.filter((v) => v.recoveries === 1).length,
      onVictim,
      'each handed-over client recovered from history once',
    );
  },
);
