#!/usr/bin/env node
/**
 * Fossil delta encoding (packages/protocol/src/fossil.ts) on the payloads
 * delta compression is for, beside the fossil-delta package (the encoder
 * centrifuge-js's applier comes from): encode time per delta and delta size,
 * for a 2 KB JSON document with one field changed and for a small live
 * price message from tick to tick. Not part of `make bench`; after the build,
 * `node loadtest/dist/src/bench/fossil.js`.
 */

import { performance } from 'node:perf_hooks';
import { applyFossilDelta, fossilDelta } from '@switchboard/protocol';
import { createDelta } from 'fossil-delta';

type Encoder = (source: Uint8Array, target: Uint8Array) => Uint8Array;

const ENCODERS: [string, Encoder][] = [
  ['switchboard', fossilDelta],
  ['fossil-delta', createDelta],
];

/** Successive versions of a payload: each delta is from one to the next. */
interface Case {
  name: string;
  versions: Uint8Array[];
}

const utf8 = new TextEncoder();

/** A JSON document of about 2 KB (an order book) in which one order's price changes per version. */
function orderBook(versions: number): Case {
  const book = (price: number) => ({
    channel: 'orders:book',
    updated: '2026-12-01T10:00:00Z',
    items: Array.from({ length: 24 }, (_, i) => ({
      id: `order-${1000 + i}`,
      side: i % 2 === 0 ? 'buy' : 'sell',
      price: i === 7 ? price : 100 + i * 0.25,
      quantity: 10 * (i + 1),
      trader: `trader-${(i * 7) % 11}`,
    })),
  });
  return {
    name: '2 KB JSON, one field changed',
    versions: Array.from({ length: versions }, (_, v) => utf8.encode(JSON.stringify(book(101 + v * 0.25)))),
  };
}

/** A live price, tick to tick: price, bid, ask, volume and time change, the rest does not. */
function livePrice(versions: number): Case {
  let seed = 12345;
  const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  let price = 123.45;
  let volume = 48_210_377;
  return {
    name: 'live price JSON, tick to tick',
    versions: Array.from({ length: versions }, (_, v) => {
      price = Math.round((price + random() * 0.05) * 100) / 100;
      volume += 100 + Math.floor(Math.abs(random()) * 900);
      const tick = {
        ticker: 'AAPL',
        exchange: 'NASDAQ',
        currency: 'USD',
        price,
        bid: Math.round((price - 0.01) * 100) / 100,
        ask: Math.round((price + 0.01) * 100) / 100,
        volume,
        ts: 1_796_119_200_000 + v * 250,
      };
      return utf8.encode(JSON.stringify(tick));
    }),
  };
}

/** Microseconds per delta: rounds of the whole sequence for at least `ms`, the best round of five. */
function time(encode: Encoder, versions: Uint8Array[], ms: number): number {
  let sink = 0;
  let best = Infinity;
  for (let round = 0; round < 5; round++) {
    let ops = 0;
    const start = performance.now();
    let elapsed = 0;
    while (elapsed < ms) {
      for (let v = 1; v < versions.length; v++) sink += encode(versions[v - 1]!, versions[v]!).length;
      ops += versions.length - 1;
      elapsed = performance.now() - start;
    }
    best = Math.min(best, (elapsed * 1000) / ops);
  }
  if (sink === 0) throw new Error('no deltas');
  return best;
}

function run(): void {
  const cases = [orderBook(64), livePrice(256)];
  console.log(`Fossil delta encoding, Node ${process.version}: µs per delta (best of 5 rounds), mean sizes`);
  console.log(
    `${'payload'.padEnd(32)}${'full B'.padStart(8)}${ENCODERS.map(([n]) => `${`${n} µs`.padStart(18)}${'delta B'.padStart(9)}`).join('')}`,
  );
  for (const { name, versions } of cases) {
    const full = versions.reduce((sum, v) => sum + v.length, 0) / versions.length;
    let row = `${name.padEnd(32)}${full.toFixed(0).padStart(8)}`;
    for (const [, encode] of ENCODERS) {
      let bytes = 0;
      for (let v = 1; v < versions.length; v++) {
        const delta = encode(versions[v - 1]!, versions[v]!);
        // every delta, ours or the package's, must rebuild the next version
        if (Buffer.compare(applyFossilDelta(versions[v - 1]!, delta), versions[v]!) !== 0)
          throw new Error(`${name}: a delta does not apply`);
        bytes += delta.length;
      }
      time(encode, versions, 50); // warm-up
      row += `${time(encode, versions, 200).toFixed(2).padStart(18)}${(bytes / (versions.length - 1)).toFixed(1).padStart(9)}`;
    }
    console.log(row);
  }
}

run();
