/**
 * push_coalesce_window: a channel's publications within the window reach its
 * WebSocket subscribers as one frame of newline-separated pushes, which
 * centrifuge-js reads in order; without a window each is a frame of its own.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Centrifuge, PublicationContext } from 'centrifuge';
import { client, type Gateway, nextEvent, RawClients, startGateway, token, waitUntil } from './harness.js';

const NAMESPACES = JSON.stringify([
  { name: '', allow_subscribe_for_client: true, allow_publish_for_client: true },
  {
    name: 'chat',
    history_size: 100,
    history_ttl: 300,
    recovery: true,
    allow_subscribe_for_client: true,
    allow_publish_for_client: true,
  },
]);
const BURST = 5;

/** Starts a gateway with `window` ms of coalescing; each test gets a raw subscriber, a centrifuge-js one and a publisher. */
function setup(window: number) {
  let gateway: Gateway;
  const raws = new RawClients(() => gateway);
  const clients: Centrifuge[] = [];
  before(async () => {
    gateway = await startGateway({
      SWITCHBOARD_NAMESPACES: NAMESPACES,
      SWITCHBOARD_PUSH_COALESCE_WINDOW: String(window),
    });
  });
  after(async () => {
    for (const c of clients) c.disconnect();
    raws.terminate();
    await gateway.stop();
  });
  const burst = async (channel: string) => {
    const raw = await raws.connect('raw');
    const frames: string[] = [];
    raw.ws.on('message', (data) => frames.push(data.toString()));
    raw.send({ id: 2, subscribe: { channel } });
    await raw.expect((m) => m.id === 2);
    const c = client(gateway, { token: await token({ sub: 'js' }) });
    clients.push(c);
    const connected = nextEvent(c, 'connected');
    c.connect();
    await connected;
    const sub = c.newSubscription(channel);
    const got: PublicationContext[] = [];
    sub.on('publication', (ctx) => got.push(ctx));
    sub.subscribe();
    await sub.ready(5000);
    const publisher = await raws.connect('publisher');
    // One frame of BURST publish commands: they are handled within one turn of the event loop.
    const commands = Array.from({ length: BURST }, (_, i) =>
      JSON.stringify({ id: 10 + i, publish: { channel, data: { seq: i } } }),
    );
    publisher.send(commands.join('\n'));
    await waitUntil(() => got.length === BURST && raw.received.filter((m) => m.push?.pub).length === BURST);
    const pubFrames = frames.filter((f) => f.includes('"pub"'));
    return { got, pubFrames };
  };
  return { burst, raws };
}

describe('push coalescing on (push_coalesce_window 200 ms)', () => {
  const { burst, raws } = setup(200);

  test('a burst reaches a subscriber in one frame of newline-separated pushes, read in order by centrifuge-js', async () => {
    const { got, pubFrames } = await burst('hot');
    assert.equal(pubFrames.length, 1, `frames: ${JSON.stringify(pubFrames)}`);
    assert.equal(pubFrames[0]!.split('\n').length, BURST);
    assert.deepEqual(
      got.map((p) => (p.data as { seq: number }).seq),
      Array.from({ length: BURST }, (_, i) => i),
    );
  });

  test('offsets of a channel with history stay in order and complete in a coalesced frame', async () => {
    const { got, pubFrames } = await burst('chat:hot');
    assert.equal(pubFrames.length, 1);
    const offsets = got.map((p) => Number(p.offset));
    assert.deepEqual(
      offsets,
      Array.from({ length: BURST }, (_, i) => offsets[0]! + i),
    );
  });

  test('a subscriber that joins while a batch waits does not get what was published before its position', async () => {
    const early = await raws.connect('early');
    early.send({ id: 2, subscribe: { channel: 'chat:join' } });
    await early.expect((m) => m.id === 2);
    const late = await raws.connect('late');
    const publisher = await raws.connect('publisher');
    publisher.send({ id: 3, publish: { channel: 'chat:join', data: { n: 1 } } });
    await publisher.expect((m) => m.id === 3);
    // The publication waits in its batch (200 ms) while `late` subscribes at a position after it.
    late.send({ id: 4, subscribe: { channel: 'chat:join' } });
    const reply = await late.expect((m) => m.id === 4);
    publisher.send({ id: 5, publish: { channel: 'chat:join', data: { n: 2 } } });
    await early.expect((m) => m.push?.pub?.data?.n === 2);
    await late.expect((m) => m.push?.pub?.data?.n === 2);
    const lateOffsets = late.received.filter((m) => m.push?.pub).map((m) => Number(m.push.pub.offset));
    assert.deepEqual(lateOffsets, [Number(reply.subscribe.offset) + 1]);
    assert.equal(early.received.filter((m) => m.push?.pub).length, 2);
  });
});

describe('push coalescing off (the default)', () => {
  const { burst } = setup(0);

  test('each publication is a frame of its own', async () => {
    const { got, pubFrames } = await burst('hot');
    assert.equal(pubFrames.length, BURST);
    assert.equal(got.length, BURST);
  });
});
