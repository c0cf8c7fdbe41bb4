/**
 * `make soak`: the delivery accounting under churn, the slopes and the
 * verdict as pure functions; then a short real run (a gateway, 200 clients,
 * churn and publishing for 15 s) that must produce every table and file.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Ledger, Session } from '../src/bench/soak-ledger.js';
import {
  after,
  ChurnSchedule,
  formatVerdict,
  judge,
  leastSquares,
  metricValue,
  type Outcome,
  pickRandom,
  type Sample,
  type SeenGc,
  seededRandom,
  thin,
  timeTicks,
  warmupEnd,
} from '../src/bench/soak-report.js';

const SOAK = fileURLToPath(new URL('../src/bench/soak.js', import.meta.url));
const MB = 2 ** 20;

describe('Session', () => {
  test('counts from its start; earlier sequences are not judged', () => {
    const s = new Session(0);
    s.receive(3); // before the subscribe reply
    s.start(5);
    s.receive(4); // sent before the reply, arrived after it
    for (const seq of [5, 6, 7]) s.receive(seq);
    assert.equal(s.early, 2);
    assert.equal(s.received, 3);
    assert.equal(s.receivedBelow(8), 3);
    assert.equal(s.receivedBelow(6), 1);
    assert.equal(s.receivedBelow(5), 0);
  });

  test('duplicates, reordering and gaps', () => {
    const s = new Session(0);
    s.start(0);
    for (const seq of [0, 2, 1, 1, 4, 4]) s.receive(seq);
    assert.equal(s.received, 4);
    assert.equal(s.duplicated, 2);
    assert.equal(s.reordered, 1);
    assert.equal(s.receivedBelow(5), 4); // 3 is missing
    assert.equal(s.receivedBelow(3), 3);
  });

  test('a closed session ignores what still arrives', () => {
    const s = new Session(0);
    s.start(0);
    s.closed = true;
    s.receive(0);
    assert.equal(s.received, 0);
  });
});

describe('Ledger', () => {
  /** Publishes `count` on `channel`, all answered. */
  const publish = (ledger: Ledger, channel: number, count: number, ok = true) => {
    const seqs: number[] = [];
    for (let k = 0; k < count; k++) seqs.push(ledger.nextSeq(channel));
    for (const seq of seqs) ledger.settle(channel, seq, ok);
    return seqs;
  };

  test('a session that stays: everything answered grace before the count is expected', () => {
    const ledger = new Ledger(2, 1000);
    const a = ledger.openSession(0);
    a.start(ledger.sent[0]!);
    const seqs = publish(ledger, 0, 10);
    publish(ledger, 1, 4); // another channel: not a's
    ledger.remember(0);
    for (const seq of seqs) a.receive(seq);
    // Not yet a second after the answers: nothing judged.
    assert.deepEqual(ledger.count(500), {
      expected: 0,
      delivered: 0,
      lost: 0,
      duplicated: 0,
      reordered: 0,
      received: 10,
    });
    assert.deepEqual(ledger.count(1000), {
      expected: 10,
      delivered: 10,
      lost: 0,
      duplicated: 0,
      reordered: 0,
      received: 10,
    });
  });

  test('a late subscriber is judged from its start, a leaver until grace before it left', () => {
    const ledger = new Ledger(1, 1000);
    const leaver = ledger.openSession(0);
    leaver.start(0);
    publish(ledger, 0, 5); // 0..4
    ledger.remember(0);
    const late = ledger.openSession(0);
    late.start(ledger.sent[0]!); // from 5
    publish(ledger, 0, 5); // 5..9
    ledger.remember(2000);
    for (let seq = 0; seq < 10; seq++) leaver.receive(seq);
    for (let seq = 5; seq < 10; seq += 2) late.receive(seq); // 5, 7, 9: 6 and 8 lost
    // The leaver leaves at 2500: judged on what was answered by 1500, i.e. 0..4.
    ledger.closeSession(leaver, 2500);
    leaver.receive(10); // after it left: ignored
    ledger.remember(3000);
    const c = ledger.count(3000);
    assert.equal(c.expected, 5 + 5);
    assert.equal(c.lost, 2);
    assert.equal(c.delivered, 8);
    assert.equal(ledger.openSessions, 1);
  });

  test('a failed publish is not expected, and the sessions step over its gap', () => {
    const ledger = new Ledger(1, 1000);
    const s = ledger.openSession(0);
    s.start(0);
    const [a, b, c] = [ledger.nextSeq(0), ledger.nextSeq(0), ledger.nextSeq(0)];
    s.receive(a);
    s.receive(c); // b is missing: held ahead
    ledger.settle(0, a, true);
    ledger.settle(0, b, false); // never published
    ledger.settle(0, c, true);
    s.receive(ledger.nextSeq(0)); // 3, in order now that 2 is not awaited behind the gap
    ledger.settle(0, 3, true);
    ledger.remember(0);
    const count = ledger.count(1000);
    assert.equal(ledger.publishErrors, 1);
    assert.equal(count.expected, 3);
    assert.equal(count.delivered, 3);
    assert.equal(count.lost, 0);
    assert.equal(s.reordered, 0);
  });

  test('remember keeps what a session ending now can need, and no more', () => {
    const ledger = new Ledger(1, 1000);
    for (let t = 0; t <= 10_000; t += 500) {
      ledger.nextSeq(0);
      ledger.settle(0, t / 500, true);
      ledger.remember(t);
    }
    assert.equal(ledger.settledBefore(0, 10_000), 19); // as remembered at 9000
    assert.equal(ledger.settledBefore(0, 10_400), 19);
    assert.equal(ledger.settledBefore(0, 10_500), 20);
    assert.equal(ledger.settledBefore(0, 5000), 0); // forgotten: nothing older is kept
  });
});

