/**
 * Delta compression (`delta: "fossil"`, namespace `allowed_delta_types`)
 * against the real gateway and the real centrifuge-js, which applies the
 * deltas itself: a delta subscriber and a plain one on one channel get the
 * same data in order, while the raw frames of the delta one carry
 * `delta: true` and are smaller; recovery after a reconnect decodes; a
 * namespace without delta answers full publications; an unknown type closes
 * the connection (3501) and delta with a tags filter is refused with 107; in
 * a NATS cluster every gateway makes deltas of what another one accepted. The
 * hub itself sends in full after a gap in the offsets.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { applyFossilDelta } from '@switchboard/protocol';
import type { Centrifuge, Options, PublicationContext, SubscribedContext, Subscription } from 'centrifuge';
import WebSocket from 'ws';
import { centrifugoEdge } from '../src/session.js';
import { Hub, type HubMember, type Sink } from '../src/hub.js';
import { Metrics } from '../src/metrics.js';
import { type NatsGateways, startNatsGateways } from './cluster.js';
import { apiClient } from './grpc-client.js';
import {
  api,
  client,
  flakyNetwork,
  type Gateway,
  nextEvent,
  type RawClient,
  RawClients,
  startGateway,
  token,
  waitUntil,
} from './harness.js';

const NAMESPACES = JSON.stringify([
  {
    name: 'doc',
    history_size: 100,
    history_ttl: 300,
    recovery: true,
    allow_subscribe_for_client: true,
    allowed_delta_types: ['fossil'],
    allow_tags_filter: true,
  },
  { name: 'plain', history_size: 10, history_ttl: 60, recovery: true, allow_subscribe_for_client: true },
  {
    name: 'live',
    history_size: 10,
    history_ttl: 60,
    allow_subscribe_for_client: true,
    allow_publish_for_subscriber: true,
    allowed_delta_types: ['fossil'],
    delta_publish: true,
  },
]);

/** A document of some 2 KB of which each publication changes one field. */
const documentOf = (n: number) => ({
  id: 'report-7',
  revision: n,
  title: 'Quarterly figures',
  rows: Array.from({ length: 24 }, (_, i) => ({ row: i, label: `line item ${i}`, value: i * 1000 + 17 })),
  note: `revision ${n} of the document`,
});

const clients: Centrifuge[] = [];
const disconnectAll = () => {
  for (const c of clients.splice(0)) c.disconnect();
};

async function connected(gateway: Gateway, user: string, websocket: Options['websocket'] = WebSocket) {
  const c = client(gateway, { token: await token({ sub: user }), websocket });
  clients.push(c);
  const ready = nextEvent(c, 'connected');
  c.connect();
  await ready;
  return c;
}

/** A subscribed subscription with the data of every publication it gets, in arrival order. */
async function subscribed(c: Centrifuge, channel: string, delta: boolean) {
  const sub = c.newSubscription(channel, delta ? { delta: 'fossil' } : {});
  const got: PublicationContext[] = [];
  sub.on('publication', (ctx) => got.push(ctx));
  sub.subscribe();
  await sub.ready(5000);
  return { sub, got, revisions: () => got.map((p) => (p.data as { revision: number }).revision) };
}

async function publish(gateway: Gateway, channel: string, data: unknown, delta = true) {
  const res = await api(gateway, 'publish', { channel, data, ...(delta ? { delta } : {}) });
  assert.equal(res.status, 200);
  assert.equal(res.body.error, undefined, JSON.stringify(res.body));
  return res.body.result as { offset: number; epoch: string };
}

/** A raw client subscribed to `channel` (with `delta` when given); its subscribe reply. */
async function rawSubscribe(raw: RawClient, id: number, channel: string, delta?: string) {
  raw.send({ id, subscribe: { channel, ...(delta ? { delta } : {}) } });
  return raw.expect((m) => m.id === id);
}

/** The raw publication pushes of `channel` a raw client got, with each one's size on the wire. */
function rawPubs(frames: string[], channel: string) {
  return frames
    .flatMap((f) => f.split('\n'))
    .map((line) => ({ line, msg: JSON.parse(line) }))
    .filter(({ msg }) => msg.push?.channel === channel && msg.push.pub)
    .map(({ line, msg }) => ({ bytes: Buffer.byteLength(line), pub: msg.push.pub }));
}

