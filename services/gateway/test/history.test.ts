import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Publication } from '@switchboard/protocol';
import { MemoryHistory, recover, recoverLatest, sequence } from '../src/history.js';

type Stored = Publication & { offset: number };

const pub = (offset: number): Stored => ({ data: { n: offset }, offset });
const range = (from: number, to: number): Stored[] => {
  const out: Stored[] = [];
  for (let i = from; i <= to; i++) out.push(pub(i));
  return out;
};

describe('recover (pure)', () => {
  const stream = { epoch: 'e1', offset: 10, items: range(1, 10) };

  test('same offset: recovered with no publications', () => {
    assert.deepEqual(recover(stream, { offset: 10, epoch: 'e1' }, 100), {
      recovered: true,
      publications: [],
      position: { offset: 10, epoch: 'e1' },
    });
  });

  test('missed publications are returned in ascending order', () => {
    const r = recover(stream, { offset: 7, epoch: 'e1' }, 100);
    assert.equal(r.recovered, true);
    assert.deepEqual(
      r.publications.map((p) => p.offset),
      [8, 9, 10],
    );
    assert.deepEqual(r.publications[0], pub(8));
    assert.deepEqual(r.position, { offset: 10, epoch: 'e1' });
  });

  test('from offset 0 with the whole history retained', () => {
    const r = recover(stream, { offset: 0, epoch: 'e1' }, 100);
    assert.equal(r.recovered, true);
    assert.equal(r.publications.length, 10);
  });

  test('epoch mismatch fails with the current position', () => {
    assert.deepEqual(recover(stream, { offset: 7, epoch: 'other' }, 100), {
      recovered: false,
      publications: [],
      position: { offset: 10, epoch: 'e1' },
    });
  });

  test('epoch mismatch fails even at the same offset', () => {
    assert.equal(recover(stream, { offset: 10, epoch: 'other' }, 100).recovered, false);
  });

  test('the client poison epoch "_" never recovers', () => {
    for (const offset of [0, 5, 10]) {
      const r = recover(stream, { offset, epoch: '_' }, 100);
      assert.equal(r.recovered, false, `offset ${offset}`);
      assert.deepEqual(r.publications, []);
      assert.deepEqual(r.position, { offset: 10, epoch: 'e1' });
    }
    const empty = { epoch: 'e1', offset: 0, items: [] };
    assert.equal(recover(empty, { offset: 0, epoch: '_' }, 100).recovered, false);
  });

  test('an empty epoch means any epoch', () => {
    const r = recover(stream, { offset: 8, epoch: '' }, 100);
    assert.equal(r.recovered, true);
    assert.deepEqual(
      r.publications.map((p) => p.offset),
      [9, 10],
    );
    assert.equal(recover(stream, { offset: 10, epoch: '' }, 100).recovered, true);
  });

  test('offset beyond the top fails', () => {
    const r = recover(stream, { offset: 11, epoch: 'e1' }, 100);
    assert.equal(r.recovered, false);
    assert.deepEqual(r.publications, []);
    assert.deepEqual(r.position, { offset: 10, epoch: 'e1' });
  });

  test('trimmed history fails: first retained offset > since + 1', () => {
    const trimmed = { epoch: 'e1', offset: 10, items: range(6, 10) };
    assert.equal(recover(trimmed, { offset: 4, epoch: 'e1' }, 100).recovered, false);
    assert.equal(recover(trimmed, { offset: 0, epoch: 'e1' }, 100).recovered, false);
    // Exactly at the boundary: the client saw 5, 6 is the first retained.
    const edge = recover(trimmed, { offset: 5, epoch: 'e1' }, 100);
    assert.equal(edge.recovered, true);
    assert.deepEqual(
      edge.publications.map((p) => p.offset),
      [6, 7, 8, 9, 10],
    );
  });

  test('no retained publications while the client is behind fails', () => {
    const empty = { epoch: 'e1', offset: 10, items: [] };
    assert.equal(recover(empty, { offset: 9, epoch: 'e1' }, 100).recovered, false);
    assert.equal(recover(empty, { offset: 10, epoch: 'e1' }, 100).recovered, true);
  });

  test('more missed publications than maxPublications fails', () => {
    assert.equal(recover(stream, { offset: 5, epoch: 'e1' }, 4).recovered, false);
    const exact = recover(stream, { offset: 5, epoch: 'e1' }, 5);
    assert.equal(exact.recovered, true);
    assert.equal(exact.publications.length, 5);
  });

  test('a fresh empty stream recovers from offset 0', () => {
    const fresh = { epoch: 'e9', offset: 0, items: [] };
    assert.deepEqual(recover(fresh, { offset: 0, epoch: '' }, 10), {
      recovered: true,
      publications: [],
      position: { offset: 0, epoch: 'e9' },
    });
  });
});

