/** Pusher protocol 7 wire format: client frames as pusher-js sends them and hostile ones, names, socket ids, server frames. */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import Pusher from 'pusher';
import * as wire from '../src/pusher/protocol.js';

const LIMITS = { maxDepth: 16 };
const parse = (frame: unknown) =>
  wire.parseClientFrame(typeof frame === 'string' ? frame : JSON.stringify(frame), LIMITS);
const accepted = (frame: unknown): wire.ClientFrame => {
  const result = parse(frame);
  assert.ok(result.ok, `refused: ${JSON.stringify(frame)}: ${result.ok ? '' : result.reason}`);
  return result.value;
};
const refused = (frame: unknown, reason: RegExp) => {
  const result = parse(frame);
  assert.equal(result.ok, false, JSON.stringify(frame));
  assert.match(result.ok ? '' : result.reason, reason);
};
const nested = (depth: number) => '['.repeat(depth) + ']'.repeat(depth);

/** What pusher-js makes of a server frame: JSON, and `data` parsed again when it is a string holding JSON. */
function asPusherJsSeesIt(text: string): {
  event: string;
  channel?: string;
  data?: unknown;
  user_id?: string;
} {
  const frame = JSON.parse(text);
  if (typeof frame.data === 'string') {
    try {
      frame.data = JSON.parse(frame.data);
    } catch {
      // pusher-js keeps a string that is not JSON as it is.
    }
  }
  return frame;
}

describe('Pusher error codes', () => {
  test("the protocol page's codes and messages, frozen", () => {
    const { PusherErrors: E } = wire;
    assert.deepEqual(E.sslOnly, {
      code: 4000,
      message: 'Application only accepts SSL connections, reconnect using wss://',
    });
    assert.deepEqual(E.appNotFound, { code: 4001, message: 'Application does not exist' });
    assert.deepEqual(E.appDisabled, { code: 4003, message: 'Application disabled' });
    assert.deepEqual(E.overConnectionQuota, { code: 4004, message: 'Application is over connection quota' });
    assert.deepEqual(E.pathNotFound, { code: 4005, message: 'Path not found' });
    assert.deepEqual(E.invalidVersion, { code: 4006, message: 'Invalid version string format' });
    assert.deepEqual(E.unsupportedProtocol, { code: 4007, message: 'Unsupported protocol version' });
    assert.deepEqual(E.noProtocol, { code: 4008, message: 'No protocol version supplied' });
    assert.deepEqual(E.unauthorized, { code: 4009, message: 'Connection is unauthorized' });
    assert.deepEqual(E.overCapacity, { code: 4100, message: 'Over capacity' });
    assert.deepEqual(E.reconnect, { code: 4200, message: 'Generic reconnect immediately' });
    assert.deepEqual(E.pongNotReceived, { code: 4201, message: 'Pong reply not received' });
    assert.deepEqual(E.closedAfterInactivity, { code: 4202, message: 'Closed after inactivity' });
    assert.deepEqual(E.clientEventRateLimit, {
      code: 4301,
      message: 'Client event rejected due to rate limit',
    });
    assert.equal(E.watchlistLimit.code, 4302);
    assert.ok(Object.isFrozen(E));
    for (const entry of Object.values(E)) {
      assert.ok(Object.isFrozen(entry), entry.message);
      // Close codes travel with their message as the close reason, which RFC 6455 bounds to 123 bytes.
      if (entry.code < 4300) assert.ok(Buffer.byteLength(entry.message) <= 123, entry.message);
    }
    assert.throws(() => {
      (E.appNotFound as { code: number }).code = 1000;
    }, TypeError);
  });
});

