/** The gRPC server API against the real gateway process, with a grpc-js client loaded from the same proto. */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import type { Centrifuge, DisconnectedContext, PublicationContext, Subscription } from 'centrifuge';
import { apiClient } from './grpc-client.js';
import { API_KEY, client, type Gateway, nextEvent, startGateway, token } from './harness.js';

const bytes = (value: unknown) => Buffer.from(JSON.stringify(value));
const parse = (b: Buffer) => JSON.parse(b.toString('utf8'));

describe('gRPC server API', () => {
  let gateway: Gateway;
  let api: ReturnType<typeof apiClient>;
  let alice: Centrifuge;
  let sub: Subscription;
  let aliceId = '';
  const clients: Centrifuge[] = [];

  before(async () => {
    gateway = await startGateway();
    api = apiClient(gateway.grpcPort);
    alice = client(gateway, { token: await token({ sub: 'u1', info: { name: 'alice' } }) });
    clients.push(alice);
    const connected = nextEvent<{ client: string }>(alice, 'connected');
    alice.connect();
    aliceId = (await connected).client;
    sub = alice.newSubscription('chat:grpc');
    const subscribed = nextEvent(sub, 'subscribed');
    sub.subscribe();
    await subscribed;
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    api?.close();
    if (gateway) assert.equal(await gateway.stop(), 0, gateway.output());
  });

  test('publish reaches a subscribed client; history returns it', async () => {
    const received = nextEvent<PublicationContext>(sub, 'publication');
    const reply = await api.call('Publish', {
      channel: 'chat:grpc',
      data: bytes({ text: 'hi' }),
      tags: { k: 'v' },
    });
    assert.equal(reply.error, null);
    assert.equal(reply.result.offset, 1);
    assert.notEqual(reply.result.epoch, '');
    const pub = await received;
    assert.deepEqual(pub.data, { text: 'hi' });
    assert.deepEqual(pub.tags, { k: 'v' });

    const history = await api.call('History', { channel: 'chat:grpc', limit: 10 });
    assert.equal(history.error, null);
    assert.equal(history.result.offset, 1);
    assert.equal(history.result.epoch, reply.result.epoch);
    assert.equal(history.result.publications.length, 1);
    const [first] = history.result.publications;
    assert.deepEqual(parse(first.data), { text: 'hi' });
    assert.equal(first.offset, 1);
    assert.deepEqual(first.tags, { k: 'v' });

    const since = await api.call('History', {
      channel: 'chat:grpc',
      limit: 10,
      since: { offset: 1, epoch: reply.result.epoch },
    });
    assert.equal(since.error, null);
    assert.deepEqual(since.result.publications, []);
  });

  test('broadcast answers per channel', async () => {
    const received = nextEvent<PublicationContext>(sub, 'publication');
    const reply = await api.call('Broadcast', { channels: ['chat:grpc', 'nope:x'], data: bytes('all') });
    assert.equal(reply.error, null);
    const [ok, failed] = reply.result.responses;
    assert.equal(ok.error, null);
    assert.equal(ok.result.offset, 2);
    assert.equal(failed.error.code, 102);
    assert.equal((await received).data, 'all');
  });

  test('presence, presence stats, channels and info', async () => {
    const presence = await api.call('Presence', { channel: 'chat:grpc' });
    assert.equal(presence.error, null);
    assert.deepEqual(Object.keys(presence.result.presence), [aliceId]);
    const info = presence.result.presence[aliceId];
    assert.equal(info.user, 'u1');
    assert.equal(info.client, aliceId);
    assert.deepEqual(parse(info.conn_info), { name: 'alice' });

    const stats = await api.call('PresenceStats', { channel: 'chat:grpc' });
    assert.deepEqual(stats.result, { num_clients: 1, num_users: 1 });

    const channels = await api.call('Channels', { pattern: 'chat:*' });
    assert.deepEqual(channels.result.channels, { 'chat:grpc': { num_clients: 1 } });

    const { nodes, services } = (await api.call('Info', {})).result;
    assert.deepEqual(services, [], 'embedded services are not announced');
    assert.equal(nodes.length, 1);
    assert.equal(nodes[0].num_clients, 1);
    assert.equal(nodes[0].num_users, 1);
    assert.notEqual(nodes[0].uid, '');
  });

  test('a missing or wrong API key is UNAUTHENTICATED; authorization: apikey works', async () => {
    const keys: Record<string, string>[] = [{}, { 'x-api-key': 'wrong' }, { authorization: 'apikey wrong' }];
    for (const metadata of keys) {
      await assert.rejects(api.call('Info', {}, metadata), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.UNAUTHENTICATED);
        return true;
      });
    }
    const reply = await api.call('Info', {}, { authorization: `apikey ${API_KEY}` });
    assert.equal(reply.error, null);
  });

  test('API errors come back in the response', async () => {
    const unknown = await api.call('Publish', { channel: 'nope:x', data: bytes(1) });
    assert.equal(unknown.error?.code, 102);
    assert.equal(unknown.result, null);

    const noData = await api.call('Publish', { channel: 'chat:grpc' });
    assert.equal(noData.error?.code, 107);
    assert.match(noData.error?.message ?? '', /data is required/);

    const badJson = await api.call('Publish', { channel: 'chat:grpc', data: Buffer.from('{not json') });
    assert.equal(badJson.error?.code, 107);
    assert.match(badJson.error?.message ?? '', /data must hold valid UTF-8 JSON/);

    const badInfo = await api.call('Subscribe', { user: 'u1', channel: 'chat:x', info: Buffer.from([0xff]) });
    assert.equal(badInfo.error?.code, 107);

    const noHistory = await api.call('History', { channel: 'news' });
    assert.equal(noHistory.error?.code, 108);

    const badCode = await api.call('Disconnect', { user: 'u1', disconnect: { code: 1, reason: 'x' } });
    assert.equal(badCode.error?.code, 107);
  });

  test('server-side subscribe and unsubscribe', async () => {
    const subscribed = nextEvent<{ channel: string }>(alice, 'subscribed');
    const reply = await api.call('Subscribe', {
      user: 'u1',
      channel: 'chat:server',
      info: bytes({ role: 'x' }),
    });
    assert.equal(reply.error, null);
    assert.equal((await subscribed).channel, 'chat:server');
    const presence = await api.call('Presence', { channel: 'chat:server' });
    assert.deepEqual(parse(presence.result.presence[aliceId].chan_info), { role: 'x' });

    const unsubscribed = nextEvent<{ channel: string }>(alice, 'unsubscribed');
    assert.equal((await api.call('Unsubscribe', { user: 'u1', channel: 'chat:server' })).error, null);
    assert.equal((await unsubscribed).channel, 'chat:server');
  });

  test('history remove', async () => {
    assert.equal((await api.call('HistoryRemove', { channel: 'chat:grpc' })).error, null);
    const history = await api.call('History', { channel: 'chat:grpc', limit: 10 });
    assert.deepEqual(history.result.publications, []);
  });

  test('disconnect closes the client', async () => {
    const bob = client(gateway, { token: await token({ sub: 'u2' }) });
    clients.push(bob);
    const connected = nextEvent(bob, 'connected');
    bob.connect();
    await connected;
    const disconnected = nextEvent<DisconnectedContext>(bob, 'disconnected');
    const reply = await api.call('Disconnect', { user: 'u2', disconnect: { code: 4501, reason: 'bye' } });
    assert.equal(reply.error, null);
    const ctx = await disconnected;
    assert.equal(ctx.code, 4501);
    assert.equal(ctx.reason, 'bye');
    assert.equal(alice.state, 'connected');
  });

  test('refresh: expired closes the connection with 3005; a negative expire_at is refused', async () => {
    const carol = client(gateway, { token: await token({ sub: 'u3' }) });
    clients.push(carol);
    const connected = nextEvent(carol, 'connected');
    carol.connect();
    await connected;
    const bad = await api.call('Refresh', { user: 'u3', expire_at: -1 });
    assert.equal(bad.error?.code, 107);
    const connecting = nextEvent<{ code: number }>(carol, 'connecting');
    const reply = await api.call('Refresh', { user: 'u3', expired: true });
    assert.equal(reply.error, null);
    assert.equal((await connecting).code, 3005);
    assert.equal(alice.state, 'connected');
  });

  test('calls are counted in metrics by method and outcome', async () => {
    const text = await (await fetch(`${gateway.internalUrl}/metrics`)).text();
    const count = (method: string, outcome: string) =>
      Number(
        new RegExp(
          `^switchboard_api_requests_total\\{protocol="grpc",method="${method}",outcome="${outcome}"\\} (\\d+)`,
          'm',
        ).exec(text)?.[1] ?? 0,
      );
    assert.equal(count('info', 'unauthorized'), 3);
    assert.ok(count('info', 'ok') >= 2);
    assert.equal(count('publish', 'ok'), 1);
    assert.equal(count('publish', 'error'), 3);
  });
});