class Clock {
  t = 1_000_000;
  now = () => this.t;
  advance(seconds: number) {
    this.t += seconds * 1000;
  }
}

const limits = { size: 10, ttlSeconds: 60 };

function setup(metaTtl = 600) {
  const clock = new Clock();
  return { clock, h: new MemoryHistory(metaTtl, clock.now) };
}

describe('MemoryHistory', () => {
  test('a new channel starts at offset 0 with a non-empty epoch that stays put', () => {
    const { h } = setup();
    const p = h.position('c');
    assert.equal(p.offset, 0);
    assert.match(p.epoch, /^[0-9a-f]+$/);
    assert.deepEqual(h.position('c'), p);
  });

  test('channels have independent epochs and offsets', () => {
    const { h } = setup();
    h.add('a', { data: 1 }, limits);
    h.add('a', { data: 2 }, limits);
    h.add('b', { data: 3 }, limits);
    assert.equal(h.position('a').offset, 2);
    assert.equal(h.position('b').offset, 1);
    assert.notEqual(h.position('a').epoch, h.position('b').epoch);
  });

  test('offsets strictly increase and are stamped on the publication', () => {
    const { h, clock } = setup();
    const offsets: number[] = [];
    for (let i = 0; i < 25; i++) {
      const stored = h.add('c', { data: i, offset: 999 }, limits)!;
      assert.deepEqual(stored.data, i);
      offsets.push(stored.offset);
      clock.advance(1);
    }
    for (let i = 1; i < offsets.length; i++) assert.ok(offsets[i]! > offsets[i - 1]!);
    assert.deepEqual(
      offsets,
      range(1, 25).map((p) => p.offset),
    );
    assert.equal(h.position('c').offset, 25);
  });

  test('add keeps the publication fields, stamps offset and epoch, and does not mutate the input', () => {
    const { h } = setup();
    const input: Publication = { data: 'x', info: { user: 'u', client: 'c' }, tags: { k: 'v' } };
    const stored = h.add('c', input, limits);
    assert.deepEqual(stored, { ...input, offset: 1, epoch: h.position('c').epoch });
    assert.equal(input.offset, undefined);
  });

  test('the size limit trims the oldest publications', () => {
    const { h } = setup();
    for (let i = 1; i <= 15; i++) h.add('c', { data: i }, { size: 5, ttlSeconds: 60 });
    const page = h.page('c', { limit: 100 });
    assert.deepEqual(
      page.publications.map((p) => p.offset),
      [11, 12, 13, 14, 15],
    );
    assert.equal(page.position.offset, 15);
    const epoch = page.position.epoch;
    assert.equal(h.recover('c', { offset: 10, epoch }, 100).recovered, true);
    assert.equal(h.recover('c', { offset: 9, epoch }, 100).recovered, false);
  });

  test('recover through the class returns missed publications', () => {
    const { h } = setup();
    const epoch = h.position('c').epoch;
    for (let i = 1; i <= 5; i++) h.add('c', { data: i }, limits);
    const r = h.recover('c', { offset: 2, epoch }, 100);
    assert.equal(r.recovered, true);
    assert.deepEqual(
      r.publications.map((p) => p.data),
      [3, 4, 5],
    );
    assert.deepEqual(r.position, { offset: 5, epoch });
  });

  test('publications expire after their TTL and recovery then fails honestly', () => {
    const { h, clock } = setup(600);
    const epoch = h.position('c').epoch;
    h.add('c', { data: 1 }, limits); // expires at +60
    clock.advance(30);
    h.add('c', { data: 2 }, limits); // expires at +90
    clock.advance(29);
    assert.equal(h.recover('c', { offset: 0, epoch }, 100).recovered, true);
    clock.advance(1); // +60: the first one is gone
    assert.deepEqual(
      h.page('c', { limit: 10 }).publications.map((p) => p.offset),
      [2],
    );
    const r = h.recover('c', { offset: 0, epoch }, 100);
    assert.equal(r.recovered, false);
    assert.deepEqual(r.publications, []);
    assert.deepEqual(r.position, { offset: 2, epoch });
    assert.equal(h.recover('c', { offset: 1, epoch }, 100).recovered, true);
    clock.advance(30); // +90: all gone, but the position is remembered
    assert.deepEqual(h.page('c', { limit: 10 }).publications, []);
    assert.deepEqual(h.position('c'), { offset: 2, epoch });
    assert.equal(h.recover('c', { offset: 1, epoch }, 100).recovered, false);
    assert.equal(h.recover('c', { offset: 2, epoch }, 100).recovered, true);
  });

  test('meta TTL expiry forgets the stream: new epoch, offset restarts', () => {
    const { h, clock } = setup(120);
    h.add('c', { data: 1 }, limits);
    const before = h.position('c');
    assert.equal(before.offset, 1);
    clock.advance(119);
    assert.deepEqual(h.position('c'), before);
    clock.advance(1);
    const after = h.position('c');
    assert.notEqual(after.epoch, before.epoch);
    assert.equal(after.offset, 0);
    const r = h.recover('c', { offset: 1, epoch: before.epoch }, 100);
    assert.equal(r.recovered, false);
    assert.deepEqual(r.position, after);
  });

  test('meta TTL is at least the history TTL', () => {
    const { h, clock } = setup(10);
    h.add('c', { data: 1 }, { size: 10, ttlSeconds: 60 });
    const before = h.position('c');
    clock.advance(59);
    assert.deepEqual(h.position('c'), before);
    assert.equal(h.page('c', { limit: 10 }).publications.length, 1);
  });

  test('each add extends the meta TTL', () => {
    const { h, clock } = setup(100);
    h.add('c', { data: 1 }, { size: 10, ttlSeconds: 10 });
    const epoch = h.position('c').epoch;
    clock.advance(90);
    h.add('c', { data: 2 }, { size: 10, ttlSeconds: 10 });
    clock.advance(90);
    assert.deepEqual(h.position('c'), { offset: 2, epoch });
  });

  test('an untouched stream created by position() expires after the meta TTL', () => {
    const { h, clock } = setup(50);
    const first = h.position('c').epoch;
    clock.advance(50);
    assert.notEqual(h.position('c').epoch, first);
  });

  test('sweep drops forgotten streams and expired publications', () => {
    const { h, clock } = setup(100);
    h.add('c', { data: 1 }, { size: 10, ttlSeconds: 10 });
    const epoch = h.position('c').epoch;
    clock.advance(10);
    h.sweep();
    assert.deepEqual(h.position('c'), { offset: 1, epoch });
    assert.deepEqual(h.page('c', { limit: 10 }).publications, []);
    clock.advance(100);
    h.sweep();
    assert.notEqual(h.position('c').epoch, epoch);
  });

  describe('page', () => {
    function filled() {
      const s = setup();
      for (let i = 1; i <= 8; i++) s.h.add('c', { data: i }, limits);
      return { ...s, epoch: s.h.position('c').epoch };
    }
    const offsets = (p: { publications: Publication[] }) => p.publications.map((x) => x.offset);

    test('limit 0 returns only the position', () => {
      const { h, epoch } = filled();
      assert.deepEqual(h.page('c', { limit: 0 }), { publications: [], position: { offset: 8, epoch } });
    });

    test('limit takes the oldest first', () => {
      const { h } = filled();
      assert.deepEqual(offsets(h.page('c', { limit: 3 })), [1, 2, 3]);
      assert.deepEqual(offsets(h.page('c', { limit: 100 })), [1, 2, 3, 4, 5, 6, 7, 8]);
    });

    test('reverse takes the newest first', () => {
      const { h } = filled();
      assert.deepEqual(offsets(h.page('c', { limit: 3, reverse: true })), [8, 7, 6]);
    });

    test('since returns publications after the offset', () => {
      const { h, epoch } = filled();
      assert.deepEqual(offsets(h.page('c', { limit: 10, since: { offset: 5, epoch } })), [6, 7, 8]);
      assert.deepEqual(offsets(h.page('c', { limit: 2, since: { offset: 2, epoch } })), [3, 4]);
      assert.deepEqual(offsets(h.page('c', { limit: 10, since: { offset: 8, epoch } })), []);
      assert.deepEqual(offsets(h.page('c', { limit: 10, since: { offset: 6, epoch: '' } })), [7, 8]);
    });

    test('since with reverse returns publications before the offset, newest first', () => {
      const { h, epoch } = filled();
      assert.deepEqual(
        offsets(h.page('c', { limit: 10, since: { offset: 4, epoch }, reverse: true })),
        [3, 2, 1],
      );
      assert.deepEqual(
        offsets(h.page('c', { limit: 2, since: { offset: 6, epoch }, reverse: true })),
        [5, 4],
      );
    });

    test('since offset 0 with reverse means from the top', () => {
      const { h, epoch } = filled();
      assert.deepEqual(
        offsets(h.page('c', { limit: 2, since: { offset: 0, epoch }, reverse: true })),
        [8, 7],
      );
    });

    test('since with a different epoch returns nothing but the position', () => {
      const { h, epoch } = filled();
      assert.deepEqual(h.page('c', { limit: 10, since: { offset: 2, epoch: 'nope' } }), {
        publications: [],
        position: { offset: 8, epoch },
      });
    });

    test('page of an unknown channel is empty at offset 0', () => {
      const { h } = setup();
      const p = h.page('nothing', { limit: 10 });
      assert.deepEqual(p.publications, []);
      assert.equal(p.position.offset, 0);
    });
  });

  test('remove drops publications but keeps the position', () => {
    const { h } = setup();
    for (let i = 1; i <= 4; i++) h.add('c', { data: i }, limits);
    const before = h.position('c');
    h.remove('c');
    assert.deepEqual(h.position('c'), before);
    assert.deepEqual(h.page('c', { limit: 10 }).publications, []);
    assert.equal(h.recover('c', { offset: 2, epoch: before.epoch }, 100).recovered, false);
    assert.equal(h.recover('c', { offset: 4, epoch: before.epoch }, 100).recovered, true);
    const next = h.add('c', { data: 5 }, limits)!;
    assert.equal(next.offset, 5);
    assert.equal(h.position('c').epoch, before.epoch);
  });

  test('remove of an unknown channel does nothing', () => {
    const { h } = setup();
    h.remove('ghost');
    assert.equal(h.position('ghost').offset, 0);
  });
});

