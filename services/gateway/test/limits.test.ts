/**
 * Bad input and limits, against the real gateway process with raw `ws`
 * frames: each gets a clear error or disconnect code, and other clients
 * never notice.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  api,
  type Gateway,
  metric,
  RawClient,
  RawClients,
  startGateway,
  token,
  upgradeStatus,
  waitUntil,
} from './harness.js';

let gateway: Gateway;
const raws = new RawClients(() => gateway);

before(async () => {
  gateway = await startGateway({
    SWITCHBOARD_MAX_MESSAGE_SIZE: '4096',
    SWITCHBOARD_MAX_CHANNELS_PER_CONNECTION: '3',
    SWITCHBOARD_MAX_CONNECTIONS_PER_USER: '2',
    SWITCHBOARD_COMMANDS_PER_SECOND: '20',
    SWITCHBOARD_CONNECT_TIMEOUT: '1',
    SWITCHBOARD_ALLOWED_ORIGINS: 'https://app.example.com,https://*.example.org',
  });
});

after(async () => {
  raws.terminate();
  await gateway.stop();
});

const connect = (user: string, headers: Record<string, string> = {}) => raws.connect(user, headers);
const open = (headers: Record<string, string> = {}) => raws.open(headers);

/** Status code of a WebSocket upgrade with `headers`. */
const upgrade = (headers: Record<string, string> = {}, url = gateway.wsUrl) =>
  upgradeStatus(url, { headers });

