/**
 * Fuzzing the gateway as an attacker would (fast-check), against real
 * processes: WebSocket frames, tokens, emulation bodies, SSE and
 * HTTP-streaming connect parameters, server API bodies over HTTP and gRPC,
 * and, with a real nats-server, what a hostile peer or service puts on the
 * bus. Properties: no crash, no hang past a bound (every sample ends in an
 * answer or a close), protocol-conformant answers, nothing stored for a
 * refused command, a bystander served throughout, memory bounded.
 *
 * A fixed seed in CI (FUZZ_SEED); `make fuzz` runs many more samples (FUZZ_RUNS).
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node';
import { Errors, METHODS, Subjects } from '@switchboard/protocol';
import type { Centrifuge, PublicationContext } from 'centrifuge';
import fc from 'fast-check';
import { API_METHODS } from '../src/api/methods.js';
import {
  addChannelCounts,
  readControl,
  readEnvelope,
  readStored,
  readSurvey,
} from '../src/broker/envelope.js';
import { headerAlg, verifyHs256 } from '../src/hs256.js';
import { ClientAddress } from '../src/transport/client-address.js';
import { startNats } from './cluster.js';
import { apiClient } from './grpc-client.js';
import {
  API_KEY,
  api,
  client,
  type Gateway,
  metric,
  nextEvent,
  RawClient,
  startGateway,
  token,
  waitUntil,
} from './harness.js';

const seed = Number(process.env.FUZZ_SEED ?? 20261201);
const runs = Number(process.env.FUZZ_RUNS ?? 300);
/** Samples that each cost a socket or a request: a tenth of the pure ones, at least 20. */
const e2eRuns = Math.max(20, Math.round(runs / 10));

const ERROR_CODES = new Set<number>(Object.values(Errors).map((e) => e.code));
/** How a fuzzed connection may end: never 1006 (no close frame) or 1011. */
const CLOSE_CODES = new Set([1000, 1009, 3000, 3004, 3008, 3013, 3500, 3501, 3502, 3504, 3505]);

const nested = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;

/** JSON text of data: ordinary values, deep nestings around the bound, deep ones far past it. */
const dataText = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 5 }).map((v) => JSON.stringify(v)) },
  { weight: 1, arbitrary: fc.integer({ min: 55, max: 70 }).map(nested) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 8000 }).map(nested) },
);

const rssOf = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;

describe('fuzz: bus envelopes, tokens and addresses (no sockets)', () => {
  const params = { seed, numRuns: runs };

  test('no JSON value makes an envelope check throw, and what passes has the right shape', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 5 }), fc.constantFrom('pub', 'join', 'leave', 'x'), (v, t) => {
        for (const value of [v, { t, pub: v, info: v, ts: v }, { t, pub: { data: v }, ts: 1 }]) {
          const envelope = readEnvelope(value);
          if (envelope?.t === 'pub') assert.ok('data' in envelope.pub);
          readStored(value);
          readControl(value);
          readSurvey(value, 64);
          addChannelCounts(new Map(), value);
        }
      }),
      params,
    );
  });

  test('no string makes the HS256 check throw, and none passes without the secret', () => {
    const secret = Buffer.from('fuzz-secret');
    const segment = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v)).toString('base64url')),
    );
    fc.assert(
      fc.property(fc.array(segment, { maxLength: 4 }), (parts) => {
        const jwt = parts.join('.');
        headerAlg(jwt);
        assert.equal(verifyHs256(jwt, [secret], {}).ok, false);
      }),
      params,
    );
  });

  test('the client address is always the peer or a hop of the header', () => {
    const address = new ClientAddress(['127.0.0.1', '10.0.0.0/8']);
    const hop = fc.oneof(fc.ipV4(), fc.ipV6(), fc.string({ maxLength: 20 }));
    fc.assert(
      fc.property(
        fc.oneof(fc.ipV4(), fc.constant('127.0.0.1')),
        fc.array(hop, { maxLength: 5 }),
        (peer, hops) => {
          const header = hops.join(', ');
          const found = address.of(peer, header);
          assert.ok(found === peer || hops.some((h) => h.trim().toLowerCase().endsWith(found)), found);
        },
      ),
      params,
    );
  });
});

