/**
 * Starts Soketi 1.6.1, the reference Pusher Channels server (loadtest/peers/soketi,
 * installed by `make soketi`), as a child process on free loopback ports with
 * one app, and waits until it answers /ready: for the conformance suite
 * (pusher-soketi.ts) and the benchmark's Pusher pass (loadtest/src/bench/pusher.ts).
 *
 * Soketi reads a .env from its working directory: it gets an empty directory
 * of its own. Its cluster discovery (node-discover's UDP hello packets, to
 * 255.255.255.255 by default, sent whatever the adapter) is bound to loopback
 * and sent to loopback only: only a config file reaches node-discover's bind
 * address; the rest is Soketi's documented env. Its uWebSockets.js build has
 * binaries for Node 16, 18 and 20 only: Soketi runs on SOKETI_NODE, else on
 * this process's Node when the build has a binary for it, else on the `node`
 * of PATH when that one has.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitUntil } from './harness.js';

export const SOKETI_PEER = fileURLToPath(new URL('../../../../loadtest/peers/soketi/', import.meta.url));
export const SOKETI_CLI = join(SOKETI_PEER, 'node_modules/@soketi/soketi/bin/server.js');
export const SOKETI_VERSION = '1.6.1';

export interface SoketiApp {
  appId: string;
  key: string;
  secret: string;
}

export interface Soketi {
  host: string;
  /** The one port of its WebSocket (/app/<key>) and HTTP API (/apps/<id>/...). */
  port: number;
  /** http://host:port */
  url: string;
  process: ChildProcess;
  /** The Node it runs on. */
  node: string;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM (SIGKILL after 5 s); resolves once it exited and its directory is gone. */
  stop(): Promise<void>;
}

/** Why Soketi cannot run here (not installed), or undefined when it can. */
export function soketiMissing(): string | undefined {
  return existsSync(SOKETI_CLI) ? undefined : `Soketi is not installed at ${SOKETI_PEER}: run make soketi`;
}

const hasBinary = (abi: string) =>
  existsSync(
    join(
      SOKETI_PEER,
      `node_modules/uWebSockets.js/binaries/uws_${process.platform}_${process.arch}_${abi}.node`,
    ),
  );

/** The Node to run Soketi with (see the header). */
export function soketiNode(): string {
  if (process.env.SOKETI_NODE) return process.env.SOKETI_NODE;
  if (hasBinary(process.versions.modules)) return process.execPath;
  try {
    const abi = execFileSync('node', ['-p', 'process.versions.modules'], { encoding: 'utf8' }).trim();
    if (hasBinary(abi)) return 'node';
  } catch {
    // no node on PATH
  }
  throw new Error(
    `Soketi's uWebSockets.js build has no binary for Node ${process.version} nor for the node of PATH: ` +
      'set SOKETI_NODE to a Node 16, 18 or 20',
  );
}

/**
 * Soketi with `app` as its one app (the SOKETI_DEFAULT_APP_* of its env) on
 * free loopback ports; `env` adds to or overrides its environment (SOKETI_*).
 */
export async function startSoketi(
  app: SoketiApp,
  env: Record<string, string> = {},
  timeoutMs = 20_000,
): Promise<Soketi> {
  const missing = soketiMissing();
  if (missing) throw new Error(missing);
  const node = soketiNode();
  const host = '127.0.0.1';
  const [port, metricsPort, clusterPort] = [await freePort(), await freePort(), await freePort()];
  const workDir = mkdtempSync(join(tmpdir(), 'soketi-'));
  const config = join(workDir, 'config.json');
  writeFileSync(config, JSON.stringify({ 'cluster.address': host, 'cluster.unicast': host }));
  const child = spawn(node, [SOKETI_CLI, 'start', `--config=${config}`], {
    cwd: workDir,
    env: {
      PATH: process.env.PATH ?? '',
      SOKETI_HOST: host,
      SOKETI_PORT: String(port),
      SOKETI_METRICS_HOST: host,
      SOKETI_METRICS_SERVER_PORT: String(metricsPort),
      SOKETI_CLUSTER_PORT: String(clusterPort),
      SOKETI_DEFAULT_APP_ID: app.appId,
      SOKETI_DEFAULT_APP_KEY: app.key,
      SOKETI_DEFAULT_APP_SECRET: app.secret,
      SOKETI_SHUTDOWN_GRACE_PERIOD: '100',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d) => (output += d));
  child.stderr?.on('data', (d) => (output += d));
  const exited = once(child, 'exit');
  const soketi: Soketi = {
    host,
    port,
    url: `http://${host}:${port}`,
    process: child,
    node,
    output: () => output,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(workDir, { recursive: true, force: true });
    },
  };
  try {
    await waitUntil(
      async () => {
        if (child.exitCode !== null) throw new Error(`Soketi exited with ${child.exitCode}:\n${output}`);
        const res = await fetch(`${soketi.url}/ready`).catch(() => undefined);
        await res?.body?.cancel();
        return res?.status === 200;
      },
      timeoutMs,
      () => `Soketi to answer /ready on ${port}:\n${output}`,
    );
  } catch (err) {
    await soketi.stop();
    throw err;
  }
  return soketi;
}
