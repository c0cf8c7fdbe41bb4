#!/usr/bin/env node
/**
 * Where a Switchboard connection's bytes go: a gateway (embedded mode, as
 * `make bench` runs it) takes a V8 heap snapshot (SIGUSR2) with N idle,
 * authenticated, subscribed WebSocket clients and again once they left; the
 * difference per constructor, divided by N, is the JavaScript heap each
 * connection costs, beside its RSS. What is not on the heap (the uWS socket
 * and its buffers, in C++) is the RSS left over.
 *   node loadtest/dist/src/bench/breakdown.js [--connections 5000]
 */

import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { waitUntil } from '@switchboard/gateway/dist/test/harness.js';
import { Clients } from './measure.js';
import { settledRss } from './proc.js';
import { table } from './report.js';
import { startServer } from './servers.js';

const SECRET = 'bench-secret-hs256';

interface HeapSnapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size and count of heap objects by constructor (or type, for strings, code, arrays...). */
function byConstructor(file: string): Map<string, { bytes: number; count: number }> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as HeapSnapshot;
  const fields = snap.snapshot.meta.node_fields;
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f)) as [
    number,
    number,
    number,
  ];
  const types = snap.snapshot.meta.node_types[0];
  const out = new Map<string, { bytes: number; count: number }>();
  for (let i = 0; i < snap.nodes.length; i += fields.length) {
    const type = types[snap.nodes[i + typeAt]!]!;
    const key =
      type === 'object' || type === 'closure' ? `${type} ${snap.strings[snap.nodes[i + nameAt]!]}` : type;
    const entry = out.get(key) ?? { bytes: 0, count: 0 };
    entry.bytes += snap.nodes[i + sizeAt]!;
    entry.count++;
    out.set(key, entry);
  }
  return out;
}

/** Whether a snapshot being written is whole: its last bytes close the JSON (read only those). */
function complete(file: string): boolean {
  const size = statSync(file).size;
  if (size < 2) return false;
  const tail = Buffer.alloc(Math.min(16, size));
  const fd = openSync(file, 'r');
  try {
    readSync(fd, tail, 0, tail.length, size - tail.length);
  } finally {
    closeSync(fd);
  }
  return tail.toString('utf8').trimEnd().endsWith('}');
}

async function snapshot(pid: number, dir: string): Promise<string> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  let file = '';
  await waitUntil(
    () => {
      const made = readdirSync(dir).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
      if (!made) return false;
      file = join(dir, made);
      return complete(file);
    },
    120_000,
    () => 'the heap snapshot',
  );
  return file;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { connections: { type: 'string', default: '5000' } } });
  const n = Number(values.connections);
  const dir = mkdtempSync(join(tmpdir(), 'sb-breakdown-'));
  const server = await startServer('switchboard', SECRET, 'all', {
    NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${dir}`,
  });
  const clients = new Clients(server.dialect, server.url, SECRET, 30_000);
  try {
    // RSS before any snapshot (taking one grows the heap for good); the heap baseline after the
    // clients left, so that code compiled while they connected is not counted as theirs.
    const rss0 = await settledRss(server.pid, 3000);
    await clients.grow(0, n, (i) => `idle-${i % 100}`);
    const rss1 = await settledRss(server.pid, 3000);
    const heap1 = byConstructor(await snapshot(server.pid, dir));
    clients.close();
    await waitUntil(
      () => clients.fleet.closed >= n,
      30_000,
      () => 'every client closed',
    );
    const heap0 = byConstructor(await snapshot(server.pid, dir));
    const rows = [...heap1]
      .map(([name, after]) => {
        const was = heap0.get(name) ?? { bytes: 0, count: 0 };
        return { name, bytes: (after.bytes - was.bytes) / n, count: (after.count - was.count) / n };
      })
      .filter((r) => r.bytes >= 1)
      .sort((a, b) => b.bytes - a.bytes);
    const heapPerConnection = rows.reduce((sum, r) => sum + r.bytes, 0);
    const rssPerConnection = (rss1 - rss0) / n;
    console.log(
      `${n} idle, authenticated, subscribed WebSocket connections (${clients.fleet.failed} failed)`,
    );
    console.log(
      `RSS ${(rssPerConnection / 1024).toFixed(2)} KB per connection; JavaScript heap ${(heapPerConnection / 1024).toFixed(2)} KB; ` +
        `the rest (uWS sockets and buffers, allocator) ${((rssPerConnection - heapPerConnection) / 1024).toFixed(2)} KB\n`,
    );
    console.log(
      table(
        ['heap objects by constructor', 'bytes/conn', 'objects/conn'],
        rows.slice(0, 20).map((r) => [r.name, r.bytes.toFixed(0), r.count.toFixed(2)]),
      ),
    );
  } finally {
    clients.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
