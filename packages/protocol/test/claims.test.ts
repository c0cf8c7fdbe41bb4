import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type ClaimLimits,
  type ClaimsCheck,
  type ConnectionClaims,
  connectionClaims,
  type SubscriptionClaims,
  subscriptionClaims,
} from '../src/index.js';

const NOW = 1_700_000_000;
const LIMITS: ClaimLimits = { maxSubs: 4, maxDepth: 3 };

function value<T>(r: ClaimsCheck<T>): T {
  assert.equal(r.ok, true, `expected ok, got ${JSON.stringify(r)}`);
  return (r as { ok: true; value: T }).value;
}

function failure<T>(r: ClaimsCheck<T>): { expired: boolean; reason: string } {
  assert.equal(r.ok, false, `expected failure, got ${JSON.stringify(r)}`);
  return r as { ok: false; expired: boolean; reason: string };
}

describe('connectionClaims', () => {
  test('a subscription token (it names a channel) is no connection token', () => {
    assert.match(
      failure(connectionClaims({ sub: '42', channel: 'chat:1' }, NOW, LIMITS)).reason,
      /subscription token/,
    );
    assert.match(
      failure(connectionClaims({ sub: '42', channel: '' }, NOW, LIMITS)).reason,
      /subscription token/,
    );
  });

  test('a connection token (no channel) is no subscription token', () => {
    assert.match(failure(subscriptionClaims({ sub: '42' }, NOW, LIMITS)).reason, /channel claim is required/);
  });

  test('minimal payload: anonymous user, no expiry, no channels', () => {
    const c: ConnectionClaims = value(connectionClaims({}, NOW, LIMITS));
    assert.deepEqual(c, { user: '', expiresAt: 0, channels: [] });
    assert.equal('info' in c, false);
    assert.equal('meta' in c, false);
  });

  test('sub becomes the user', () => {
    assert.equal(value(connectionClaims({ sub: '42' }, NOW, LIMITS)).user, '42');
  });

  test('sub null defaults to the anonymous user', () => {
    assert.equal(value(connectionClaims({ sub: null }, NOW, LIMITS)).user, '');
  });

  test('non-string sub is rejected', () => {
    for (const sub of [42, true, {}, ['1']]) {
      const f = failure(connectionClaims({ sub }, NOW, LIMITS));
      assert.equal(f.expired, false);
      assert.match(f.reason, /sub must be a string/);
    }
  });

  test('exp in the future is kept', () => {
    assert.equal(value(connectionClaims({ sub: '1', exp: NOW + 60 }, NOW, LIMITS)).expiresAt, NOW + 60);
  });

  test('exp one second ahead is still valid', () => {
    assert.equal(value(connectionClaims({ exp: NOW + 1 }, NOW, LIMITS)).expiresAt, NOW + 1);
  });

  test('exp in the past or equal to now is expired', () => {
    for (const exp of [NOW - 3600, NOW - 1, NOW, 0]) {
      const f = failure(connectionClaims({ sub: '1', exp }, NOW, LIMITS));
      assert.equal(f.expired, true, `exp ${exp}`);
      assert.match(f.reason, /expired/);
    }
  });

  test('absent exp means the token never expires', () => {
    assert.equal(value(connectionClaims({ sub: '1' }, NOW, LIMITS)).expiresAt, 0);
  });

  test('non-number exp is rejected, not treated as expired', () => {
    for (const exp of [String(NOW + 60), null, true, {}, Number.NaN, Number.POSITIVE_INFINITY]) {
      const f = failure(connectionClaims({ sub: '1', exp }, NOW, LIMITS));
      assert.equal(f.expired, false, `exp ${String(exp)}`);
      assert.match(f.reason, /exp must be a number/);
    }
  });

  test('channels must be an array of strings', () => {
    assert.deepEqual(value(connectionClaims({ channels: ['a', 'chat:b'] }, NOW, LIMITS)).channels, [
      'a',
      'chat:b',
    ]);
    assert.deepEqual(value(connectionClaims({ channels: [] }, NOW, LIMITS)).channels, []);
    for (const channels of ['a', { a: 1 }, [1], ['a', null], 5, null]) {
      if (channels === null) {
        // null falls back to the default (no channels)
        assert.deepEqual(value(connectionClaims({ channels }, NOW, LIMITS)).channels, []);
        continue;
      }
      const f = failure(connectionClaims({ channels }, NOW, LIMITS));
      assert.equal(f.expired, false);
      assert.match(f.reason, /channels must be an array of strings/);
    }
  });

  test('meta must be an object', () => {
    assert.deepEqual(value(connectionClaims({ meta: { plan: 'pro' } }, NOW, LIMITS)).meta, { plan: 'pro' });
    for (const meta of [null, [], 'x', 1, true]) {
      const f = failure(connectionClaims({ meta }, NOW, LIMITS));
      assert.equal(f.expired, false);
      assert.match(f.reason, /meta must be an object/);
    }
  });

  test('info passes through unchanged, whatever its type', () => {
    for (const info of [{ name: 'Ann' }, 'text', 0, false, null, [1, 2]]) {
      const c = value(connectionClaims({ sub: '1', info }, NOW, LIMITS));
      assert.deepEqual(c.info, info);
      assert.equal('info' in c, true);
    }
  });

  test('full payload', () => {
    const c = value(
      connectionClaims(
        { sub: 'u1', exp: NOW + 10, channels: ['#u1'], info: { n: 1 }, meta: { m: 2 }, iat: NOW, extra: 1 },
        NOW,
        LIMITS,
      ),
    );
    assert.deepEqual(c, {
      user: 'u1',
      expiresAt: NOW + 10,
      channels: ['#u1'],
      info: { n: 1 },
      meta: { m: 2 },
    });
  });

  test('sub is checked before exp', () => {
    assert.match(failure(connectionClaims({ sub: 1, exp: NOW - 1 }, NOW, LIMITS)).reason, /sub/);
  });
});

