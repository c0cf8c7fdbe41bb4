/**
 * The servers the benchmark compares, each a process of its own pinned to
 * one core: Switchboard (embedded mode, the real gateway), bare
 * uWebSockets.js, `ws`, Socket.IO and SocketCluster (peers/).
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { freePort, startGateway } from '@switchboard/gateway/dist/test/harness.js';
import { centrifugo, type Dialect } from '../connection.js';
import { socketcluster, socketio } from './dialects.js';
import { BENCH_KEEPALIVE_SECONDS } from './peers/lite-protocol.js';
import { pin } from './proc.js';

export const SERVERS = ['switchboard', 'uws', 'ws', 'socketio', 'socketcluster'] as const;
export type ServerKind = (typeof SERVERS)[number];

export const LABELS: Record<ServerKind, string> = {
  switchboard: 'Switchboard',
  uws: 'bare uWS',
  ws: 'ws',
  socketio: 'Socket.IO',
  socketcluster: 'SocketCluster',
};

export interface RunningServer {
  kind: ServerKind;
  pid: number;
  url: string;
  /** Switchboard's internal (admin) port: /metrics, /readyz and the HTTP server API. */
  internalUrl?: string;
  /** Everything the server printed so far (stdout and stderr). */
  output: () => string;
  dialect: Dialect;
  pinned: boolean;
  stop(): Promise<void>;
}

/** Namespace `""` open to client subscribe and publish; no rate limit in the way of the publisher. */
export const SWITCHBOARD_BENCH_ENV = {
  SWITCHBOARD_NAMESPACES: JSON.stringify([
    { name: '', allow_subscribe_for_client: true, allow_publish_for_client: true },
  ]),
  SWITCHBOARD_COMMANDS_PER_SECOND: '10000000',
  // Thousands of clients from one address: the per-IP connect limit is off for the bench.
  SWITCHBOARD_CONNECTS_PER_IP_PER_SECOND: '0',
  SWITCHBOARD_EMBEDDED_SERVICES: '',
  SWITCHBOARD_MAX_CONNECTIONS_PER_USER: '0',
  // Every server keeps alive at the same, long interval (lite-protocol.ts).
  SWITCHBOARD_PING_INTERVAL: String(BENCH_KEEPALIVE_SECONDS),
};

const PEER_DIR = fileURLToPath(new URL('./peers/', import.meta.url));

async function startPeer(
  kind: Exclude<ServerKind, 'switchboard'>,
  secret: string,
  extraEnv: Record<string, string>,
): Promise<{ child: ChildProcess; port: number; output: () => string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [`${PEER_DIR}${kind}.js`], {
    env: { PATH: process.env.PATH ?? '', PORT: String(port), SECRET: secret, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr?.on('data', (d) => (out += d));
  child.stdout?.on('data', (d) => (out += d));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${kind} peer did not start:\n${out}`)), 15_000);
    const listening = () => {
      if (!out.includes('listening')) return;
      clearTimeout(timer);
      child.stdout?.off('data', listening);
      resolve();
    };
    child.stdout?.on('data', listening);
    child.once('exit', (code) => reject(new Error(`${kind} peer exited with ${code}:\n${out}`)));
  });
  return { child, port, output: () => out };
}

export async function startServer(
  kind: ServerKind,
  secret: string,
  core: number | 'all',
  extraEnv: Record<string, string> = {},
): Promise<RunningServer> {
  if (kind === 'switchboard') {
    const gateway = await startGateway({
      ...SWITCHBOARD_BENCH_ENV,
      SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: secret,
      SWITCHBOARD_GRPC_PORT: '0',
      ...extraEnv,
    });
    const pid = gateway.process.pid!;
    return {
      kind,
      pid,
      url: gateway.wsUrl,
      internalUrl: gateway.internalUrl,
      output: gateway.output,
      dialect: centrifugo,
      pinned: pin(pid, core),
      stop: async () => void (await gateway.stop()),
    };
  }
  const { child, port, output } = await startPeer(kind, secret, extraEnv);
  const exited = once(child, 'exit');
  const url =
    kind === 'socketio' || kind === 'socketcluster'
      ? `ws://127.0.0.1:${port}`
      : `ws://127.0.0.1:${port}/connection/websocket`;
  return {
    kind,
    pid: child.pid!,
    url,
    output,
    dialect: kind === 'socketio' ? socketio : kind === 'socketcluster' ? socketcluster : centrifugo,
    pinned: pin(child.pid!, core),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