describe('parseClientFrame', () => {
  test('the frames pusher-js 8 sends', () => {
    assert.deepEqual(accepted({ event: 'pusher:ping', data: {} }), { type: 'ping' });
    assert.deepEqual(accepted({ event: 'pusher:pong', data: {} }), { type: 'pong' });
    // Public channels: pusher-js sends an empty auth, and channel_data undefined (dropped by JSON).
    assert.deepEqual(accepted({ event: 'pusher:subscribe', data: { auth: '', channel: 'my-channel' } }), {
      type: 'subscribe',
      channel: 'my-channel',
      auth: '',
    });
    const channelData = '{"user_id":"1","user_info":{"name":"Ann"}}';
    assert.deepEqual(
      accepted({
        event: 'pusher:subscribe',
        data: { auth: 'key:abc', channel_data: channelData, channel: 'presence-room' },
      }),
      { type: 'subscribe', channel: 'presence-room', auth: 'key:abc', channelData },
    );
    assert.deepEqual(accepted({ event: 'pusher:unsubscribe', data: { channel: 'my-channel' } }), {
      type: 'unsubscribe',
      channel: 'my-channel',
    });
    assert.deepEqual(
      accepted({ event: 'pusher:signin', data: { auth: 'key:abc', user_data: '{"id":"1"}' } }),
      {
        type: 'signin',
        auth: 'key:abc',
        userData: '{"id":"1"}',
      },
    );
    assert.deepEqual(accepted({ event: 'client-typing', data: { who: 'ann' }, channel: 'private-room' }), {
      type: 'client',
      event: 'client-typing',
      channel: 'private-room',
      data: { who: 'ann' },
    });
  });

  test('subscribe data as a JSON string, client data as sent, null optional fields as absent', () => {
    assert.deepEqual(accepted({ event: 'pusher:subscribe', data: '{"channel":"a","auth":"k:s"}' }), {
      type: 'subscribe',
      channel: 'a',
      auth: 'k:s',
    });
    assert.deepEqual(accepted({ event: 'pusher:unsubscribe', data: '{"channel":"a"}' }), {
      type: 'unsubscribe',
      channel: 'a',
    });
    assert.deepEqual(
      accepted({ event: 'pusher:subscribe', data: { channel: 'a', auth: null, channel_data: null } }),
      {
        type: 'subscribe',
        channel: 'a',
      },
    );
    // A client event's string data is not parsed: it travels as the client sent it.
    const client = accepted({ event: 'client-x', channel: 'private-a', data: '{"not":"parsed"}' });
    assert.deepEqual(client, {
      type: 'client',
      event: 'client-x',
      channel: 'private-a',
      data: '{"not":"parsed"}',
    });
    assert.deepEqual(accepted({ event: 'client-x', channel: 'private-a' }), {
      type: 'client',
      event: 'client-x',
      channel: 'private-a',
      data: undefined,
    });
  });

  test('other pusher: and pusher_internal: events are unknown, not client events', () => {
    assert.deepEqual(accepted({ event: 'pusher:cache_miss' }), {
      type: 'unknown',
      event: 'pusher:cache_miss',
    });
    assert.deepEqual(accepted({ event: 'pusher_internal:member_added', channel: 'presence-a', data: {} }), {
      type: 'unknown',
      event: 'pusher_internal:member_added',
    });
  });

  test('frames that are not JSON objects with a string event', () => {
    refused('', /malformed/);
    refused('{"event":"pusher:ping"', /malformed/);
    refused('[{"event":"pusher:ping"}]', /object/);
    refused('null', /object/);
    refused('"pusher:ping"', /object/);
    refused('42', /object/);
    refused({ data: {} }, /event must be a string/);
    refused({ event: 7 }, /event must be a string/);
    refused({ event: ['pusher:ping'] }, /event must be a string/);
    refused({ event: null }, /event must be a string/);
  });

  test('subscribe, unsubscribe and signin with fields of the wrong type', () => {
    refused({ event: 'pusher:subscribe' }, /data must be an object/);
    refused({ event: 'pusher:subscribe', data: ['a'] }, /data must be an object/);
    refused({ event: 'pusher:subscribe', data: 5 }, /data must be an object/);
    refused({ event: 'pusher:subscribe', data: 'not json' }, /subscribe data: malformed/);
    refused({ event: 'pusher:subscribe', data: '["a"]' }, /data must be an object/);
    refused({ event: 'pusher:subscribe', data: {} }, /channel must be a string/);
    refused({ event: 'pusher:subscribe', data: { channel: 5 } }, /channel must be a string/);
    refused({ event: 'pusher:subscribe', data: { channel: ['a'] } }, /channel must be a string/);
    refused({ event: 'pusher:subscribe', data: { channel: 'a', auth: 5 } }, /auth must be a string/);
    // channel_data is signed as the string the auth endpoint produced: an object cannot be checked.
    refused(
      { event: 'pusher:subscribe', data: { channel: 'a', channel_data: { user_id: '1' } } },
      /channel_data/,
    );
    refused({ event: 'pusher:unsubscribe', data: { channel: {} } }, /channel must be a string/);
    refused({ event: 'pusher:unsubscribe', data: null }, /data must be an object/);
    refused({ event: 'pusher:signin', data: { auth: 'k:s' } }, /user_data must be a string/);
    refused({ event: 'pusher:signin', data: { user_data: '{}' } }, /auth must be a string/);
    refused(
      { event: 'pusher:signin', data: { auth: 'k:s', user_data: { id: '1' } } },
      /user_data must be a string/,
    );
  });

  test('client events: the client- prefix, the length bound and a string channel', () => {
    refused({ event: 'my-event', channel: 'private-a', data: {} }, /client-/);
    refused({ event: '', channel: 'private-a' }, /client-/);
    refused({ event: 'client-x', data: {} }, /channel/);
    refused({ event: 'client-x', channel: 7, data: {} }, /channel/);
    const longest = `client-${'e'.repeat(193)}`;
    assert.equal(longest.length, 200);
    assert.equal(accepted({ event: longest, channel: 'private-a' }).type, 'client');
    refused({ event: `${longest}e`, channel: 'private-a' }, /longer than 200/);
  });

  test('nesting is bounded in the frame and in a data string', () => {
    const deepest = JSON.parse(nested(LIMITS.maxDepth - 1));
    assert.equal(accepted({ event: 'client-x', channel: 'private-a', data: deepest }).type, 'client');
    refused(
      { event: 'client-x', channel: 'private-a', data: JSON.parse(nested(LIMITS.maxDepth)) },
      /deeper than 16/,
    );
    refused(`{"event":"client-x","channel":"private-a","data":${nested(100_000)}}`, /deeper than 16/);
    refused({ event: 'pusher:subscribe', data: `{"channel":"a","x":${nested(100_000)}}` }, /deeper than 16/);
    refused(
      { event: 'pusher:subscribe', data: `{"channel":"a","x":${nested(LIMITS.maxDepth)}}` },
      /deeper than 16/,
    );
  });
});