function framesOf(raw: RawClient): string[] {
  const frames: string[] = [];
  raw.ws.on('message', (data) => frames.push(data.toString()));
  return frames;
}

/** Decodes a delta subscriber's raw publications as centrifuge-js does: each data a JSON string, a delta against the last. */
function decode(pubs: { pub: { data: string; delta?: boolean } }[]): unknown[] {
  let base: Uint8Array | undefined;
  return pubs.map(({ pub }) => {
    assert.equal(typeof pub.data, 'string', 'a delta subscriber gets every data as a JSON string');
    const bytes = pub.delta
      ? applyFossilDelta(base!, new TextEncoder().encode(pub.data))
      : new TextEncoder().encode(pub.data);
    base = bytes;
    return JSON.parse(new TextDecoder().decode(bytes));
  });
}

describe('delta compression on one gateway', () => {
  let gateway: Gateway;
  const raws = new RawClients(() => gateway);

  before(async () => {
    gateway = await startGateway({ SWITCHBOARD_NAMESPACES: NAMESPACES });
  });

  after(async () => {
    disconnectAll();
    raws.terminate();
    await gateway.stop();
  });

  test('a delta and a plain subscriber get the same data in order; the delta frames say delta and are smaller', async () => {
    const channel = 'doc:report';
    const deltaSub = await subscribed(await connected(gateway, 'delta'), channel, true);
    const plainSub = await subscribed(await connected(gateway, 'plain'), channel, false);
    const rawDelta = await raws.connect('raw-delta');
    const deltaFrames = framesOf(rawDelta);
    assert.equal((await rawSubscribe(rawDelta, 2, channel, 'fossil')).subscribe.delta, true);
    const rawPlain = await raws.connect('raw-plain');
    const plainFrames = framesOf(rawPlain);
    assert.equal((await rawSubscribe(rawPlain, 2, channel)).subscribe.delta, undefined);
    const sent = Array.from({ length: 8 }, (_, i) => documentOf(i + 1));
    for (const doc of sent) await publish(gateway, channel, doc);
    await waitUntil(
      () => deltaSub.got.length === 8 && plainSub.got.length === 8,
      5000,
      () => `8 publications each, got ${deltaSub.got.length} and ${plainSub.got.length}`,
    );
    await rawDelta.expect((m) => m.push?.pub?.offset === 8);
    await rawPlain.expect((m) => m.push?.pub?.offset === 8);
    assert.deepEqual(
      deltaSub.got.map((p) => p.data),
      sent,
    );
    assert.deepEqual(
      plainSub.got.map((p) => p.data),
      sent,
    );
    assert.deepEqual(
      deltaSub.got.map((p) => p.offset),
      plainSub.got.map((p) => p.offset),
    );
    // centrifuge-js counted the deltas it applied: all but the first.
    const stats = deltaSub.sub.deltaStats();
    assert.equal(stats.numDeltaPayloads, 7);
    assert.equal(stats.numFullPayloads, 1);

    const delta = rawPubs(deltaFrames, channel);
    const plain = rawPubs(plainFrames, channel);
    assert.deepEqual(
      delta.map((p) => p.pub.delta === true),
      [false, true, true, true, true, true, true, true],
    );
    assert.equal(typeof plain[1]!.pub.data, 'object');
    assert.equal(
      plain.some((p) => 'delta' in p.pub),
      false,
    );
    for (let i = 1; i < 8; i++)
      assert.ok(
        delta[i]!.bytes * 5 < plain[i]!.bytes,
        `delta frame ${delta[i]!.bytes} B vs full ${plain[i]!.bytes} B`,
      );
    assert.deepEqual(decode(delta), sent);
  });

  test('a publication without delta goes in full (as a JSON string) to a delta subscriber; the next delta builds on it', async () => {
    const channel = 'doc:mixed';
    const js = await subscribed(await connected(gateway, 'js-mixed'), channel, true);
    const raw = await raws.connect('raw-mixed');
    const frames = framesOf(raw);
    await rawSubscribe(raw, 2, channel, 'fossil');
    const sent = [documentOf(1), documentOf(2), documentOf(3), documentOf(4)];
    await publish(gateway, channel, sent[0], true);
    await publish(gateway, channel, sent[1], true);
    await publish(gateway, channel, sent[2], false);
    await publish(gateway, channel, sent[3], true);
    await raw.expect((m) => m.push?.pub?.offset === 4);
    const pubs = rawPubs(frames, channel);
    assert.deepEqual(
      pubs.map((p) => p.pub.delta === true),
      [false, true, false, true],
    );
    assert.deepEqual(decode(pubs), sent);
    await waitUntil(() => js.got.length === 4);
    assert.deepEqual(
      js.got.map((p) => p.data),
      sent,
    );
  });

  test('a publication whose delta would not be smaller goes in full', async () => {
    const channel = 'doc:unlike';
    const raw = await raws.connect('raw-unlike');
    const frames = framesOf(raw);
    await rawSubscribe(raw, 2, channel, 'fossil');
    // Nothing in common: the delta is the whole data and then some.
    const sent = [{ a: 'qwertyuiop' }, { Z: 'ASDFGHJKL;' }];
    for (const p of sent) await publish(gateway, channel, p);
    await raw.expect((m) => m.push?.pub?.offset === 2);
    const pubs = rawPubs(frames, channel);
    assert.deepEqual(
      pubs.map((p) => p.pub.delta === true),
      [false, false],
    );
    assert.deepEqual(decode(pubs), sent);
  });

  test('recovery after a dropped connection: the missed publications and the live ones after them decode', async () => {
    const channel = 'doc:recovery';
    const { state, FlakyWebSocket } = flakyNetwork(() => gateway);
    const c = await connected(gateway, 'recovering', FlakyWebSocket);
    const js = await subscribed(c, channel, true);
    const sent = Array.from({ length: 9 }, (_, i) => documentOf(100 + i));
    await publish(gateway, channel, sent[0]);
    await publish(gateway, channel, sent[1]);
    await waitUntil(() => js.got.length === 2);
    state.offline = true;
    const dropped = nextEvent(c, 'connecting');
    await api(gateway, 'disconnect', {
      user: 'recovering',
      disconnect: { code: 3011, reason: 'force reconnect' },
    });
    await dropped;
    for (const doc of sent.slice(2, 6)) await publish(gateway, channel, doc);
    const resubscribed = nextEvent<SubscribedContext>(js.sub, 'subscribed', 10_000);
    state.offline = false;
    const ctx = await resubscribed;
    assert.equal(ctx.recovered, true);
    await waitUntil(() => js.got.length === 6);
    for (const doc of sent.slice(6)) await publish(gateway, channel, doc);
    await waitUntil(
      () => js.got.length === 9,
      5000,
      () => `9 publications, got ${js.got.length}`,
    );
    assert.deepEqual(
      js.got.map((p) => p.data),
      sent,
    );
    // The recovered ones came as deltas of each other, and the live ones after the first as deltas too.
    assert.ok(js.sub.deltaStats().numDeltaPayloads >= 5, JSON.stringify(js.sub.deltaStats()));
    assert.equal(c.state, 'connected');
  });

  test('a recovering raw subscriber gets the missed publications as a chain: the first full, the rest deltas', async () => {
    const channel = 'doc:chain';
    const first = await publish(gateway, channel, documentOf(1));
    const sent = [documentOf(2), documentOf(3), documentOf(4)];
    for (const doc of sent) await publish(gateway, channel, doc);
    const raw = await raws.connect('raw-chain');
    raw.send({
      id: 2,
      subscribe: { channel, delta: 'fossil', recover: true, offset: first.offset, epoch: first.epoch },
    });
    const reply = await raw.expect((m) => m.id === 2);
    assert.equal(reply.subscribe.delta, true);
    assert.equal(reply.subscribe.recovered, true);
    const pubs = reply.subscribe.publications as { data: string; delta?: boolean }[];
    assert.deepEqual(
      pubs.map((p) => p.delta === true),
      [false, true, true],
    );
    assert.deepEqual(decode(pubs.map((pub) => ({ pub }))), sent);
  });

  test('a namespace without allowed_delta_types does not negotiate delta: full publications, plain data', async () => {
    const channel = 'plain:quotes';
    const raw = await raws.connect('raw-nodelta');
    const reply = await rawSubscribe(raw, 2, channel, 'fossil');
    assert.equal(reply.error, undefined);
    assert.equal(reply.subscribe.delta, undefined);
    const js = await subscribed(await connected(gateway, 'js-nodelta'), channel, true);
    await publish(gateway, channel, documentOf(1));
    await publish(gateway, channel, documentOf(2));
    const second = await raw.expect((m) => m.push?.pub?.offset === 2);
    assert.deepEqual(second.push.pub.data, documentOf(2));
    assert.equal(second.push.pub.delta, undefined);
    await waitUntil(() => js.got.length === 2);
    assert.deepEqual(js.revisions(), [1, 2]);
    assert.equal(js.sub.deltaStats().numDeltaPayloads, 0);
  });

  test('hostile: delta with a tags filter is refused with 107 (the connection lives); an unknown type closes it with 3501', async () => {
    const raw = await raws.connect('hostile');
    raw.send({ id: 2, subscribe: { channel: 'doc:hostile', delta: 'fossil', tf: { key: 'a', cmp: 'ex' } } });
    const refused = await raw.expect((m) => m.id === 2);
    assert.equal(refused.error?.code, 107);
    assert.match(refused.error.message, /delta and tags filter/);
    assert.equal((await rawSubscribe(raw, 3, 'doc:hostile', 'fossil')).subscribe.delta, true);
    assert.equal(raw.closeCode, undefined);
    for (const delta of ['xdelta', 7]) {
      const bad = await raws.connect('hostile-type');
      bad.send({ id: 2, subscribe: { channel: 'doc:hostile', delta } });
      assert.equal((await bad.closed()).code, 3501);
    }
  });

  test('publish over gRPC with delta: true makes deltas too', async () => {
    const channel = 'doc:grpc';
    const raw = await raws.connect('raw-grpc');
    const frames = framesOf(raw);
    await rawSubscribe(raw, 2, channel, 'fossil');
    const grpc = apiClient(gateway.grpcPort);
    const sent = [documentOf(1), documentOf(2), documentOf(3)];
    try {
      for (const doc of sent) {
        const reply = await grpc.call('Publish', {
          channel,
          data: Buffer.from(JSON.stringify(doc)),
          delta: true,
        });
        assert.equal(reply.error, null);
      }
    } finally {
      grpc.close();
    }
    await raw.expect((m) => m.push?.pub?.offset === 3);
    const pubs = rawPubs(frames, channel);
    assert.deepEqual(
      pubs.map((p) => p.pub.delta === true),
      [false, true, true],
    );
    assert.deepEqual(decode(pubs), sent);
  });

  test('delta_publish: client publications (and API ones without the flag) go as deltas', async () => {
    const channel = 'live:doc';
    const js = await subscribed(await connected(gateway, 'js-live'), channel, true);
    const raw = await raws.connect('raw-live');
    const frames = framesOf(raw);
    await rawSubscribe(raw, 2, channel, 'fossil');
    const sent = [documentOf(1), documentOf(2), documentOf(3)];
    await js.sub.publish(sent[0]);
    await js.sub.publish(sent[1]);
    await publish(gateway, channel, sent[2], false);
    await raw.expect((m) => m.push?.pub?.offset === 3);
    const pubs = rawPubs(frames, channel);
    assert.deepEqual(
      pubs.map((p) => p.pub.delta === true),
      [false, true, true],
    );
    assert.deepEqual(decode(pubs), sent);
    await waitUntil(() => js.got.length === 3);
    assert.deepEqual(
      js.got.map((p) => p.data),
      sent,
    );
  });

  test('the server API refuses a non-boolean delta with 107', async () => {
    const res = await api(gateway, 'publish', { channel: 'doc:x', data: {}, delta: 'yes' });
    assert.equal(res.body.error?.code, 107);
    assert.match(res.body.error!.message, /delta must be a boolean/);
  });
});

