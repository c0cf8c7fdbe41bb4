/**
 * Hostile input on the Pusher edge, against the real gateway process with
 * raw sockets at `/app/<key>?protocol=7` and hand-signed HTTP API calls:
 * every refusal is checked for its exact pusher:error, subscription_error,
 * close code or HTTP status and message (services/gateway/src/pusher/*),
 * for publishing and storing nothing (a subscriber of the channel sees only
 * a later marker, a cache channel still misses, presence lists nobody, the
 * events counter stands still), and a bystander on the same gateway is
 * served throughout.
 */

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import PusherServer from 'pusher';
import { channelSignature, signRequest, userSignature } from '../src/pusher/signature.js';
import { startNats } from './cluster.js';
import { type Gateway, metric, RawClient, startGateway, waitUntil } from './harness.js';
import { gatewaySdk } from './pusher-conformance.js';

/** The app under attack: small data bound, Pusher's default client event rate and channel count. */
const APP = { id: 'hostile-app', key: 'hostile-key', secret: 'hostile-secret', max_message_size: 1024 };
const OTHER = { id: 'other-app', key: 'other-key', secret: 'other-secret' };
const OFF = { id: 'off-app', key: 'off-key', secret: 'off-secret', enabled: false };
const MAX_DEPTH = 16;
const MAX_FRAME = 16_384;
/** High enough for the 1000 subscribes of one connection; the flood test sends twice as many frames. */
const COMMANDS_PER_SECOND = 1000;
const EVENTS_PER_SECOND = 10;
const MAX_CHANNELS = 100;

let gateway: Gateway;
let sdk: PusherServer;
let bystander: Pusher;
const opened: RawClient[] = [];

/** An array nested `n` deep: `[[[...]]]`. */
const nested = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;

/** A raw Pusher connection and its socket id. */
interface Pusher {
  raw: RawClient;
  socketId: string;
}

const wsUrl = (key: string, query = 'protocol=7') =>
  `ws://${gateway.host}:${gateway.clientPort}/app/${key}${query === '' ? '' : `?${query}`}`;

async function connect(key = APP.key): Promise<Pusher> {
  const raw = new RawClient(wsUrl(key));
  opened.push(raw);
  const established = await raw.expect((m) => m.event === 'pusher:connection_established');
  return { raw, socketId: JSON.parse(established.data).socket_id };
}

const errorsOf = (p: Pusher) => p.raw.received.filter((m) => m.event === 'pusher:error');

/** Sends `frame` and resolves with the pusher:error it got (the next one). */
async function errorFor(p: Pusher, frame: string | object): Promise<unknown> {
  const n = errorsOf(p).length;
  p.raw.send(frame);
  await waitUntil(
    () => errorsOf(p).length > n || p.raw.closeCode !== undefined,
    5000,
    () => `pusher:error for ${JSON.stringify(frame).slice(0, 120)}`,
  );
  return errorsOf(p)[n];
}

/** Asserts that `frame` gets exactly this pusher:error. */
async function refused(p: Pusher, frame: string | object, code: number | null, message: string) {
  assert.deepEqual(
    await errorFor(p, frame),
    { event: 'pusher:error', data: { code, message } },
    JSON.stringify(frame).slice(0, 120),
  );
}

/** The frame that answered a subscribe of `channel`: succeeded or subscription_error. */
async function subscribeAnswer(
  p: Pusher,
  channel: string,
  extra: { auth?: string; channel_data?: string } = {},
): Promise<any> {
  const answered = (m: any) =>
    m.channel === channel &&
    (m.event === 'pusher_internal:subscription_succeeded' || m.event === 'pusher:subscription_error');
  const before = p.raw.received.filter(answered).length;
  p.raw.send({ event: 'pusher:subscribe', data: { channel, ...extra } });
  await waitUntil(
    () => p.raw.received.filter(answered).length > before,
    5000,
    () => `an answer to subscribing ${channel.slice(0, 80)}`,
  );
  return p.raw.received.filter(answered)[before];
}

async function subscribed(p: Pusher, channel: string, extra: { auth?: string; channel_data?: string } = {}) {
  const answer = await subscribeAnswer(p, channel, extra);
  assert.equal(answer.event, 'pusher_internal:subscription_succeeded', JSON.stringify(answer));
  return answer;
}

async function subscriptionRefused(
  p: Pusher,
  channel: string,
  status: number,
  error: string,
  extra: { auth?: string; channel_data?: string } = {},
) {
  assert.deepEqual(await subscribeAnswer(p, channel, extra), {
    event: 'pusher:subscription_error',
    channel,
    data: { type: 'AuthError', error, status },
  });
}

const sign = (p: Pusher, channel: string, channelData?: string, secret = APP.secret, key = APP.key) =>
  `${key}:${channelSignature(secret, p.socketId, channel, channelData)}`;

/** The channel's events as `p` got them (no pusher: or pusher_internal: frames). */
const eventsOn = (p: Pusher, channel: string) =>
  p.raw.received.filter((m) => m.channel === channel && !/^pusher(_internal)?:/.test(m.event));

/**
 * Proves that nothing reached `p` on `channel` but the events named in
 * `before`: a marker event (through the API) arrives after them, and only it.
 */
async function onlyMarker(p: Pusher, channel: string, before: string[] = []): Promise<void> {
  const marker = `marker-${Math.random().toString(36).slice(2)}`;
  // The SDK sends to a user's channel only with sendToUser.
  const user = /^#server-to-user-(.+)$/.exec(channel)?.[1];
  await (user === undefined
    ? sdk.trigger(channel, 'marker', marker)
    : sdk.sendToUser(user, 'marker', marker));
  await p.raw.expect((m) => m.channel === channel && m.event === 'marker' && m.data === marker);
  assert.deepEqual(
    eventsOn(p, channel).map((m) => m.event),
    [...before, 'marker'],
    `${channel}: nothing but the marker`,
  );
}

/** The bystander still gets its channel's events. */
async function bystanderServed(): Promise<void> {
  const note = `still-${Math.random().toString(36).slice(2)}`;
  await sdk.trigger('calm', 'still-here', note);
  await bystander.raw.expect((m) => m.channel === 'calm' && m.data === note);
  assert.equal(bystander.raw.closeCode, undefined);
}

