import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Subscriptions } from '../src/subscriptions.js';

const sub = (channel: string, n = 0) => ({ channel, n });

describe('Subscriptions (one in a field, a Map beyond)', () => {
  it('gets, counts and deletes across the field and the Map', () => {
    const subs = new Subscriptions<ReturnType<typeof sub>>();
    assert.equal(subs.size, 0);
    assert.equal(subs.get('a'), undefined);
    subs.set(sub('a'));
    subs.set(sub('b'));
    subs.set(sub('c'));
    assert.equal(subs.size, 3);
    assert.deepEqual(
      subs
        .list()
        .map((s) => s.channel)
        .sort(),
      ['a', 'b', 'c'],
    );
    assert.equal(subs.delete('a'), true);
    assert.equal(subs.delete('a'), false);
    assert.equal(subs.has('a'), false);
    assert.equal(subs.size, 2);
    // The field is free again: a new channel takes it, the Map's entries stay reachable.
    subs.set(sub('d'));
    assert.deepEqual(
      subs
        .list()
        .map((s) => s.channel)
        .sort(),
      ['b', 'c', 'd'],
    );
    assert.equal(subs.delete('b') && subs.delete('c') && subs.delete('d'), true);
    assert.equal(subs.size, 0);
    assert.deepEqual(subs.list(), []);
  });

  it('replaces a channel where it is, never holding it twice', () => {
    const subs = new Subscriptions<ReturnType<typeof sub>>();
    subs.set(sub('a', 1));
    subs.set(sub('b', 1));
    subs.delete('a');
    subs.set(sub('b', 2));
    assert.equal(subs.size, 1);
    assert.equal(subs.get('b')?.n, 2);
    subs.set(sub('a', 2));
    subs.set(sub('a', 3));
    assert.equal(subs.size, 2);
    assert.equal(subs.get('a')?.n, 3);
    assert.deepEqual(
      subs
        .list()
        .map((s) => `${s.channel}${s.n}`)
        .sort(),
      ['a3', 'b2'],
    );
  });

  it('a snapshot may be walked while subscriptions change', () => {
    const subs = new Subscriptions<ReturnType<typeof sub>>();
    for (const c of ['a', 'b', 'c']) subs.set(sub(c));
    for (const s of subs.list()) subs.delete(s.channel);
    assert.equal(subs.size, 0);
  });
});
