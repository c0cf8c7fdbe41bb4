/**
 * The alternating connect benchmark: its table from given rounds (pure), and
 * one small run against a real gateway and the bare uWS peer.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type ConnectRound, connectAb, formatConnectAb } from '../src/bench/connect-ab.js';
import { median } from '../src/bench/measure.js';

const round = (
  kind: 'switchboard' | 'uws',
  index: number,
  cpu: number,
  main: number,
  scavenges = 2,
  scavengedBytes = 2048 * 1000,
): ConnectRound => ({
  kind,
  round: index,
  connections: 1000,
  failed: 0,
  cpuSeconds: cpu,
  mainThreadCpuSeconds: main,
  scavenges,
  scavengedBytes,
});

describe('connect A/B', () => {
  test('median: the middle value, or the mean of the middle two', () => {
    assert.equal(median([3, 1, 2]), 2);
    assert.equal(median([4, 1, 3, 2]), 2.5);
    assert.ok(Number.isNaN(median([])));
  });

  test('round 0 is left out; medians, and the first server ÷ each, all threads and main thread', () => {
    const text = formatConnectAb([
      round('switchboard', 0, 1, 1), // warm-up: 1000/CPU-s, not in the median
      round('uws', 0, 0.1, 0.1),
      round('switchboard', 1, 0.2, 0.1),
      round('uws', 1, 0.1, 0.1),
      round('switchboard', 2, 0.25, 0.125),
      round('uws', 2, 0.1, 0.1),
      round('switchboard', 3, 0.5, 0.25, 4, 6144 * 1000),
      round('uws', 3, 0.1, 0.1),
    ]);
    const line = (label: string) => text.split('\n').find((l) => l.trimStart().startsWith(label))!;
    // Switchboard: 5000, 4000, 2000 per CPU-s → median 4000; main thread 10000, 8000, 4000 → 8000.
    // Scavenges 2, 2, 4 → 2; freed 2, 2, 6 KB per connect → 2 KB.
    assert.match(
      line('Switchboard'),
      /\b1000 5000 4000 2000\s+4000\s+1\.00×\s+8000\s+1\.00×\s+2\s+2\.00 KB$/,
    );
    // bare uWS: 10000 every round; Switchboard's median is 0.40× it, its main thread's 0.80×.
    assert.match(line('bare uWS'), /\b10000\s+0\.40×\s+10000\s+0\.80×\s+2\s+2\.00 KB$/);
  });

  test('alternates real servers round by round; every connect succeeds', async () => {
    const rounds = await connectAb({
      servers: ['switchboard', 'uws'],
      connections: 200,
      rounds: 2,
      timeoutMs: 10_000,
    });
    assert.deepEqual(
      rounds.map((r) => [r.kind, r.round, r.connections, r.failed]),
      [
        ['switchboard', 0, 200, 0],
        ['uws', 0, 200, 0],
        ['switchboard', 1, 200, 0],
        ['uws', 1, 200, 0],
      ],
    );
    // Within a few 10 ms ticks: the kernel rounds a thread's times and the process's total apart.
    for (const r of rounds) assert.ok(r.mainThreadCpuSeconds <= r.cpuSeconds + 0.05, JSON.stringify(r));
    // connectAb refuses a server without the GC trace; 200 connects may take no scavenge at all.
    for (const r of rounds) assert.ok(r.scavenges >= 0 && r.scavengedBytes >= 0, JSON.stringify(r));
    assert.match(formatConnectAb(rounds), /Switchboard[\s\S]*bare uWS/);
  });
});