const rejections = (reason: string) =>
  metric(gateway, 'switchboard_pusher_rejections_total', [`app="${APP.id}"`, `reason="${reason}"`]);
const published = () => metric(gateway, 'switchboard_pusher_events_total', [`app="${APP.id}"`]);

before(async () => {
  gateway = await startGateway({
    SWITCHBOARD_PUSHER_APPS: JSON.stringify([APP, OTHER, OFF]),
    SWITCHBOARD_JSON_MAX_DEPTH: String(MAX_DEPTH),
    SWITCHBOARD_MAX_MESSAGE_SIZE: String(MAX_FRAME),
    SWITCHBOARD_COMMANDS_PER_SECOND: String(COMMANDS_PER_SECOND),
  });
  sdk = gatewaySdk(gateway, APP);
  bystander = await connect();
  await subscribed(bystander, 'calm');
});

after(async () => {
  for (const raw of opened) raw.ws.terminate();
  await gateway.stop();
});

describe('frames the protocol does not have', () => {
  test('malformed JSON, non-objects, binary garbage: pusher:error, the connection stays', async () => {
    const mallory = await connect();
    const bad = await rejections('bad_frame');
    const cases: [string | Buffer, string][] = [
      ['{"event":"pusher:ping"', 'malformed JSON'],
      ['', 'malformed JSON'],
      ['not json at all', 'malformed JSON'],
      ['[{"event":"pusher:ping"}]', 'frame must be a JSON object'],
      ['"pusher:ping"', 'frame must be a JSON object'],
      ['42', 'frame must be a JSON object'],
      ['null', 'frame must be a JSON object'],
      // Not UTF-8: refused like malformed text, nothing decoded with replacement characters.
      [Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), 'malformed JSON'],
    ];
    for (const [frame, message] of cases) {
      const n = errorsOf(mallory).length;
      mallory.raw.ws.send(frame);
      await waitUntil(() => errorsOf(mallory).length > n);
      assert.deepEqual(errorsOf(mallory)[n], { event: 'pusher:error', data: { code: null, message } });
    }
    assert.equal((await rejections('bad_frame')) - bad, cases.length, 'each counted as bad_frame');
    // Still connected and answered.
    mallory.raw.send({ event: 'pusher:ping', data: {} });
    await mallory.raw.expect((m) => m.event === 'pusher:pong');
    await bystanderServed();
  });

  test('fields of the wrong type get the parser’s exact reason', async () => {
    const mallory = await connect();
    const cases: [object, string][] = [
      [{ data: {} }, 'event must be a string'],
      [{ event: 42 }, 'event must be a string'],
      [{ event: ['pusher:ping'] }, 'event must be a string'],
      [{ event: 'pusher:subscribe' }, 'pusher:subscribe data must be an object'],
      [{ event: 'pusher:subscribe', data: 5 }, 'pusher:subscribe data must be an object'],
      [{ event: 'pusher:subscribe', data: ['calm'] }, 'pusher:subscribe data must be an object'],
      [{ event: 'pusher:subscribe', data: '{"channel":' }, 'pusher:subscribe data: malformed JSON'],
      [{ event: 'pusher:subscribe', data: {} }, 'pusher:subscribe channel must be a string'],
      [{ event: 'pusher:subscribe', data: { channel: 5 } }, 'pusher:subscribe channel must be a string'],
      [
        { event: 'pusher:subscribe', data: { channel: 'private-x', auth: 5 } },
        'pusher:subscribe auth must be a string',
      ],
      [
        { event: 'pusher:subscribe', data: { channel: 'presence-x', channel_data: { user_id: 'u' } } },
        'pusher:subscribe channel_data must be a string',
      ],
      [{ event: 'pusher:unsubscribe', data: { channel: {} } }, 'pusher:unsubscribe channel must be a string'],
      [{ event: 'pusher:signin', data: { auth: 'k:s' } }, 'pusher:signin user_data must be a string'],
      [{ event: 'pusher:signin', data: { user_data: '{}' } }, 'pusher:signin auth must be a string'],
      [
        { event: 'pusher:signin', data: { auth: 'k:s', user_data: { id: '1' } } },
        'pusher:signin user_data must be a string',
      ],
      [{ event: 'not-a-client-event', channel: 'private-x' }, 'client event names must start with client-'],
      [{ event: 'client-x', data: {} }, 'a client event needs a string channel'],
      [{ event: 'client-x', channel: 7, data: {} }, 'a client event needs a string channel'],
      [{ event: `client-${'e'.repeat(194)}`, channel: 'private-x' }, 'event name longer than 200 characters'],
    ];
    for (const [frame, message] of cases) await refused(mallory, frame, null, message);
    // None of them subscribed anything: the connection holds no channel.
    const channels = await sdk.get({ path: '/channels' });
    assert.deepEqual(Object.keys(((await channels.json()) as { channels: object }).channels), ['calm']);
    await bystanderServed();
  });

  test(`nesting is bounded by SWITCHBOARD_JSON_MAX_DEPTH (${MAX_DEPTH}) in frames and in their data strings`, async () => {
    const alice = await connect();
    const mallory = await connect();
    for (const p of [alice, mallory]) await subscribed(p, 'private-deep', { auth: sign(p, 'private-deep') });
    const events = await published();
    // The frame object is one level: its data may nest 15, not 16.
    const frame = (depth: number) =>
      `{"event":"client-deep","channel":"private-deep","data":${nested(depth)}}`;
    await refused(mallory, frame(MAX_DEPTH), null, `JSON nested deeper than ${MAX_DEPTH}`);
    await refused(mallory, frame(6000), null, `JSON nested deeper than ${MAX_DEPTH}`);
    await refused(
      mallory,
      { event: 'pusher:subscribe', data: `{"channel":"deep","x":${nested(MAX_DEPTH)}}` },
      null,
      `pusher:subscribe data: JSON nested deeper than ${MAX_DEPTH}`,
    );
    assert.equal(await published(), events, 'nothing published');
    mallory.raw.send(frame(MAX_DEPTH - 1));
    const got = await alice.raw.expect((m) => m.event === 'client-deep');
    assert.equal(got.data, nested(MAX_DEPTH - 1), 'the deepest allowed arrives');
    assert.equal(eventsOn(alice, 'private-deep').length, 1, 'only that one');
    // channel_data nested too deep, though properly signed: refused, and the member is not stored.
    const deepData = JSON.stringify({ user_id: 'mallory', user_info: JSON.parse(nested(MAX_DEPTH)) });
    await subscriptionRefused(
      mallory,
      'presence-deep',
      400,
      `channel_data: JSON nested deeper than ${MAX_DEPTH}`,
      { auth: sign(mallory, 'presence-deep', deepData), channel_data: deepData },
    );
    assert.deepEqual(
      (await sdk.get({ path: '/channels/presence-deep/users' }).then((r) => r.json())) as object,
      {
        users: [],
      },
    );
    await bystanderServed();
  });

  test('unknown pusher: and pusher_internal: events are refused, never relayed', async () => {
    const alice = await connect();
    const mallory = await connect();
    for (const p of [alice, mallory])
      await subscribed(p, 'presence-forge', {
        auth: sign(p, 'presence-forge', JSON.stringify({ user_id: p === alice ? 'alice' : 'mallory' })),
        channel_data: JSON.stringify({ user_id: p === alice ? 'alice' : 'mallory' }),
      });
    for (const event of [
      'pusher:cache_miss',
      'pusher:connection_established',
      'pusher_internal:member_added',
      'pusher_internal:subscription_succeeded',
      'pusher:whatever',
    ]) {
      await refused(
        mallory,
        { event, channel: 'presence-forge', data: { user_id: 'ghost' } },
        null,
        `unknown event ${JSON.stringify(event)}`,
      );
    }
    await refused(
      mallory,
      { event: `pusher:${'x'.repeat(500)}` },
      null,
      `unknown event ${JSON.stringify(`pusher:${'x'.repeat(57)}`)}`,
    );
    await onlyMarker(alice, 'presence-forge');
    assert.ok(
      !alice.raw.received.some((m) => JSON.stringify(m).includes('ghost')),
      'no forged member reached alice',
    );
    await bystanderServed();
  });
});

