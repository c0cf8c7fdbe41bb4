/**
 * The Pusher conformance suite against the reference peer, Soketi 1.6.1
 * (loadtest/peers/soketi, installed by `make soketi`): `make pusher-reference`.
 * Not part of `make test` (not a *.test.js file): Soketi is a bench-only
 * install and runs on Node 20 only.
 *
 * Starts Soketi as a child process on free loopback ports with one known app,
 * waits until it answers /ready, runs the suite, and stops it after. Soketi's
 * cluster discovery (UDP hello packets, to 255.255.255.255 by default) is bound
 * to loopback and sent to loopback only. Soketi runs on SOKETI_NODE, else on
 * this process's Node; its uWebSockets.js build has binaries for Node 16, 18
 * and 20 only.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, waitUntil } from './harness.js';
import { type PusherQuirk, type PusherTarget, pusherConformance } from './pusher-conformance.js';

const PEER = fileURLToPath(new URL('../../../../loadtest/peers/soketi/', import.meta.url));
const CLI = join(PEER, 'node_modules/@soketi/soketi/bin/server.js');
const NODE = process.env.SOKETI_NODE ?? process.execPath;

/**
 * Where Soketi 1.6.1 deviates from Pusher's documentation, as observed by this
 * suite (each test still runs and reports its assertions, as TODO).
 */
const SOKETI_QUIRKS = new Map<PusherQuirk, string>([
  [
    'client-events-public-refused',
    'relays client-* events on public channels (it checks only that the sender is subscribed) and answers no pusher:error',
  ],
  [
    'api-error-status',
    'answers HTTP API errors (401 for a wrong signature, 400 for a bad request) with status 200 and the status only as "code" in the JSON body: its CORS middleware writes headers before writeStatus, so uWebSockets.js has already sent 200 OK',
  ],
  [
    'channels-info-user-count',
    'GET /channels ignores info=user_count: every channel gets subscription_count and occupied instead',
  ],
  [
    'channels-info-user-count-needs-presence-prefix',
    'GET /channels with info=user_count and no presence- filter_by_prefix answers 200 instead of 400',
  ],
]);

let soketi: ChildProcess | undefined;
let output = '';
let workDir = '';
let target: PusherTarget | undefined;

before(async () => {
  if (!existsSync(CLI)) throw new Error(`Soketi is not installed at ${PEER}: run make soketi`);
  const [port, metricsPort, clusterPort] = [await freePort(), await freePort(), await freePort()];
  const app = { appId: 'conformance-app', key: 'conformance-key', secret: 'conformance-secret' };
  // Only a config file reaches node-discover's bind address; the rest is Soketi's documented env.
  workDir = mkdtempSync(join(tmpdir(), 'soketi-'));
  const config = join(workDir, 'config.json');
  writeFileSync(config, JSON.stringify({ 'cluster.address': '127.0.0.1', 'cluster.unicast': '127.0.0.1' }));
  soketi = spawn(NODE, [CLI, 'start', `--config=${config}`], {
    // Soketi reads a .env from its working directory: an empty one of its own.
    cwd: workDir,
    env: {
      PATH: process.env.PATH ?? '',
      SOKETI_HOST: '127.0.0.1',
      SOKETI_PORT: String(port),
      SOKETI_METRICS_HOST: '127.0.0.1',
      SOKETI_METRICS_SERVER_PORT: String(metricsPort),
      SOKETI_CLUSTER_PORT: String(clusterPort),
      SOKETI_DEFAULT_APP_ID: app.appId,
      SOKETI_DEFAULT_APP_KEY: app.key,
      SOKETI_DEFAULT_APP_SECRET: app.secret,
      SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
      // pusher:signin is answered only where user authentication is on; connections that do not
      // sign in are then closed after SOKETI_USER_AUTHENTICATION_TIMEOUT ms, longer than any run.
      SOKETI_DEFAULT_APP_USER_AUTHENTICATION: 'true',
      SOKETI_USER_AUTHENTICATION_TIMEOUT: String(30 * 60 * 1000),
      SOKETI_SHUTDOWN_GRACE_PERIOD: '100',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  soketi.stdout?.on('data', (d) => (output += d));
  soketi.stderr?.on('data', (d) => (output += d));
  const child = soketi;
  await waitUntil(
    async () => {
      if (child.exitCode !== null) throw new Error(`Soketi exited with ${child.exitCode}:\n${output}`);
      const res = await fetch(`http://127.0.0.1:${port}/ready`).catch(() => undefined);
      return res?.status === 200;
    },
    20_000,
    () => `Soketi to answer /ready on ${port}:\n${output}`,
  );
  target = {
    name: 'Soketi 1.6.1',
    wsHost: '127.0.0.1',
    wsPort: port,
    httpHost: '127.0.0.1',
    httpPort: port,
    ...app,
    quirks: SOKETI_QUIRKS,
  };
});

after(async () => {
  const child = soketi;
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

pusherConformance(() => {
  if (!target) throw new Error('Soketi did not start');
  return target;
});
