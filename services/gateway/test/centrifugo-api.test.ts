/**
 * The server API as Centrifugo v6 users already call it, against real
 * gateway processes: the `centrifugal.centrifugo.api.CentrifugoApi` gRPC
 * service through a grpc-js client loaded from the Centrifugo-shaped proto
 * (as code generated from Centrifugo's schema would be), and the HTTP API the
 * way server API libraries (cent, gocent, phpcent) call it: batch, refresh,
 * `?api_key=`, transport error mode; hostile input too. Cluster behaviour
 * (actions reaching a connection on another gateway) over a real nats-server.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Centrifuge, PublicationContext, Subscription } from 'centrifuge';
import { type NatsGateways, startNatsGateways } from './cluster.js';
import {
  API_KEY,
  client,
  type Gateway,
  metric,
  nextEvent,
  RawClient,
  RawClients,
  startGateway,
  token,
} from './harness.js';

/** Compiled to `dist/test/centrifugo-api.test.js`. */
const PROTO_PATH = fileURLToPath(
  new URL('../../proto/centrifugal/centrifugo/api/api.proto', import.meta.url),
);
const SERVICE = 'centrifugal.centrifugo.api.CentrifugoApi';
const BATCH_MAX = 4;
/** The HTTP gateway's: the malformed-commands batch has 7. */
const HTTP_BATCH_MAX = 8;

const bytes = (value: unknown) => Buffer.from(JSON.stringify(value));
const parse = (b: Buffer) => JSON.parse(b.toString('utf8'));
const nowSeconds = () => Math.floor(Date.now() / 1000);

// Decoded proto messages are untyped here; the assertions check their shape.
type Reply = { error: { code: number; message: string } | null; result: any };

/** Centrifugo's per-RPC credentials: `authorization: apikey <key>`. */
const CENTRIFUGO_AUTH = { authorization: `apikey ${API_KEY}` };

function centrifugoClient(port: number) {
  const definition = protoLoader.loadSync(PROTO_PATH, {
    keepCase: true,
    longs: Number,
    defaults: true,
    oneofs: true,
  });
  const service = definition[SERVICE] as grpc.ServiceDefinition;
  const Client = grpc.makeGenericClientConstructor(service, 'CentrifugoApi');
  const stub = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const metadataOf = (entries: Record<string, string>) => {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(entries)) md.set(k, v);
    return md;
  };
  const call = (rpc: string, request: object, metadata: Record<string, string> = CENTRIFUGO_AUTH) =>
    new Promise<any>((resolve, reject) => {
      const method = stub[rpc];
      if (typeof method !== 'function') throw new Error(`no rpc ${rpc}`);
      method.call(
        stub,
        request,
        metadataOf(metadata),
        { deadline: Date.now() + 5000 },
        (err: grpc.ServiceError | null, reply: unknown) => (err ? reject(err) : resolve(reply)),
      );
    });
  /** A call of any path with request bytes as they are: what a client of Centrifugo's full schema may send. */
  const raw = (path: string, request: Buffer, decode: (b: Buffer) => unknown = (b) => b) =>
    new Promise<any>((resolve, reject) => {
      stub.makeUnaryRequest(
        path,
        (b: Buffer) => b,
        decode,
        request,
        metadataOf(CENTRIFUGO_AUTH),
        { deadline: Date.now() + 5000 },
        (err, reply) => (err ? reject(err) : resolve(reply)),
      );
    });
  const batchResponse = (service.Batch as grpc.MethodDefinition<unknown, unknown>).responseDeserialize;
  return { call, raw, batchResponse, close: () => stub.close() };
}

/** The status a rejected gRPC call failed with. */
async function failsWith(call: Promise<unknown>, code: grpc.status, details?: RegExp): Promise<void> {
  await assert.rejects(call, (err: grpc.ServiceError) => {
    assert.equal(err.code, code, `${grpc.status[err.code]}: ${err.details}`);
    if (details) assert.match(err.details, details);
    return true;
  });
}