describe('forged signatures', () => {
  test('a forged private-channel auth gets subscription_error 401, and the channel stays shut', async () => {
    const alice = await connect();
    const mallory = await connect();
    await subscribed(alice, 'private-vault', { auth: sign(alice, 'private-vault') });
    const auths = await rejections('auth');
    const forgeries = [
      undefined, // no auth at all
      '',
      `${APP.key}:${'0'.repeat(64)}`,
      sign(alice, 'private-vault'), // alice's signature, replayed on mallory's socket
      sign(mallory, 'private-other'), // signed for another channel
      sign(mallory, 'private-vault', undefined, OTHER.secret), // another app's secret
      sign(mallory, 'private-vault', undefined, APP.secret, OTHER.key), // the right HMAC, another key
      sign(mallory, 'private-vault').toUpperCase(),
    ];
    for (const auth of forgeries)
      await subscriptionRefused(
        mallory,
        'private-vault',
        401,
        'invalid signature',
        auth === undefined ? {} : { auth },
      );
    await subscriptionRefused(mallory, 'private-encrypted-vault', 401, 'invalid signature', {
      auth: sign(alice, 'private-encrypted-vault'),
    });
    assert.equal((await rejections('auth')) - auths, forgeries.length + 1);
    // Not subscribed: mallory's client event is refused, and nothing of the channel reaches it.
    await refused(
      mallory,
      { event: 'client-steal', channel: 'private-vault', data: {} },
      null,
      'not subscribed to private-vault',
    );
    await onlyMarker(alice, 'private-vault');
    assert.deepEqual(eventsOn(mallory, 'private-vault'), []);
    const info = (await sdk
      .get({ path: '/channels/private-vault', params: { info: 'subscription_count' } })
      .then((r) => r.json())) as object;
    assert.deepEqual(info, { occupied: true, subscription_count: 1 });
    await bystanderServed();
  });

  test('presence channel_data signed for another user_id is refused; the roster holds only real members', async () => {
    const alice = await connect();
    const mallory = await connect();
    const aliceData = JSON.stringify({ user_id: 'alice', user_info: { name: 'Alice' } });
    await subscribed(alice, 'presence-room', {
      auth: sign(alice, 'presence-room', aliceData),
      channel_data: aliceData,
    });
    const asAlice = JSON.stringify({ user_id: 'alice', user_info: { name: 'Mallory' } });
    const asBoss = JSON.stringify({ user_id: 'boss' });
    const cases: { auth: string; channel_data?: string }[] = [
      // Signed for mallory, sent claiming to be boss.
      { auth: sign(mallory, 'presence-room', JSON.stringify({ user_id: 'mallory' })), channel_data: asBoss },
      // Alice's signature, replayed.
      { auth: sign(alice, 'presence-room', aliceData), channel_data: aliceData },
      // Signed without channel_data, sent with it.
      { auth: sign(mallory, 'presence-room'), channel_data: asAlice },
      // Signed with channel_data, sent without it.
      { auth: sign(mallory, 'presence-room', asBoss) },
    ];
    for (const extra of cases)
      await subscriptionRefused(mallory, 'presence-room', 401, 'invalid signature', extra);
    // Properly signed but no user_id: 400.
    const noUser = JSON.stringify({ user_info: {} });
    await subscriptionRefused(
      mallory,
      'presence-room',
      400,
      'channel_data user_id must be a non-empty string or an integer',
      { auth: sign(mallory, 'presence-room', noUser), channel_data: noUser },
    );
    const users = (await sdk.get({ path: '/channels/presence-room/users' }).then((r) => r.json())) as object;
    assert.deepEqual(users, { users: [{ id: 'alice' }] });
    await onlyMarker(alice, 'presence-room');
    assert.ok(
      !alice.raw.received.some((m) => m.event === 'pusher_internal:member_added'),
      'no member added for a refused subscription',
    );
    await bystanderServed();
  });

  test('a forged signin gets pusher:error 4009 and a 4009 close; the user channel stays shut', async () => {
    const mallory = await connect();
    const userData = JSON.stringify({ id: 'alice' });
    mallory.raw.send({
      event: 'pusher:signin',
      data: {
        auth: `${APP.key}:${userSignature(OTHER.secret, mallory.socketId, userData)}`,
        user_data: userData,
      },
    });
    const closed = await mallory.raw.closed();
    assert.deepEqual(closed, { code: 4009, reason: 'invalid signin signature' });
    assert.deepEqual(errorsOf(mallory), [
      { event: 'pusher:error', data: { code: 4009, message: 'invalid signin signature' } },
    ]);
    await bystanderServed();
  });
});

