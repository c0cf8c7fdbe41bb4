/**
 * No single point of failure in the core: three gateways over a JetStream
 * cluster of three nats-servers (TLS for clients and routes, the gateways'
 * least-privilege NATS user), history and KV buckets with three replicas.
 * Under steady publishing, with a subscriber on every gateway: SIGKILL of the
 * node leading the channel's stream, and a rolling restart of all three,
 * lose, duplicate and refuse nothing.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { connectNats } from '@switchboard/sdk';
import { jetstreamManager } from '@nats-io/jetstream';
import type { Centrifuge } from 'centrifuge';
import { authorizationConfig, defaultUsers, passwordVariable, permitted } from '../src/nats-users.js';
import { type NatsCluster, startNatsCluster } from './cluster.js';
import { client, type Gateway, metric, nextEvent, startGateway, token, waitUntil } from './harness.js';
import { createPki } from './pki.js';
import { assertGotExactly, finishTraffic, publisher, type Subscriber, subscribe } from './traffic.js';

describe('a JetStream cluster of three under the gateways', () => {
  let nats: NatsCluster;
  const gateways: Gateway[] = [];
  const clients: Centrifuge[] = [];

  const pki = createPki();
  const password = `p${randomBytes(16).toString('hex')}`;

  before(async () => {
    // As in production: TLS for clients and routes, and the gateways' least-privilege NATS user.
    nats = await startNatsCluster(3, {
      tls: { ...pki.issue('nats', ['127.0.0.1', 'localhost']), caFile: pki.caFile },
      config: authorizationConfig('sb', ['chat'], permitted('sb', ['chat'], defaultUsers([]))),
      env: Object.fromEntries(defaultUsers([]).map((u) => [passwordVariable(u.user), password])),
    });
    for (let i = 0; i < 3; i++)
      gateways.push(
        await startGateway({
          SWITCHBOARD_NODE_ID: `ha${i + 1}`,
          SWITCHBOARD_BROKER: 'nats',
          SWITCHBOARD_NATS_URL: nats.urls,
          SWITCHBOARD_NATS_TLS_CA: pki.caFile,
          SWITCHBOARD_NATS_USER: 'gateway',
          SWITCHBOARD_NATS_PASSWORD: password,
          // Recovery bridges what a leader change hides only if history holds that long: here
          // 2,000 publications, 40 s at the publisher's rate (size it so in production too).
          SWITCHBOARD_NAMESPACES: JSON.stringify([
            {
              name: 'chat',
              history_size: 2000,
              history_ttl: 300,
              recovery: true,
              allow_subscribe_for_client: true,
            },
          ]),
        }),
      );
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    await Promise.all(gateways.map((g) => g.stop()));
    await nats.stop();
  });

  /** One subscriber of `channel` on every gateway. */
  async function subscribers(channel: string): Promise<Subscriber[]> {
    return Promise.all(
      gateways.map(async (g, i) => {
        const c = client(g, { token: await token({ sub: `${channel}-${i}` }) });
        clients.push(c);
        c.connect();
        await nextEvent(c, 'connected', 10_000);
        return subscribe(c, channel);
      }),
    );
  }

  /** Every number from 1 on was accepted: nothing was refused. */
  const noneRefused = (accepted: number[]) =>
    assert.deepEqual(
      accepted,
      Array.from({ length: accepted.length }, (_, i) => i + 1),
      'refused publishes',
    );

  test('history streams and KV buckets have three replicas', async () => {
    const nc = await connectNats({
      servers: nats.urls.split(','),
      name: 'ha test',
      user: 'gateway',
      password,
      tlsCa: pki.caFile,
    });
    try {
      const jsm = await jetstreamManager(nc);
      assert.equal((await jsm.streams.info('SB_HIST_chat')).config.num_replicas, 3);
      for (const bucket of ['presence', 'gateways', 'services'])
        assert.equal((await jsm.streams.info(`KV_sb_${bucket}`)).config.num_replicas, 3, bucket);
    } finally {
      await nc.close();
    }
  });

  test('SIGKILL of the stream leader: nothing lost, duplicated or refused', async () => {
    const subs = await subscribers('chat:leader-kill');
    const pub = publisher(() => gateways[0]!, 'chat:leader-kill');
    await waitUntil(
      () => subs.every((s) => s.got.length >= 20),
      10_000,
      () => 'traffic before the kill',
    );
    const leader = await nats.leaderOf('SB_HIST_chat');
    assert.ok(leader, 'the stream has a leader');
    await leader.stop('SIGKILL');
    const accepted = await finishTraffic(pub, subs, 50, 'the leader kill');
    noneRefused(accepted);
    for (const [i, s] of subs.entries()) assertGotExactly(s, accepted, `subscriber ${i}`);
    // The leader change was waited out inside the gateway, and counted.
    assert.ok(
      (await metric(gateways[0]!, 'switchboard_jetstream_retries_total', ['reason="unavailable"'])) > 0,
    );
    await leader.restart();
  });

  test('a rolling restart of all three nodes: nothing lost or refused', async () => {
    const subs = await subscribers('chat:rolling');
    const pub = publisher(() => gateways[1]!, 'chat:rolling');
    for (const node of nats.nodes) {
      const before = pub.accepted.length;
      await waitUntil(
        () => pub.accepted.length >= before + 20,
        20_000,
        () => `traffic before restarting ${node.url}`,
      );
      // restart() waits for /healthz, which nats-server answers once its streams are current again.
      await node.restart();
      await waitUntil(
        async () => (await nats.leaderOf('SB_HIST_chat')) !== undefined,
        20_000,
        () => 'a stream leader after the restart',
      );
    }
    const accepted = await finishTraffic(pub, subs, 30, 'the rolling restart');
    noneRefused(accepted);
    for (const [i, s] of subs.entries()) assertGotExactly(s, accepted, `subscriber ${i}`);
  });
});
