/** Reading V8's --trace-gc lines (pure). */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { majorGcs, scavenges } from '../src/bench/gc-trace.js';

const MB = 2 ** 20;

const LOG = [
  '{"level":40,"msg":"something else"}',
  '[4242:0x5d0c000]       86 ms: Scavenge 3.9 (4.0) -> 3.5 (5.0) MB, 3.11 / 0.00 ms  (average mu = 1.000, current mu = 1.000) allocation failure; ',
  '[4242:0x5d0c000]    12315 ms: Mark-Compact 25.1 (53.5) -> 5.5 (38.7) MB, 8.58 / 0.00 ms  (+ 0.3 ms in 4 steps since start of marking) finalize incremental marking via stack guard; GC in old space requested',
  '[4242:0x5d0c000]    13000 ms: Scavenge 12.5 (25.2) -> 6.5 (25.2) MB, 2.94 / 0.54 ms  (average mu = 1.000, current mu = 1.000) task; ',
  '[4242:0x5d0c000]    99999 ms: Mark-Compact (reduce) 12.0 (20.0) -> 10.0 (18.0) MB, 4.00 / 0.00 ms  (average mu = 0.9) memory reducer',
].join('\n');

test('majorGcs reads the mark-compacts of a --trace-gc log', () => {
  assert.deepEqual(majorGcs(LOG), [
    { ms: 12_315, beforeBytes: 25.1 * MB, afterBytes: 5.5 * MB },
    { ms: 99_999, beforeBytes: 12 * MB, afterBytes: 10 * MB },
  ]);
});

test('scavenges counts the young collections and adds up what each freed', () => {
  const { count, freedBytes } = scavenges(LOG);
  assert.equal(count, 2);
  assert.ok(Math.abs(freedBytes - 6.4 * MB) < 1, String(freedBytes / MB));
  assert.deepEqual(scavenges('no trace here'), { count: 0, freedBytes: 0 });
});