describe('bad input and limits', () => {
  test('malformed JSON closes only that connection with 3501', async () => {
    const bystander = await connect('bystander');
    bystander.send({ id: 2, subscribe: { channel: 'chat:calm' } });
    await bystander.expect((m) => m.id === 2);
    const bad = await connect('mallory');
    bad.send('{"id": 2, "subscribe": ');
    assert.deepEqual(await bad.closed(), { code: 3501, reason: 'bad request' });
    await api(gateway, 'publish', { channel: 'chat:calm', data: { still: 'here' } });
    const pub = await bystander.expect((m) => m.push?.pub);
    assert.deepEqual(pub.push.pub.data, { still: 'here' });
  });

  test('an unknown method gets error 104 and the connection stays', async () => {
    const raw = await connect('u-unknown');
    raw.send({ id: 5, teleport: {} });
    assert.equal((await raw.expect((m) => m.id === 5)).error.code, 104);
    raw.send({ id: 6, rpc: { method: 'echo', data: 1 } });
    assert.deepEqual((await raw.expect((m) => m.id === 6)).rpc, { data: 1 });
  });

  test('a command before connect, or invalid fields, is a bad request', async () => {
    const early = open();
    await early.open();
    early.send({ id: 1, subscribe: { channel: 'chat:x' } });
    assert.equal((await early.closed()).code, 3501);
    const typed = await connect('u-typed');
    typed.send({ id: 2, subscribe: { channel: 42 } });
    assert.equal((await typed.closed()).code, 3501);
  });

  test('a second connect on a live connection is a bad request, not a change of identity', async () => {
    const raw = await connect('u-first');
    raw.send({ id: 2, connect: { token: await token({ sub: 'u-second' }) } });
    assert.equal((await raw.closed()).code, 3501);
  });

  test('frames over the message size limit close the connection with 1009', async () => {
    const raw = await connect('u-big');
    raw.send({ id: 2, rpc: { method: 'echo', data: 'x'.repeat(5000) } });
    assert.equal((await raw.closed()).code, 1009);
  });

  test('bad tokens are refused with 3500; expired tokens with error 109', async () => {
    const forged = open();
    await forged.open();
    forged.send({ id: 1, connect: { token: await token({ sub: 'eve' }, { secret: 'not-the-secret' }) } });
    assert.deepEqual(await forged.closed(), { code: 3500, reason: 'invalid token' });
    const garbage = open();
    await garbage.open();
    garbage.send({ id: 1, connect: { token: 'not.a.jwt' } });
    assert.equal((await garbage.closed()).code, 3500);
    const expired = open();
    await expired.open();
    expired.send({ id: 1, connect: { token: await token({ sub: 'eve' }, { expiresIn: -5 }) } });
    assert.equal((await expired.expect((m) => m.id === 1)).error.code, 109);
    assert.ok(!gateway.output().includes('not.a.jwt'), 'tokens never reach the log');
  });

  test('channel errors: unknown namespace 102, invalid name 107, forbidden 103, already subscribed 105', async () => {
    const raw = await connect('u-chan');
    raw.send(
      [
        { id: 2, subscribe: { channel: 'nope:room' } },
        { id: 3, subscribe: { channel: 'chat:has space' } },
        { id: 4, subscribe: { channel: 'chat:a.*.>' } },
        { id: 5, subscribe: { channel: '#someone-else' } },
        { id: 6, subscribe: { channel: 'chat:twice' } },
        { id: 7, subscribe: { channel: 'chat:twice' } },
        { id: 8, publish: { channel: 'chat:not-subscribed', data: 1 } },
      ]
        .map((c) => JSON.stringify(c))
        .join('\n'),
    );
    const code = async (id: number) => (await raw.expect((m) => m.id === id)).error?.code;
    assert.equal(await code(2), 102);
    assert.equal(await code(3), 107);
    assert.equal(await code(4), 107);
    assert.equal(await code(5), 103);
    assert.equal(await code(6), undefined);
    assert.equal(await code(7), 105);
    assert.equal(await code(8), 103);
  });

  test('more channels than allowed per connection get 106', async () => {
    const raw = await connect('u-many');
    raw.send(
      [1, 2, 3, 4]
        .map((n) => JSON.stringify({ id: n + 1, subscribe: { channel: `chat:many-${n}` } }))
        .join('\n'),
    );
    for (const id of [2, 3, 4]) assert.ok((await raw.expect((m) => m.id === id)).subscribe);
    assert.equal((await raw.expect((m) => m.id === 5)).error.code, 106);
  });

  test('more connections per user than allowed are closed with 3504', async () => {
    await connect('u-limited');
    await connect('u-limited');
    const third = open();
    await third.open();
    third.send({ id: 1, connect: { token: await token({ sub: 'u-limited' }) } });
    assert.deepEqual(await third.closed(), { code: 3504, reason: 'connection limit' });
  });

  test('commands beyond the per-connection rate get 111, sustained excess disconnects with 3013', async () => {
    const raw = await connect('u-fast');
    const burst = Array.from({ length: 30 }, (_, i) =>
      JSON.stringify({ id: i + 10, rpc: { method: 'echo', data: i } }),
    );
    raw.send(burst.join('\n'));
    await raw.expect((m) => m.id === 39);
    const limited = raw.received.filter((m) => m.id >= 10 && m.error?.code === 111);
    assert.ok(limited.length >= 9 && limited.length <= 11, `about 10 of 30 refused, got ${limited.length}`);
    assert.equal(limited[0].error.temporary, true);
    const flood = Array.from({ length: 60 }, (_, i) =>
      JSON.stringify({ id: i + 100, rpc: { method: 'echo' } }),
    );
    raw.send(flood.join('\n'));
    assert.equal((await raw.closed()).code, 3013);
  });

  test('a connection that never sends connect is closed as stale', async () => {
    const idle = open();
    await idle.open();
    assert.deepEqual(await idle.closed(3000), { code: 3502, reason: 'stale' });
  });

  test('the Origin allow-list refuses foreign browser origins with 403', async () => {
    assert.equal(await upgrade({ Origin: 'https://evil.example.net' }), 403);
    assert.equal(await upgrade({ Origin: 'https://app.example.com.evil.net' }), 403);
    assert.equal(await upgrade({ Origin: 'https://app.example.com' }), 101);
    assert.equal(await upgrade({ Origin: 'https://www.example.org' }), 101);
    assert.equal(await upgrade({}), 101);
    assert.ok((await metric(gateway, 'switchboard_connects_total', ['reason="origin_not_allowed"'])) >= 2);
  });

  test('the server API refuses wrong keys, unknown methods, bad JSON and bad parameters', async () => {
    assert.equal((await api(gateway, 'info', {}, 'wrong-key')).status, 401);
    assert.equal((await api(gateway, 'teleport', {})).status, 404);
    const res = await fetch(`${gateway.internalUrl}/api/publish`, {
      method: 'POST',
      headers: { 'X-API-Key': 'test-api-key' },
      body: '{"channel":',
    });
    assert.equal(res.status, 400);
    assert.equal((await api(gateway, 'publish', { channel: 'chat:x' })).body.error?.code, 107);
    const badCode = await api(gateway, 'disconnect', { user: 'x', disconnect: { code: 1000, reason: 'no' } });
    assert.equal(badCode.body.error?.code, 107);
    const huge = await fetch(`${gateway.internalUrl}/api/publish`, {
      method: 'POST',
      headers: { 'X-API-Key': 'test-api-key' },
      body: JSON.stringify({ channel: 'chat:x', data: 'x'.repeat(5 * 1024 * 1024) }),
    });
    assert.equal(huge.status, 413);
  });

  test('thousands of malformed frames leave the gateway serving other clients', async () => {
    const watcher = await connect('watcher');
    watcher.send({ id: 2, subscribe: { channel: 'chat:steady' } });
    await watcher.expect((m) => m.id === 2);
    const garbage = [
      '',
      'null',
      '[]',
      '"text"',
      '{"id":-1,"rpc":{}}',
      '{"id":1.5,"rpc":{}}',
      '{"id":"1","rpc":{}}',
      `${'['.repeat(2000)}${']'.repeat(2000)}`,
      '{"id":1,"connect":{"token":{"nested":true}}}',
      '{"id":99999999999999999999999,"rpc":{}}',
      '\u0000\u0001\u0002',
      '{"id":1,"subscribe":{"channel":"x","offset":-3}}',
      '{"__proto__":{"polluted":true},"id":1,"rpc":{}}',
    ];
    let sent = 0;
    let published = 0;
    const waves = 40;
    for (let wave = 0; wave < waves; wave++) {
      const attackers = await Promise.all(
        Array.from({ length: 5 }, async () => {
          const a = new RawClient(gateway.wsUrl);
          await a.open();
          return a;
        }),
      );
      for (const a of attackers) {
        // A burst of frames: the first bad one closes the connection, the rest must not matter.
        for (let i = 0; i < 10; i++) {
          a.ws.send(garbage[(wave + i) % garbage.length]!);
          sent++;
        }
        a.ws.send(Buffer.from([0xff, 0xfe, 0x00, 0x7b]));
        sent++;
      }
      await api(gateway, 'publish', { channel: 'chat:steady', data: { n: ++published } });
      await Promise.all(attackers.map((a) => a.closed().catch(() => a.ws.terminate())));
    }
    assert.ok(sent >= 2000, `sent ${sent} malformed frames`);
    await waitUntil(
      () => watcher.received.filter((m) => m.push?.pub).length === published,
      5000,
      () => 'all publications at the watcher',
    );
    const numbers = watcher.received.filter((m) => m.push?.pub).map((m) => m.push.pub.data.n);
    assert.deepEqual(
      numbers,
      Array.from({ length: published }, (_, i) => i + 1),
    );
    assert.equal((await fetch(`${gateway.internalUrl}/healthz`)).status, 200);
    assert.equal(gateway.process.exitCode, null);
  });
});

