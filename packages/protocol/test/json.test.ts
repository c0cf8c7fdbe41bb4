import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { nestedDeeperThan, parseJson, parseJsonBytes } from '../src/index.js';

const nested = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;

describe('bounded JSON', () => {
  test('depth counts objects and arrays; scalars are 0', () => {
    assert.equal(nestedDeeperThan(1, 0), false);
    assert.equal(nestedDeeperThan('x', 0), false);
    assert.equal(nestedDeeperThan(null, 0), false);
    assert.equal(nestedDeeperThan([], 0), true);
    assert.equal(nestedDeeperThan([], 1), false);
    assert.equal(nestedDeeperThan({ a: [1, { b: 2 }] }, 3), false);
    assert.equal(nestedDeeperThan({ a: [1, { b: 2 }] }, 2), true);
    assert.equal(nestedDeeperThan({ a: 1, b: { c: { d: {} } } }, 3), true);
  });

  test('at the bound, over it, and far over it without a stack overflow', () => {
    assert.deepEqual(parseJson(nested(64), 64).ok, true);
    assert.deepEqual(parseJson(nested(65), 64), { ok: false, reason: 'JSON nested deeper than 64' });
    const far = parseJson(nested(200_000), 64);
    assert.equal(far.ok, false);
  });

  test('malformed text and non-UTF-8 bytes are refused with a reason', () => {
    assert.deepEqual(parseJson('{"a":', 8), { ok: false, reason: 'malformed JSON' });
    assert.deepEqual(parseJsonBytes(new Uint8Array([0x7b, 0xff, 0x7d]), 8), {
      ok: false,
      reason: 'not UTF-8',
    });
    assert.deepEqual(parseJsonBytes(new TextEncoder().encode('{"é":1}'), 8), { ok: true, value: { é: 1 } });
  });

  test('__proto__ keys stay data, they do not touch prototypes', () => {
    const parsed = parseJson('{"__proto__":{"polluted":true}}', 8);
    assert.ok(parsed.ok);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.ok(Object.hasOwn(parsed.value as object, '__proto__'));
  });
});
