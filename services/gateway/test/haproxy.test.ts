/**
 * The cluster's moving parts outside the gateway: HAProxy with
 * docker/haproxy.cfg (leastconn spread, failover when a gateway dies) and the
 * nats-server the harness runs. The gateways use the memory broker here: this
 * file tests the load balancer, not the cluster protocol.
 */

import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { type Haproxy, type Nats, startHaproxy, startNats } from './cluster.js';
import { api, type Gateway, RawClient, startGateway, token, waitUntil } from './harness.js';

/** Opens a WebSocket through `url` and completes the connect command; fails fast on an HTTP error. */
async function connectThrough(url: string, user: string): Promise<RawClient> {
  const raw = new RawClient(url);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timed out opening the WebSocket')), 5000);
    raw.ws.once('open', () => {
      clearTimeout(timer);
      resolve();
    });
    raw.ws.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  raw.send({ id: 1, connect: { token: await token({ sub: user }) } });
  const reply = await raw.expect((m) => m.id === 1);
  assert.ok(reply.connect, `connect failed: ${JSON.stringify(reply)}`);
  return raw;
}

async function numClients(gateway: Gateway): Promise<number> {
  const { status, body } = await api(gateway, 'info', {});
  assert.equal(status, 200);
  return body.result.nodes[0].num_clients;
}

describe('HAProxy in front of three gateways', () => {
  let gateways: Gateway[] = [];
  let haproxy: Haproxy | undefined;
  const clients: RawClient[] = [];

  before(async () => {
    const env = { SWITCHBOARD_BROKER: 'memory', SWITCHBOARD_SHUTDOWN_TIMEOUT: '1' };
    const started = await Promise.allSettled([1, 2, 3].map(() => startGateway(env)));
    gateways = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) throw failed.reason;
    haproxy = await startHaproxy(gateways);
  });

  after(async () => {
    for (const c of clients) c.ws.terminate();
    await haproxy?.stop();
    await Promise.all(gateways.map((g) => g.stop('SIGKILL')));
  });

  test(
    'spreads connections, routes around a killed gateway and cuts its clients',
    { timeout: 60_000 },
    async () => {
      const proxy = haproxy!;
      for (let i = 0; i < 6; i++) clients.push(await connectThrough(proxy.url, `user-${i}`));
      let counts: number[] = [];
      await waitUntil(
        async () => {
          counts = await Promise.all(gateways.map(numClients));
          return counts.reduce((a, b) => a + b, 0) === 6;
        },
        5000,
        () => `6 clients over the gateways, have ${counts}`,
      );
      assert.ok(counts.filter((n) => n > 0).length >= 2, `connections not spread: ${counts}`);

      // A gateway that has clients dies without a goodbye.
      const victim = counts.findIndex((n) => n > 0);
      const onVictim = counts[victim]!;
      const survivors = gateways.filter((_, i) => i !== victim);
      const server = `gw${victim + 1}`;
      gateways[victim]!.process.kill('SIGKILL');

      // Before HAProxy has noticed, new connections still succeed (retry and redispatch).
      for (let i = 0; i < 3; i++) clients.push(await connectThrough(proxy.url, `early-${i}`));

      let states: Record<string, string> = {};
      await waitUntil(
        async () => {
          states = await proxy.servers();
          return states[server] === 'DOWN';
        },
        10_000,
        () => `HAProxy to mark ${server} down, states ${JSON.stringify(states)}`,
      );
      assert.deepEqual(
        Object.entries(states)
          .filter(([name]) => name !== server)
          .map(([, state]) => state),
        ['UP', 'UP'],
      );

      // The dead gateway's clients were cut; the others stay connected.
      await waitUntil(
        () => clients.filter((c) => c.closeCode !== undefined).length === onVictim,
        5000,
        () => `${onVictim} clients of ${server} to be closed`,
      );

      for (let i = 0; i < 6; i++) clients.push(await connectThrough(proxy.url, `late-${i}`));
      const open = clients.filter((c) => c.closeCode === undefined).length;
      let after: number[] = [];
      await waitUntil(
        async () => {
          after = await Promise.all(survivors.map(numClients));
          return after.reduce((a, b) => a + b, 0) === open;
        },
        5000,
        () => `${open} clients on the surviving gateways, have ${after}`,
      );
      assert.equal(open, 6 - onVictim + 3 + 6);
    },
  );
});

describe('nats-server of the test harness', () => {
  let nats: Nats | undefined;

  before(async () => {
    nats = await startNats();
  });

  after(async () => {
    await nats?.stop();
  });

  test('restarts on the same ports and keeps its JetStream store', { timeout: 60_000 }, async () => {
    const server = nats!;
    let nc = await connect({ servers: server.url });
    try {
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name: 'HARNESS', subjects: ['harness.>'] });
      await jetstream(nc).publish('harness.kept', 'hello');
    } finally {
      await nc.close();
    }

    await server.restart();
    const res = await fetch(`http://127.0.0.1:${server.monitorPort}/healthz`);
    assert.equal(res.status, 200);
    assert.ok(existsSync(join(server.storeDir, 'jetstream')), 'JetStream store directory is gone');
    assert.ok(readdirSync(join(server.storeDir, 'jetstream')).length > 0);

    nc = await connect({ servers: server.url });
    try {
      const info = await (await jetstreamManager(nc)).streams.info('HARNESS');
      assert.equal(info.state.messages, 1);
    } finally {
      await nc.close();
    }

    // A crash (SIGKILL) and a restart keep the store as well.
    await server.stop('SIGKILL');
    await server.restart();
    nc = await connect({ servers: server.url });
    try {
      const info = await (await jetstreamManager(nc)).streams.info('HARNESS');
      assert.equal(info.state.messages, 1);
    } finally {
      await nc.close();
    }
  });
});