describe('channel names', () => {
  test('kinds and cache channels by prefix', () => {
    const cases: [string, wire.ChannelKind, boolean][] = [
      ['my-channel', 'public', false],
      ['cache-my-channel', 'public', true],
      ['private-room', 'private', false],
      ['private-cache-room', 'private', true],
      ['presence-room', 'presence', false],
      ['presence-cache-room', 'presence', true],
      ['private-encrypted-room', 'encrypted', false],
      ['private-encrypted-cache-room', 'encrypted', true],
      ['privately', 'public', false],
      ['presences-room', 'public', false],
      ['public-cache-x', 'public', false],
      ['private-presence-x', 'private', false],
    ];
    for (const [name, kind, cache] of cases) assert.deepEqual(wire.channelKind(name), { kind, cache }, name);
  });

  test("Pusher's characters, non-empty, at most 164", () => {
    for (const name of ['foo-bar_1234@=,.;', 'a', 'private-A.b;c', 'presence-cache-x=y@z']) {
      assert.equal(wire.checkChannelName(name), undefined, name);
    }
    assert.equal(wire.checkChannelName('x'.repeat(164)), undefined);
    assert.match(wire.checkChannelName('x'.repeat(165)) ?? '', /longer than 164/);
    assert.match(wire.checkChannelName('x'.repeat(1_000_000)) ?? '', /longer than 164/);
    assert.match(wire.checkChannelName('abcdef', 5) ?? '', /longer than 5/);
    assert.match(wire.checkChannelName('') ?? '', /empty/);
    for (const name of [
      'a b',
      'a/b',
      'a:b',
      'a*b',
      'a>b',
      'é',
      'a\nb',
      'a\u0000',
      '#server-to-user-1',
      'a+b',
      'a%20',
    ]) {
      assert.match(wire.checkChannelName(name) ?? '', /may only hold/, JSON.stringify(name));
    }
  });

  test('#server-to-user- channels are recognised apart from channel names', () => {
    assert.equal(wire.serverToUserChannel('user-1'), '#server-to-user-user-1');
    assert.equal(wire.parseServerToUserChannel('#server-to-user-user-1'), 'user-1');
    assert.equal(wire.parseServerToUserChannel(wire.serverToUserChannel('a#b')), 'a#b');
    assert.equal(wire.parseServerToUserChannel('#server-to-user-'), undefined);
    assert.equal(wire.parseServerToUserChannel('server-to-user-1'), undefined);
    assert.equal(wire.parseServerToUserChannel('private-#server-to-user-1'), undefined);
    assert.notEqual(wire.checkChannelName(wire.serverToUserChannel('1')), undefined);
  });
});

