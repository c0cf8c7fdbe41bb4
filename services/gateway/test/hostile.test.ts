/**
 * Hostile input against the real gateway process with raw sockets: the six
 * defects of issue 12 each have a regression test here, every limit is
 * tried just under, at and over its edge, and a bystander client is served
 * throughout. The crash policy is tried in a process of its own.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import {
  api,
  client,
  type Gateway,
  metric,
  nextEvent,
  RawClient,
  RawClients,
  rawConnect,
  startGateway,
  token,
  upgradeStatus,
  waitUntil,
} from './harness.js';
import { apiClient } from './grpc-client.js';

let gateway: Gateway;
const raws = new RawClients(() => gateway);
const cleanups: (() => void)[] = [];

before(async () => {
  gateway = await startGateway();
});

after(async () => {
  raws.terminate();
  for (const stop of cleanups) stop();
  await gateway.stop();
});

const connect = (user: string) => raws.connect(user);
const open = () => raws.open();

/** An array nested `n` deep: `[[[...]]]`. */
const nested = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;

const replies = (raw: RawClient, id: number) => raw.received.filter((m) => m.id === id);

async function subscribe(raw: RawClient, id: number, channel: string) {
  raw.send({ id, subscribe: { channel } });
  const reply = await raw.expect((m) => m.id === id);
  assert.equal(reply.error, undefined, JSON.stringify(reply.error));
  return reply.subscribe;
}

describe('defect 1: deeply nested data is refused at the edge, nothing stored', () => {
  test('a publication nested 6,000 deep gets 107; history, recovery and the API stay whole', async () => {
    const mallory = await connect('mallory');
    await subscribe(mallory, 2, 'chat:deep');
    mallory.send(`{"id":3,"publish":{"channel":"chat:deep","data":${nested(6000)}}}`);
    const refused = await mallory.expect((m) => m.id === 3);
    assert.equal(refused.error.code, 107);
    assert.match(refused.error.message, /nested deeper than 64/);

    // Nothing was stored: the client history command and the API both answer, empty.
    mallory.send({ id: 4, history: { channel: 'chat:deep', limit: 10 } });
    const history = await mallory.expect((m) => m.id === 4);
    assert.deepEqual(history.history.publications ?? [], []);
    const viaApi = await api(gateway, 'history', { channel: 'chat:deep', limit: 10 });
    assert.equal(viaApi.status, 200);
    assert.deepEqual(viaApi.body.result.publications, []);

    // The API refuses the same body as it parses it: 400 and code 107.
    const res = await fetch(`${gateway.internalUrl}/api/publish`, {
      method: 'POST',
      headers: { 'X-API-Key': 'test-api-key' },
      body: `{"channel":"chat:deep","data":${nested(6000)}}`,
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: { code: number } }).error.code, 107);

    // A centrifuge-js subscriber recovers the channel and gets what is published next.
    const c = client(gateway, { token: await token({ sub: 'reader' }) });
    cleanups.push(() => c.disconnect());
    const sub = c.newSubscription('chat:deep', { since: { offset: 0, epoch: history.history.epoch } });
    const subscribed = nextEvent<{ wasRecovering: boolean; recovered: boolean }>(sub, 'subscribed');
    sub.subscribe();
    c.connect();
    const ctx = await subscribed;
    assert.equal(ctx.wasRecovering, true);
    assert.equal(ctx.recovered, true);
    const pub = nextEvent<{ data: unknown }>(sub, 'publication');
    await api(gateway, 'publish', { channel: 'chat:deep', data: { fine: true } });
    assert.deepEqual((await pub).data, { fine: true });
    assert.equal((await fetch(`${gateway.internalUrl}/healthz`)).status, 200);
  });

  test('the nesting bound at its edge: 64 levels in a command pass, 65 are refused', async () => {
    const raw = await connect('edge-depth');
    await subscribe(raw, 2, 'chat:edge-depth');
    // The command object and its publish body are two levels of the 64.
    raw.send(`{"id":3,"publish":{"channel":"chat:edge-depth","data":${nested(62)}}}`);
    assert.deepEqual((await raw.expect((m) => m.id === 3)).publish, {});
    raw.send(`{"id":4,"publish":{"channel":"chat:edge-depth","data":${nested(63)}}}`);
    assert.equal((await raw.expect((m) => m.id === 4)).error.code, 107);
    raw.send({ id: 5, history: { channel: 'chat:edge-depth', limit: 10 } });
    assert.equal((await raw.expect((m) => m.id === 5)).history.publications.length, 1);
    // The API body is one level: its data may nest 63, not 64.
    const at = await api(gateway, 'publish', { channel: 'chat:edge-depth', data: JSON.parse(nested(63)) });
    assert.equal(at.body.error, undefined);
    const over = await api(gateway, 'publish', { channel: 'chat:edge-depth', data: JSON.parse(nested(64)) });
    assert.equal(over.body.error?.code, 107);
  });
});