describe('client events', () => {
  test('on a public channel, an encrypted one, or one not subscribed: refused, nothing published', async () => {
    const alice = await connect();
    const mallory = await connect();
    for (const p of [alice, mallory]) await subscribed(p, 'lobby');
    await subscribed(alice, 'private-club', { auth: sign(alice, 'private-club') });
    await subscribed(mallory, 'private-encrypted-box', { auth: sign(mallory, 'private-encrypted-box') });
    const events = await published();
    const notAllowed = await rejections('client_event_not_allowed');
    const onlyPrivate = 'client events are only allowed on private and presence channels';
    await refused(mallory, { event: 'client-shout', channel: 'lobby', data: { x: 1 } }, null, onlyPrivate);
    await refused(
      mallory,
      { event: 'client-shout', channel: 'private-encrypted-box', data: 'x' },
      null,
      onlyPrivate,
    );
    await refused(
      mallory,
      { event: 'client-shout', channel: 'private-club', data: { x: 1 } },
      null,
      'not subscribed to private-club',
    );
    await refused(
      mallory,
      { event: 'client-shout', channel: '#server-to-user-alice', data: {} },
      null,
      onlyPrivate,
    );
    assert.equal((await rejections('client_event_not_allowed')) - notAllowed, 4);
    assert.equal(await published(), events, 'nothing published');
    await onlyMarker(alice, 'lobby');
    await onlyMarker(alice, 'private-club');
    await bystanderServed();
  });

  test(`data over the app's max_message_size (${APP.max_message_size}) is refused; at it, delivered`, async () => {
    const alice = await connect();
    const mallory = await connect();
    for (const p of [alice, mallory])
      await subscribed(p, 'private-cache-big', { auth: sign(p, 'private-cache-big') });
    const tooLarge = await rejections('too_large');
    const message = `event data larger than ${APP.max_message_size} bytes`;
    await refused(
      mallory,
      { event: 'client-big', channel: 'private-cache-big', data: 'x'.repeat(APP.max_message_size + 1) },
      null,
      message,
    );
    // Object data counts as its JSON: {"b":"…"} is 8 bytes around the string. Multi-byte characters count as bytes.
    await refused(
      mallory,
      {
        event: 'client-big',
        channel: 'private-cache-big',
        data: { b: 'x'.repeat(APP.max_message_size - 7) },
      },
      null,
      message,
    );
    await refused(
      mallory,
      { event: 'client-big', channel: 'private-cache-big', data: 'é'.repeat(APP.max_message_size / 2 + 1) },
      null,
      message,
    );
    assert.equal((await rejections('too_large')) - tooLarge, 3);
    // Nothing stored in the cache channel: a new subscriber misses.
    const late = await connect();
    await subscribed(late, 'private-cache-big', { auth: sign(late, 'private-cache-big') });
    await late.raw.expect((m) => m.event === 'pusher:cache_miss' && m.channel === 'private-cache-big');
    mallory.raw.send({
      event: 'client-big',
      channel: 'private-cache-big',
      data: 'y'.repeat(APP.max_message_size),
    });
    const at = await alice.raw.expect((m) => m.event === 'client-big');
    assert.equal(at.data.length, APP.max_message_size);
    assert.equal(eventsOn(alice, 'private-cache-big').length, 1);
    await bystanderServed();
  });

  test(`a frame over SWITCHBOARD_MAX_MESSAGE_SIZE (${MAX_FRAME}) gets pusher:error 4301 and is dropped`, async () => {
    const alice = await connect();
    const mallory = await connect();
    for (const p of [alice, mallory]) await subscribed(p, 'private-huge', { auth: sign(p, 'private-huge') });
    const message = `frames are limited to ${MAX_FRAME} bytes`;
    const head = '{"event":"client-huge","channel":"private-huge","data":"';
    const frameOf = (size: number) => `${head}${'h'.repeat(size - head.length - 2)}"}`;
    await refused(mallory, frameOf(MAX_FRAME + 1), 4301, message);
    await refused(mallory, frameOf(1024 * 1024), 4301, message);
    // Not parsed: a too large frame that would be a subscribe subscribes nothing.
    await refused(
      mallory,
      JSON.stringify({
        event: 'pusher:subscribe',
        data: { channel: 'lobby-huge', pad: 'p'.repeat(MAX_FRAME) },
      }),
      4301,
      message,
    );
    assert.equal(
      mallory.raw.received.some((m) => m.channel === 'lobby-huge'),
      false,
    );
    assert.equal(mallory.raw.closeCode, undefined, 'the connection stays');
    await onlyMarker(alice, 'private-huge');
    await bystanderServed();
  });

  test(`a client event flood past max_client_events_per_second (${EVENTS_PER_SECOND}) gets 4301 for the excess`, async () => {
    const alice = await connect();
    const mallory = await connect();
    for (const p of [alice, mallory])
      await subscribed(p, 'private-flood', { auth: sign(p, 'private-flood') });
    const rate = await rejections('client_event_rate');
    const events = await published();
    const sent = 3 * EVENTS_PER_SECOND;
    for (let i = 0; i < sent; i++)
      mallory.raw.send({ event: 'client-flood', channel: 'private-flood', data: { i } });
    const limited = () =>
      errorsOf(mallory).filter(
        (e) => e.data.code === 4301 && e.data.message === 'Client event rejected due to rate limit',
      );
    // Every event is either delivered to alice or refused to mallory.
    await waitUntil(
      () => eventsOn(alice, 'private-flood').length + limited().length === sent,
      5000,
      () => `${sent} events accounted for: ${eventsOn(alice, 'private-flood').length} + ${limited().length}`,
    );
    // One bucket of 10 (the bucket refills once per whole second: at most once in this burst).
    const delivered = eventsOn(alice, 'private-flood').length;
    assert.ok(
      delivered === EVENTS_PER_SECOND || delivered === 2 * EVENTS_PER_SECOND,
      `${delivered} delivered`,
    );
    // The first ten in order; after a refill, later ones (each at most once, in order).
    const order = eventsOn(alice, 'private-flood').map((m) => JSON.parse(m.data).i as number);
    assert.deepEqual(
      order.slice(0, EVENTS_PER_SECOND),
      Array.from({ length: EVENTS_PER_SECOND }, (_, i) => i),
    );
    assert.ok(
      order.every((i, n) => n === 0 || i > order[n - 1]!),
      `in order: ${order}`,
    );
    assert.equal((await rejections('client_event_rate')) - rate, sent - delivered);
    assert.equal((await published()) - events, delivered);
    assert.equal(mallory.raw.closeCode, undefined, 'refused, not closed');
    await bystanderServed();
  });

  test(`a frame flood past SWITCHBOARD_COMMANDS_PER_SECOND (${COMMANDS_PER_SECOND}) is closed with 4100 after a second's worth of refusals`, async () => {
    const mallory = await connect();
    await subscribed(mallory, 'flood-watch'); // one frame of the bucket
    // The rest of the bucket answered, then as many refused in a row: still open.
    const burst = COMMANDS_PER_SECOND - 1 + COMMANDS_PER_SECOND;
    for (let i = 0; i < burst; i++) mallory.raw.send('{"event":"pusher:ping","data":{}}');
    const pongs = () => mallory.raw.received.filter((m) => m.event === 'pusher:pong').length;
    await waitUntil(
      () => pongs() === COMMANDS_PER_SECOND - 1,
      5000,
      () => `pongs: ${pongs()}`,
    );
    // Refused frames get no answer; the connection is there: an event still reaches it after the burst.
    await sdk.trigger('flood-watch', 'after-burst', 'alive');
    await mallory.raw.expect((m) => m.event === 'after-burst');
    assert.equal(mallory.raw.closeCode, undefined);
    assert.equal(pongs(), COMMANDS_PER_SECOND - 1, 'the refused frames were not answered');
    // One refusal more than a second's worth: closed.
    mallory.raw.send('{"event":"pusher:ping","data":{}}');
    assert.deepEqual(await mallory.raw.closed(), { code: 4100, reason: 'too many messages' });
    assert.equal(
      await metric(gateway, 'switchboard_disconnects_total', [
        'transport="pusher"',
        'reason="rate_limit"',
        'code="4100"',
      ]),
      1,
    );
    await bystanderServed();
  });
});