describe('subscriptionClaims', () => {
  test('channel is required', () => {
    for (const payload of [{}, { channel: '' }, { channel: 5 }, { channel: null }, { sub: '1' }]) {
      const f = failure(subscriptionClaims(payload, NOW, LIMITS));
      assert.equal(f.expired, false);
      assert.match(f.reason, /channel claim is required/);
    }
  });

  test('valid claims', () => {
    const c: SubscriptionClaims = value(subscriptionClaims({ sub: '42', channel: 'chat:1' }, NOW, LIMITS));
    assert.deepEqual(c, { user: '42', channel: 'chat:1', expiresAt: 0 });
  });

  test('user defaults to anonymous', () => {
    assert.equal(value(subscriptionClaims({ channel: 'c' }, NOW, LIMITS)).user, '');
  });

  test('non-string sub is rejected', () => {
    assert.match(
      failure(subscriptionClaims({ sub: 42, channel: 'c' }, NOW, LIMITS)).reason,
      /sub must be a string/,
    );
  });

  test('exp future, past and invalid', () => {
    assert.equal(value(subscriptionClaims({ channel: 'c', exp: NOW + 5 }, NOW, LIMITS)).expiresAt, NOW + 5);
    const past = failure(subscriptionClaims({ channel: 'c', exp: NOW - 5 }, NOW, LIMITS));
    assert.equal(past.expired, true);
    const now = failure(subscriptionClaims({ channel: 'c', exp: NOW }, NOW, LIMITS));
    assert.equal(now.expired, true);
    const bad = failure(subscriptionClaims({ channel: 'c', exp: 'soon' }, NOW, LIMITS));
    assert.equal(bad.expired, false);
    assert.match(bad.reason, /exp must be a number/);
  });

  test('expiry is reported even when the channel claim is missing', () => {
    assert.equal(failure(subscriptionClaims({ exp: NOW - 1 }, NOW, LIMITS)).expired, true);
  });

  test('info passes through', () => {
    const c = value(subscriptionClaims({ channel: 'c', info: { role: 'mod' } }, NOW, LIMITS));
    assert.deepEqual(c.info, { role: 'mod' });
    assert.equal('info' in value(subscriptionClaims({ channel: 'c' }, NOW, LIMITS)), false);
  });
});

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64');

