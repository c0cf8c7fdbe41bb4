import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compilePattern, matchesPattern } from '../src/index.js';

const matches = (pattern: string, channel: string) => matchesPattern(compilePattern(pattern), channel);

describe('channel patterns', () => {
  test('no star: the whole name', () => {
    assert.equal(matches('chat:1', 'chat:1'), true);
    assert.equal(matches('chat:1', 'chat:10'), false);
    assert.equal(matches('', ''), true);
  });

  test('stars match any run, the empty one too', () => {
    assert.equal(matches('chat:*', 'chat:'), true);
    assert.equal(matches('chat:*', 'chat:room'), true);
    assert.equal(matches('*:room', 'chat:room'), true);
    assert.equal(matches('*', ''), true);
    assert.equal(matches('a*b*c', 'abc'), true);
    assert.equal(matches('a*b*c', 'aXbYc'), true);
    assert.equal(matches('a*b*c', 'acb'), false);
    assert.equal(matches('ab*ba', 'aba'), false, 'prefix and suffix may not overlap');
    assert.equal(matches('a**a', 'a'), false);
    assert.equal(matches('a**a', 'aa'), true);
  });

  test('regular-expression characters are literal', () => {
    assert.equal(matches('a.b', 'a.b'), true);
    assert.equal(matches('a.b', 'axb'), false);
    assert.equal(matches('(a)+', '(a)+'), true);
  });

  test('the star bomb of issue 12 is answered without backtracking', () => {
    const channel = 'a'.repeat(255);
    assert.equal(matches(`${'a*'.repeat(200)}b`, channel), false);
    assert.equal(matches('a*'.repeat(200), channel), true);
  });
});
