/**
 * Hot metrics reach Prometheus as prom-client's own would: tallied counter
 * series added at scrape time, histograms written as `_bucket` (cumulative,
 * `le`), `_sum` and `_count`.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Histogram, Registry } from 'prom-client';
import { HotCounter, HotHistogram } from '../src/hot-metrics.js';

describe('hot metrics', () => {
  test('a counter adds its tallies at each scrape, per label set, and only once', async () => {
    const registry = new Registry();
    const counter = new HotCounter({
      name: 't_frames_total',
      help: 'frames',
      labelNames: ['transport', 'direction'] as const,
      registers: [registry],
    });
    const out = counter.of({ transport: 'websocket', direction: 'out' });
    out.inc();
    out.inc(4);
    counter.inc({ transport: 'sse', direction: 'in' }, 2);
    counter.inc({ transport: 'websocket', direction: 'out' });
    const first = await registry.metrics();
    assert.match(first, /t_frames_total\{transport="websocket",direction="out"\} 6/);
    assert.match(first, /t_frames_total\{transport="sse",direction="in"\} 2/);
    out.inc(1);
    const second = await registry.metrics();
    assert.match(second, /t_frames_total\{transport="websocket",direction="out"\} 7/);
    assert.match(second, /t_frames_total\{transport="sse",direction="in"\} 2/);
  });

  test("a histogram's text is the same as prom-client's own for the same observations", async () => {
    const buckets = [0.001, 0.01, 0.1];
    const values = [0.0005, 0.001, 0.002, 0.05, 0.5, 3];
    const ours = new Registry();
    const hot = new HotHistogram('t_seconds', 'durations', ['method'] as const, buckets, ours);
    const theirs = new Registry();
    const reference = new Histogram({
      name: 't_seconds',
      help: 'durations',
      labelNames: ['method'] as const,
      buckets,
      registers: [theirs],
    });
    for (const v of values) {
      hot.observe({ method: 'publish' }, v);
      reference.observe({ method: 'publish' }, v);
    }
    hot.of({ method: 'connect' }).observe(0.02);
    reference.observe({ method: 'connect' }, 0.02);
    const lines = (text: string) => text.split('\n').filter(Boolean).sort();
    assert.deepEqual(lines(await ours.metrics()), lines(await theirs.metrics()));
  });
});