describe('event names', () => {
  test('client events need client- and at most 200 characters', () => {
    assert.equal(wire.checkClientEventName('client-x'), undefined);
    assert.equal(wire.checkClientEventName('client-'.padEnd(200, 'x')), undefined);
    assert.match(wire.checkClientEventName('client-'.padEnd(201, 'x')) ?? '', /200/);
    assert.match(wire.checkClientEventName('x-client-y') ?? '', /client-/);
    assert.match(wire.checkClientEventName('Client-x') ?? '', /client-/);
  });

  test('API events: non-empty, at most 200, no reserved prefix', () => {
    assert.equal(wire.checkEventName('my-event'), undefined);
    assert.equal(wire.checkEventName('client-x'), undefined);
    assert.equal(wire.checkEventName('App\\Events\\OrderShipped'), undefined);
    assert.equal(wire.checkEventName('e'.repeat(200)), undefined);
    assert.match(wire.checkEventName('e'.repeat(201)) ?? '', /200/);
    assert.match(wire.checkEventName('') ?? '', /empty/);
    assert.match(wire.checkEventName('pusher:subscription_succeeded') ?? '', /reserved/);
    assert.match(wire.checkEventName('pusher_internal:member_added') ?? '', /reserved/);
  });
});

describe('socket ids', () => {
  test("Pusher's <digits>.<digits>, accepted by the pusher SDK, unique and random", () => {
    const sdk = new Pusher({ appId: '1', key: 'key', secret: 'secret', cluster: 'mt1' });
    const ids = new Set<string>();
    const firstHalves = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const id = wire.newSocketId();
      assert.match(id, /^\d+\.\d+$/);
      ids.add(id);
      firstHalves.add(id.split('.')[0]!);
    }
    assert.equal(ids.size, 20_000);
    // Both halves are random: 20,000 draws of 32 bits almost never repeat.
    assert.ok(firstHalves.size > 19_900, String(firstHalves.size));
    const [one] = ids;
    assert.doesNotThrow(() => sdk.authorizeChannel(one!, 'private-x'));
  });
});