describe('capacity, idle and slow connections', () => {
  let small: Gateway;
  let slow: Gateway;

  before(async () => {
    slow = await startGateway({ SWITCHBOARD_MAX_BACKPRESSURE: '262144' });
    small = await startGateway({
      SWITCHBOARD_MAX_CONNECTIONS: '4',
      SWITCHBOARD_PING_INTERVAL: '1',
      SWITCHBOARD_PONG_TIMEOUT: '1',
      SWITCHBOARD_MAX_BACKPRESSURE: '65536',
    });
  });

  after(async () => {
    await small.stop();
    await slow.stop();
  });

  test('a client that answers no pings is dropped with 3012 and counted as no_pong', async () => {
    const silent = new RawClient(small.wsUrl);
    await silent.open();
    silent.send({ id: 1, connect: { token: await token({ sub: 'silent' }) } });
    const reply = await silent.expect((m) => m.id === 1);
    assert.equal(reply.connect.ping, 1);
    assert.equal(reply.connect.pong, true);
    await silent.expect((m) => m.id === undefined && m.push === undefined, 3000);
    assert.deepEqual(await silent.closed(5000), { code: 3012, reason: 'no pong' });
    const text = await (await fetch(`${small.internalUrl}/metrics`)).text();
    assert.match(
      text,
      /switchboard_disconnects_total\{transport="websocket",reason="no_pong",code="3012"\} 1/,
    );
  });

  test('a client that answers pings stays connected', async () => {
    const polite = new RawClient(small.wsUrl);
    await polite.open();
    polite.ws.on('message', (data) => {
      if (data.toString() === '{}') polite.send('{}');
    });
    polite.send({ id: 1, connect: { token: await token({ sub: 'polite' }) } });
    await polite.expect((m) => m.id === 1);
    await waitUntil(
      () => polite.received.filter((m) => Object.keys(m).length === 0).length >= 3,
      6000,
      () => '3 pings',
    );
    assert.equal(polite.closeCode, undefined);
    polite.ws.close();
    await polite.closed();
  });

  test('a client that does not read is disconnected with 3008 slow instead of buffered without bound', async () => {
    const reader = new RawClient(slow.wsUrl);
    await reader.open();
    reader.send({ id: 1, connect: { token: await token({ sub: 'slowpoke' }) } });
    await reader.expect((m) => m.id === 1);
    reader.send({ id: 2, subscribe: { channel: 'chat:firehose' } });
    await reader.expect((m) => m.id === 2);
    // Stop reading: first the kernel's socket buffers fill, then the gateway's queue.
    (reader.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const metrics = async () => (await fetch(`${slow.internalUrl}/metrics`)).text();
    let published = 0;
    const publish = (size: number) =>
      api(slow, 'publish', { channel: 'chat:firehose', data: { payload: 'x'.repeat(size), n: ++published } });
    // 2 MiB at once, well within what the kernel buffers on loopback...
    for (let i = 0; i < 32; i++) await publish(64 * 1024);
    // ...then a steady 640 KiB/s: once the kernel buffers are full the queue
    // grows by less than the 768 KiB between the soft limit and the hard one
    // (4x) per second, so the once-a-second check sees it first.
    let next = Date.now();
    await waitUntil(
      async () => {
        if (Date.now() >= next) {
          next += 100;
          await publish(64 * 1024);
        }
        return /switchboard_disconnects_total\{transport="websocket",reason="slow",code="3008"\} 1/.test(
          await metrics(),
        );
      },
      30_000,
      () => 'the slow client to be disconnected with 3008',
    );
    assert.match(await metrics(), /switchboard_backlogged_connections 0/);
    assert.ok(published < 2000, `dropped after ${published} publications`);
  });

  test('connections beyond the gateway limit get HTTP 503 at upgrade', async () => {
    const held: RawClient[] = [];
    for (let i = 0; i < 4; i++) {
      const r = new RawClient(small.wsUrl);
      await r.open();
      held.push(r);
    }
    assert.equal(await upgrade({}, small.wsUrl), 503);
    for (const r of held) r.ws.terminate();
  });
});