describe('channel names at their edge', () => {
  test('255 characters pass, 256 are refused with 107; subject characters never pass', async () => {
    const raw = await connect('long-names');
    await subscribe(raw, 2, `chat:${'n'.repeat(250)}`);
    raw.send({ id: 3, subscribe: { channel: `chat:${'n'.repeat(251)}` } });
    assert.equal((await raw.expect((m) => m.id === 3)).error.code, 107);
    let id = 4;
    for (const channel of ['chat:a b', 'chat:a*', 'chat:>', 'chat:é', 'chat:a\u0000']) {
      raw.send({ id, subscribe: { channel } });
      assert.equal((await raw.expect((m) => m.id === id)).error.code, 107, channel);
      id++;
    }
  });
});

describe('encoding: only UTF-8 text gets in', () => {
  const invalid = Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]);

  test('a binary frame that is not UTF-8 closes with 3501', async () => {
    const raw = await connect('bytes');
    raw.ws.send(invalid);
    assert.equal((await raw.closed()).code, 3501);
  });

  test('HTTP bodies that are not UTF-8 get 400: API, emulation, HTTP-streaming connect', async () => {
    const post = (url: string, headers: Record<string, string> = {}) =>
      fetch(url, { method: 'POST', headers, body: invalid });
    const apiRes = await post(`${gateway.internalUrl}/api/info`, { 'X-API-Key': 'test-api-key' });
    assert.equal(apiRes.status, 400);
    assert.deepEqual(await apiRes.json(), { error: { code: 107, message: 'request body is not UTF-8' } });
    const base = `http://127.0.0.1:${gateway.clientPort}`;
    const emulation = await post(`${base}/emulation`);
    assert.equal(emulation.status, 400);
    assert.equal(await emulation.text(), 'body is not UTF-8');
    const stream = await post(`${base}/connection/http_stream`);
    assert.equal(stream.status, 400);
    assert.equal(await stream.text(), 'connect command is not UTF-8');
  });
});

describe('server API body size at its edge', () => {
  test('4 MiB pass the size check, one byte more gets 413', async () => {
    const body = (size: number) => {
      const head = '{"channel":"chat:size","data":"';
      const tail = '"}';
      return `${head}${'s'.repeat(size - head.length - tail.length)}${tail}`;
    };
    const post = (text: string) =>
      fetch(`${gateway.internalUrl}/api/publish`, {
        method: 'POST',
        headers: { 'X-API-Key': 'test-api-key' },
        body: text,
      });
    const at = await post(body(4 * 1024 * 1024));
    assert.equal(at.status, 200);
    const over = await post(body(4 * 1024 * 1024 + 1));
    assert.equal(over.status, 413);
    assert.deepEqual(await over.json(), { error: { code: 107, message: 'request body too large' } });
  });
});