describe('delta compression in a NATS cluster', () => {
  let cluster: NatsGateways;
  let g1: Gateway;
  let g2: Gateway;
  const raws = new RawClients(() => g2);

  before(async () => {
    cluster = await startNatsGateways({ gateways: 2, env: { SWITCHBOARD_NAMESPACES: NAMESPACES } });
    [g1, g2] = cluster.gateways as [Gateway, Gateway];
  });

  after(async () => {
    disconnectAll();
    raws.terminate();
    await cluster?.stop();
  });

  test('publications accepted by another gateway reach delta subscribers on both as deltas that decode', async () => {
    const channel = 'doc:cluster';
    const remote = await subscribed(await connected(g2, 'remote'), channel, true);
    const local = await subscribed(await connected(g1, 'local'), channel, true);
    const plain = await subscribed(await connected(g2, 'plain'), channel, false);
    const raw = await raws.connect('raw-cluster');
    const frames = framesOf(raw);
    await rawSubscribe(raw, 2, channel, 'fossil');
    const sent = Array.from({ length: 6 }, (_, i) => documentOf(i + 1));
    for (const [i, doc] of sent.entries()) await publish(i % 2 ? g2 : g1, channel, doc);
    const all = [remote, local, plain];
    await waitUntil(
      () => all.every((s) => s.got.length === 6),
      5000,
      () => `6 publications each, got ${all.map((s) => s.got.length)}`,
    );
    for (const s of all)
      assert.deepEqual(
        s.got.map((p) => p.data),
        sent,
      );
    await raw.expect((m) => m.push?.pub?.offset === 6);
    const pubs = rawPubs(frames, channel);
    assert.deepEqual(
      pubs.map((p) => p.pub.delta === true),
      [false, true, true, true, true, true],
    );
    assert.deepEqual(decode(pubs), sent);
    for (const s of [remote, local] as { sub: Subscription }[])
      assert.equal(s.sub.deltaStats().numDeltaPayloads, 5);
  });
});