describe('fuzz: a gateway under hostile clients', () => {
  let gateway: Gateway;
  let bystander: Centrifuge;
  const seen: unknown[] = [];
  let published = 0;
  let rssBefore = 0;

  before(async () => {
    // A stream that never sends its connect is closed as stale after a second; the
    // raw sockets answer no pings, so long `make fuzz` runs must not be pinged out.
    gateway = await startGateway({ SWITCHBOARD_CONNECT_TIMEOUT: '1', SWITCHBOARD_PING_INTERVAL: '3600' });
    bystander = client(gateway, { token: await token({ sub: 'bystander' }) });
    const sub = bystander.newSubscription('chat:bystander');
    sub.on('publication', (ctx: PublicationContext) => seen.push(ctx.data));
    const subscribed = nextEvent(sub, 'subscribed');
    sub.subscribe();
    bystander.connect();
    await subscribed;
    rssBefore = rssOf(gateway.process.pid!);
  });

  after(async () => {
    bystander.disconnect();
    await gateway.stop();
  });

  /** A publication the bystander must get, sent after each sample. */
  async function beacon() {
    await api(gateway, 'publish', { channel: 'chat:bystander', data: { n: ++published } });
  }

  let sample = 0;

  test('WebSocket frames: an answer or a clean close for each, nothing stored for what was refused', async () => {
    const connectLine = fc.oneof(
      { weight: 4, arbitrary: fc.constant('valid') },
      { weight: 1, arbitrary: fc.constantFrom('subscription-token', 'garbage-token', 'none', 'noise') },
    );
    const command = (channel: string) =>
      fc.oneof(
        {
          weight: 3,
          arbitrary: dataText.map((d) => `{"id":ID,"publish":{"channel":"${channel}","data":${d}}}`),
        },
        {
          weight: 2,
          arbitrary: fc
            .record({
              method: fc.constantFrom(...METHODS, 'bogus', '__proto__'),
              body: fc.jsonValue({ maxDepth: 4 }),
            })
            .map(({ method, body }) => `{"id":ID,${JSON.stringify(method)}:${JSON.stringify(body)}}`),
        },
        { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 80 }) },
        {
          weight: 1,
          arbitrary: fc.constantFrom('{}', '', '\n\n', `{"id":ID,"rpc":{"method":"echo","data":1}}`),
        },
      );
    const frame = (channel: string) =>
      fc.oneof(
        {
          weight: 5,
          arbitrary: fc.array(command(channel), { minLength: 1, maxLength: 4 }).map((l) => l.join('\n')),
        },
        { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)) },
      );

    await fc.assert(
      fc.asyncProperty(connectLine, fc.array(frame('CHANNEL'), { maxLength: 5 }), async (kind, frames) => {
        const channel = `chat:fuzz-${++sample}`;
        const raw = new RawClient(gateway.wsUrl);
        try {
          await raw.open();
          const tokens = {
            valid: await token({ sub: `fuzzer-${sample}` }),
            'subscription-token': await token({ sub: 'x', channel }),
            'garbage-token': 'eyJhbGciOiJIUzI1NiJ9.e30.AAAA',
          };
          const first =
            kind === 'noise'
              ? '{"id":1,"connect":'
              : JSON.stringify({ id: 1, connect: kind === 'none' ? {} : { token: tokens[kind as 'valid'] } });
          raw.ws.send(`${first}\n${JSON.stringify({ id: 2, subscribe: { channel } })}`);
          let id = 10;
          for (const f of frames) {
            raw.ws.send(
              typeof f === 'string'
                ? f.replaceAll('CHANNEL', channel).replaceAll('ID', () => String(id++))
                : f,
            );
          }
          raw.send({ id: 999_999, rpc: { method: 'echo', data: 'marker' } });
          // No hang: every sample ends in the marker's answer or a close.
          await waitUntil(
            () => raw.closeCode !== undefined || raw.received.some((m) => m.id === 999_999),
            5000,
            () => `an answer or a close for ${JSON.stringify(frames).slice(0, 500)}`,
          );
          if (raw.closeCode !== undefined)
            assert.ok(CLOSE_CODES.has(raw.closeCode), `close ${raw.closeCode}`);
          for (const m of raw.received) {
            assert.equal(typeof m, 'object');
            if (m.error) assert.ok(ERROR_CODES.has(m.error.code), JSON.stringify(m));
          }
          // Nothing stored for a refused publish: history holds exactly the acknowledged ones.
          const acknowledged = raw.received.filter((m) => m.id >= 10 && m.publish !== undefined).length;
          const history = await api(gateway, 'history', { channel, limit: 1000 });
          assert.equal(history.body.result.publications.length, acknowledged);
        } finally {
          raw.ws.terminate();
        }
        await beacon();
      }),
      { seed, numRuns: e2eRuns },
    );
  });

  test('server API bodies over HTTP: a JSON answer with a result or an error, always', async () => {
    const body = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 100 }),
      fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
      fc
        .record(
          {
            channel: fc.oneof(fc.constantFrom('chat:api', '__proto__', 'a'.repeat(300)), fc.string()),
            channels: fc.array(fc.oneof(fc.string(), fc.constant('chat:api')), { maxLength: 3 }),
            user: fc.string(),
            pattern: fc.string({ maxLength: 20 }),
            limit: fc.oneof(fc.integer(), fc.double()),
            since: fc.jsonValue({ maxDepth: 2 }),
            disconnect: fc.jsonValue({ maxDepth: 2 }),
            tags: fc.jsonValue({ maxDepth: 2 }),
          },
          { requiredKeys: [] },
        )
        .chain((params) => dataText.map((d) => `{"data":${d},${JSON.stringify(params).slice(1)}`)),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...API_METHODS, 'bogus'), body, async (method, text) => {
        const res = await fetch(`${gateway.internalUrl}/api/${method}`, {
          method: 'POST',
          headers: { 'X-API-Key': API_KEY },
          body: text,
          signal: AbortSignal.timeout(5000),
        });
        assert.ok([200, 400, 404].includes(res.status), `${res.status} for ${method} ${text.slice(0, 200)}`);
        const answer = (await res.json()) as { result?: unknown; error?: { code: number } };
        assert.ok('result' in answer !== 'error' in answer, JSON.stringify(answer).slice(0, 200));
        if (answer.error) assert.ok(ERROR_CODES.has(answer.error.code), JSON.stringify(answer.error));
      }),
      { seed, numRuns: e2eRuns },
    );
    await beacon();
  });

  test('server API over gRPC: an answer or a status other than INTERNAL, always', async () => {
    const grpcApi = apiClient(gateway.grpcPort);
    const bytes = fc.oneof(
      dataText.map((d) => Buffer.from(d)),
      fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
    );
    const request = fc.record(
      {
        channel: fc.oneof(fc.constant('chat:grpc'), fc.string({ unit: 'binary', maxLength: 40 })),
        channels: fc.array(fc.string(), { maxLength: 3 }),
        data: bytes,
        info: bytes,
        user: fc.string(),
        client: fc.string(),
        pattern: fc.string({ maxLength: 30 }),
        limit: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
        reverse: fc.boolean(),
        since: fc.record({ offset: fc.nat(), epoch: fc.string() }),
        disconnect: fc.record({ code: fc.nat(70_000), reason: fc.string() }),
        tags: fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 3 }),
      },
      { requiredKeys: [] },
    );
    const rpcs = ['Publish', 'Broadcast', 'Subscribe', 'Unsubscribe', 'Disconnect', 'Presence'];
    rpcs.push('PresenceStats', 'History', 'HistoryRemove', 'Channels', 'Info');
    try {
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...rpcs), request, async (rpc, req) => {
          try {
            const reply = await grpcApi.call(rpc, req);
            if (reply.error) assert.ok(ERROR_CODES.has(reply.error.code), JSON.stringify(reply.error));
          } catch (err) {
            const code = (err as grpc.ServiceError).code;
            assert.ok(code !== grpc.status.INTERNAL && code !== grpc.status.UNAVAILABLE, String(err));
          }
        }),
        { seed, numRuns: e2eRuns },
      );
    } finally {
      grpcApi.close();
    }
    await beacon();
  });

  test('emulation bodies, SSE and HTTP-streaming connect parameters', async () => {
    const base = `http://127.0.0.1:${gateway.clientPort}`;
    const text = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 200 }),
      fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
      fc.record({ session: fc.string(), node: fc.string(), data: fc.string() }).map((r) => JSON.stringify(r)),
      dataText.map((d) => `{"id":1,"connect":{"data":${d}}}`),
    );
    /** The first chunk of a streaming response, then the request is dropped. */
    async function firstChunk(res: Response): Promise<string> {
      const reader = res.body!.getReader();
      const { value } = await reader.read();
      await reader.cancel();
      return Buffer.from(value ?? new Uint8Array()).toString();
    }
    await fc.assert(
      fc.asyncProperty(text, async (t) => {
        const signal = AbortSignal.timeout(5000);
        const emulation = await fetch(`${base}/emulation`, { method: 'POST', body: t, signal });
        assert.ok([400, 404, 413].includes(emulation.status), `emulation ${emulation.status}`);
        await emulation.arrayBuffer();
        for (const res of [
          await fetch(`${base}/connection/sse?cf_connect=${encodeURIComponent(t)}`, { signal }),
          await fetch(`${base}/connection/http_stream`, { method: 'POST', body: t, signal }),
        ]) {
          assert.ok([200, 400, 413, 431].includes(res.status), `stream ${res.status}`);
          if (res.status !== 200) {
            await res.arrayBuffer();
            continue;
          }
          // Anything but a valid connect ends in a disconnect push; the stream never hangs silent.
          const chunk = await firstChunk(res);
          assert.match(chunk, /"(connect|disconnect)"|"error"/, chunk.slice(0, 200));
        }
      }),
      { seed, numRuns: e2eRuns },
    );
    await beacon();
  });

  test('afterwards: alive, the bystander got every beacon, no last-resort error, memory bounded', async () => {
    await waitUntil(
      () => seen.length >= published,
      10_000,
      () => `${seen.length} of ${published} beacons`,
    );
    assert.deepEqual(
      seen,
      Array.from({ length: published }, (_, i) => ({ n: i + 1 })),
    );
    assert.equal((await fetch(`${gateway.internalUrl}/readyz`)).status, 200);
    assert.equal(await metric(gateway, 'switchboard_uncaught_errors_total'), 0);
    assert.equal(await metric(gateway, 'switchboard_handler_errors_total'), 0);
    const grown = rssOf(gateway.process.pid!) - rssBefore;
    assert.ok(grown < 200 * 1024 * 1024, `RSS grew by ${grown} bytes`);
  });
});

