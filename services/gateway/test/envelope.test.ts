import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  addChannelCounts,
  channelCounts,
  readControl,
  readEnvelope,
  readStored,
  readSurvey,
} from '../src/broker/envelope.js';

describe('bus envelopes are checked before use', () => {
  test('publications, joins and leaves of the right shape pass', () => {
    const pub = { t: 'pub', pub: { data: { x: 1 }, offset: 3, epoch: 'e' }, ts: 1 };
    assert.deepEqual(readEnvelope(pub), pub);
    assert.deepEqual(readStored(pub), pub);
    const join = { t: 'join', info: { user: 'u', client: 'c' } };
    assert.deepEqual(readEnvelope(join), join);
    assert.equal(readStored(join), undefined, 'history holds publications only');
    const versioned = { ...pub, ver: 7, vep: 'e1' };
    assert.deepEqual(readStored(versioned), versioned);
    const delta = { ...pub, delta: true };
    assert.deepEqual(readEnvelope(delta), delta, 'the publisher asked for delta compression');
  });

  test('anything else is refused', () => {
    for (const bad of [
      null,
      [],
      'pub',
      { t: 'pub' },
      { t: 'pub', pub: { data: 1 } },
      { t: 'pub', pub: {}, ts: 1 },
      { t: 'pub', pub: { data: 1, offset: -1 }, ts: 1 },
      { t: 'pub', pub: { data: 1, offset: 1.5 }, ts: 1 },
      { t: 'pub', pub: { data: 1, tags: { a: 1 } }, ts: 1 },
      { t: 'pub', pub: { data: 1, info: { user: 1 } }, ts: 1 },
      { t: 'pub', pub: { data: 1 }, ts: 1, skip: 5 },
      { t: 'pub', pub: { data: 1 }, ts: 1, ver: -1 },
      { t: 'pub', pub: { data: 1 }, ts: 1, ver: '7' },
      { t: 'pub', pub: { data: 1 }, ts: 1, ver: 7, vep: 7 },
      { t: 'pub', pub: { data: 1 }, ts: 1, delta: 'yes' },
      // A delta is made for one subscriber's wire: what travels between gateways is whole.
      { t: 'pub', pub: { data: 'x', delta: true }, ts: 1 },
      { t: 'join', info: null },
      { t: 'leave' },
      { t: 'other', info: { user: 'u', client: 'c' } },
    ])
      assert.equal(readEnvelope(bad), undefined, JSON.stringify(bad));
  });

  test('control messages', () => {
    assert.ok(readControl({ op: 'subscribe', user: 'u', channel: 'c' }));
    assert.ok(readControl({ op: 'disconnect', user: 'u', code: 3000, reason: 'r' }));
    assert.equal(readControl({ op: 'subscribe', user: 'u' }), undefined);
    assert.equal(readControl({ op: 'disconnect', user: 'u', code: 1000, reason: 'r' }), undefined);
    assert.equal(readControl({ op: 'disconnect', user: 'u', code: 3000 }), undefined);
    assert.equal(readControl({ op: 'explode', user: 'u' }), undefined);
    assert.equal(readControl({ op: 'unsubscribe', user: 'u', channel: 'c', client: 7 }), undefined);
    const spared = { op: 'disconnect', user: 'u', code: 3504, reason: 'r', whitelist: ['c1'] };
    assert.deepEqual(readControl(spared), spared);
    for (const whitelist of ['c1', [1], [null], {}])
      assert.equal(readControl({ ...spared, whitelist }), undefined, JSON.stringify(whitelist));
  });

  test('surveys and their answers', () => {
    assert.deepEqual(readSurvey({}, 10), { pattern: undefined });
    assert.deepEqual(readSurvey({ pattern: 'a*' }, 10), { pattern: 'a*' });
    assert.equal(readSurvey({ pattern: 'x'.repeat(11) }, 10), undefined);
    assert.equal(readSurvey({ pattern: 5 }, 10), undefined);
    const counts = new Map<string, number>();
    assert.equal(addChannelCounts(counts, { a: { num_clients: 2 }, __proto__x: { num_clients: 1 } }), true);
    assert.equal(
      addChannelCounts(counts, JSON.parse('{"a":{"num_clients":3},"__proto__":{"num_clients":4}}')),
      true,
    );
    assert.equal(addChannelCounts(counts, { a: { num_clients: -1 } }), false);
    assert.equal(addChannelCounts(counts, { b: { num_clients: 1 }, c: 'x' }), false, 'all or nothing');
    assert.equal(counts.has('b'), false);
    const merged = channelCounts(counts);
    assert.deepEqual(merged.a, { num_clients: 5 });
    assert.ok(Object.hasOwn(merged, '__proto__'));
    assert.deepEqual(JSON.parse(JSON.stringify(merged)).__proto__, { num_clients: 4 });
  });
});
