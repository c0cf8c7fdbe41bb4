import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Centrifuge } from 'centrifuge';
import { Centrifuge as ProtobufCentrifuge } from 'centrifuge/build/protobuf';
import { applyDelta as referenceApply, createDelta as referenceCreate } from 'fossil-delta';
import { applyFossilDelta, fossilDelta } from '../src/index.js';

/**
 * centrifuge-js keeps its Fossil applier internal; a client reaches it
 * through its codec (the protected `_codec`), as on a publication with
 * `delta: true`: binary data with the Protobuf codec, a JSON string with the
 * JSON one.
 */
class BinaryClient extends ProtobufCentrifuge {
  applyDelta(previous: Uint8Array, delta: Uint8Array): Uint8Array {
    return this._codec.applyDeltaIfNeeded({ delta: true, data: delta }, previous).newData;
  }
}

class JsonClient extends Centrifuge {
  applyDelta(previous: Uint8Array, delta: string): unknown {
    return this._codec.applyDeltaIfNeeded({ delta: true, data: delta }, previous).newData;
  }
}

const ENDPOINT = 'ws://127.0.0.1:9/connection/websocket';
const binaryClient = new BinaryClient(ENDPOINT);
const jsonClient = new JsonClient(ENDPOINT);

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });
const bytes = (text: string) => utf8.encode(text);
const text = (data: Uint8Array) => new TextDecoder().decode(data);

/** Encodes, then checks the delta against our applier, centrifuge-js's and the fossil-delta package's. */
function roundTrip(source: Uint8Array, target: Uint8Array): Uint8Array {
  const delta = fossilDelta(source, target);
  assert.deepEqual(applyFossilDelta(source, delta), target);
  assert.deepEqual(binaryClient.applyDelta(source, delta), target);
  assert.deepEqual(Uint8Array.from(referenceApply(source, delta)), target);
  return delta;
}

/** xorshift32: a fixed sequence per seed, floats in [0, 1). */
function prng(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
}

/** A JSON document of about 2 KB: a small order book. */
function document(price = 101.25): Record<string, unknown> {
  return {
    channel: 'orders:book',
    updated: '2026-12-01T10:00:00Z',
    items: Array.from({ length: 24 }, (_, i) => ({
      id: `order-${1000 + i}`,
      side: i % 2 === 0 ? 'buy' : 'sell',
      price: i === 7 ? price : 100 + i * 0.25,
      quantity: 10 * (i + 1),
      trader: `trader-${(i * 7) % 11}`,
    })),
  };
}

const fail = (reason: RegExp) => (err: unknown) => err instanceof Error && reason.test(err.message);