describe('channel names and limits', () => {
  test("too long, bad characters, another user's server-to-user channel: subscription_error", async () => {
    const mallory = await connect();
    const badCharacters = 'channel name may only hold A-Z a-z 0-9 _ - = @ , . ;';
    const bad = await rejections('bad_channel');
    await subscriptionRefused(mallory, 'x'.repeat(165), 400, 'channel name longer than 164 characters');
    await subscriptionRefused(
      mallory,
      `private-${'x'.repeat(157)}`,
      400,
      'channel name longer than 164 characters',
    );
    await subscriptionRefused(mallory, '', 400, 'channel name is empty');
    for (const name of ['a b', 'a*', 'a>', 'news:x', 'é', 'a\u0000', '#secret', '#server-to-user-'])
      await subscriptionRefused(mallory, name, 400, badCharacters);
    const notOwn = "only a signed-in user's own server-to-user channel";
    await subscriptionRefused(mallory, '#server-to-user-alice', 403, notOwn);
    assert.equal((await rejections('bad_channel')) - bad, 12);
    // At the edge: 164 characters pass.
    await subscribed(mallory, 'x'.repeat(164));

    // Signed in as mallory, still not alice's; alice's own is hers.
    const alice = await connect();
    for (const [p, id] of [
      [mallory, 'mallory'],
      [alice, 'alice'],
    ] as const) {
      const userData = JSON.stringify({ id });
      p.raw.send({
        event: 'pusher:signin',
        data: { auth: `${APP.key}:${userSignature(APP.secret, p.socketId, userData)}`, user_data: userData },
      });
      await p.raw.expect((m) => m.event === 'pusher:signin_success');
    }
    await subscriptionRefused(mallory, '#server-to-user-alice', 403, notOwn);
    await subscribed(alice, '#server-to-user-alice');
    await sdk.sendToUser('alice', 'private-note', { for: 'alice' });
    await alice.raw.expect((m) => m.event === 'private-note');
    await onlyMarker(alice, '#server-to-user-alice', ['private-note']);
    assert.equal(
      mallory.raw.received.some((m) => m.event === 'private-note' || m.event === 'marker'),
      false,
      "nothing of alice's reached mallory",
    );
    await bystanderServed();
  });

  test(`1000 subscribes on one connection: ${MAX_CHANNELS} succeed (max_channels_per_connection), the rest are refused`, async () => {
    const mallory = await connect();
    const names = Array.from({ length: 1000 }, (_, i) => `many-${i}`);
    for (const channel of names) mallory.raw.send({ event: 'pusher:subscribe', data: { channel } });
    const answers = () =>
      mallory.raw.received.filter(
        (m) =>
          m.event === 'pusher_internal:subscription_succeeded' || m.event === 'pusher:subscription_error',
      );
    await waitUntil(
      () => answers().length === names.length,
      10_000,
      () => `answers: ${answers().length}`,
    );
    const ok = answers().filter((m) => m.event === 'pusher_internal:subscription_succeeded');
    const refusedOnes = answers().filter((m) => m.event === 'pusher:subscription_error');
    assert.equal(ok.length, MAX_CHANNELS);
    assert.equal(refusedOnes.length, names.length - MAX_CHANNELS);
    assert.deepEqual(refusedOnes[0].data, {
      type: 'AuthError',
      error: `at most ${MAX_CHANNELS} channels per connection`,
      status: 400,
    });
    const occupied = (await sdk
      .get({ path: '/channels', params: { filter_by_prefix: 'many-' } })
      .then((r) => r.json())) as { channels: object };
    assert.equal(Object.keys(occupied.channels).length, MAX_CHANNELS);
    // A refused channel gets nothing; an accepted one gets its events.
    const first = ok[0].channel as string;
    const other = refusedOnes[0].channel as string;
    await sdk.trigger([other, first], 'fanout', 'x');
    await onlyMarker(mallory, first, ['fanout']);
    assert.deepEqual(eventsOn(mallory, other), []);
    await bystanderServed();
  });

  test('the same channel twice in one burst: one subscription, the other refused', async () => {
    const mallory = await connect();
    for (let i = 0; i < 2; i++) mallory.raw.send({ event: 'pusher:subscribe', data: { channel: 'twice' } });
    await waitUntil(
      () => mallory.raw.received.filter((m) => m.channel === 'twice').length >= 2,
      5000,
      () => 'two answers',
    );
    assert.deepEqual(
      mallory.raw.received.filter((m) => m.channel === 'twice').map((m) => m.event),
      ['pusher_internal:subscription_succeeded', 'pusher:subscription_error'],
    );
    const info = (await sdk
      .get({ path: '/channels/twice', params: { info: 'subscription_count' } })
      .then((r) => r.json())) as object;
    assert.deepEqual(info, { occupied: true, subscription_count: 1 });
    // Delivered once, not once per subscribe.
    await sdk.trigger('twice', 'once', 'x');
    await onlyMarker(mallory, 'twice', ['once']);
  });
});

