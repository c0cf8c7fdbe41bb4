/**
 * Smoke test of `make bench`: the quick mode runs every server and every
 * measurement, and prints (and writes) every row. The Pusher pass's Soketi
 * is a bench-only install (`make soketi`): without it the pass measures
 * Switchboard alone and says so.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const BENCH = fileURLToPath(new URL('../src/bench/main.js', import.meta.url));

test('bench --quick produces every table, row and target', { timeout: 150_000 }, async () => {
  const out = mkdtempSync(join(tmpdir(), 'switchboard-bench-'));
  try {
    const started = Date.now();
    const { stdout } = await promisify(execFile)(process.execPath, [BENCH, '--quick', '--out', out], {
      maxBuffer: 16 * 1024 * 1024,
    });
    const seconds = (Date.now() - started) / 1000;
    assert.ok(seconds < 80, `quick bench took ${seconds} s`);
    for (const heading of [
      'Memory per idle connection',
      'Fan-out, 1 channel × N subscribers',
      'Fan-out, N channels × 1 subscriber',
      'Connect rate',
      'Delivery check',
      'Publish-to-deliver latency',
      'Hot channel',
      'Targets',
      'Pusher: memory per idle connection',
      'Pusher: fan-out, 1 channel × N subscribers',
      'Pusher: connect rate',
      'Pusher across 2 nodes over NATS',
      'Pusher targets',
      'Protobuf vs JSON',
    ]) {
      assert.ok(stdout.includes(heading), `missing ${heading}:\n${stdout}`);
    }
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    assert.deepEqual(
      results.results.map((r: any) => r.kind),
      ['switchboard', 'uws', 'ws', 'socketio', 'socketcluster'],
    );
    for (const r of results.results) {
      assert.equal(r.memory.length, 2, r.kind);
      assert.equal(r.fanout.length, 2, r.kind);
      assert.equal(r.channels.length, 1, r.kind);
      // At the smoke sizes (100, 1000) a server's RSS may shrink by more than the connections add
      // (a GC handing pages back): the rows must be there and measured, their sign is noise.
      for (const m of r.memory) {
        assert.ok(Number.isFinite(m.bytesPerConnection), `${r.kind} memory ${m.bytesPerConnection}`);
        assert.ok(m.rssBytes > 0, `${r.kind} RSS ${m.rssBytes}`);
      }
      for (const run of [...r.fanout, ...r.channels]) {
        assert.equal(run.lost, 0, `${r.kind} lost ${run.lost} of ${run.expected}`);
        assert.equal(run.duplicated, 0, r.kind);
        assert.ok(run.perCpuSecond > 0, `${r.kind} deliveries per CPU-second`);
      }
      assert.equal(r.connect.failed, 0, `${r.kind} connect failures ${JSON.stringify(r.errors)}`);
      assert.ok(r.connect.perCpuSecond > 0, r.kind);
    }
    assert.deepEqual(
      results.latencies.map((l: any) => [l.setup, l.gateways, l.lost]),
      [
        ['embedded', 1, 0],
        ['cluster', 3, 0],
      ],
    );
    assert.deepEqual(
      results.hot.map((h: any) => [h.variant, h.scenario, h.subscribers, h.duplicated]),
      [
        ['switchboard-coalesce', 'latency', 100, 0],
        ['switchboard', 'latency', 100, 0],
        ['uws', 'latency', 100, 0],
        ['switchboard-coalesce', 'throughput', 300, 0],
        ['uws', 'throughput', 300, 0],
      ],
    );
    for (const h of results.hot) {
      assert.ok(h.delivered > 0 && h.perCpuSecond > 0 && h.latencySamples > 0, JSON.stringify(h));
      assert.equal(h.errors['close 3008'], undefined, `${h.variant} dropped slow subscribers`);
    }
    assert.deepEqual(
      results.targets.map((t: any) => t.target),
      [
        '≤ 2.00 KB',
        '≤ 1.25×',
        '≥ 1.00×',
        '≥ 0.85×',
        '≥ 0.90×',
        '≥ 3000/s',
        '< 10 ms',
        '≥ 2.00×',
        '≤ 2.00 ms',
      ],
    );
    const { pusher, pusherTargets } = results;
    const pusherKinds = pusher.skipped ? ['switchboard'] : ['switchboard', 'soketi'];
    assert.deepEqual(
      pusher.servers.map((r: any) => r.kind),
      pusherKinds,
    );
    for (const r of pusher.servers) {
      assert.equal(r.memory.length, 2, r.kind);
      assert.equal(r.fanout.length, 2, r.kind);
      for (const m of r.memory) {
        assert.ok(Number.isFinite(m.bytesPerConnection), `${r.kind} memory ${m.bytesPerConnection}`);
        assert.ok(m.rssBytes > 0, `${r.kind} RSS ${m.rssBytes}`);
      }
      for (const run of r.fanout) {
        assert.equal(run.lost, 0, `${r.kind} lost ${run.lost} of ${run.expected}`);
        assert.equal(run.duplicated, 0, r.kind);
        assert.equal(run.publishErrors, 0, r.kind);
        assert.ok(run.perCpuSecond > 0, `${r.kind} deliveries per CPU-second`);
      }
      assert.equal(r.connect.failed, 0, `${r.kind} connect failures ${JSON.stringify(r.errors)}`);
    }
    assert.deepEqual(
      pusher.cluster.map((c: any) => [c.kind, c.nodes, c.lost, c.duplicated, c.publishErrors]),
      pusherKinds.map((kind) => [kind, 2, 0, 0, 0]),
    );
    assert.deepEqual(
      pusherTargets.map((t: any) => t.target),
      pusher.skipped ? ['= 0', '= 0'] : ['≤ 1.00×', '≥ 1.00×', '≥ 1.00×', '≥ 1.00×', '≤ 1.00×', '= 0', '= 0'],
    );
    assert.match(stdout, /^(PASS|MISS) {2}/m);
    const html = readFileSync(join(out, 'growth.html'), 'utf8');
    assert.equal(html.match(/<svg /g)?.length, 4);
    if (existsSync('/usr/bin/chromium')) assert.ok(existsSync(join(out, 'growth.png')));
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});