describe('fuzz: a hostile peer and a hostile service on the bus', () => {
  let nats: Awaited<ReturnType<typeof startNats>>;
  let gateway: Gateway;
  let rogue: NatsConnection;
  const subjects = new Subjects('sb');

  before(async () => {
    nats = await startNats();
    gateway = await startGateway({
      SWITCHBOARD_BROKER: 'nats',
      SWITCHBOARD_NATS_URL: nats.url,
      SWITCHBOARD_PING_INTERVAL: '3600',
      // One connection sends a request per sample, far past the usual rate.
      SWITCHBOARD_COMMANDS_PER_SECOND: '100000',
    });
    rogue = await natsConnect({ servers: nats.url });
  });

  after(async () => {
    await rogue.close();
    await gateway.stop();
    await nats.stop();
  });

  const payload = fc.oneof(
    fc.uint8Array({ maxLength: 80 }),
    fc.jsonValue({ maxDepth: 5 }).map((v) => new TextEncoder().encode(JSON.stringify(v))),
    fc
      .integer({ min: 100, max: 6000 })
      .map((n) => new TextEncoder().encode(`{"t":"pub","pub":{"data":${nested(n)}},"ts":1}`)),
    fc
      .record(
        {
          t: fc.constantFrom('pub', 'join', 'leave'),
          pub: fc.jsonValue({ maxDepth: 3 }),
          info: fc.jsonValue({ maxDepth: 3 }),
          ts: fc.jsonValue(),
        },
        { requiredKeys: [] },
      )
      .map((v) => new TextEncoder().encode(JSON.stringify(v))),
  );

  test('garbage on channel, control, survey and API subjects: dropped and counted, subscribers served', async () => {
    const raw = new RawClient(gateway.wsUrl);
    await raw.open();
    raw.send({ id: 1, connect: { token: await token({ sub: 'victim' }) } });
    raw.send({ id: 2, subscribe: { channel: 'chat:victim' } });
    await raw.expect((m) => m.id === 2);
    let legit = 0;
    await fc.assert(
      fc.asyncProperty(payload, async (data) => {
        rogue.publish(subjects.live('chat', 'chat:victim'), data);
        rogue.publish(subjects.control, data);
        await rogue.request(subjects.survey, data, { timeout: 100 }).catch(() => undefined);
        const answer = await rogue.request(subjects.api('publish'), data, { timeout: 2000 });
        const parsed = JSON.parse(new TextDecoder().decode(answer.data)) as {
          result?: unknown;
          error?: unknown;
        };
        assert.ok('result' in parsed || 'error' in parsed);
        await api(gateway, 'publish', { channel: 'chat:victim', data: { legit: ++legit } });
      }),
      { seed, numRuns: e2eRuns },
    );
    await raw.expect((m) => m.push?.pub?.data?.legit === legit, 10_000);
    const delivered = raw.received.filter((m) => m.push?.pub?.data?.legit).map((m) => m.push.pub.data.legit);
    assert.deepEqual(
      delivered,
      Array.from({ length: legit }, (_, i) => i + 1),
      'every legit one, in order',
    );
    assert.ok((await metric(gateway, 'switchboard_invalid_messages_total')) > 0);
    assert.equal(await metric(gateway, 'switchboard_handler_errors_total'), 0);
    assert.equal(raw.closeCode, undefined, 'the subscriber stays connected');
    raw.ws.terminate();
  });

  test('a service answering garbage gets its client a 100, never a crash', async () => {
    let reply: Uint8Array = new Uint8Array();
    const service = rogue.subscribe(subjects.service('room', 'rpc'), {
      queue: subjects.serviceQueue('room'),
      callback: (_err, msg) => {
        msg.respond(reply);
      },
    });
    await rogue.flush();
    const raw = new RawClient(gateway.wsUrl);
    await raw.open();
    raw.send({ id: 1, connect: { token: await token({ sub: 'caller' }) } });
    await raw.expect((m) => m.id === 1);
    let id = 10;
    try {
      await fc.assert(
        fc.asyncProperty(payload, async (data) => {
          reply = data;
          const mine = id++;
          raw.send({ id: mine, rpc: { method: 'room:fuzz', data: {} } });
          const answer = await raw.expect((m) => m.id === mine);
          if (answer.error) assert.ok(ERROR_CODES.has(answer.error.code) || answer.error.code < 5000);
        }),
        { seed, numRuns: e2eRuns },
      );
      reply = new TextEncoder().encode(`{"result":{"data":${nested(5000)}}}`);
      raw.send({ id: 1_000_000, rpc: { method: 'room:fuzz', data: {} } });
      const deep = await raw.expect((m) => m.id === 1_000_000);
      assert.deepEqual(deep.error, { code: 100, message: 'invalid service reply', temporary: true });
    } finally {
      service.unsubscribe();
      raw.ws.terminate();
    }
    assert.ok((await metric(gateway, 'switchboard_invalid_messages_total', ['source="service"'])) > 0);
    assert.equal((await fetch(`${gateway.internalUrl}/readyz`)).status, 200);
  });
});