describe('while the broker reconnects', () => {
  test(
    'subscribes waiting for NATS still count against max_channels_per_connection, and an unsubscribe meanwhile holds',
    { timeout: 60_000 },
    async () => {
      const nats = await startNats();
      const limited = {
        id: 'limited-app',
        key: 'limited-key',
        secret: 'limited-secret',
        max_channels_per_connection: 5,
      };
      const clustered = await startGateway({
        SWITCHBOARD_BROKER: 'nats',
        SWITCHBOARD_NATS_URL: nats.url,
        SWITCHBOARD_PUSHER_APPS: JSON.stringify([limited]),
      });
      try {
        const raw = new RawClient(
          `ws://${clustered.host}:${clustered.clientPort}/app/${limited.key}?protocol=7`,
        );
        opened.push(raw);
        await raw.expect((m) => m.event === 'pusher:connection_established');
        await nats.stop();
        await waitUntil(
          async () => (await metric(clustered, 'switchboard_broker_connected')) === 0,
          10_000,
          () => 'the gateway to see NATS gone',
        );
        for (let i = 0; i < 20; i++) raw.send({ event: 'pusher:subscribe', data: { channel: `wait-${i}` } });
        raw.send({ event: 'pusher:unsubscribe', data: { channel: 'wait-0' } });
        await nats.restart();
        const answered = (n: number) =>
          raw.received.some(
            (m) =>
              m.channel === `wait-${n}` &&
              (m.event === 'pusher_internal:subscription_succeeded' ||
                m.event === 'pusher:subscription_error'),
          );
        await waitUntil(
          () => Array.from({ length: 19 }, (_, i) => i + 1).every(answered),
          30_000,
          () => 'every subscribe but the unsubscribed one answered',
        );
        const succeeded = raw.received
          .filter((m) => m.event === 'pusher_internal:subscription_succeeded')
          .map((m) => m.channel as string);
        assert.ok(succeeded.length <= limited.max_channels_per_connection, `succeeded: ${succeeded}`);
        assert.ok(!succeeded.includes('wait-0'), 'wait-0 was unsubscribed before it was ready');
        const local = await fetch(`${clustered.internalUrl}/metrics`).then((r) => r.text());
        const subscriptions = Number(/^switchboard_subscriptions (\d+)/m.exec(local)?.[1]);
        assert.ok(subscriptions <= limited.max_channels_per_connection, `${subscriptions} held`);
      } finally {
        await clustered.stop();
        await nats.stop();
      }
    },
  );
});

describe('connections refused at the door', () => {
  const urls = (): [string, string, number, string][] => [
    ['an unknown app key', wsUrl('no-such-key'), 4001, 'Application does not exist'],
    ['a disabled app', wsUrl(OFF.key), 4003, 'Application disabled'],
    ['no protocol version', wsUrl(APP.key, ''), 4008, 'No protocol version supplied'],
    ['an empty protocol version', wsUrl(APP.key, 'protocol='), 4008, 'No protocol version supplied'],
    ['a malformed protocol version', wsUrl(APP.key, 'protocol=seven'), 4006, 'Invalid version string format'],
    ['a fractional protocol version', wsUrl(APP.key, 'protocol=7.0'), 4006, 'Invalid version string format'],
    ['protocol 4', wsUrl(APP.key, 'protocol=4'), 4007, 'Unsupported protocol version'],
    ['protocol 8', wsUrl(APP.key, 'protocol=8'), 4007, 'Unsupported protocol version'],
    [
      'an unknown key with a bad version',
      wsUrl('no-such-key', 'protocol=99'),
      4001,
      'Application does not exist',
    ],
  ];

  test('unknown key 4001, disabled app 4003, protocol versions 4006/4007/4008: pusher:error, then the close', async () => {
    const before = await metric(gateway, 'switchboard_connects_total', [
      'transport="pusher"',
      'outcome="rejected"',
      'reason="app"',
    ]);
    for (const [what, url, code, message] of urls()) {
      const raw = new RawClient(url);
      opened.push(raw);
      const closed = await raw.closed();
      assert.deepEqual(closed, { code, reason: message }, what);
      assert.deepEqual(raw.received, [{ event: 'pusher:error', data: { code, message } }], what);
    }
    assert.equal(
      (await metric(gateway, 'switchboard_connects_total', [
        'transport="pusher"',
        'outcome="rejected"',
        'reason="app"',
      ])) - before,
      urls().length,
    );
    // None of them counts as a connection of the app.
    assert.equal(await metric(gateway, 'switchboard_pusher_connections', [`app="${OFF.id}"`]), 0);
    // The supported versions connect: 5, 6 and 7.
    for (const version of ['5', '6', '7']) {
      const raw = new RawClient(wsUrl(APP.key, `protocol=${version}`));
      opened.push(raw);
      await raw.expect((m) => m.event === 'pusher:connection_established');
    }
    await bystanderServed();
  });
});

