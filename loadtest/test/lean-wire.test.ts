/** The lean subscriber's frame and line reading, without sockets. */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  clientFrame,
  FrameReader,
  LineScanner,
  OP_BINARY,
  OP_CLOSE,
  OP_CONTINUATION,
  OP_PING,
  OP_TEXT,
  PUSHER_MARKS,
  scanLines,
  SequenceCheck,
  serverFrame,
} from '../src/lean-wire.js';
import { payload } from '../src/tracker.js';

/** A push as Switchboard and the bare peers send it. */
const push = (s: number, t = 1764590000123.457, extra = '') =>
  `{"push":{"channel":"hot","pub":{"data":{"s":${s},"t":${t},"p":"${'x'.repeat(64)}"}${extra}}}}`;

interface Seen {
  pubs: [number, number][];
  others: string[];
}

const collect = (): Seen & {
  handler: { publication(s: number, t: number): void; other(l: string): void };
} => {
  const seen: Seen = { pubs: [], others: [] };
  return {
    ...seen,
    handler: {
      publication: (s, t) => seen.pubs.push([s, t]),
      other: (l) => seen.others.push(l),
    },
  };
};

const frames = (chunks: Buffer[]) => {
  const messages: string[] = [];
  const pings: string[] = [];
  const closes: [number, string][] = [];
  const reader = new FrameReader({
    message: (buf, start, end) => messages.push(buf.toString('utf8', start, end)),
    ping: (p) => pings.push(p.toString()),
    close: (code, reason) => closes.push([code, reason]),
  });
  for (const c of chunks) reader.push(c);
  return { messages, pings, closes, reader };
};

describe('frame reader', () => {
  test('small, 16-bit and 64-bit lengths, text and binary', () => {
    const small = 'a'.repeat(125);
    const medium = 'b'.repeat(70_000 - 5_000);
    const large = 'c'.repeat(70_000);
    const { messages } = frames([
      Buffer.concat([
        serverFrame(OP_TEXT, Buffer.from(small)),
        serverFrame(OP_BINARY, Buffer.from(medium)),
        serverFrame(OP_TEXT, Buffer.from(large)),
      ]),
    ]);
    assert.deepEqual(
      messages.map((m) => m.length),
      [125, 65_000, 70_000],
    );
    // 70,000 needs the 64-bit length: header 10 bytes.
    assert.equal(serverFrame(OP_TEXT, Buffer.from(large))[1], 127);
  });

  test('frames cut anywhere by TCP reads come out whole, once each', () => {
    const stream = Buffer.concat(
      Array.from({ length: 50 }, (_, i) => serverFrame(OP_TEXT, Buffer.from(push(i)))).concat(
        serverFrame(OP_TEXT, Buffer.from('y'.repeat(300))),
      ),
    );
    for (const size of [1, 2, 3, 7, 64, 150, 1000]) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < stream.length; at += size) chunks.push(stream.subarray(at, at + size));
      const { messages, reader } = frames(chunks);
      assert.equal(messages.length, 51, `chunks of ${size}`);
      assert.equal(messages[7], push(7));
      assert.equal(messages[50], 'y'.repeat(300));
      assert.equal(reader.frames, 51);
    }
  });

  test('the chunk may be reused once push returned (a shared read buffer)', () => {
    const shared = Buffer.alloc(64);
    const messages: string[] = [];
    const reader = new FrameReader({
      message: (b, s, e) => messages.push(b.toString('utf8', s, e)),
      ping: () => {},
      close: () => {},
    });
    const stream = Buffer.concat([
      serverFrame(OP_TEXT, Buffer.from(push(1))),
      serverFrame(OP_TEXT, Buffer.from('{}')),
    ]);
    for (let at = 0; at < stream.length; at += 64) {
      const n = stream.copy(shared, 0, at, at + 64);
      reader.push(shared, 0, n);
      shared.fill(0x21); // what the next read would overwrite
    }
    assert.deepEqual(messages, [push(1), '{}']);
  });

  test('fragments are joined; pings, closes and masked frames', () => {
    const key = Buffer.from([1, 2, 3, 4]);
    const masked = clientFrame(OP_TEXT, Buffer.from('masked text'), key);
    const { messages, pings, closes } = frames([
      serverFrame(OP_TEXT, Buffer.from('hel'), false),
      serverFrame(OP_PING, Buffer.from('p1')), // a control frame between fragments
      serverFrame(OP_CONTINUATION, Buffer.from('lo')),
      masked,
      serverFrame(OP_CLOSE, Buffer.concat([Buffer.from([0x0b, 0xb8]), Buffer.from('bye')])),
    ]);
    assert.deepEqual(messages, ['hello', 'masked text']);
    assert.deepEqual(pings, ['p1']);
    assert.deepEqual(closes, [[3000, 'bye']]);
  });

  test('client frames are masked and read back', () => {
    for (const length of [0, 5, 125, 126, 65_535, 65_536]) {
      const body = Buffer.alloc(length, 0x61);
      const frame = clientFrame(OP_TEXT, body, Buffer.from([9, 8, 7, 6]));
      assert.equal(frame[1]! & 0x80, 0x80);
      assert.deepEqual(
        frames([frame]).messages.map((m) => m.length),
        [length],
      );
    }
  });
});