/** `POST /api/<method>` as cent and the other HTTP API libraries send it. */
async function httpApi(
  gateway: Pick<Gateway, 'internalUrl'>,
  method: string,
  body: unknown,
  headers: Record<string, string> = { 'X-API-Key': API_KEY },
  query = '',
) {
  const res = await fetch(`${gateway.internalUrl}/api/${method}${query}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as any };
}

/** A raw client connected with a token expiring in `ttl` seconds; its connect result. */
async function expiringClient(gateway: Gateway, raws: RawClients, user: string, ttl: number) {
  const raw = raws.add(new RawClient(gateway.wsUrl));
  await raw.open();
  raw.send({ id: 1, connect: { token: await token({ sub: user }, { expiresIn: ttl }) } });
  const reply = await raw.expect((m) => m.id === 1);
  assert.equal(reply.connect?.expires, true, JSON.stringify(reply));
  return { raw, clientId: reply.connect.client as string };
}

/** Waits for a reply to a command on `raw`: proof that the connection is still open. */
async function stillOpen(raw: RawClient, id: number): Promise<void> {
  raw.send({ id, presence_stats: { channel: 'nope:x' } });
  const reply = await raw.expect((m) => m.id === id);
  assert.equal(reply.error?.code, 102);
  assert.equal(raw.closeCode, undefined);
}

describe('Centrifugo gRPC API (CentrifugoApi)', () => {
  let gateway: Gateway;
  let api: ReturnType<typeof centrifugoClient>;
  let alice: Centrifuge;
  let sub: Subscription;
  let aliceId = '';
  const raws = new RawClients(() => gateway);

  before(async () => {
    gateway = await startGateway({
      SWITCHBOARD_API_BATCH_MAX_COMMANDS: String(BATCH_MAX),
      SWITCHBOARD_EXPIRED_CLOSE_DELAY: '0',
    });
    api = centrifugoClient(gateway.grpcPort);
    alice = client(gateway, { token: await token({ sub: 'alice', info: { name: 'alice' } }) });
    const connected = nextEvent<{ client: string }>(alice, 'connected');
    alice.connect();
    aliceId = (await connected).client;
    sub = alice.newSubscription('chat:cf');
    const subscribed = nextEvent(sub, 'subscribed');
    sub.subscribe();
    await subscribed;
  });

  after(async () => {
    alice?.disconnect();
    raws.terminate();
    api?.close();
    if (gateway) assert.equal(await gateway.stop(), 0, gateway.output());
  });

  test('publish with `authorization: apikey` reaches the subscriber; history, presence, stats, channels, info', async () => {
    const received = nextEvent<PublicationContext>(sub, 'publication');
    const published: Reply = await api.call('Publish', {
      channel: 'chat:cf',
      data: bytes({ text: 'from grpc' }),
      tags: { k: 'v' },
    });
    assert.equal(published.error, null);
    assert.equal(published.result.offset, 1);
    assert.notEqual(published.result.epoch, '');
    const pub = await received;
    assert.deepEqual(pub.data, { text: 'from grpc' });
    assert.deepEqual(pub.tags, { k: 'v' });

    const history: Reply = await api.call('History', { channel: 'chat:cf', limit: 10 });
    assert.equal(history.error, null);
    assert.equal(history.result.offset, 1);
    assert.equal(history.result.epoch, published.result.epoch);
    assert.equal(history.result.publications.length, 1);
    assert.deepEqual(parse(history.result.publications[0].data), { text: 'from grpc' });
    assert.equal(history.result.publications[0].offset, 1);

    const presence: Reply = await api.call('Presence', { channel: 'chat:cf' });
    assert.deepEqual(Object.keys(presence.result.presence), [aliceId]);
    assert.equal(presence.result.presence[aliceId].user, 'alice');
    assert.deepEqual(parse(presence.result.presence[aliceId].conn_info), { name: 'alice' });

    const stats: Reply = await api.call('PresenceStats', { channel: 'chat:cf' });
    assert.deepEqual(stats.result, { num_clients: 1, num_users: 1 });

    const channels: Reply = await api.call('Channels', { pattern: 'chat:*' });
    assert.deepEqual(channels.result.channels, { 'chat:cf': { num_clients: 1 } });

    const info: Reply = await api.call('Info', {});
    assert.equal(info.result.nodes.length, 1);
    assert.equal(info.result.nodes[0].num_clients, 1);
    assert.ok(info.result.nodes[0].process.rss > 0);
    assert.ok(!('services' in info.result), 'not a field of Centrifugo InfoResult');
  });

  test('x-api-key works too; a missing or wrong key is UNAUTHENTICATED', async () => {
    assert.equal((await api.call('Info', {}, { 'x-api-key': API_KEY })).error, null);
    const refused: Record<string, string>[] = [
      {},
      { authorization: 'apikey wrong' },
      { authorization: API_KEY },
    ];
    for (const metadata of refused) {
      await failsWith(api.call('Info', {}, metadata), grpc.status.UNAUTHENTICATED);
    }
  });

  test("Centrifugo's methods Switchboard lacks are UNIMPLEMENTED", async () => {
    // ConnectionsRequest{user: "x"} of Centrifugo's schema: field 1, string.
    await failsWith(
      api.raw(`/${SERVICE}/Connections`, Buffer.from([0x0a, 0x01, 0x78])),
      grpc.status.UNIMPLEMENTED,
    );
    await failsWith(api.raw(`/${SERVICE}/UpdateUserStatus`, Buffer.alloc(0)), grpc.status.UNIMPLEMENTED);
  });

  test("RPC: the gateway's and the services' methods (here the built-in echo), in a batch too; unknown is 104", async () => {
    const echoed = await api.call('RPC', { method: 'echo', params: bytes({ hi: 1 }) });
    assert.equal(echoed.error, null);
    assert.deepEqual(JSON.parse(echoed.result.data.toString()), { hi: 1 });
    assert.equal((await api.call('RPC', { method: 'nope:x' })).error.code, 104);
    const batch = await api.call('Batch', { commands: [{ rpc: { method: 'echo', params: bytes([2]) } }] });
    assert.deepEqual(JSON.parse(batch.replies[0].rpc.data.toString()), [2]);
  });

  test('batch: replies in order, each with its error or its result; parallel too', async () => {
    for (const parallel of [false, true]) {
      const received = nextEvent<PublicationContext>(sub, 'publication');
      const reply = await api.call('Batch', {
        parallel,
        commands: [
          { publish: { channel: 'chat:cf', data: bytes({ n: parallel ? 2 : 1 }) } },
          { publish: { channel: 'nope:x', data: bytes(1) } },
          { presence_stats: { channel: 'chat:cf' } },
          { publish: { channel: 'chat:cf', data: Buffer.from('{not json') } },
        ],
      });
      assert.equal(reply.replies.length, 4);
      const [ok, unknown, stats, badJson] = reply.replies;
      assert.equal(ok.error, null);
      assert.ok(ok.publish.offset > 1);
      assert.equal(unknown.error.code, 102);
      assert.equal(unknown.publish, null);
      assert.deepEqual(stats.presence_stats, { num_clients: 1, num_users: 1 });
      assert.equal(badJson.error.code, 107);
      assert.match(badJson.error.message, /data must hold valid UTF-8 JSON/);
      assert.deepEqual((await received).data, { n: parallel ? 2 : 1 });
    }
  });

  test('batch: a command of a method Switchboard lacks, or of none, is answered 104; the others run', async () => {
    // BatchRequest{commands: [Command{connections(17): ConnectionsRequest{user: "x"}}, Command{info(13): {}}]}:
    // Centrifugo's field numbers.
    const request = Buffer.from([0x0a, 0x06, 0x8a, 0x01, 0x03, 0x0a, 0x01, 0x78, 0x0a, 0x02, 0x6a, 0x00]);
    const reply = await api.raw(`/${SERVICE}/Batch`, request, api.batchResponse);
    assert.equal(reply.replies.length, 2);
    assert.equal(reply.replies[0].error.code, 104);
    assert.equal(reply.replies[1].error, null);
    assert.equal(reply.replies[1].info.nodes.length, 1);

    const empty = await api.call('Batch', { commands: [{}] });
    assert.equal(empty.replies[0].error.code, 104);
    const two = await api.call('Batch', { commands: [{ info: {}, channels: {} }] });
    assert.equal(two.replies[0].error.code, 107);
  });

  test('batch over SWITCHBOARD_API_BATCH_MAX_COMMANDS is refused whole with INVALID_ARGUMENT, none of it run', async () => {
    const before: Reply = await api.call('History', { channel: 'chat:cf' });
    const commands = Array.from({ length: BATCH_MAX + 1 }, () => ({
      publish: { channel: 'chat:cf', data: bytes('x') },
    }));
    await failsWith(
      api.call('Batch', { commands }),
      grpc.status.INVALID_ARGUMENT,
      /batch of 5 commands is over the limit of 4/,
    );
    const afterward: Reply = await api.call('History', { channel: 'chat:cf' });
    assert.equal(afterward.result.offset, before.result.offset);
    // At the limit it runs.
    const reply = await api.call('Batch', { commands: commands.slice(0, BATCH_MAX) });
    assert.equal(reply.replies.filter((r: any) => r.error === null).length, BATCH_MAX);
  });

  test('fields Switchboard cannot honour are refused with 108; delta is accepted (delta.test.ts has its frames)', async () => {
    const cases: [string, object, RegExp][] = [
      ['Publish', { channel: 'chat:cf', data: bytes(1), skip_history: true }, /skip_history/],
      ['Publish', { channel: 'chat:cf', data: bytes(1), b64data: 'AQ==' }, /b64data/],
      ['Subscribe', { user: 'alice', channel: 'chat:s', session: 's1' }, /session/],
      ['Subscribe', { user: 'alice', channel: 'chat:s', data: bytes(1) }, /data/],
      ['Disconnect', { user: 'alice', session: 's1' }, /session/],
      ['Refresh', { user: 'alice', session: 's1' }, /session/],
    ];
    for (const [rpc, request, field] of cases) {
      const reply: Reply = await api.call(rpc, request);
      assert.equal(reply.error?.code, 108, `${rpc} ${JSON.stringify(request)}`);
      assert.match(reply.error?.message ?? '', field);
    }
    assert.equal(alice.state, 'connected', 'the refused disconnect did nothing');
    const delta: Reply = await api.call('Publish', { channel: 'chat:cf', data: bytes(1), delta: true });
    assert.equal(delta.error, null);
  });

  test('idempotency_key and version over gRPC: a retry answers the first result, an outdated version is dropped', async () => {
    const first: Reply = await api.call('Publish', {
      channel: 'chat:idem',
      data: bytes(1),
      idempotency_key: 'g1',
    });
    assert.equal(first.error, null);
    const retry: Reply = await api.call('Publish', {
      channel: 'chat:idem',
      data: bytes(2),
      idempotency_key: 'g1',
    });
    assert.deepEqual(retry.result, first.result);
    const v5: Reply = await api.call('Publish', {
      channel: 'chat:idem',
      data: bytes(5),
      version: 5,
      version_epoch: 'x',
    });
    assert.equal(v5.result.offset, first.result.offset + 1);
    const v4: Reply = await api.call('Publish', {
      channel: 'chat:idem',
      data: bytes(4),
      version: 4,
      version_epoch: 'x',
    });
    assert.deepEqual(v4.result, v5.result, 'dropped: answered with the position');
    const history: Reply = await api.call('History', { channel: 'chat:idem', limit: 10 });
    assert.deepEqual(
      history.result.publications.map((p: { data: Buffer }) => parse(p.data)),
      [1, 5],
    );
    const long: Reply = await api.call('Publish', {
      channel: 'chat:idem',
      data: bytes(1),
      idempotency_key: 'k'.repeat(257),
    });
    assert.equal(long.error?.code, 107);
    assert.match(long.error?.message ?? '', /idempotency_key longer than 256/);
  });

  test('x-centrifugo-error-mode: transport turns API errors into gRPC status codes', async () => {
    const transport = { ...CENTRIFUGO_AUTH, 'x-centrifugo-error-mode': 'transport' };
    await failsWith(
      api.call('Publish', { channel: 'nope:x', data: bytes(1) }, transport),
      grpc.status.NOT_FOUND,
      /unknown channel/,
    );
    await failsWith(api.call('Publish', { channel: 'chat:cf' }, transport), grpc.status.INVALID_ARGUMENT);
    await failsWith(
      api.call('Publish', { channel: 'chat:cf', data: Buffer.from([0xff]) }, transport),
      grpc.status.INVALID_ARGUMENT,
    );
    await failsWith(api.call('History', { channel: 'news' }, transport), grpc.status.INVALID_ARGUMENT);
    // Successes are answered as ever; per-command errors of a batch stay in its replies.
    const ok = await api.call('Publish', { channel: 'chat:cf', data: bytes(1) }, transport);
    assert.equal(ok.error, null);
    const batch = await api.call(
      'Batch',
      { commands: [{ publish: { channel: 'nope:x', data: bytes(1) } }] },
      transport,
    );
    assert.equal(batch.replies[0].error.code, 102);
    // Without the metadata the error is in the response.
    assert.equal((await api.call('Publish', { channel: 'nope:x', data: bytes(1) })).error.code, 102);
  });

  test('disconnect: whitelist spares the connections it names', async () => {
    const spared = await expiringClient(gateway, raws, 'erin', 3600);
    const ended = await expiringClient(gateway, raws, 'erin', 3600);
    const reply: Reply = await api.call('Disconnect', {
      user: 'erin',
      whitelist: [spared.clientId],
      disconnect: { code: 4501, reason: 'replaced' },
    });
    assert.equal(reply.error, null);
    assert.deepEqual(await ended.raw.closed(), { code: 4501, reason: 'replaced' });
    await stillOpen(spared.raw, 2);
  });

  test('refresh: expired closes only the named connection with 3005', async () => {
    const first = await expiringClient(gateway, raws, 'carol', 3600);
    const second = await expiringClient(gateway, raws, 'carol', 3600);
    const reply: Reply = await api.call('Refresh', { user: 'carol', client: first.clientId, expired: true });
    assert.equal(reply.error, null);
    assert.equal((await first.raw.closed()).code, 3005);
    await stillOpen(second.raw, 2);
  });

  test('refresh: expire_at extends a connection past its token expiry; one already past closes it', async () => {
    // Two connections with the same token expiry (3 s, SWITCHBOARD_EXPIRED_CLOSE_DELAY=0): one is refreshed.
    const refreshed = await expiringClient(gateway, raws, 'dave', 3);
    const control = await expiringClient(gateway, raws, 'dave', 3);
    const reply: Reply = await api.call('Refresh', {
      user: 'dave',
      client: refreshed.clientId,
      expire_at: nowSeconds() + 3600,
    });
    assert.equal(reply.error, null);
    // The ticker closes the control at its expiry; the refreshed one, checked in the same tick, stays.
    assert.equal((await control.raw.closed(8000)).code, 3005);
    await stillOpen(refreshed.raw, 2);

    const past: Reply = await api.call('Refresh', { user: 'dave', expire_at: nowSeconds() - 10 });
    assert.equal(past.error, null);
    assert.equal((await refreshed.raw.closed()).code, 3005);
    assert.equal((await metric(gateway, 'switchboard_disconnects_total', ['reason="expired"'])) >= 3, true);
  });
});

describe('HTTP API as Centrifugo clients call it', () => {
  let gateway: Gateway;
  let alice: Centrifuge;
  let sub: Subscription;
  const raws = new RawClients(() => gateway);

  before(async () => {
    gateway = await startGateway({ SWITCHBOARD_API_BATCH_MAX_COMMANDS: String(HTTP_BATCH_MAX) });
    alice = client(gateway, { token: await token({ sub: 'alice' }) });
    alice.connect();
    await nextEvent(alice, 'connected');
    sub = alice.newSubscription('chat:http');
    const subscribed = nextEvent(sub, 'subscribed');
    sub.subscribe();
    await subscribed;
  });

  after(async () => {
    alice?.disconnect();
    raws.terminate();
    if (gateway) assert.equal(await gateway.stop(), 0, gateway.output());
  });

  test('POST /api/batch with X-API-Key: {"replies": [...]} in order, as Centrifugo answers', async () => {
    const received = nextEvent<PublicationContext>(sub, 'publication');
    const { status, body } = await httpApi(gateway, 'batch', {
      commands: [
        { publish: { channel: 'chat:http', data: { text: 'batched' } } },
        { publish: { channel: 'x:test2', data: {} } },
        { presence_stats: { channel: 'chat:http' } },
        { history: { channel: 'chat:http', limit: 5 } },
      ],
    });
    assert.equal(status, 200);
    assert.deepEqual(Object.keys(body), ['replies']);
    const [published, unknown, stats, history] = body.replies;
    assert.equal(published.publish.offset, 1);
    assert.deepEqual(unknown, { error: { code: 102, message: 'unknown channel' } });
    assert.deepEqual(stats, { presence_stats: { num_clients: 1, num_users: 1 } });
    assert.deepEqual(history.history.publications[0].data, { text: 'batched' });
    assert.deepEqual((await received).data, { text: 'batched' });

    const parallel = await httpApi(gateway, 'batch', {
      parallel: true,
      commands: [
        { publish: { channel: 'chat:http', data: 1 } },
        { publish: { channel: 'chat:http', data: 2 } },
      ],
    });
    const offsets = parallel.body.replies.map((r: any) => r.publish.offset).sort();
    assert.deepEqual(offsets, [2, 3]);
  });

  test('batch: unknown, nested and malformed commands get their own errors; malformed batches are refused', async () => {
    const { body } = await httpApi(gateway, 'batch', {
      commands: [
        { rpc: { method: 'x' } },
        { batch: { commands: [] } },
        {},
        { info: {}, channels: {} },
        'publish',
        { presence: 'chat:http' },
        { channels: null },
      ],
    });
    const codes = body.replies.map((r: any) => r.error?.code ?? 0);
    assert.deepEqual(codes, [104, 104, 107, 107, 107, 107, 0]);
    assert.deepEqual(Object.keys(body.replies[6]), ['channels']);

    for (const bad of [{}, { commands: {} }, { commands: [], parallel: 'yes' }]) {
      const refused = await httpApi(gateway, 'batch', bad);
      assert.equal(refused.status, 200);
      assert.equal(refused.body.error.code, 107, JSON.stringify(bad));
    }
    assert.deepEqual((await httpApi(gateway, 'batch', { commands: [] })).body, { replies: [] });
  });

  test('a batch over SWITCHBOARD_API_BATCH_MAX_COMMANDS is refused whole: 107, or HTTP 400 in transport mode', async () => {
    const before = await httpApi(gateway, 'history', { channel: 'chat:http' });
    const commands = Array.from({ length: HTTP_BATCH_MAX + 1 }, () => ({
      publish: { channel: 'chat:http', data: 1 },
    }));
    const refused = await httpApi(gateway, 'batch', { commands });
    assert.equal(refused.status, 200);
    assert.equal(refused.body.error.code, 107);
    assert.match(refused.body.error.message, /SWITCHBOARD_API_BATCH_MAX_COMMANDS/);
    const transport = await httpApi(
      gateway,
      'batch',
      { commands },
      { 'X-API-Key': API_KEY, 'X-Centrifugo-Error-Mode': 'transport' },
    );
    assert.equal(transport.status, 400);
    assert.equal(transport.body.code, 107);
    const afterward = await httpApi(gateway, 'history', { channel: 'chat:http' });
    assert.equal(afterward.body.result.offset, before.body.result.offset, 'nothing of it was published');
  });

  test('?api_key= authenticates; a wrong one is 401', async () => {
    const ok = await httpApi(gateway, 'info', {}, {}, `?api_key=${encodeURIComponent(API_KEY)}`);
    assert.equal(ok.status, 200);
    assert.equal(ok.body.result.nodes.length, 1);
    const wrong = await httpApi(gateway, 'info', {}, {}, '?api_key=wrong');
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error.code, 101);
    const none = await httpApi(gateway, 'info', {}, {});
    assert.equal(none.status, 401);
  });

  test('X-Centrifugo-Error-Mode: transport answers errors with HTTP statuses and the bare error', async () => {
    const headers = { 'X-API-Key': API_KEY, 'X-Centrifugo-Error-Mode': 'transport' };
    const noData = await httpApi(gateway, 'publish', { channel: 'chat:http' }, headers);
    assert.equal(noData.status, 400);
    assert.equal(noData.body.code, 107);
    assert.match(noData.body.message, /data is required/);
    const unknown = await httpApi(gateway, 'publish', { channel: 'nope:x', data: 1 }, headers);
    assert.equal(unknown.status, 404);
    assert.deepEqual(unknown.body, { code: 102, message: 'unknown channel' });
    const noHistory = await httpApi(gateway, 'history', { channel: 'news' }, headers);
    assert.equal(noHistory.status, 400);
    assert.equal(noHistory.body.code, 108);
    const unauthorized = await httpApi(gateway, 'info', {}, { 'X-Centrifugo-Error-Mode': 'transport' });
    assert.equal(unauthorized.status, 401);
    assert.equal(unauthorized.body.code, 101);
    const malformed = await httpApi(gateway, 'publish', '{"channel":', headers);
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body.code, 107);
    // A success is the same in both modes; without the header an error is HTTP 200.
    const ok = await httpApi(gateway, 'publish', { channel: 'chat:http', data: 1 }, headers);
    assert.equal(ok.status, 200);
    assert.ok(ok.body.result.offset > 0);
    const plain = await httpApi(gateway, 'publish', { channel: 'nope:x', data: 1 });
    assert.equal(plain.status, 200);
    assert.equal(plain.body.error.code, 102);
  });

  test('refresh: expired closes the user connections with 3005; bad params are 107, session 108', async () => {
    const raw = raws.add(new RawClient(gateway.wsUrl));
    await raw.open();
    raw.send({ id: 1, connect: { token: await token({ sub: 'erin' }) } });
    await raw.expect((m) => m.id === 1);
    for (const bad of [
      {},
      { user: 'erin', expired: 'yes' },
      { user: 'erin', expire_at: -1 },
      { user: 'erin', expire_at: 1.5 },
    ]) {
      const { body } = await httpApi(gateway, 'refresh', bad);
      assert.equal(body.error?.code, 107, JSON.stringify(bad));
    }
    const session = await httpApi(gateway, 'refresh', { user: 'erin', session: 's', expired: true });
    assert.equal(session.body.error?.code, 108);
    await stillOpen(raw, 2);
    const { status, body } = await httpApi(gateway, 'refresh', { user: 'erin', expired: true });
    assert.equal(status, 200);
    assert.deepEqual(body, { result: {} });
    assert.equal((await raw.closed()).code, 3005);
  });
  test('disconnect: a whitelist that is not an array of client ids is 107, and disconnects nobody', async () => {
    const raw = raws.add(new RawClient(gateway.wsUrl));
    await raw.open();
    raw.send({ id: 1, connect: { token: await token({ sub: 'finn' }) } });
    await raw.expect((m) => m.id === 1);
    for (const whitelist of ['c1', [1], [null], { c: 1 }]) {
      const { body } = await httpApi(gateway, 'disconnect', { user: 'finn', whitelist });
      assert.equal(body.error?.code, 107, JSON.stringify(whitelist));
      assert.match(body.error?.message, /whitelist must be an array of client ids/);
    }
    await stillOpen(raw, 2);
  });
});

describe('Centrifugo API across a cluster (real nats-server)', () => {
  let cluster: NatsGateways;
  let gateways: Gateway[] = [];
  const raws = new RawClients(() => gateways[0]!);
  let api: ReturnType<typeof centrifugoClient>;

  before(async () => {
    cluster = await startNatsGateways({ gateways: 2 });
    gateways = cluster.gateways;
    api = centrifugoClient(gateways[1]!.grpcPort);
  });

  after(async () => {
    raws.terminate();
    api?.close();
    for (const gateway of gateways) assert.equal(await gateway.stop(), 0, gateway.output());
    await cluster?.nats.stop();
  });

  test('a batch on one gateway publishes to, and refreshes, a connection on the other', async () => {
    const raw = await raws.connect('frank');
    raw.send({ id: 2, subscribe: { channel: 'chat:cluster' } });
    await raw.expect((m) => m.id === 2);
    const reply = await api.call('Batch', {
      parallel: true,
      commands: [
        { publish: { channel: 'chat:cluster', data: bytes({ n: 1 }) } },
        { publish: { channel: 'chat:cluster', data: bytes({ n: 2 }) } },
        { info: {} },
      ],
    });
    assert.deepEqual(
      reply.replies.map((r: any) => r.error),
      [null, null, null],
    );
    assert.deepEqual(reply.replies[2].info.nodes.map((n: any) => n.uid).sort(), ['gw1', 'gw2']);
    for (const n of [1, 2])
      await raw.expect((m) => m.push?.channel === 'chat:cluster' && m.push.pub?.data?.n === n);

    const refreshed = await api.call('Refresh', { user: 'frank', expired: true });
    assert.equal(refreshed.error, null);
    assert.equal((await raw.closed()).code, 3005);
  });
});