/** A signed HTTP API call, as the pusher SDK makes it; `tamper` changes what is sent after signing. */
async function apiCall(
  method: 'GET' | 'POST',
  path: string,
  body: string | undefined,
  options: {
    timestamp?: number;
    key?: string;
    secret?: string;
    params?: Record<string, string>;
    /** The query string that is sent, from the signed one. */
    query?: (signed: string) => string;
    /** The body that is sent, instead of the signed one. */
    sent?: string;
  } = {},
): Promise<{ status: number; text: string }> {
  const signed = signRequest({
    method,
    path,
    key: options.key ?? APP.key,
    secret: options.secret ?? APP.secret,
    timestampSeconds: options.timestamp ?? Math.floor(Date.now() / 1000),
    ...(options.params ? { params: options.params } : {}),
    ...(body !== undefined ? { body } : {}),
  });
  const query = options.query ? options.query(signed) : signed;
  const res = await fetch(`${gateway.internalUrl}${path}?${query}`, {
    method,
    headers: { 'content-type': 'application/json' },
    ...(method === 'POST' ? { body: options.sent ?? body ?? '' } : {}),
  });
  return { status: res.status, text: await res.text() };
}

const eventsPath = `/apps/${APP.id}/events`;
const batchPath = `/apps/${APP.id}/batch_events`;
const trigger = (channel: string, name = 'api-event', data = '{"x":1}') =>
  JSON.stringify({ name, data, channels: [channel] });