describe('churn', () => {
  test('the schedule reconnects the fraction per minute exactly, in whole connections', () => {
    const schedule = new ChurnSchedule(19_000, 0.1, 5);
    const ticks = Array.from({ length: 12 }, () => schedule.next());
    assert.ok(ticks.every((k) => Number.isInteger(k) && (k === 158 || k === 159)));
    assert.equal(
      ticks.reduce((a, b) => a + b, 0),
      1900,
    );
    assert.equal(new ChurnSchedule(1000, 0, 5).next(), 0);
  });

  test('pickRandom takes distinct elements, at most all', () => {
    const random = seededRandom(7);
    const picked = pickRandom(
      Array.from({ length: 100 }, (_, i) => i),
      30,
      random,
    );
    assert.equal(picked.length, 30);
    assert.equal(new Set(picked).size, 30);
    assert.deepEqual(pickRandom([1, 2, 3], 10, random).sort(), [1, 2, 3]);
    const again = pickRandom(
      Array.from({ length: 100 }, (_, i) => i),
      30,
      seededRandom(7),
    );
    assert.deepEqual(again, picked, 'the same seed, the same churn');
  });
});

describe('slopes and verdict', () => {
  test('least squares: an exact line, and the error of a noisy one', () => {
    const exact = leastSquares([
      [0, 1],
      [1, 3],
      [2, 5],
      [3, 7],
    ]);
    assert.equal(exact.slope, 2);
    assert.equal(exact.intercept, 1);
    assert.equal(exact.slopeError, 0);
    assert.equal(exact.mean, 4);
    const noisy = leastSquares(Array.from({ length: 100 }, (_, i) => [i, 5 + (i % 2 === 0 ? 1 : -1)]));
    assert.ok(Math.abs(noisy.slope) < 0.001);
    assert.ok(noisy.slopeError > 0 && noisy.slopeError < 0.01);
    assert.equal(leastSquares([]).slope, 0);
    assert.equal(leastSquares([[1, 1]]).slope, 0);
  });

  const samples = (
    minutes: number,
    rss: (h: number) => number,
    heap: (h: number) => number,
    fds: (h: number) => number,
  ): Sample[] =>
    Array.from({ length: minutes * 6 + 1 }, (_, k) => {
      const seconds = k * 10;
      const h = seconds / 3600;
      return {
        seconds,
        rssBytes: rss(h),
        heapUsedBytes: heap(h),
        heapOldBytes: heap(h),
        majorGcs: 0,
        liveHeapBytes: 0,
        heapTotalBytes: 0,
        externalBytes: 0,
        fds: 19_001 + fds(h),
        gatewayConnections: 19_001,
        clientConnections: 19_001,
        cpuPercent: 30,
        loadCpuPercent: 40,
        published: 0,
        reconnects: 0,
        dropped: 0,
        delivered: 0,
        lost: 0,
        duplicated: 0,
        deliveriesPerSecond: 0,
        p99Ms: 0,
      };
    });
  const clean: Outcome = {
    lost: 0,
    duplicated: 0,
    publishErrors: 0,
    connectFailures: 0,
    dropped: 0,
    gaugeDifference: 0,
  };

  test('the warm-up: a fraction of the run, or until the first mark-compact, at most half', () => {
    assert.equal(warmupEnd(3600, 0.2), 720);
    assert.equal(warmupEnd(3600, 0.2, 300), 720);
    assert.equal(warmupEnd(3600, 0.2, 900), 900);
    assert.equal(warmupEnd(600, 0.2, 500), 300);
    const run = samples(
      60,
      () => 0,
      () => 0,
      () => 0,
    );
    assert.equal(after(run, 720)[0]!.seconds, 720);
    assert.equal(after(run, 720).at(-1)!.seconds, 3600);
    assert.equal(after(run, 9999).length, 3);
    assert.equal(after(run.slice(0, 2), 720).length, 2);
  });

  /** A mark-compact every 2 minutes leaving `live(h)` of heap and `rss(h)` (and a little jitter). */
  const gcs = (minutes: number, live: (h: number) => number, rss: (h: number) => number): SeenGc[] =>
    Array.from({ length: minutes / 2 }, (_, k) => {
      const seconds = 60 + k * 120;
      const jitter = (k % 2 === 0 ? 0.2 : -0.2) * MB;
      const afterBytes = live(seconds / 3600) + jitter;
      const rssBytes = rss(seconds / 3600) + jitter;
      return { seconds, ms: seconds * 1000, beforeBytes: afterBytes + 20 * MB, afterBytes, rssBytes };
    });

  test('flat memory passes; a start-up climb inside the warm-up does not count', () => {
    // RSS after each mark-compact climbing from 450 to 500 MB in the first 5 minutes, then flat;
    // the samples saw-tooth in between (they are not what is fitted when there are mark-compacts).
    const climb = (h: number) => (450 + Math.min(50, h * 600)) * MB;
    const run = samples(
      60,
      (h) => climb(h) + ((Math.round(h * 360) % 12) / 12) * 30 * MB,
      (h) => (60 + (8 * (Math.round(h * 360) % 7)) / 7) * MB,
      (h) => 25 + (Math.round(h * 360) % 3 === 0 ? 1 : 0),
    );
    const rows = judge(
      run,
      gcs(60, () => 40 * MB, climb),
      720,
      clean,
    );
    assert.deepEqual(
      rows.map((r) => [r.name, r.pass]),
      [
        ['gateway RSS after each major GC', true],
        ['gateway JS heap after each major GC', true],
        ['gateway fds − connections', true],
        ['publications lost', true],
        ['publications duplicated', true],
        ['publish errors', true],
        ['connect or subscribe failures', true],
        ['connections dropped by the gateway', true],
        ['connections gauge − clients held, at the end', true],
      ],
    );
    assert.ok(Math.abs(rows[0]!.slopePerHour!) < 0.1 * MB, `${rows[0]!.slopePerHour! / MB} MB/h`);
    assert.equal(rows[0]!.bound, 0.01 * rows[0]!.mean); // 1 % of 500 MB is more than 4 MB
    assert.equal(rows[1]!.bound, 4 * MB); // 1 % of 40 MB is less
    assert.equal(rows[0]!.points, 24); // the mark-compacts from minute 13 on
    assert.equal(rows[1]!.points, 24);
    assert.equal(rows[2]!.points, 289); // fds: every sample after the warm-up
    assert.equal(rows[0]!.fit!.fromSeconds, 780);
    assert.equal(rows[0]!.uncertain, false);
    const text = formatVerdict(rows, 720);
    assert.match(text, /^PASS/m);
    assert.match(text, /from minute 12\.0/);
    assert.doesNotMatch(text, /MISS|too short/);
  });

  test('too few mark-compacts: the heap is judged on its sampled old generation', () => {
    const run = samples(
      10,
      () => 100 * MB,
      (h) => (30 + 60 * h) * MB, // 60 MB/h
      () => 25,
    );
    // Mark-compacts at 60 and 180 s: one after the warm-up.
    const rows = judge(
      run,
      gcs(
        4,
        () => 20 * MB,
        () => 100 * MB,
      ),
      120,
      clean,
    );
    assert.equal(rows[0]!.name, 'gateway RSS (sampled)');
    assert.equal(rows[0]!.points, 49);
    assert.equal(rows[1]!.name, 'gateway JS heap outside the young generation (sampled)');
    assert.ok(Math.abs(rows[1]!.slopePerHour! - 60 * MB) < 0.01 * MB);
    assert.equal(rows[1]!.pass, false);
  });

  test('slow growth misses: RSS 6 MB/h, heap 5 MB/h, one fd per 5 minutes; counts miss above 0', () => {
    const run = samples(
      60,
      (h) => (200 + 6 * h) * MB,
      () => 60 * MB,
      (h) => 25 + Math.floor(h * 12),
    );
    const rows = judge(
      run,
      gcs(
        60,
        (h) => (40 + 5 * h) * MB,
        (h) => (200 + 6 * h) * MB,
      ),
      720,
      { ...clean, lost: 3, gaugeDifference: -1 },
    );
    const byName = new Map(rows.map((r) => [r.name, r]));
    const rss = byName.get('gateway RSS after each major GC')!;
    assert.equal(rss.pass, false);
    assert.ok(Math.abs(rss.slopePerHour! - 6 * MB) < 0.2 * MB, `${rss.slopePerHour! / MB} MB/h`);
    const heap = byName.get('gateway JS heap after each major GC')!;
    assert.equal(heap.pass, false);
    assert.ok(Math.abs(heap.slopePerHour! - 5 * MB) < 0.2 * MB, `${heap.slopePerHour! / MB} MB/h`);
    assert.equal(byName.get('gateway fds − connections')!.pass, false);
    assert.ok(Math.abs(byName.get('gateway fds − connections')!.slopePerHour! - 12) < 1);
    assert.equal(byName.get('publications lost')!.pass, false);
    assert.equal(byName.get('connections gauge − clients held, at the end')!.mean, 1);
    assert.equal(byName.get('publications duplicated')!.pass, true);
    assert.match(formatVerdict(rows, 720), /^MISS .*gateway RSS after each major GC$/m);
  });

  test('metricValue sums a metric over its series and does not take a longer name', () => {
    const text = [
      '# HELP switchboard_connections Client connections open now, by transport.',
      '# TYPE switchboard_connections gauge',
      'switchboard_connections{transport="websocket"} 19000',
      'switchboard_connections{transport="sse"} 1',
      'switchboard_connections_total 99',
      'switchboard_nodejs_heap_size_used_bytes 61234567',
    ].join('\n');
    assert.equal(metricValue(text, 'switchboard_connections'), 19_001);
    assert.equal(metricValue(text, 'switchboard_nodejs_heap_size_used_bytes'), 61_234_567);
    assert.ok(Number.isNaN(metricValue(text, 'switchboard_nodejs_heap_size_total_bytes')));
    assert.equal(metricValue(text, 'switchboard_connections', 'transport="sse"'), 1);
    assert.ok(Number.isNaN(metricValue(text, 'switchboard_connections', 'transport="http_stream"')));
  });

  test('thin keeps the first and the last; timeTicks picks a round step', () => {
    const xs = Array.from({ length: 361 }, (_, i) => i);
    const few = thin(xs, 16);
    assert.equal(few.length, 16);
    assert.equal(few[0], 0);
    assert.equal(few.at(-1), 360);
    assert.deepEqual(thin([1, 2, 3], 16), [1, 2, 3]);
    assert.deepEqual(timeTicks(3600), [0, 10, 20, 30, 40, 50, 60]);
    assert.deepEqual(timeTicks(600), [0, 2, 4, 6, 8, 10]);
    assert.deepEqual(timeTicks(15), [0, 0.25]);
  });
});