describe('defect 2: every command pays the rate limit, known or not', () => {
  test('10,000 unknown methods in 5 frames get 111 and then 3013, not 10,000 answers', async () => {
    const raw = await connect('flooder');
    let id = 100;
    for (let frame = 0; frame < 5; frame++) {
      const lines = Array.from({ length: 2000 }, () => `{"id":${id++},"bogus":{}}`);
      raw.ws.send(lines.join('\n'));
    }
    assert.equal((await raw.closed()).code, 3013);
    const codes = raw.received.filter((m) => m.id >= 100).map((m) => m.error?.code);
    assert.ok(codes.filter((c) => c === 104).length <= 100, 'no more than a burst is answered');
    assert.ok(codes.includes(111), 'the excess gets 111');
    assert.ok(codes.length < 300, `${codes.length} answers`);
  });

  test('commands_per_second at its edge: 100 pass, the 101st gets 111, 100 refusals in a row close', async () => {
    const rpc = (n: number) => `{"id":${n},"rpc":{"method":"echo","data":${n}}}`;
    const connectLine = JSON.stringify({ id: 1, connect: { token: await token({ sub: 'edge-rate' }) } });
    // One frame: the bucket cannot refill in between. The connect is the first of the 100.
    const under = open();
    await under.open();
    under.ws.send([connectLine, ...Array.from({ length: 99 }, (_, i) => rpc(i + 2))].join('\n'));
    await under.expect((m) => m.id === 100);
    assert.ok(
      under.received.every((m) => !m.error),
      JSON.stringify(under.received.find((m) => m.error)),
    );

    const at = open();
    await at.open();
    at.ws.send([connectLine, ...Array.from({ length: 199 }, (_, i) => rpc(i + 2))].join('\n'));
    await at.expect((m) => m.id === 100);
    await at.expect((m) => m.id === 200);
    assert.equal(at.received.filter((m) => m.error?.code === 111).length, 100);
    assert.equal(replies(at, 101)[0].error.code, 111);

    const over = open();
    await over.open();
    over.ws.send([connectLine, ...Array.from({ length: 200 }, (_, i) => rpc(i + 2))].join('\n'));
    assert.equal((await over.closed()).code, 3013);
  });

  test('pongs count towards a flood but are never refused', async () => {
    const raw = await connect('ponger');
    raw.ws.send(Array.from({ length: 250 }, () => '{}').join('\n'));
    assert.equal((await raw.closed()).code, 3013);
  });
});

describe('defect 3: each token kind only for its own use', () => {
  test('a subscription token does not open a connection (3500)', async () => {
    const raw = open();
    await raw.open();
    raw.send({ id: 1, connect: { token: await token({ sub: 'eve', channel: 'chat:x' }) } });
    assert.equal((await raw.closed()).code, 3500);
  });

  test('a subscription token does not refresh a connection (3500)', async () => {
    const raw = await connect('eve');
    raw.send({ id: 2, refresh: { token: await token({ sub: 'eve', channel: 'chat:x' }) } });
    assert.equal((await raw.closed()).code, 3500);
  });

  test('a connection token does not subscribe or refresh a subscription (103)', async () => {
    const namespaces = JSON.stringify([{ name: 'private' }]);
    const strict = await startGateway({ SWITCHBOARD_NAMESPACES: namespaces });
    try {
      const raw = await rawConnect(strict, 'eve');
      raws.add(raw);
      const connection = await token({ sub: 'eve' });
      raw.send({ id: 2, subscribe: { channel: 'private:x', token: connection } });
      assert.equal((await raw.expect((m) => m.id === 2)).error.code, 103);
      const subToken = await token({ sub: 'eve', channel: 'private:x' });
      raw.send({ id: 3, subscribe: { channel: 'private:x', token: subToken } });
      assert.ok((await raw.expect((m) => m.id === 3)).subscribe);
      raw.send({ id: 4, sub_refresh: { channel: 'private:x', token: connection } });
      assert.equal((await raw.expect((m) => m.id === 4)).error.code, 103);
      raw.send({ id: 5, sub_refresh: { channel: 'private:x', token: subToken } });
      assert.equal((await raw.expect((m) => m.id === 5)).error, undefined);
    } finally {
      await strict.stop();
    }
  });
});

