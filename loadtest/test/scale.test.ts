/**
 * Smoke test of `make bench-scale`: the quick mode (2 gateways × 200 clients)
 * connects every client, delivers every publication, and routes by interest:
 * what gw1 publishes to gw2's channels reaches gw2 and no other gateway.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const SCALE = fileURLToPath(new URL('../src/bench/scale.js', import.meta.url));

test(
  'bench-scale --quick: every client connected, every delivery, no publication leaked',
  { timeout: 120_000 },
  async () => {
    const out = mkdtempSync(join(tmpdir(), 'switchboard-scale-'));
    try {
      // Exit code 1 means an invalid run: the results say why, so they are checked first.
      const exit = await promisify(execFile)(process.execPath, [SCALE, '--quick', '--out', out], {
        maxBuffer: 16 * 1024 * 1024,
      }).then(
        ({ stdout }) => ({ code: 0, stdout, stderr: '' }),
        (err: { code?: number; stdout?: string; stderr?: string }) => ({
          code: err.code ?? -1,
          stdout: err.stdout ?? '',
          stderr: err.stderr ?? '',
        }),
      );
      assert.ok(existsSync(join(out, 'scale.json')), `no results:\n${exit.stdout}\n${exit.stderr}`);
      const { runs, plan } = JSON.parse(readFileSync(join(out, 'scale.json'), 'utf8'));
      assert.deepEqual(
        runs.map((r: any) => r.gateways),
        [2],
      );
      const [run] = runs;
      assert.equal(run.total.failed, 0, `connect failures ${JSON.stringify(run.errors)}`);
      assert.equal(run.closed, 0, `connections dropped ${JSON.stringify(run.errors)}`);
      for (const row of run.rows) {
        assert.equal(row.connected, plan.perGateway, row.node);
        assert.equal(row.held, plan.perGateway, `${row.node} connections gauge`);
        assert.equal(row.natsSubscriptions, plan.channels, `${row.node} subscribes to its own channels only`);
        assert.ok(row.bytesPerConnection > 0, `${row.node} RSS per connection`);
        assert.ok(row.fanout.expected > 0, row.node);
        assert.equal(row.fanout.delivered, row.fanout.expected, `${row.node} fan-out deliveries`);
        assert.equal(row.fanout.duplicated, 0, row.node);
        assert.ok(row.fanout.perCpuSecond > 0, `${row.node} deliveries per CPU-second`);
        assert.ok(row.fanout.natsBytesIn > 0, `${row.node} NATS bytes in`);
      }
      assert.equal(run.fanout.publishErrors, 0);

      // Interest-based routing: gw1's publisher sent to channels only gw2's clients hold.
      const [gw1, gw2] = run.rows;
      assert.equal(gw2.routing.delivered, gw2.routing.expected, 'gw2 got every routed publication');
      assert.equal(gw2.routing.expected, plan.routingPublications * (plan.perGateway / plan.channels));
      assert.equal(gw1.routing.delivered, 0, 'gw1 clients got none of it');
      // gw2 received every publication's payload from NATS ...
      assert.ok(
        gw2.routing.natsBytesIn >= plan.routingPublications * plan.payloadBytes,
        `gw2 received ${gw2.routing.natsBytesIn} bytes for ${plan.routingPublications} publications`,
      );
      // ... gw1, subscribed to none of those channels, only its own odd heartbeat acknowledgement.
      assert.ok(
        gw1.routing.natsBytesIn <= 0.05 * gw2.routing.natsBytesIn,
        `gw1 received ${gw1.routing.natsBytesIn} bytes from NATS (gw2 ${gw2.routing.natsBytesIn})`,
      );
      assert.ok(
        gw1.routing.natsMsgsIn < plan.routingPublications / 10,
        `gw1 received ${gw1.routing.natsMsgsIn} NATS messages during ${plan.routingPublications} publications`,
      );
      assert.equal(run.routing.ok, true);
      assert.equal(run.valid, true, run.problems.join('; '));
      assert.equal(exit.code, 0, exit.stderr);

      assert.match(exit.stdout, /^ {2}total {2}/m);
      assert.match(exit.stdout, /^routing: .*: PASS$/m);
      const html = readFileSync(join(out, 'scale.html'), 'utf8');
      assert.equal(html.match(/<svg /g)?.length, 2);
      if (existsSync('/usr/bin/chromium')) assert.ok(existsSync(join(out, 'scale.png')));
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  },
);