describe('the HTTP API', () => {
  let watcher: Pusher;
  /** A cache channel of the test's own, that has never had an event (each marker is cached). */
  let cached = '';
  let tests = 0;

  before(async () => {
    watcher = await connect();
    await subscribed(watcher, 'api-watch');
  });

  beforeEach(async () => {
    cached = `cache-api-watch-${++tests}`;
    await subscribed(watcher, cached);
    await watcher.raw.expect((m) => m.event === 'pusher:cache_miss' && m.channel === cached);
  });

  /** Nothing reached the watcher on either channel, and the cache channel still misses for a newcomer. */
  async function nothingPublished(events: number): Promise<void> {
    assert.equal(await published(), events, 'the events counter stands still');
    const late = await connect();
    await subscribed(late, cached);
    await late.raw.expect((m) => m.event === 'pusher:cache_miss' && m.channel === cached);
    late.raw.ws.terminate();
    await onlyMarker(watcher, 'api-watch');
    await onlyMarker(watcher, cached);
    watcher.raw.received.length = 0;
  }

  test('a tampered body, a stale or future timestamp, a repeated parameter, another key: 400 or 401', async () => {
    const events = await published();
    const unauthorized = await rejections('api_unauthorized');
    const body = trigger('api-watch');
    const now = Math.floor(Date.now() / 1000);
    const cases: [string, Promise<{ status: number; text: string }>, number, RegExp | string][] = [
      [
        'tampered body',
        apiCall('POST', eventsPath, body, { sent: trigger(cached) }),
        401,
        'body_md5 does not match the body',
      ],
      [
        'body stripped',
        apiCall('POST', eventsPath, body, { sent: '' }),
        401,
        'body_md5 does not match the body',
      ],
      [
        'tampered query',
        apiCall('POST', eventsPath, body, {
          params: { info: 'subscription_count' },
          query: (q) => q.replace('info=subscription_count', 'info=user_count'),
        }),
        401,
        /^Invalid signature: you should have sent HmacSHA256Hex\(/,
      ],
      [
        'stale timestamp',
        apiCall('POST', eventsPath, body, { timestamp: now - 601 }),
        401,
        /^Timestamp expired: Given timestamp \(.+\) not within 600s of server time \(.+\)$/,
      ],
      [
        'future timestamp',
        apiCall('POST', eventsPath, body, { timestamp: now + 700 }),
        401,
        /^Timestamp expired: /,
      ],
      [
        'repeated parameter',
        apiCall('POST', eventsPath, body, { query: (q) => `${q}&auth_key=${APP.key}` }),
        400,
        'Duplicate query parameter auth_key',
      ],
      [
        'repeated parameter, other case',
        apiCall('POST', eventsPath, body, {
          params: { info: 'subscription_count' },
          query: (q) => `${q}&INFO=x`,
        }),
        400,
        'Duplicate query parameter info',
      ],
      [
        'repeated signature',
        apiCall('POST', eventsPath, body, { query: (q) => `${q}&auth_signature=${'0'.repeat(64)}` }),
        400,
        'Duplicate query parameter auth_signature',
      ],
      [
        'another app’s key',
        apiCall('POST', eventsPath, body, { key: OTHER.key, secret: OTHER.secret }),
        401,
        'auth_key does not belong to this app',
      ],
      [
        'the right key, another secret',
        apiCall('POST', eventsPath, body, { secret: OTHER.secret }),
        401,
        /^Invalid signature: /,
      ],
      ['unknown key', apiCall('POST', eventsPath, body, { key: 'nobody' }), 401, 'Unknown auth_key nobody'],
      [
        'unsigned',
        fetch(`${gateway.internalUrl}${eventsPath}`, { method: 'POST', body }).then(async (r) => ({
          status: r.status,
          text: await r.text(),
        })),
        401,
        'Missing auth_key',
      ],
    ];
    for (const [what, call, status, message] of cases) {
      const res = await call;
      assert.equal(res.status, status, `${what}: ${res.text}`);
      if (typeof message === 'string') assert.equal(res.text, `${message}\n`, what);
      else assert.match(res.text.trimEnd(), message, what);
    }
    assert.ok((await rejections('api_unauthorized')) - unauthorized >= cases.length - 1);
    // At the edge of the skew: 590 s old is still taken.
    const ok = await apiCall('POST', eventsPath, trigger('api-watch', 'skewed'), { timestamp: now - 590 });
    assert.equal(ok.status, 200, ok.text);
    await watcher.raw.expect((m) => m.event === 'skewed');
    watcher.raw.received.length = 0;
    await nothingPublished(events + 1);
    await bystanderServed();
  });

  test('an oversized body gets 413, data over max_message_size 413, a body nested too deep 400', async () => {
    const events = await published();
    const huge = trigger('api-watch', 'huge', 'h'.repeat(1024 * 1024));
    const body = await apiCall('POST', eventsPath, huge);
    assert.deepEqual(body, { status: 413, text: 'request body larger than 1048576 bytes\n' });
    const data = await apiCall(
      'POST',
      eventsPath,
      trigger(cached, 'big', 'b'.repeat(APP.max_message_size + 1)),
    );
    assert.deepEqual(data, {
      status: 413,
      text: `Payload too large: data is limited to ${APP.max_message_size} bytes\n`,
    });
    const deep = await apiCall(
      'POST',
      eventsPath,
      `{"name":"deep","data":"x","channels":["api-watch"],"x":${nested(MAX_DEPTH)}}`,
    );
    assert.deepEqual(deep, { status: 400, text: `body: JSON nested deeper than ${MAX_DEPTH}\n` });
    await nothingPublished(events);
    await bystanderServed();
  });

  test('a batch of 11, a batch with one bad event, reserved and bad names: 400, nothing of it published', async () => {
    const events = await published();
    const event = (name: string, channel = 'api-watch', data = '"d"') => ({ name, data, channel });
    const batch = (list: unknown[]) => JSON.stringify({ batch: list });
    const cases: [string, string, string, string, number?][] = [
      [
        'a batch of 11',
        batchPath,
        batch(Array.from({ length: 11 }, (_, i) => event(`e${i}`))),
        'Batch too large (11 > 10)',
      ],
      [
        'the last of 10 with a reserved name',
        batchPath,
        batch([...Array.from({ length: 9 }, (_, i) => event(`ok${i}`)), event('pusher:member_added')]),
        'event names starting with pusher: or pusher_internal: are reserved',
      ],
      [
        'one with a bad channel',
        batchPath,
        batch([event('fine'), event('fine', cached), event('fine', 'bad channel')]),
        'channel name may only hold A-Z a-z 0-9 _ - = @ , . ;',
      ],
      [
        'one with data too large',
        batchPath,
        batch([event('fine', cached), { ...event('big'), data: 'x'.repeat(APP.max_message_size + 1) }]),
        `Payload too large: data is limited to ${APP.max_message_size} bytes`,
        413,
      ],
      [
        'one with two channels',
        batchPath,
        batch([event('fine'), { name: 'two', data: 'x', channels: ['api-watch', cached] }]),
        'a batch event has one channel',
      ],
      ['one not an object', batchPath, batch([event('fine'), 'nope']), 'an event must be a JSON object'],
      ['no array', batchPath, JSON.stringify({ batch: event('fine') }), 'batch must be an array of events'],
      [
        'pusher: name',
        eventsPath,
        trigger(cached, 'pusher:subscription_succeeded'),
        'event names starting with pusher: or pusher_internal: are reserved',
      ],
      [
        'pusher_internal: name',
        eventsPath,
        trigger('api-watch', 'pusher_internal:member_removed'),
        'event names starting with pusher: or pusher_internal: are reserved',
      ],
      ['empty name', eventsPath, trigger('api-watch', ''), 'event name is empty'],
      [
        'long name',
        eventsPath,
        trigger('api-watch', 'n'.repeat(201)),
        'event name longer than 200 characters',
      ],
      [
        'data not a string',
        eventsPath,
        JSON.stringify({ name: 'x', data: { x: 1 }, channels: ['api-watch'] }),
        'data must be a string',
      ],
      [
        'no channels',
        eventsPath,
        JSON.stringify({ name: 'x', data: 'x', channels: [] }),
        'channels must be a non-empty array of channel names',
      ],
      [
        '101 channels',
        eventsPath,
        JSON.stringify({
          name: 'x',
          data: 'x',
          channels: ['api-watch', ...Array.from({ length: 100 }, (_, i) => `c${i}`)],
        }),
        'at most 100 channels per event',
      ],
      [
        'a forged socket_id',
        eventsPath,
        JSON.stringify({ name: 'x', data: 'x', channel: 'api-watch', socket_id: 'abc' }),
        'invalid socket_id',
      ],
      ['not an object', eventsPath, '[1]', 'body must be a JSON object'],
      ['not JSON', eventsPath, '{"name":', 'body: malformed JSON'],
    ];
    for (const [what, path, body, message, status = 400] of cases) {
      const res = await apiCall('POST', path, body);
      assert.deepEqual(res, { status, text: `${message}\n` }, what);
    }
    // A batch of 10 is taken, and its events arrive.
    const ten = await apiCall(
      'POST',
      batchPath,
      batch(Array.from({ length: 10 }, (_, i) => event(`ten${i}`))),
    );
    assert.equal(ten.status, 200, ten.text);
    await watcher.raw.expect((m) => m.event === 'ten9');
    assert.deepEqual(
      eventsOn(watcher, 'api-watch').map((m) => m.event),
      Array.from({ length: 10 }, (_, i) => `ten${i}`),
    );
    watcher.raw.received.length = 0;
    await nothingPublished(events + 10);
    await bystanderServed();
  });
});

describe('after all of it', () => {
  test('the gateway is up, the bystander served, and nothing reached the last resort', async () => {
    await bystanderServed();
    assert.equal((await fetch(`${gateway.internalUrl}/readyz`)).status, 200);
    assert.equal(await metric(gateway, 'switchboard_uncaught_errors_total'), 0);
    assert.equal(await metric(gateway, 'switchboard_handler_errors_total'), 0);
    assert.equal(gateway.process.exitCode, null);
  });
});