describe('defect 4: oversized frames close with 1009, whatever their size', () => {
  for (const size of [65_537, 300 * 1024, 4 * 1024 * 1024]) {
    test(`a ${size}-byte frame gets a 1009 close frame`, async () => {
      const raw = await connect(`big-${size}`);
      raw.ws.send(`{"id":2,"rpc":{"data":"${'x'.repeat(size)}"}}`);
      const closed = await raw.closed(10_000);
      assert.equal(closed.code, 1009);
      assert.equal(closed.reason, 'message size limit exceeded');
    });
  }

  test('a frame of exactly max_message_size is taken', async () => {
    const raw = await connect('exact');
    const head = '{"id":2,"rpc":{"method":"echo","data":"';
    const tail = '"}}';
    raw.ws.send(`${head}${'y'.repeat(65_536 - head.length - tail.length)}${tail}`);
    assert.equal((await raw.expect((m) => m.id === 2)).rpc.data.length, 65_536 - head.length - tail.length);
  });

  test('centrifuge-js stops for good after a 1009 instead of reconnecting', async () => {
    const c = client(gateway, { token: await token({ sub: 'big-js' }), data: 'z'.repeat(300 * 1024) });
    cleanups.push(() => c.disconnect());
    const disconnected = nextEvent<{ code: number }>(c, 'disconnected', 10_000);
    c.connect();
    assert.equal((await disconnected).code, 3, 'disconnectedCodes.messageSizeLimit');
    assert.equal(c.state, 'disconnected');
  });
});

describe('defects 5 and 6: the channels API', () => {
  test('a channel named __proto__ is listed like any other', async () => {
    const raw = await connect('proto');
    await subscribe(raw, 2, '__proto__');
    const all = await api(gateway, 'channels', {});
    assert.ok(Object.hasOwn(all.body.result.channels, '__proto__'));
    assert.deepEqual(all.body.result.channels.__proto__, { num_clients: 1 });
    const matched = await api(gateway, 'channels', { pattern: '__*' });
    assert.deepEqual(Object.keys(matched.body.result.channels), ['__proto__']);
    const grpcApi = apiClient(gateway.grpcPort);
    try {
      const viaGrpc = await grpcApi.call('Channels', { pattern: '__*' });
      assert.deepEqual(Object.keys(viaGrpc.result.channels), ['__proto__']);
    } finally {
      grpcApi.close();
    }
  });

  test('a pattern of many stars against a long channel answers at once', async () => {
    const raw = await connect('stars');
    const long = 'a'.repeat(40);
    await subscribe(raw, 2, long);
    const call = (pattern: string) =>
      fetch(`${gateway.internalUrl}/api/channels`, {
        method: 'POST',
        headers: { 'X-API-Key': 'test-api-key' },
        body: JSON.stringify({ pattern }),
        // Backtracking would take hours; the linear matcher answers within this bound.
        signal: AbortSignal.timeout(5000),
      }).then((r) => r.json() as Promise<{ result: { channels: Record<string, unknown> } }>);
    assert.deepEqual((await call(`${'a*'.repeat(30)}b`)).result.channels, {});
    assert.ok(Object.hasOwn((await call('a*'.repeat(30))).result.channels, long));
    const tooLong = await api(gateway, 'channels', { pattern: '*'.repeat(511) });
    assert.equal(tooLong.body.error?.code, 107);
  });
});

