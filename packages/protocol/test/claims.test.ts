import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type ClaimsCheck,
  type ConnectionClaims,
  connectionClaims,
  type SubscriptionClaims,
  subscriptionClaims,
} from '../src/index.js';

const NOW = 1_700_000_000;

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
      failure(connectionClaims({ sub: '42', channel: 'chat:1' }, NOW)).reason,
      /subscription token/,
    );
    assert.match(failure(connectionClaims({ sub: '42', channel: '' }, NOW)).reason, /subscription token/);
  });

  test('a connection token (no channel) is no subscription token', () => {
    assert.match(failure(subscriptionClaims({ sub: '42' }, NOW)).reason, /channel claim is required/);
  });

  test('minimal payload: anonymous user, no expiry, no channels', () => {
    const c: ConnectionClaims = value(connectionClaims({}, NOW));
    assert.deepEqual(c, { user: '', expiresAt: 0, channels: [] });
    assert.equal('info' in c, false);
    assert.equal('meta' in c, false);
  });

  test('sub becomes the user', () => {
    assert.equal(value(connectionClaims({ sub: '42' }, NOW)).user, '42');
  });

  test('sub null defaults to the anonymous user', () => {
    assert.equal(value(connectionClaims({ sub: null }, NOW)).user, '');
  });

  test('non-string sub is rejected', () => {
    for (const sub of [42, true, {}, ['1']]) {
      const f = failure(connectionClaims({ sub }, NOW));
      assert.equal(f.expired, false);
      assert.match(f.reason, /sub must be a string/);
    }
  });

  test('exp in the future is kept', () => {
    assert.equal(value(connectionClaims({ sub: '1', exp: NOW + 60 }, NOW)).expiresAt, NOW + 60);
  });

  test('exp one second ahead is still valid', () => {
    assert.equal(value(connectionClaims({ exp: NOW + 1 }, NOW)).expiresAt, NOW + 1);
  });

  test('exp in the past or equal to now is expired', () => {
    for (const exp of [NOW - 3600, NOW - 1, NOW, 0]) {
      const f = failure(connectionClaims({ sub: '1', exp }, NOW));
      assert.equal(f.expired, true, `exp ${exp}`);
      assert.match(f.reason, /expired/);
    }
  });

  test('absent exp means the token never expires', () => {
    assert.equal(value(connectionClaims({ sub: '1' }, NOW)).expiresAt, 0);
  });

  test('non-number exp is rejected, not treated as expired', () => {
    for (const exp of [String(NOW + 60), null, true, {}, Number.NaN, Number.POSITIVE_INFINITY]) {
      const f = failure(connectionClaims({ sub: '1', exp }, NOW));
      assert.equal(f.expired, false, `exp ${String(exp)}`);
      assert.match(f.reason, /exp must be a number/);
    }
  });

  test('channels must be an array of strings', () => {
    assert.deepEqual(value(connectionClaims({ channels: ['a', 'chat:b'] }, NOW)).channels, ['a', 'chat:b']);
    assert.deepEqual(value(connectionClaims({ channels: [] }, NOW)).channels, []);
    for (const channels of ['a', { a: 1 }, [1], ['a', null], 5, null]) {
      if (channels === null) {
        // null falls back to the default (no channels)
        assert.deepEqual(value(connectionClaims({ channels }, NOW)).channels, []);
        continue;
      }
      const f = failure(connectionClaims({ channels }, NOW));
      assert.equal(f.expired, false);
      assert.match(f.reason, /channels must be an array of strings/);
    }
  });

  test('meta must be an object', () => {
    assert.deepEqual(value(connectionClaims({ meta: { plan: 'pro' } }, NOW)).meta, { plan: 'pro' });
    for (const meta of [null, [], 'x', 1, true]) {
      const f = failure(connectionClaims({ meta }, NOW));
      assert.equal(f.expired, false);
      assert.match(f.reason, /meta must be an object/);
    }
  });

  test('info passes through unchanged, whatever its type', () => {
    for (const info of [{ name: 'Ann' }, 'text', 0, false, null, [1, 2]]) {
      const c = value(connectionClaims({ sub: '1', info }, NOW));
      assert.deepEqual(c.info, info);
      assert.equal('info' in c, true);
    }
  });

  test('full payload', () => {
    const c = value(
      connectionClaims(
        { sub: 'u1', exp: NOW + 10, channels: ['#u1'], info: { n: 1 }, meta: { m: 2 }, iat: NOW, extra: 1 },
        NOW,
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
    assert.match(failure(connectionClaims({ sub: 1, exp: NOW - 1 }, NOW)).reason, /sub/);
  });
});

describe('subscriptionClaims', () => {
  test('channel is required', () => {
    for (const payload of [{}, { channel: '' }, { channel: 5 }, { channel: null }, { sub: '1' }]) {
      const f = failure(subscriptionClaims(payload, NOW));
      assert.equal(f.expired, false);
      assert.match(f.reason, /channel claim is required/);
    }
  });

  test('valid claims', () => {
    const c: SubscriptionClaims = value(subscriptionClaims({ sub: '42', channel: 'chat:1' }, NOW));
    assert.deepEqual(c, { user: '42', channel: 'chat:1', expiresAt: 0 });
  });

  test('user defaults to anonymous', () => {
    assert.equal(value(subscriptionClaims({ channel: 'c' }, NOW)).user, '');
  });

  test('non-string sub is rejected', () => {
    assert.match(failure(subscriptionClaims({ sub: 42, channel: 'c' }, NOW)).reason, /sub must be a string/);
  });

  test('exp future, past and invalid', () => {
    assert.equal(value(subscriptionClaims({ channel: 'c', exp: NOW + 5 }, NOW)).expiresAt, NOW + 5);
    const past = failure(subscriptionClaims({ channel: 'c', exp: NOW - 5 }, NOW));
    assert.equal(past.expired, true);
    const now = failure(subscriptionClaims({ channel: 'c', exp: NOW }, NOW));
    assert.equal(now.expired, true);
    const bad = failure(subscriptionClaims({ channel: 'c', exp: 'soon' }, NOW));
    assert.equal(bad.expired, false);
    assert.match(bad.reason, /exp must be a number/);
  });

  test('expiry is reported even when the channel claim is missing', () => {
    assert.equal(failure(subscriptionClaims({ exp: NOW - 1 }, NOW)).expired, true);
  });

  test('info passes through', () => {
    const c = value(subscriptionClaims({ channel: 'c', info: { role: 'mod' } }, NOW));
    assert.deepEqual(c.info, { role: 'mod' });
    assert.equal('info' in value(subscriptionClaims({ channel: 'c' }, NOW)), false);
  });
});
