/**
 * Server API publish `idempotency_key` (a retry within the window is stored
 * and delivered once and answers the first result) and `version` /
 * `version_epoch` (a publication not newer than the channel's last is
 * dropped), against one gateway and a cluster over nats-server, with a real
 * centrifuge-js subscriber; bad values refused alone. A publish whose
 * attempts went unanswered (nats-server stopped with SIGSTOP) is refused as
 * one that may still be stored, and a retry with its key finds it stored.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Centrifuge, PublicationContext } from 'centrifuge';
import { IdempotentResults } from '../src/idempotency.js';
import { outdated } from '../src/history.js';
import { HISTORY_UNANSWERED } from '../src/node.js';
import { type Cluster, type Nats, startCluster, startNats } from './cluster.js';
import { api, connectedClient, type Gateway, nextEvent, startGateway, waitUntil } from './harness.js';

const NAMESPACES = JSON.stringify([
  { name: 'h', history_size: 20, history_ttl: 300, allow_subscribe_for_client: true },
  { name: 'plain', allow_subscribe_for_client: true },
]);

type Result = { offset?: number; epoch?: string };

const publish = async (gateway: Pick<Gateway, 'internalUrl'>, params: object) =>
  (await api(gateway, 'publish', params)).body;

/** What a centrifuge-js subscriber of `channel` receives (data only), until `done` arrives. */
async function subscriber(c: Centrifuge, channel: string) {
  const sub = c.newSubscription(channel);
  const got: unknown[] = [];
  sub.on('publication', (ctx: PublicationContext) => got.push(ctx.data));
  const subscribed = nextEvent(sub, 'subscribed');
  sub.subscribe();
  await subscribed;
  return {
    got,
    /** Publishes a last marker without key or version: everything before it has arrived once it has. */
    async settle(gateway: Pick<Gateway, 'internalUrl'>) {
      await publish(gateway, { channel, data: 'done' });
      await waitUntil(
        () => got.includes('done'),
        5000,
        () => `the marker, got ${JSON.stringify(got)}`,
      );
      return got.slice(0, -1);
    },
  };
}

describe('idempotent results (pure)', () => {
  let now = 0;
  const clock = () => now;

  test('one run per channel and key within the TTL; concurrent calls share it', async () => {
    const results = new IdempotentResults<number>(1000, 10, clock);
    let runs = 0;
    const run = async () => ++runs;
    const [a, b] = await Promise.all([
      results.once('c', 'k', run, () => false),
      results.once('c', 'k', run, () => false),
    ]);
    assert.deepEqual([a, b, runs], [1, 1, 1]);
    assert.equal(await results.once('other', 'k', run, () => false), 2);
    now = 1000;
    assert.equal(await results.once('c', 'k', run, () => false), 3, 'expired: runs again');
  });

  test('a failed or thrown run is forgotten, so that a retry runs', async () => {
    const results = new IdempotentResults<number>(1000, 10, clock);
    assert.equal(
      await results.once(
        'c',
        'k',
        async () => -1,
        (r) => r < 0,
      ),
      -1,
    );
    assert.equal(
      await results.once(
        'c',
        'k',
        async () => 7,
        (r) => r < 0,
      ),
      7,
    );
    await assert.rejects(
      results.once(
        'c',
        'x',
        () => Promise.reject(new Error('down')),
        () => false,
      ),
    );
    assert.equal(
      await results.once(
        'c',
        'x',
        async () => 8,
        () => false,
      ),
      8,
    );
  });

  test('bounded: beyond the most kept, the oldest results go first', async () => {
    const results = new IdempotentResults<number>(60_000, 3, clock);
    for (let i = 0; i < 10; i++)
      await results.once(
        'c',
        String(i),
        async () => i,
        () => false,
      );
    assert.equal(results.size, 3);
    assert.equal(
      await results.once(
        'c',
        '9',
        async () => -9,
        () => false,
      ),
      9,
      'the newest is kept',
    );
    assert.equal(
      await results.once(
        'c',
        '0',
        async () => -0.5,
        () => false,
      ),
      -0.5,
      'the oldest is gone',
    );
  });
});

describe('outdated (pure, publication versions)', () => {
  test('not newer in the same epoch, or with an empty one, is outdated', () => {
    const top = { version: 5, epoch: 'a' };
    assert.equal(outdated(top, { version: 5, epoch: 'a' }), true);
    assert.equal(outdated(top, { version: 4, epoch: '' }), true);
    assert.equal(outdated(top, { version: 6, epoch: 'a' }), false);
    assert.equal(outdated(top, { version: 1, epoch: 'b' }), false, 'a new epoch starts over');
    assert.equal(outdated(top, { version: 0, epoch: 'a' }), false, 'no version: never dropped');
    assert.equal(outdated(undefined, { version: 1, epoch: 'a' }), false);
  });
});