describe('connectionClaims: Centrifugo v6 claims', () => {
  test('subs: channels with their info, data and overrides; `channels` ignored beside it', () => {
    const c = value(
      connectionClaims(
        {
          sub: '1',
          channels: ['ignored'],
          subs: {
            'news:a': { info: { role: 'reader' }, data: { welcome: 1 } },
            'news:b': { b64info: b64({ from: 'b64' }), b64data: b64([1, 2]), info: 'shadowed' },
            'news:c': {
              override: { presence: { value: false }, join_leave: {}, force_recovery: { value: true } },
            },
            'news:d': null,
          },
        },
        NOW,
        LIMITS,
      ),
    );
    assert.deepEqual(c.channels, ['news:a', 'news:b', 'news:c', 'news:d']);
    assert.deepEqual(c.subs?.get('news:a'), { info: { role: 'reader' }, data: { welcome: 1 } });
    assert.deepEqual(c.subs?.get('news:b'), { info: { from: 'b64' }, data: [1, 2] });
    assert.deepEqual(c.subs?.get('news:c'), { presence: false, join_leave: false, recovery: true });
    assert.deepEqual(c.subs?.get('news:d'), {});
  });

  test('empty or null subs leaves `channels` in charge', () => {
    for (const subs of [{}, null]) {
      const c = value(connectionClaims({ channels: ['a'], subs }, NOW, LIMITS));
      assert.deepEqual(c.channels, ['a']);
      assert.equal('subs' in c, false);
    }
  });

  test('a channel named __proto__ is a channel like any other', () => {
    const c = value(connectionClaims(JSON.parse('{"subs":{"__proto__":{"data":1}}}'), NOW, LIMITS));
    assert.deepEqual(c.channels, ['__proto__']);
    assert.deepEqual(c.subs?.get('__proto__'), { data: 1 });
  });

  test('subs beyond maxSubs is refused whole', () => {
    const subs = Object.fromEntries(Array.from({ length: LIMITS.maxSubs + 1 }, (_, i) => [`c${i}`, {}]));
    assert.match(failure(connectionClaims({ subs }, NOW, LIMITS)).reason, /more than 4 channels/);
    const atBound = Object.fromEntries(Array.from({ length: LIMITS.maxSubs }, (_, i) => [`c${i}`, {}]));
    assert.equal(value(connectionClaims({ subs: atBound }, NOW, LIMITS)).channels.length, LIMITS.maxSubs);
  });

  test('hostile subs shapes are refused, not thrown on', () => {
    const cases: [unknown, RegExp][] = [
      [['a'], /subs must be an object/],
      ['a', /subs must be an object/],
      [5, /subs must be an object/],
      [{ a: 'x' }, /subs\["a"\] must be an object/],
      [{ a: [1] }, /subs\["a"\] must be an object/],
      [{ a: { b64info: 5 } }, /subs\["a"\]\.b64info must be a string/],
      [{ a: { b64data: 'not base64!' } }, /b64data is not valid base64/],
      [{ a: { override: [] } }, /override must be an object/],
      [{ a: { override: { presence: true } } }, /override\.presence must be \{"value": boolean\}/],
      [{ a: { override: { join_leave: { value: 'yes' } } } }, /override\.join_leave/],
      [{ a: { override: { force_positioning: 1 } } }, /override\.force_positioning/],
    ];
    for (const [subs, reason] of cases) {
      const f = failure(connectionClaims({ subs }, NOW, LIMITS));
      assert.equal(f.expired, false);
      assert.match(f.reason, reason, JSON.stringify(subs));
    }
  });

  test('b64info: decoded JSON replaces info; empty b64info leaves info', () => {
    assert.deepEqual(value(connectionClaims({ info: 'x', b64info: b64({ n: 'Ann' }) }, NOW, LIMITS)).info, {
      n: 'Ann',
    });
    assert.equal(value(connectionClaims({ info: 'x', b64info: '' }, NOW, LIMITS)).info, 'x');
    assert.equal('info' in value(connectionClaims({ b64info: null }, NOW, LIMITS)), false);
  });

  test('b64info must be padded standard base64 of UTF-8 JSON within the depth bound', () => {
    const cases: [unknown, RegExp][] = [
      [42, /b64info must be a string/],
      [{}, /b64info must be a string/],
      ['eyJ', /not valid base64/], // unpadded
      ['e-J9', /not valid base64/], // URL alphabet
      ['ey J9', /not valid base64/],
      ['e===', /not valid base64/],
      ['AB=C', /not valid base64/],
      [Buffer.from('not json').toString('base64'), /does not decode to JSON/],
      [Buffer.from([0x22, 0xff, 0x22]).toString('base64'), /does not decode to JSON/], // invalid UTF-8
      [b64([[[[1]]]]), /nested deeper than 3/],
    ];
    for (const [b64info, reason] of cases) {
      const f = failure(connectionClaims({ b64info }, NOW, LIMITS));
      assert.equal(f.expired, false);
      assert.match(f.reason, reason, String(b64info));
    }
    assert.deepEqual(value(connectionClaims({ b64info: b64([[1]]) }, NOW, LIMITS)).info, [[1]]);
  });

  test('expire_at sets the connection expiry apart from exp; 0 or less never expires', () => {
    assert.equal(
      value(connectionClaims({ exp: NOW + 10, expire_at: NOW + 3600 }, NOW, LIMITS)).expiresAt,
      NOW + 3600,
    );
    assert.equal(value(connectionClaims({ exp: NOW + 10, expire_at: 0 }, NOW, LIMITS)).expiresAt, 0);
    assert.equal(value(connectionClaims({ expire_at: -5 }, NOW, LIMITS)).expiresAt, 0);
    assert.equal(
      value(connectionClaims({ exp: NOW + 10, expire_at: null }, NOW, LIMITS)).expiresAt,
      NOW + 10,
    );
    // In the past: kept (the session answers 110 expired); exp is still checked first.
    assert.equal(value(connectionClaims({ expire_at: NOW - 1 }, NOW, LIMITS)).expiresAt, NOW - 1);
    assert.equal(failure(connectionClaims({ exp: NOW - 1, expire_at: 0 }, NOW, LIMITS)).expired, true);
    for (const expire_at of ['1', 1.5, true, {}, Number.NaN, 2 ** 60]) {
      const f = failure(connectionClaims({ expire_at }, NOW, LIMITS));
      assert.equal(f.expired, false);
      assert.match(f.reason, /expire_at must be an integer/);
    }
  });
});