describe('fossil delta', () => {
  test('empty inputs', () => {
    const empty = new Uint8Array(0);
    assert.equal(text(roundTrip(empty, empty)), '0\n0;');
    assert.equal(text(roundTrip(bytes('some source text, long enough'), empty)), '0\n0;');
    const target = bytes('a target with no source at all');
    assert.equal(text(roundTrip(empty, target)).slice(0, 6), 'U\nU:a ');
  });

  test('identical inputs: one copy', () => {
    const doc = bytes(JSON.stringify(document()));
    const delta = roundTrip(doc, doc);
    assert.match(text(delta), /^[0-9A-Za-z_~]+\n[0-9A-Za-z_~]+@0,[0-9A-Za-z_~]+;$/);
    assert.ok(delta.length < 20);
  });

  test('one field changed in a 2 KB JSON document: a small delta, applied by every client', () => {
    const previous = bytes(JSON.stringify(document()));
    const next = bytes(JSON.stringify(document(101.5)));
    assert.ok(previous.length > 1800 && previous.length < 2500, `document of ${previous.length} bytes`);
    const delta = roundTrip(previous, next);
    assert.ok(delta.length < next.length / 10, `delta of ${delta.length} bytes for ${next.length}`);
    assert.ok(delta.length < 40, `delta of ${delta.length} bytes`);
    assert.deepEqual(jsonClient.applyDelta(previous, strictUtf8.decode(delta)), document(101.5));
    // and the other way: deltas of the reference encoder apply here
    assert.deepEqual(applyFossilDelta(previous, referenceCreate(previous, next)), next);
  });

  test('UTF-8 text gives UTF-8 deltas, which survive the JSON transport as a string', () => {
    // é → è: both begin with the byte 0xC3, a copy of the common bytes would end inside a character
    const previous = { text: `${'Привет, мир! '.repeat(10)}café` };
    const next = { text: `${'Привет, мир! '.repeat(10)}cafè` };
    const source = bytes(JSON.stringify(previous));
    const delta = roundTrip(source, bytes(JSON.stringify(next)));
    assert.match(strictUtf8.decode(delta), /^[^\n]+\n[^@]+@0,4:è"}[^;]+;$/); // 4 bytes: è is two
    assert.deepEqual(jsonClient.applyDelta(source, strictUtf8.decode(delta)), next);
    const random = prng(7);
    const chars = ['a', 'b', ' ', '"', '\\', 'é', 'ß', '€', '中', '😀', '\u0301'];
    const word = (n: number) =>
      Array.from({ length: n }, () => chars[Math.floor(random() * chars.length)]).join('');
    for (let i = 0; i < 300; i++) {
      const base = word(50 + Math.floor(random() * 400));
      const at = Math.floor(random() * base.length);
      const changed =
        base.slice(0, at) + word(Math.floor(random() * 8)) + base.slice(at + Math.floor(random() * 8));
      const from = bytes(JSON.stringify({ t: base, i }));
      const patch = roundTrip(from, bytes(JSON.stringify({ t: changed, i })));
      assert.deepEqual(jsonClient.applyDelta(from, strictUtf8.decode(patch)), { t: changed, i });
    }
  });

  test('random inputs and edits (seeded)', () => {
    const random = prng(20261201);
    const int = (n: number) => Math.floor(random() * n);
    for (let i = 0; i < 400; i++) {
      const alphabet = [2, 4, 256][i % 3]!;
      const source = Uint8Array.from({ length: int(4000) }, () => int(alphabet));
      let target = source;
      const edits = int(6);
      if (edits === 0 && i % 2 === 0) target = Uint8Array.from({ length: int(4000) }, () => int(alphabet));
      for (let e = 0; e < edits; e++) {
        const at = int(target.length + 1);
        const removed = int(40);
        const inserted = Uint8Array.from({ length: int(40) }, () => int(alphabet));
        target = Uint8Array.from([...target.subarray(0, at), ...inserted, ...target.subarray(at + removed)]);
      }
      if (i % 5 === 0 && target.length > 100) {
        // a block moved to the front
        const at = int(target.length - 50);
        target = Uint8Array.from([
          ...target.subarray(at, at + 50),
          ...target.subarray(0, at),
          ...target.subarray(at + 50),
        ]);
      }
      const delta = roundTrip(source, target);
      assert.deepEqual(applyFossilDelta(source, referenceCreate(source, target)), target);
      if (edits > 0 && alphabet === 256 && source.length > 1000)
        assert.ok(
          delta.length < target.length / 2,
          `case ${i}: delta of ${delta.length} for ${target.length}`,
        );
    }
  });

  test('unrelated inputs: little more than the target', () => {
    const random = prng(3);
    const source = Uint8Array.from({ length: 2048 }, () => Math.floor(random() * 256));
    const target = Uint8Array.from({ length: 2048 }, () => Math.floor(random() * 256));
    const delta = roundTrip(source, target);
    assert.ok(delta.length <= target.length + 16, `delta of ${delta.length} bytes`);
  });

  test('1 MB inputs', () => {
    const random = prng(11);
    const source = Uint8Array.from({ length: 1 << 20 }, () => Math.floor(random() * 256));
    const target = source.slice();
    for (let i = 0; i < 20; i++) {
      const at = Math.floor(random() * target.length);
      target[at] = target[at]! ^ 0xff;
    }
    const delta = roundTrip(source, target);
    assert.ok(delta.length < 600, `delta of ${delta.length} bytes`);
    // repetitive inputs: every block of the source has the same hash
    const zeros = new Uint8Array(1 << 20);
    const ones = zeros.slice().fill(1, 500_000, 500_010);
    assert.ok(roundTrip(zeros, ones).length < 40);
    assert.ok(roundTrip(zeros, zeros).length < 20);
  });

  describe('hostile deltas', () => {
    const source = bytes(JSON.stringify(document()));
    const target = bytes(JSON.stringify(document(99.75)));
    const delta = fossilDelta(source, target);
    const apply =
      (d: string, from: Uint8Array = source, max?: number) =>
      () =>
        applyFossilDelta(from, bytes(d), max);

    test('every truncation fails', () => {
      for (let n = 0; n < delta.length; n++)
        assert.throws(() => applyFossilDelta(source, delta.subarray(0, n)), fail(/^fossil delta: /));
    });

    test('bad checksum, or the wrong source', () => {
      const wrong = text(delta).replace(/[0-9A-Za-z_~]+;$/, (c) => (c[0] === '1' ? '2' : '1') + c.slice(1));
      assert.throws(apply(wrong), fail(/checksum mismatch/));
      assert.throws(() => applyFossilDelta(target, delta), fail(/checksum mismatch|past the source/));
    });

    test('copies and inserts out of range', () => {
      assert.throws(apply('5\n5@Z,0;', bytes('short')), fail(/past the source/));
      assert.throws(apply('5\n2@~~~~~,0;', bytes('short')), fail(/past the source/));
      assert.throws(apply('9\n9:abc'), fail(/past the delta/));
      assert.throws(apply('5\nA@0,0;'), fail(/copy exceeds the declared target size/));
      assert.throws(apply('2\n3:abc0;'), fail(/insert exceeds the declared target size/));
    });

    test('length mismatch', () => {
      assert.throws(apply('6\n5:hello0;'), fail(/commands produce 5 bytes, the delta declares 6/));
    });

    test('huge declared sizes are refused before allocating', () => {
      assert.throws(apply('~~~~~\n0;'), fail(/exceeds the limit/));
      assert.throws(apply('~~~~~\n0;', source, 2 ** 32), fail(/more than a delta of 8 bytes can produce/));
      assert.throws(apply('1111111\n0;'), fail(/exceeds 32 bits/));
      assert.throws(() => applyFossilDelta(source, delta, target.length - 1), fail(/exceeds the limit/));
    });

    test('malformed syntax', () => {
      assert.throws(apply(''), fail(/number expected at byte 0/));
      assert.throws(apply('5:hello'), fail(/not terminated by a newline/));
      assert.throws(apply('5\n5:hello'), fail(/ends before its checksum/));
      assert.throws(apply('5\n5!hello'), fail(/unknown command at byte 3/));
      assert.throws(apply('5\n@0,0;'), fail(/number expected at byte 2/));
      assert.throws(apply('5\n5@0;0;'), fail(/copy command not terminated/));
      assert.throws(apply(`${text(delta)}\n`), fail(/bytes after the checksum/));
    });

    test('random corruption fails cleanly or still checks out', () => {
      const random = prng(5);
      for (let i = 0; i < 2000; i++) {
        const corrupt = delta.slice();
        for (let k = 1 + Math.floor(random() * 3); k > 0; k--)
          corrupt[Math.floor(random() * corrupt.length)] = Math.floor(random() * 256);
        try {
          applyFossilDelta(source, corrupt);
        } catch (err) {
          assert.ok(err instanceof Error && err.message.startsWith('fossil delta: '), String(err));
        }
      }
    });
  });
});