describe('the hub and delta subscribers', () => {
  /** A member of a non-topic sink recording its frames. */
  function member(client: string): HubMember & { frames: string[] } {
    const frames: string[] = [];
    const sink: Sink = {
      transport: 'websocket',
      send: (frame) => frames.push(frame as string) > 0, // the JSON edge: text frames
      close: () => undefined,
      bufferedAmount: () => 0,
    };
    return { client, user: client, sink, edge: centrifugoEdge, frames, buffer: () => undefined };
  }
  const topics = { publish: () => undefined, numSubscribers: () => 0 };
  const pubOf = (offset: number) => ({ pub: { data: documentOf(offset), offset, epoch: 'e' }, delta: true });
  const pushed = (frame: string) => JSON.parse(frame).push.pub as { delta?: boolean; offset: number };

  test('after a gap in the offsets (a publication this gateway missed) the next one goes in full', () => {
    const hub = new Hub(topics, new Metrics(), [centrifugoEdge]);
    const m = member('a');
    hub.deltaSubscriber('doc:gap', m);
    hub.addSubscriber('doc:gap', m);
    hub.activate('doc:gap', m);
    for (const offset of [1, 2, 4, 5]) hub.broadcast('doc:gap', pubOf(offset), offset);
    assert.deepEqual(
      m.frames.map((f) => [pushed(f).offset, pushed(f).delta === true]),
      [
        [1, false],
        [2, true],
        [4, false],
        [5, true],
      ],
    );
  });

  test('a delta subscriber skipped as the sender gets the next publication in full; the base goes with the last one', () => {
    const hub = new Hub(topics, new Metrics(), [centrifugoEdge]);
    const [a, b] = [member('a'), member('b')];
    for (const m of [a, b]) {
      hub.add(m);
      hub.deltaSubscriber('doc:skip', m);
      hub.addSubscriber('doc:skip', m);
      hub.activate('doc:skip', m);
    }
    hub.broadcast('doc:skip', pubOf(1), 1);
    hub.broadcast('doc:skip', pubOf(2), 2, 'a');
    hub.broadcast('doc:skip', pubOf(3), 3);
    assert.deepEqual(
      a.frames.map((f) => [pushed(f).offset, pushed(f).delta === true]),
      [
        [1, false],
        [3, false],
      ],
    );
    assert.deepEqual(
      b.frames.map((f) => [pushed(f).offset, pushed(f).delta === true]),
      [
        [1, false],
        [2, true],
        [3, true],
      ],
    );
    // The delta frame is one string for every subscriber that gets it.
    assert.equal(a.frames[0], b.frames[0]);
    hub.removeSubscriber('doc:skip', a);
    hub.removeSubscriber('doc:skip', b);
    hub.broadcast('doc:skip', pubOf(4), 4);
    assert.equal(b.frames.length, 3);
  });
});