describe('subscriptionClaims: Centrifugo v6 claims', () => {
  test('data, b64data and override, as in a subs entry', () => {
    const c = value(
      subscriptionClaims(
        { channel: 'c', b64data: b64({ seat: 1 }), override: { join_leave: { value: true } } },
        NOW,
        LIMITS,
      ),
    );
    assert.deepEqual(c, { user: '', channel: 'c', expiresAt: 0, data: { seat: 1 }, join_leave: true });
    assert.match(
      failure(subscriptionClaims({ channel: 'c', override: { presence: 1 } }, NOW, LIMITS)).reason,
      /^override\.presence must be/,
    );
    assert.match(failure(subscriptionClaims({ channel: 'c', b64data: 5 }, NOW, LIMITS)).reason, /^b64data/);
  });

  test('b64info and expire_at', () => {
    const c = value(
      subscriptionClaims(
        { channel: 'c', exp: NOW + 5, expire_at: 0, b64info: b64({ role: 'mod' }) },
        NOW,
        LIMITS,
      ),
    );
    assert.deepEqual(c, { user: '', channel: 'c', expiresAt: 0, info: { role: 'mod' } });
    assert.equal(
      value(subscriptionClaims({ channel: 'c', expire_at: NOW + 60 }, NOW, LIMITS)).expiresAt,
      NOW + 60,
    );
    assert.match(
      failure(subscriptionClaims({ channel: 'c', b64info: '%%%%' }, NOW, LIMITS)).reason,
      /base64/,
    );
    assert.match(
      failure(subscriptionClaims({ channel: 'c', expire_at: 'x' }, NOW, LIMITS)).reason,
      /expire_at/,
    );
  });
});