describe('recoverLatest (pure, cache recovery mode)', () => {
  const position = { offset: 7, epoch: 'e1' };
  const latest = pub(7);

  test('behind, or in another epoch: recovered with the latest publication', () => {
    for (const since of [
      { offset: 0, epoch: '' },
      { offset: 3, epoch: 'e1' },
      { offset: 7, epoch: 'old' },
    ]) {
      assert.deepEqual(recoverLatest(position, latest, latest, since), {
        recovered: true,
        publications: [latest],
        position,
      });
    }
  });

  test('at the top already: recovered with nothing to send', () => {
    assert.deepEqual(recoverLatest(position, latest, latest, { offset: 7, epoch: 'e1' }).publications, []);
    assert.equal(recoverLatest(position, latest, latest, { offset: 7, epoch: 'e1' }).recovered, true);
  });

  test('nothing retained: recovered only for a client at the top', () => {
    assert.equal(recoverLatest(position, undefined, undefined, { offset: 7, epoch: 'e1' }).recovered, true);
    assert.equal(recoverLatest(position, undefined, undefined, { offset: 6, epoch: 'e1' }).recovered, false);
    assert.equal(
      recoverLatest({ offset: 0, epoch: 'e1' }, undefined, undefined, { offset: 0, epoch: 'e1' }).recovered,
      false,
    );
  });

  test('a filtered subscriber gets the newest publication its filter passes', () => {
    const older = pub(5);
    const r = recoverLatest(position, latest, older, { offset: 0, epoch: '' });
    assert.equal(r.recovered, true);
    assert.deepEqual(r.publications, [older]);
    assert.deepEqual(recoverLatest(position, latest, undefined, { offset: 0, epoch: '' }).publications, []);
  });

  test('the newest retained publication below the top (expired top): not recovered', () => {
    assert.deepEqual(recoverLatest(position, pub(6), pub(6), { offset: 0, epoch: '' }), {
      recovered: false,
      publications: [],
      position,
    });
  });
});

describe('sequence (pure, gap detection of positioned subscriptions)', () => {
  const last = { offset: 5, epoch: 'e1' };

  test('the next offset, the first publication and a new epoch are in order', () => {
    assert.equal(sequence(last, { offset: 6, epoch: 'e1' }), 'next');
    assert.equal(sequence(undefined, { offset: 9, epoch: 'e1' }), 'next');
    assert.equal(sequence(last, { offset: 1, epoch: 'e2' }), 'next');
  });

  test('an offset delivered already is seen, one beyond the next is a gap', () => {
    assert.equal(sequence(last, { offset: 5, epoch: 'e1' }), 'seen');
    assert.equal(sequence(last, { offset: 2, epoch: 'e1' }), 'seen');
    assert.equal(sequence(last, { offset: 7, epoch: 'e1' }), 'gap');
    assert.equal(sequence({ offset: 0, epoch: 'e1' }, { offset: 2, epoch: 'e1' }), 'gap');
  });
});
