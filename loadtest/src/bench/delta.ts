#!/usr/bin/env node
/**
 * Delta compression, bytes on the wire: a gateway (embedded mode) with two raw
 * WebSocket subscribers on one channel, one that negotiated `delta: "fossil"`
 * and one that did not; the server API publishes a stream with `delta: true`
 * and each subscriber's received frame bytes are counted, for (a) a live price
 * `{"ticker":"AAPL","price":…,"ts":…}` and (b) a 2 KB JSON document of which
 * one field changes per publication. Not part of `make bench`; after the build,
 *   node loadtest/dist/src/bench/delta.js [--publications 1000]
 */

import { parseArgs } from 'node:util';
import {
  api,
  type Gateway,
  type RawClient,
  rawConnect,
  startGateway,
} from '@switchboard/gateway/dist/test/harness.js';
import { table } from './report.js';

const NAMESPACES = JSON.stringify([
  {
    name: 'bench',
    history_size: 100,
    history_ttl: 300,
    recovery: true,
    allow_subscribe_for_client: true,
    allowed_delta_types: ['fossil'],
  },
]);

interface Stream {
  name: string;
  next: (n: number) => unknown;
}

/** A deterministic random walk. */
function walk(start: number, step: number): () => number {
  let seed = 12345;
  let value = start;
  return () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    value = Math.round((value + (seed / 2 ** 32 - 0.5) * step) * 100) / 100;
    return value;
  };
}

const price = walk(190, 0.2);
const STREAMS: Stream[] = [
  { name: 'live price', next: (n) => ({ ticker: 'AAPL', price: price(), ts: 1_796_119_200_000 + n * 250 }) },
  {
    name: '2 KB document, one field changed',
    next: (n) => ({
      id: 'report-7',
      title: 'Quarterly figures',
      updated: 1_796_119_200_000 + n * 1000,
      rows: Array.from({ length: 40 }, (_, i) => ({
        row: i,
        label: `line item ${i}`,
        value: i === 7 ? 1000 + n : i * 1000 + 17,
      })),
    }),
  },
];

/** A raw client subscribed to `channel`, counting the bytes and frames it receives from now on. */
async function subscriber(gateway: Gateway, channel: string, delta: boolean) {
  const raw: RawClient = await rawConnect(gateway, delta ? 'delta' : 'plain');
  raw.send({ id: 2, subscribe: { channel, ...(delta ? { delta: 'fossil' } : {}) } });
  await raw.expect((m) => m.id === 2);
  const counts = { bytes: 0, frames: 0 };
  raw.ws.on('message', (data: Buffer) => {
    counts.bytes += data.byteLength;
    counts.frames++;
  });
  return { raw, counts };
}

async function measure(gateway: Gateway, stream: Stream, channel: string, publications: number) {
  const plain = await subscriber(gateway, channel, false);
  const delta = await subscriber(gateway, channel, true);
  let dataBytes = 0;
  for (let n = 1; n <= publications; n++) {
    const data = stream.next(n);
    dataBytes += Buffer.byteLength(JSON.stringify(data));
    const res = await api(gateway, 'publish', { channel, data, delta: true });
    if (res.body.error) throw new Error(`publish failed: ${JSON.stringify(res.body.error)}`);
  }
  const last = (m: { push?: { pub?: { offset?: number } } }) => m.push?.pub?.offset === publications;
  await Promise.all([plain.raw.expect(last, 30_000), delta.raw.expect(last, 30_000)]);
  const deltas = delta.raw.received.filter((m) => m.push?.pub?.delta === true).length;
  for (const s of [plain, delta]) s.raw.ws.terminate();
  return { data: dataBytes / publications, plain: plain.counts, delta: delta.counts, deltas };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { publications: { type: 'string', default: '1000' } } });
  const publications = Number(values.publications);
  const gateway = await startGateway({ SWITCHBOARD_NAMESPACES: NAMESPACES });
  try {
    const rows: string[][] = [];
    for (const [i, stream] of STREAMS.entries()) {
      const r = await measure(gateway, stream, `bench:stream${i}`, publications);
      const perPub = (c: { bytes: number }) => c.bytes / publications;
      rows.push([
        stream.name,
        String(publications),
        r.data.toFixed(0),
        perPub(r.plain).toFixed(1),
        perPub(r.delta).toFixed(1),
        `${(100 * (1 - r.delta.bytes / r.plain.bytes)).toFixed(1)} %`,
        String(r.deltas),
      ]);
    }
    console.log(
      table(
        ['stream', 'publications', 'data B/pub', 'plain B/pub', 'delta B/pub', 'saved', 'sent as delta'],
        rows,
      ),
    );
  } finally {
    await gateway.stop();
  }
}

await main();