describe('line scanner', () => {
  test('one push per frame: sequence and send time without JSON.parse', () => {
    const c = collect();
    const p = payload(42, 64);
    const line = JSON.stringify({ push: { channel: 'hot', pub: { data: p } } });
    assert.equal(scanLines(Buffer.from(line), c.handler), 1);
    assert.equal(c.pubs.length, 1);
    assert.equal(c.pubs[0]![0], 42);
    assert.ok(Math.abs(c.pubs[0]![1] - p.t) < 1e-3, `${c.pubs[0]![1]} vs ${p.t}`);
    assert.deepEqual(c.others, []);
  });

  test('many lines per frame, with replies and pings between them', () => {
    const c = collect();
    const text = [push(1), '{}', push(2, 5), '{"id":3,"publish":{}}', push(3, 7.25), ''].join('\n');
    const scanner = new LineScanner();
    assert.equal(scanner.scan(Buffer.from(text), 0, Buffer.byteLength(text), c.handler), 5);
    assert.deepEqual(c.pubs, [
      [1, 1764590000123.457],
      [2, 5],
      [3, 7.25],
    ]);
    assert.deepEqual(c.others, ['{}', '{"id":3,"publish":{}}']);
  });

  test('a pub with other fields around the data (an offset, client info)', () => {
    const c = collect();
    const withInfo = JSON.stringify({
      push: {
        channel: 'hot',
        pub: {
          info: { user: 'u', client: 'c', chan_info: { s: 1 } },
          data: { s: 9, t: 12.5, p: '' },
          offset: 3,
        },
      },
    });
    const scanner = new LineScanner();
    const text = `${push(8)}\n${withInfo}\n${push(10, 1, ',"offset":11')}`;
    scanner.scan(Buffer.from(text), 0, text.length, c.handler);
    assert.deepEqual(c.pubs, [
      [8, 1764590000123.457],
      [9, 12.5],
      [10, 1],
    ]);
  });

  test('a range of a bigger buffer: lines never run past its end', () => {
    const c = collect();
    // Two frames' payloads back to back without a newline between (one push per frame).
    const a = push(1);
    const b = push(2);
    const buf = Buffer.from(a + b);
    const scanner = new LineScanner();
    assert.equal(scanner.scan(buf, 0, a.length, c.handler), 1);
    assert.equal(scanner.scan(buf, a.length, buf.length, c.handler), 1);
    assert.deepEqual(
      c.pubs.map(([s]) => s),
      [1, 2],
    );
  });

  test('pushes that are not benchmark publications go to other', () => {
    const c = collect();
    const lines = [
      '{"push":{"channel":"hot","join":{"info":{"user":"u"}}}}',
      '{"push":{"channel":"hot","pub":{"data":{"s":1}}}}',
      '{"push":{"channel":"hot","pub":{"data":{"s":"x","t":1}}}}',
      '{"push":{"channel":"hot","pub":{"data":{"s":2,"t":"late"}}}}',
    ];
    new LineScanner().scan(Buffer.from(lines.join('\n')), 0, lines.join('\n').length, c.handler);
    assert.deepEqual(c.pubs, []);
    assert.deepEqual(c.others, lines);
  });

  test('timeEvery: the send time is read in one publication of every n, the sequence in all', () => {
    const c = collect();
    const text = Array.from({ length: 9 }, (_, i) => push(i, 100 + i)).join('\n');
    new LineScanner(3, 1).scan(Buffer.from(text), 0, text.length, c.handler);
    assert.deepEqual(
      c.pubs.map(([s]) => s),
      [0, 1, 2, 3, 4, 5, 6, 7, 8],
    );
    assert.deepEqual(
      c.pubs.filter(([, t]) => t >= 0),
      [
        [1, 101],
        [4, 104],
        [7, 107],
      ],
    );
  });
});