describe('server frames', () => {
  test('connection_established carries its data double-encoded, with the activity timeout pusher-js requires', () => {
    const text = wire.connectionEstablished('123.456', 120);
    assert.equal(typeof JSON.parse(text).data, 'string');
    assert.deepEqual(asPusherJsSeesIt(text), {
      event: 'pusher:connection_established',
      data: { socket_id: '123.456', activity_timeout: 120 },
    });
  });

  test('pusher:error with and without a code; ping and pong', () => {
    assert.deepEqual(JSON.parse(wire.error(4301, 'slow down')), {
      event: 'pusher:error',
      data: { code: 4301, message: 'slow down' },
    });
    assert.deepEqual(JSON.parse(wire.error(null, 'Invalid signature')), {
      event: 'pusher:error',
      data: { code: null, message: 'Invalid signature' },
    });
    assert.deepEqual(asPusherJsSeesIt(wire.ping()), { event: 'pusher:ping', data: {} });
    assert.deepEqual(asPusherJsSeesIt(wire.pong()), { event: 'pusher:pong', data: {} });
  });

  test('subscription succeeded, plain and with a presence roster', () => {
    assert.deepEqual(JSON.parse(wire.subscriptionSucceeded('my-channel')), {
      event: 'pusher_internal:subscription_succeeded',
      channel: 'my-channel',
      data: '{}',
    });
    const roster = wire.presenceMembers([
      { user: 'ann', client: '1.1', chan_info: { name: 'Ann' } },
      { user: 'bob', client: '1.2' },
      { user: 'ann', client: '1.3', chan_info: { name: 'Second tab' } },
      { user: '__proto__', client: '1.4', chan_info: 'odd' },
    ]);
    assert.deepEqual(roster.ids, ['ann', 'bob', '__proto__']);
    assert.equal(roster.count, 3);
    const seen = asPusherJsSeesIt(wire.subscriptionSucceeded('presence-room', roster));
    assert.deepEqual(seen, {
      event: 'pusher_internal:subscription_succeeded',
      channel: 'presence-room',
      data: {
        presence: {
          ids: ['ann', 'bob', '__proto__'],
          hash: JSON.parse('{"ann":{"name":"Ann"},"bob":null,"__proto__":"odd"}'),
          count: 3,
        },
      },
    });
    // pusher-js finds each member by an own key of the hash, infoless ones included.
    const hash = (seen.data as { presence: { hash: object } }).presence.hash;
    for (const id of roster.ids) assert.ok(Object.hasOwn(hash, id), id);
  });

  test('subscription error as pusher-js shapes its own', () => {
    assert.deepEqual(JSON.parse(wire.subscriptionError('private-a', 401, 'Invalid signature')), {
      event: 'pusher:subscription_error',
      channel: 'private-a',
      data: { type: 'AuthError', error: 'Invalid signature', status: 401 },
    });
    assert.equal(
      JSON.parse(wire.subscriptionError('a', 400, 'bad', 'LimitReached')).data.type,
      'LimitReached',
    );
  });

  test('member added and removed, cache miss, signin success', () => {
    assert.deepEqual(asPusherJsSeesIt(wire.memberAdded('presence-a', 'ann', { name: 'Ann' })), {
      event: 'pusher_internal:member_added',
      channel: 'presence-a',
      data: { user_id: 'ann', user_info: { name: 'Ann' } },
    });
    assert.deepEqual(asPusherJsSeesIt(wire.memberAdded('presence-a', 'bob', undefined)).data, {
      user_id: 'bob',
      user_info: null,
    });
    assert.deepEqual(JSON.parse(wire.memberRemoved('presence-a', 'ann')), {
      event: 'pusher_internal:member_removed',
      channel: 'presence-a',
      data: '{"user_id":"ann"}',
    });
    assert.deepEqual(JSON.parse(wire.cacheMiss('cache-a')), {
      event: 'pusher:cache_miss',
      channel: 'cache-a',
      data: '{}',
    });
    const userData = '{"id":"ann","user_info":{"name":"Ann"}}';
    const signin = JSON.parse(wire.signinSuccess(userData));
    assert.deepEqual(signin, { event: 'pusher:signin_success', data: { user_data: userData } });
    // pusher-js parses user_data itself and requires a string id.
    assert.equal(JSON.parse(signin.data.user_data).id, 'ann');
  });

  test('channel events: string data as it is, other data JSON-encoded, user_id when given', () => {
    assert.deepEqual(JSON.parse(wire.event('my-event', 'my-channel', '{"some":"data"}')), {
      event: 'my-event',
      channel: 'my-channel',
      data: '{"some":"data"}',
    });
    assert.equal(JSON.parse(wire.event('e', 'c', 'plain text')).data, 'plain text');
    assert.deepEqual(asPusherJsSeesIt(wire.event('e', 'c', 'plain text')).data, 'plain text');
    assert.deepEqual(JSON.parse(wire.event('client-x', 'presence-a', { n: 1 }, 'ann')), {
      event: 'client-x',
      channel: 'presence-a',
      data: '{"n":1}',
      user_id: 'ann',
    });
    assert.equal(JSON.parse(wire.event('e', 'c', 5)).data, '5');
    assert.equal('data' in JSON.parse(wire.event('e', 'c', undefined)), false);
    assert.equal('user_id' in JSON.parse(wire.event('e', 'c', 'x')), false);
  });
});

