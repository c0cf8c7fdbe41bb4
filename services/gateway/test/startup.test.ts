/**
 * Start-up and shutdown of the real process: refuse the JavaScript fallback
 * of uWebSockets.js, refuse bad configuration with the key named, and on
 * SIGTERM turn unready, disconnect clients with a reconnect code and exit 0.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { describeUwsBuild, type UwsBuild, uwsBuild } from '../src/uws.js';
import { client, MAIN, nextEvent, startGateway, token, waitUntil } from './harness.js';

async function runToExit(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [MAIN], {
    env: {
      PATH: process.env.PATH ?? '',
      SWITCHBOARD_CLIENT_PORT: '0',
      SWITCHBOARD_INTERNAL_PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d) => {
    output += d;
  });
  child.stderr.on('data', (d) => {
    output += d;
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const [code] = await once(child, 'exit');
  clearTimeout(timer);
  return { code: code as number | null, output };
}

test('the gateway refuses to start on the JavaScript fallback of uWebSockets.js', async () => {
  const { code, output } = await runToExit({ UWS_USE_FALLBACK: '1' });
  assert.equal(code, 1);
  assert.match(output, /native uWebSockets\.js addon/);
});

test('the gateway logs the uWebSockets.js build it runs on, once, at start-up', async () => {
  const gateway = await startGateway({ SWITCHBOARD_LOG_LEVEL: 'info' });
  try {
    const lines = gateway
      .output()
      .split('\n')
      .filter((l) => l.includes('"uws":'))
      .map((l) => JSON.parse(l) as { msg: string; nodejs: string; uws: UwsBuild });
    assert.equal(lines.length, 1);
    assert.deepEqual(lines[0]!.uws, uwsBuild);
    assert.equal(lines[0]!.nodejs, process.version);
    assert.equal(lines[0]!.msg, `uWebSockets.js: ${describeUwsBuild()} on Node ${process.version}`);
  } finally {
    await gateway.stop();
  }
});

test('bad configuration stops start-up with the offending key named', async () => {
  const bad = await runToExit({ SWITCHBOARD_PING_INTERVAL: 'soon' });
  assert.equal(bad.code, 2);
  assert.match(bad.output, /configuration error: SWITCHBOARD_PING_INTERVAL must be a non-negative integer/);
  const ns = await runToExit({ SWITCHBOARD_NAMESPACES: '[{"name":"chat","histroy_size":10}]' });
  assert.equal(ns.code, 2);
  assert.match(ns.output, /unknown option histroy_size/);
});

test('a taken port is a clear start-up error', async () => {
  const first = await startGateway();
  try {
    const { code, output } = await runToExit({ SWITCHBOARD_CLIENT_PORT: String(first.clientPort) });
    assert.equal(code, 1);
    assert.match(output, new RegExp(`cannot listen on .*:${first.clientPort}`));
  } finally {
    await first.stop();
  }
});

test('SIGTERM: readiness turns 503, clients are told to reconnect (3001), the process exits 0', async () => {
  const gateway = await startGateway({ SWITCHBOARD_SHUTDOWN_TIMEOUT: '2' });
  const c = client(gateway, { token: await token({ sub: 'leaver' }) });
  c.connect();
  await nextEvent(c, 'connected');
  const reconnecting = nextEvent<{ code: number; reason: string }>(c, 'connecting');
  gateway.process.kill('SIGTERM');
  const ctx = await reconnecting;
  assert.equal(ctx.code, 3001);
  assert.equal(ctx.reason, 'shutdown');
  await waitUntil(
    () => gateway.process.exitCode !== null,
    5000,
    () => 'process exit',
  );
  assert.equal(gateway.process.exitCode, 0);
  c.disconnect();
});