describe('line scanner with Pusher marks', () => {
  /** An event as Switchboard's Pusher edge and Soketi send it: the payload JSON in the data string. */
  const event = (data: string, name = 'bench', channel = 'fan') =>
    JSON.stringify({ event: name, channel, data });

  test('the payload inside the data string; protocol events and other data go to other', () => {
    const c = collect();
    const p = payload(7, 64);
    const scanner = new LineScanner(1, 0, PUSHER_MARKS);
    const frames = [
      event(JSON.stringify(p)),
      '{"event":"pusher:connection_established","data":"{\\"socket_id\\":\\"1.2\\",\\"activity_timeout\\":120}"}',
      event(JSON.stringify({ s: 8, t: 12.5, p: '' }), 'other-event', 'private-x'),
      event('probe', 'bench-probe'),
      event(JSON.stringify({ s: 'x', t: 1 })),
    ];
    for (const f of frames) assert.equal(scanner.scan(Buffer.from(f), 0, Buffer.byteLength(f), c.handler), 1);
    assert.deepEqual(
      c.pubs.map(([s]) => s),
      [7, 8],
    );
    assert.ok(Math.abs(c.pubs[0]![1] - p.t) < 1e-3, `${c.pubs[0]![1]} vs ${p.t}`);
    assert.equal(c.pubs[1]![1], 12.5);
    assert.deepEqual(c.others, frames.slice(1, 2).concat(frames.slice(3)));
  });

  test('a Centrifugo push is no Pusher event, and the other way round', () => {
    const c = collect();
    new LineScanner(1, 0, PUSHER_MARKS).scan(Buffer.from(push(1)), 0, push(1).length, c.handler);
    const e = event(JSON.stringify(payload(2, 0)));
    new LineScanner().scan(Buffer.from(e), 0, e.length, c.handler);
    assert.deepEqual(c.pubs, []);
    assert.equal(c.others.length, 2);
  });
});

describe('sequence check', () => {
  const verdicts = (seqs: number[]) => {
    const check = new SequenceCheck();
    return seqs.map((s) => check.receive(s));
  };

  test('in order, out of order, duplicates and gaps, as DeliveryTracker counts them', () => {
    assert.deepEqual(verdicts([0, 1, 2]), [0, 0, 0]);
    // 1 before 0: 1 is ahead, 0 is the reordered one.
    assert.deepEqual(verdicts([1, 0, 2]), [3, 1, 0]);
    assert.deepEqual(verdicts([0, 2, 2, 0, 3, 5]), [0, 3, 2, 2, 3, 3]);
    assert.deepEqual(verdicts([0, 2, 1, 3, 2]), [0, 3, 1, 0, 2]);
  });
});