describe('channel_data and user_data', () => {
  const MAX = 1024;
  test('presence channel_data: user_id, integer ids as strings, user_info optional', () => {
    assert.deepEqual(wire.parseChannelData('{"user_id":"ann","user_info":{"name":"Ann"}}', MAX, 16), {
      ok: true,
      value: { userId: 'ann', userInfo: { name: 'Ann' } },
    });
    // What the pusher SDK produces, and Laravel's numeric ids.
    const sdk = new Pusher({ appId: '1', key: 'key', secret: 'secret', cluster: 'mt1' });
    const auth = sdk.authorizeChannel('1.2', 'presence-a', { user_id: '7', user_info: { a: 1 } });
    assert.deepEqual(wire.parseChannelData(auth.channel_data, MAX, 16), {
      ok: true,
      value: { userId: '7', userInfo: { a: 1 } },
    });
    assert.deepEqual(wire.parseChannelData('{"user_id":42}', MAX, 16), { ok: true, value: { userId: '42' } });
  });

  test('presence channel_data refused', () => {
    const refusedData = (text: string | undefined, reason: RegExp, max = MAX) => {
      const result = wire.parseChannelData(text, max, 16);
      assert.equal(result.ok, false, text);
      assert.match(result.ok ? '' : result.reason, reason);
    };
    refusedData(undefined, /need channel_data/);
    refusedData('{"user_id":"ann"}', /larger than 10 bytes/, 10);
    refusedData(`{"user_id":"${'é'.repeat(600)}"}`, /larger than 1024 bytes/);
    refusedData('not json', /malformed/);
    refusedData(`{"user_id":"a","user_info":${nested(100)}}`, /deeper/);
    refusedData('["ann"]', /object/);
    refusedData('{}', /user_id/);
    refusedData('{"user_id":""}', /user_id/);
    refusedData('{"user_id":1.5}', /user_id/);
    refusedData('{"user_id":{"id":"ann"}}', /user_id/);
    refusedData('{"user_id":null}', /user_id/);
  });

  test('signin user_data: a non-empty string id', () => {
    const sdk = new Pusher({ appId: '1', key: 'key', secret: 'secret', cluster: 'mt1' });
    const { user_data } = sdk.authenticateUser('1.2', { id: 'ann', user_info: { name: 'Ann' } });
    assert.deepEqual(wire.parseUserData(user_data, 16), {
      ok: true,
      value: { id: 'ann', userInfo: { name: 'Ann' } },
    });
    assert.deepEqual(wire.parseUserData('{"id":"bob"}', 16), { ok: true, value: { id: 'bob' } });
    for (const [text, reason] of [
      ['{"id":1}', /id/],
      ['{"id":""}', /id/],
      ['{"name":"ann"}', /id/],
      ['"ann"', /object/],
      ['{"id":', /malformed/],
      [`{"id":"a","x":${nested(100)}}`, /deeper/],
    ] as const) {
      const result = wire.parseUserData(text, 16);
      assert.equal(result.ok, false, text);
      assert.match(result.ok ? '' : result.reason, reason);
    }
  });
});