test(
  'soak: a short run with churn and publishing writes every table and soak.json',
  { timeout: 120_000 },
  async () => {
    const out = mkdtempSync(join(tmpdir(), 'switchboard-soak-'));
    try {
      const args = [
        SOAK,
        ...['--minutes', '0.25', '--connections', '200', '--channels', '10', '--rate', '50'],
        ...['--churn', '0.6', '--churn-seconds', '1', '--sample-seconds', '2', '--no-plot', '--out', out],
      ];
      const { stdout } = await promisify(execFile)(process.execPath, args, { maxBuffer: 16 * 1024 * 1024 });
      for (const heading of ['Samples', 'Trends after the warm-up', 'churn:', 'publishing:'])
        assert.ok(stdout.includes(heading), `missing ${heading}:\n${stdout}`);
      const result = JSON.parse(readFileSync(join(out, 'soak.json'), 'utf8'));
      assert.ok(result.samples.length >= 6, `${result.samples.length} samples`);
      assert.equal(result.connect.failed, 0, JSON.stringify(result.errors));
      // 60 % of 200 per minute for 15 s: about 30 reconnects.
      assert.ok(result.churn.reconnects >= 20, `${result.churn.reconnects} reconnects`);
      assert.equal(result.churn.dropped, 0, JSON.stringify(result.churn.drops));
      assert.ok(result.publishing.published >= 600, `${result.publishing.published} published`);
      assert.equal(result.publishing.publishErrors, 0);
      // Every publication reaches its channel's 20 subscribers, less the churned ones' gaps.
      assert.ok(
        result.deliveries.expected > 0.8 * 20 * result.publishing.published,
        JSON.stringify(result.deliveries),
      );
      assert.equal(result.deliveries.lost, 0, JSON.stringify(result.deliveries));
      assert.equal(result.deliveries.duplicated, 0);
      assert.equal(result.end.gatewayConnections, result.end.clientConnections);
      assert.equal(result.end.clientConnections, 201);
      const last = result.samples.at(-1);
      assert.ok(
        last.rssBytes > 0 && last.heapUsedBytes > 0 && last.fds > last.gatewayConnections,
        JSON.stringify(last),
      );
      assert.equal(result.verdict.length, 9);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  },
);
