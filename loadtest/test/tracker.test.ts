/** The delivery tracker tells lost, duplicated and reordered apart. */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DeliveryTracker, now } from '../src/tracker.js';

const feed = (tracker: DeliveryTracker, receiver: number, sequences: number[]) => {
  for (const s of sequences) tracker.receive(receiver, 'c', { s, t: now(), p: '' });
};

describe('delivery tracker', () => {
  test('in order: every one delivered once', () => {
    const t = new DeliveryTracker();
    feed(t, 0, [0, 1, 2, 3]);
    assert.deepEqual([t.delivered, t.duplicated, t.reordered], [4, 0, 0]);
  });

  test('one publication out of order is one reordered delivery, not lost and duplicated', () => {
    const t = new DeliveryTracker();
    // 15,000 receivers each get 1 before 0: 15,000 reordered, nothing lost or duplicated.
    for (let r = 0; r < 15_000; r++) feed(t, r, [1, 0, 2]);
    assert.deepEqual([t.delivered, t.duplicated, t.reordered], [45_000, 0, 15_000]);
  });

  test('a repeat is a duplicate wherever it falls, a gap never filled is lost', () => {
    const t = new DeliveryTracker();
    feed(t, 0, [0, 2, 2, 0, 3, 5]);
    // 1 and 4 never came: 6 expected, 4 delivered, so 2 lost.
    assert.deepEqual([t.delivered, t.duplicated, t.reordered], [4, 2, 0]);
  });

  test('receivers and their channels are counted apart', () => {
    const t = new DeliveryTracker();
    feed(t, 0, [0, 1]);
    feed(t, 1, [0, 1]);
    t.receive(0, 'other', { s: 0, t: now(), p: '' });
    assert.deepEqual([t.delivered, t.duplicated], [5, 0]);
  });
});