describe('idempotency_key and version (one gateway)', () => {
  let gateway: Gateway;
  const clients: Centrifuge[] = [];

  before(async () => {
    gateway = await startGateway({ SWITCHBOARD_NAMESPACES: NAMESPACES });
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    await gateway.stop();
  });

  test('a retried publish is stored and delivered once and answers the same offset and epoch', async () => {
    const s = await subscriber(await connectedClient(gateway, 'ann', clients), 'h:retry');
    const first = await publish(gateway, { channel: 'h:retry', data: 1, idempotency_key: 'k1' });
    assert.ok((first.result as Result).offset! > 0);
    const retry = await publish(gateway, { channel: 'h:retry', data: 'other', idempotency_key: 'k1' });
    assert.deepEqual(retry.result, first.result);
    // Racing duplicates collapse too.
    const racing = await Promise.all(
      [2, 3, 4].map((n) => publish(gateway, { channel: 'h:retry', data: n, idempotency_key: 'k2' })),
    );
    assert.equal(new Set(racing.map((r) => JSON.stringify(r.result))).size, 1);
    // The same key on another channel is another publication.
    const elsewhere = await publish(gateway, { channel: 'h:retry-2', data: 1, idempotency_key: 'k1' });
    assert.equal((elsewhere.result as Result).offset, 1);
    const got = await s.settle(gateway);
    assert.equal(got.length, 2);
    assert.equal(got[0], 1);
    const history = (await api(gateway, 'history', { channel: 'h:retry', limit: 10 })).body.result;
    assert.equal(history.publications.length, 3, 'two and the marker');
  });

  test('without history too, and per channel in a broadcast', async () => {
    const s = await subscriber(await connectedClient(gateway, 'bob', clients), 'plain:retry');
    for (let i = 0; i < 3; i++)
      assert.deepEqual(await publish(gateway, { channel: 'plain:retry', data: 'x', idempotency_key: 'p' }), {
        result: {},
      });
    const broadcast = { channels: ['h:b1', 'h:b2'], data: 'b', idempotency_key: 'bk' };
    const once = (await api(gateway, 'broadcast', broadcast)).body.result;
    const twice = (await api(gateway, 'broadcast', broadcast)).body.result;
    assert.deepEqual(twice, once);
    assert.deepEqual(
      once.responses.map((r: { result: Result }) => r.result.offset),
      [1, 1],
    );
    assert.deepEqual(await s.settle(gateway), ['x']);
  });

  test('version: an outdated publication is dropped and answered with the position; a new epoch starts over', async () => {
    const s = await subscriber(await connectedClient(gateway, 'cid', clients), 'h:versions');
    const send = (data: unknown, version: number, version_epoch?: string) =>
      publish(gateway, { channel: 'h:versions', data, version, ...(version_epoch ? { version_epoch } : {}) });
    const v2 = (await send('v2', 2, 'e1')).result as Result;
    assert.deepEqual((await send('v1', 1, 'e1')).result, v2);
    assert.deepEqual((await send('v2 again', 2)).result, v2, 'an empty epoch compares with any');
    const v3 = (await send('v3', 3, 'e1')).result as Result;
    assert.equal(v3.offset, v2.offset! + 1);
    assert.equal(((await send('e2 v1', 1, 'e2')).result as Result).offset, v3.offset! + 1);
    assert.deepEqual(await s.settle(gateway), ['v2', 'v3', 'e2 v1']);
  });

  test('bad values are refused with 107 naming the field; the next request is served', async () => {
    const bad: [object, RegExp][] = [
      [{ idempotency_key: 5 }, /idempotency_key must be a string/],
      [{ idempotency_key: 'k'.repeat(257) }, /idempotency_key longer than 256 characters/],
      [{ version: -1 }, /version must be a non-negative integer/],
      [{ version: 1.5 }, /version must be a non-negative integer/],
      [{ version: '3' }, /version must be a non-negative integer/],
      [{ version: 2 ** 64 }, /version must be a non-negative integer/],
      [{ version: 1, version_epoch: ['e'] }, /version_epoch must be a string/],
    ];
    for (const [params, message] of bad) {
      const body = await publish(gateway, { channel: 'h:bad', data: 1, ...params });
      assert.equal(body.error?.code, 107, JSON.stringify(params));
      assert.match(body.error?.message ?? '', message);
    }
    const history = (await api(gateway, 'history', { channel: 'h:bad', limit: 10 })).body.result;
    assert.equal(history.publications.length, 0, 'nothing refused was stored');
    const ok = await publish(gateway, { channel: 'h:bad', data: 1, idempotency_key: 'k'.repeat(256) });
    assert.equal((ok.result as Result).offset, 1);
  });
});

