/**
 * The load generator against a real embedded gateway: every scenario that
 * publishes gets every publication to every subscriber exactly once, RPCs
 * come back, and the CLI reports and exits 0.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type Gateway, SECRET, startGateway } from '@switchboard/gateway/dist/test/harness.js';
import { SWITCHBOARD_BENCH_ENV } from '../src/bench/servers.js';
import { loopbackAddresses } from '../src/fleet.js';
import { runScenario, type ScenarioOptions } from '../src/scenarios.js';

const CLI = fileURLToPath(new URL('../src/cli.js', import.meta.url));

let gateway: Gateway;
before(async () => {
  gateway = await startGateway(SWITCHBOARD_BENCH_ENV);
});
after(() => gateway.stop());

const options = (overrides: Partial<ScenarioOptions>): ScenarioOptions => ({
  scenario: 'fanout',
  url: gateway.wsUrl,
  connections: 200,
  connectRate: 2000,
  rate: 20,
  durationMs: 2500,
  channel: 'loadgen',
  payloadBytes: 32,
  secret: SECRET,
  localAddresses: loopbackAddresses(2),
  timeoutMs: 10_000,
  rpcMethod: 'echo',
  ...overrides,
});

test('fanout: every publication reaches every subscriber once, with latencies', async () => {
  const report = await runScenario(options({}));
  assert.equal(report.connected, 200);
  assert.equal(report.failed, 0);
  assert.ok(report.sent > 0, 'published something');
  assert.equal(report.expected, report.sent * 200);
  assert.equal(report.delivered, report.expected);
  assert.equal(report.lost, 0);
  assert.equal(report.duplicated, 0);
  assert.equal(report.latency.count, report.delivered);
  assert.deepEqual(report.errors, {});
});

test('channels: one subscriber per channel, round robin, nothing lost', async () => {
  const report = await runScenario(
    options({ scenario: 'channels', connections: 100, rate: 400, channel: 'own' }),
  );
  assert.ok(report.sent >= 100, `published ${report.sent}`);
  assert.equal(report.delivered, report.sent);
  assert.equal(report.lost + report.duplicated, 0);
});

test('fanout through the server API reaches everyone too', async () => {
  const report = await runScenario(
    options({ connections: 50, apiUrl: gateway.internalUrl, apiKey: 'test-api-key', channel: 'viaapi' }),
  );
  assert.ok(report.sent > 0);
  assert.equal(report.sendErrors, 0);
  assert.equal(report.delivered, report.sent * 50);
});

test('rpc: echo round trips with latencies; an unknown method is counted as error 104', async () => {
  const ok = await runScenario(options({ scenario: 'rpc', connections: 20, rate: 200, durationMs: 1500 }));
  assert.ok(ok.sent > 50);
  assert.equal(ok.sendErrors, 0);
  assert.equal(ok.latency.count, ok.sent);
  const bad = await runScenario(
    options({ scenario: 'rpc', connections: 5, rate: 50, durationMs: 1000, rpcMethod: 'nope' }),
  );
  assert.equal(bad.sendErrors, bad.sent);
  assert.ok(
    Object.keys(bad.errors).some((e) => e.startsWith('104')),
    JSON.stringify(bad.errors),
  );
});

test('a wrong secret fails every connect, and says why', async () => {
  const report = await runScenario(
    options({ scenario: 'connect', connections: 10, secret: 'wrong', durationMs: 1000 }),
  );
  assert.equal(report.connected, 0);
  assert.equal(report.failed, 10);
  assert.ok(Object.keys(report.errors).length > 0);
});

test('CLI: idle connections stay open, report printed, exit 0', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [
    CLI,
    '--scenario',
    'idle',
    '--url',
    gateway.wsUrl,
    '--connections',
    '100',
    '--duration',
    '2s',
    '--secret',
    SECRET,
  ]);
  assert.match(stdout, /connections\s+100\/100 connected, 0 failed, 0 dropped/);
  assert.match(stdout, /errors\s+none/);
});

test('CLI: bad arguments are refused with a clear message', async () => {
  await assert.rejects(
    promisify(execFile)(process.execPath, [CLI, '--scenario', 'fanout', '--connections', '1000000']),
    (err: { code: number; stderr: string }) =>
      err.code === 2 && /--connections must be a number in \(0, 200000\]/.test(err.stderr),
  );
});