describe('per-IP limits behind a trusted proxy', () => {
  let limited: Gateway;

  before(async () => {
    limited = await startGateway({
      SWITCHBOARD_CONNECTS_PER_IP_PER_SECOND: '3',
      SWITCHBOARD_EMULATION_REQUESTS_PER_IP_PER_SECOND: '3',
      SWITCHBOARD_DEMO_TOKENS_PER_IP_PER_SECOND: '1',
      SWITCHBOARD_DEMO: 'true',
      SWITCHBOARD_TRUSTED_PROXIES: '127.0.0.1',
    });
  });

  after(() => limited.stop());

  /** HTTP status of a WebSocket upgrade from `client` as the proxy names it. */
  const upgrade = (client: string) =>
    upgradeStatus(limited.wsUrl, { headers: { 'x-forwarded-for': client } });

  test('a connect flood from one client is shed with 429; another client is not', async () => {
    const statuses = await Promise.all(Array.from({ length: 10 }, () => upgrade('203.0.113.7')));
    const opened = statuses.filter((s) => s === 101).length;
    assert.ok(opened >= 3 && opened <= 4, `${opened} of 10 opened: ${statuses}`);
    assert.equal(statuses.filter((s) => s === 429).length, 10 - opened);
    assert.equal(await upgrade('198.51.100.2'), 101);
    // A client's own X-Forwarded-For line before the proxy's names nobody: the proxy's last hop counts.
    assert.equal(
      await upgradeStatus(limited.wsUrl, {
        // Two header lines (node:http sends an array so; ws's types say string).
        headers: { 'x-forwarded-for': ['198.51.100.77', '203.0.113.7'] as unknown as string },
      }),
      429,
    );
    // IPv6 clients count per /64.
    const v6 = await Promise.all(
      Array.from({ length: 6 }, (_, i) => upgrade(`2001:db8:1:2::${(i + 1).toString(16)}`)),
    );
    assert.ok(v6.filter((s) => s === 429).length >= 2, `${v6}`);
    assert.ok((await metric(limited, 'switchboard_rate_limited_total', ['limit="connect"'])) >= 8);
    assert.ok((await metric(limited, 'switchboard_connects_total', ['reason="ip_rate_limit"'])) >= 8);
  });

  test('emulation and demo token floods get 429', async () => {
    const post = (path: string, body: string) =>
      fetch(`http://127.0.0.1:${limited.clientPort}${path}`, {
        method: 'POST',
        headers: { 'x-forwarded-for': '192.0.2.9', 'content-type': 'application/json' },
        body,
      }).then((r) => r.status);
    const emulation = await Promise.all(
      Array.from({ length: 10 }, () => post('/emulation', '{"session":"s","node":"n","data":"{}"}')),
    );
    assert.ok(emulation.filter((s) => s === 429).length >= 6, `${emulation}`);
    assert.ok(emulation.includes(404), 'the allowed ones are answered as usual');
    const demo = await Promise.all(Array.from({ length: 15 }, () => post('/demo/token', '{"name":"a"}')));
    assert.ok(demo.filter((s) => s === 200).length >= 10, `${demo}`);
    assert.ok(demo.filter((s) => s === 429).length >= 4, `${demo}`);
  });
});

describe('the last resort', () => {
  /** Runs the crash policy in a fresh process; `trigger` is module code run after installing it. */
  async function runPolicy(trigger: string) {
    const script = `
      import { installCrashPolicy } from '${new URL('../src/crash.js', import.meta.url).href}';
      import { createLogger } from '${new URL('../src/log.js', import.meta.url).href}';
      import { Metrics } from '${new URL('../src/metrics.js', import.meta.url).href}';
      const metrics = new Metrics();
      const count = async (kind) =>
        (await metrics.uncaughtErrors.get()).values.find((v) => v.labels.kind === kind)?.value ?? 0;
      installCrashPolicy(createLogger('info', 'crash-test'), metrics, (code) => {
        count('uncaught_exception').then((n) => {
          console.log('DRAIN ' + code + ' counted ' + n);
          process.exit(code);
        });
      });
      ${trigger}
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'pipe' });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const [code] = await once(child, 'exit');
    return { code: code as number, out };
  }

  test('an unhandled rejection is logged and counted, and the process serves on', async () => {
    const { code, out } = await runPolicy(`
      Promise.reject(new Error('nobody awaited this'));
      setTimeout(async () => { console.log('ALIVE counted ' + (await count('unhandled_rejection'))); }, 50);
    `);
    assert.equal(code, 0, out);
    assert.match(out, /unhandled promise rejection/);
    assert.match(out, /nobody awaited this/);
    assert.match(out, /ALIVE counted 1/);
  });

  test('an uncaught exception is logged and counted, then the gateway drains and exits with 70', async () => {
    const { code, out } = await runPolicy(`setTimeout(() => { throw new Error('boom'); }, 10);`);
    assert.equal(code, 70, out);
    assert.match(out, /uncaught exception/);
    assert.match(out, /DRAIN 70 counted 1/);
  });
});

describe('after all of it', () => {
  test('the gateway is up, a bystander is served, and nothing reached the last resort', async () => {
    const bystander = await connect('bystander');
    await subscribe(bystander, 2, 'chat:calm');
    await api(gateway, 'publish', { channel: 'chat:calm', data: { still: 'here' } });
    assert.deepEqual((await bystander.expect((m) => m.push?.pub)).push.pub.data, { still: 'here' });
    await waitUntil(async () => (await fetch(`${gateway.internalUrl}/readyz`)).status === 200);
    assert.equal(await metric(gateway, 'switchboard_uncaught_errors_total'), 0);
    assert.equal(await metric(gateway, 'switchboard_handler_errors_total'), 0);
    assert.equal(gateway.process.exitCode, null);
  });
});
