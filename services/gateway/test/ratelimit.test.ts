import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { RateLimiter } from '../src/ratelimit.js';

describe('per-key rate limiter', () => {
  test('a burst, then the rate', () => {
    let now = 0;
    const limiter = new RateLimiter(10, 3, 100, () => now);
    assert.deepEqual(
      [1, 2, 3, 4].map(() => limiter.take('a')),
      [true, true, true, false],
    );
    assert.equal(limiter.take('b'), true, 'other keys have their own bucket');
    now += 99;
    assert.equal(limiter.take('a'), false, 'just under one token refilled');
    now += 1;
    assert.equal(limiter.take('a'), true, 'one token at 1/rate seconds');
    assert.equal(limiter.take('a'), false);
    now += 10_000;
    assert.deepEqual(
      [1, 2, 3, 4].map(() => limiter.take('a')),
      [true, true, true, false],
      'refill stops at the burst',
    );
  });

  test('rate 0 is off', () => {
    const limiter = new RateLimiter(0, 0);
    for (let i = 0; i < 1000; i++) assert.equal(limiter.take('a'), true);
    assert.equal(limiter.size, 0);
  });

  test('memory stays bounded under a flood of new keys', () => {
    let now = 0;
    const limiter = new RateLimiter(1, 1, 50, () => now);
    for (let i = 0; i < 10_000; i++) {
      limiter.take(`k${i}`);
      if (i % 100 === 0) now += 10;
    }
    assert.ok(limiter.size <= 50, `${limiter.size}`);
    // A key evicted and back again starts with a full bucket: at most one burst per eviction.
    assert.equal(limiter.take('k0'), true);
  });

  test('full buckets are swept before live ones are evicted', () => {
    let now = 0;
    const limiter = new RateLimiter(1, 1, 3, () => now);
    limiter.take('idle');
    now = 2000;
    limiter.take('busy-1');
    limiter.take('busy-2');
    now = 2100;
    limiter.take('new');
    assert.equal(limiter.size, 3);
    // The idle key (full again) went, not the older busy ones: they are still empty.
    assert.equal(limiter.take('busy-1'), false);
    assert.equal(limiter.take('busy-2'), false);
  });
});