describe('idempotency_key and version (cluster over NATS)', () => {
  let cluster: Cluster;
  const clients: Centrifuge[] = [];

  before(async () => {
    cluster = await startCluster({ gateways: 2, env: { SWITCHBOARD_NAMESPACES: NAMESPACES } });
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    await cluster?.stop();
  });

  test('a retry through another gateway is stored once and answers the first result', async () => {
    const [gw1, gw2] = cluster.gateways as [Gateway, Gateway];
    const s = await subscriber(await connectedClient(gw2, 'dan', clients), 'h:cluster');
    const first = await publish(gw1, { channel: 'h:cluster', data: 1, idempotency_key: 'ck' });
    assert.equal((first.result as Result).offset, 1);
    // Another publication in between: the retry's expected last sequence is stale, its id is not.
    await publish(gw1, { channel: 'h:cluster', data: 2 });
    const retry = await publish(gw2, { channel: 'h:cluster', data: 'retry', idempotency_key: 'ck' });
    assert.deepEqual(retry.result, first.result);
    assert.deepEqual(await s.settle(gw1), [1, 2]);
  });

  test('without history: a retry through another gateway is delivered once, cluster-wide (a claimed key in NATS KV)', async () => {
    const [gw1, gw2] = cluster.gateways as [Gateway, Gateway];
    const [on1, on2] = [
      await subscriber(await connectedClient(gw1, 'fay', clients), 'plain:cluster'),
      await subscriber(await connectedClient(gw2, 'gus', clients), 'plain:cluster'),
    ];
    assert.deepEqual(await publish(gw1, { channel: 'plain:cluster', data: 1, idempotency_key: 'pk' }), {
      result: {},
    });
    assert.deepEqual(await publish(gw2, { channel: 'plain:cluster', data: 'retry', idempotency_key: 'pk' }), {
      result: {},
    });
    // The same key on another channel is another publication.
    await publish(gw2, { channel: 'plain:cluster-2', data: 'other', idempotency_key: 'pk' });
    assert.deepEqual(await on1.settle(gw2), [1]);
    await waitUntil(() => on2.got.includes('done'));
    assert.deepEqual(on2.got, [1, 'done']);
  });

  test('version is compared with what any gateway stored last', async () => {
    const [gw1, gw2] = cluster.gateways as [Gateway, Gateway];
    const s = await subscriber(await connectedClient(gw1, 'eve', clients), 'h:cluster-v');
    const v5 = (await publish(gw1, { channel: 'h:cluster-v', data: 'v5', version: 5 })).result as Result;
    assert.deepEqual((await publish(gw2, { channel: 'h:cluster-v', data: 'v4', version: 4 })).result, v5);
    const v6 = (await publish(gw2, { channel: 'h:cluster-v', data: 'v6', version: 6 })).result as Result;
    assert.equal(v6.offset, v5.offset! + 1);
    // gw1 remembers v5 as the last: it must read what gw2 stored, not drop v6 again nor take v5.
    assert.deepEqual(
      (await publish(gw1, { channel: 'h:cluster-v', data: 'v5 again', version: 5 })).result,
      v6,
    );
    assert.deepEqual(await s.settle(gw2), ['v5', 'v6']);
  });
});

describe('a publish left unanswered (nats-server stopped with SIGSTOP)', () => {
  let nats: Nats;
  let gateway: Gateway;
  const clients: Centrifuge[] = [];

  before(async () => {
    nats = await startNats();
    gateway = await startGateway({
      SWITCHBOARD_BROKER: 'nats',
      SWITCHBOARD_NATS_URL: nats.url,
      SWITCHBOARD_NAMESPACES: NAMESPACES,
      SWITCHBOARD_PUBLISH_TIMEOUT: '2500',
      // The connection is not given up on while the server is stopped: the requests wait in its socket.
      SWITCHBOARD_NATS_PING_INTERVAL: '30000',
    });
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    await gateway?.stop();
    await nats?.stop();
  });

  test('is answered "may still be stored"; stored once after SIGCONT; a retry with its key answers where it was stored', async () => {
    const channel = 'h:unanswered';
    const s = await subscriber(await connectedClient(gateway, 'hal', clients), channel);
    const first = (await publish(gateway, { channel, data: 1 })).result as Result;
    const pid = nats.pid()!;
    process.kill(pid, 'SIGSTOP');
    let refused: Awaited<ReturnType<typeof publish>>;
    try {
      refused = await publish(gateway, { channel, data: 2, idempotency_key: 'u' });
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    assert.deepEqual(refused.error, HISTORY_UNANSWERED);
    assert.equal(HISTORY_UNANSWERED.message, 'history unavailable: the publication may still be stored');
    assert.deepEqual([HISTORY_UNANSWERED.code, HISTORY_UNANSWERED.temporary], [100, true]);
    // The server reads the attempts it was sent: the first is stored, the rest are its duplicates.
    const retry = await publish(gateway, { channel, data: 2, idempotency_key: 'u' });
    assert.deepEqual(retry.result, { offset: first.offset! + 1, epoch: first.epoch });
    assert.deepEqual(await s.settle(gateway), [1, 2]);
    const history = (await api(gateway, 'history', { channel, limit: 10 })).body.result;
    assert.equal(history.publications.length, 3, 'two and the marker');
  });
});
