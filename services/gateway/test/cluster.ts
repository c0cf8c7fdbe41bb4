/**
 * Cluster test harness: a real nats-server with JetStream, HAProxy configured
 * by the repository's docker/haproxy.cfg, and gateways between them, all on
 * free ports. Needs the `nats-server` and `haproxy` programs on PATH (`make
 * deps` installs them). Waits by polling, never by sleeping.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, type Gateway, startGateway, waitUntil } from './harness.js';
import { inNamespace, type TestNet } from './netns.js';

/** The one HAProxy config of the repository (this file runs from services/gateway/dist/test). */
export const HAPROXY_CFG = fileURLToPath(new URL('../../../../docker/haproxy.cfg', import.meta.url));

/** Temporary directories to remove when the test process exits. */
const tempDirs: string[] = [];
process.once('exit', () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** A child process with its output collected, and a stop that waits for the exit. */
export interface Proc {
  child: ChildProcess;
  output(): string;
  /** Sends `signal` unless the process already exited; resolves once it has. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export function run(program: string, args: string[], env: Record<string, string> = {}, cwd?: string): Proc {
  const child = spawn(program, args, {
    cwd,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  child.on('error', (err: NodeJS.ErrnoException) => {
    out +=
      err.code === 'ENOENT'
        ? `${program} not found on PATH; install it with: make deps\n`
        : `${program}: ${err.message}\n`;
  });
  // 'close' also fires when the spawn itself failed (no 'exit' then).
  const closed = once(child, 'close');
  return {
    child,
    output: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) child.kill(signal);
      await closed;
    },
  };
}

export function exited(proc: Proc): boolean {
  return proc.child.exitCode !== null || proc.child.signalCode !== null || proc.child.pid === undefined;
}

async function httpStatus(url: string): Promise<number | undefined> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
  await res?.body?.cancel();
  return res?.status;
}

export interface Nats {
  /** nats://HOST:PORT */
  url: string;
  /** Its address: 127.0.0.1, or its host's in a test network. */
  host: string;
  port: number;
  /** HTTP monitoring port (`/healthz`, `/varz`, `/jsz`). */
  monitorPort: number;
  /** The JetStream store directory; kept across restart(), removed when the test process exits. */
  storeDir: string;
  output(): string;
  /** The running process (replaced by restart()). */
  pid(): number | undefined;
  /** Stops the server (SIGTERM by default; SIGKILL simulates a crash). The store is kept. */
  stop(signal?: NodeJS.Signals): Promise<void>;
  /** Stops the server if it runs and starts it again on the same ports and store. */
  restart(): Promise<void>;
}

/** Where a nats-server listens: 127.0.0.1 on free ports, or a host of a test network (netns.ts). */
interface NatsPlace {
  host: string;
  port: number;
  monitorPort: number;
  netns?: string;
}

/**
 * Starts nats-server with JetStream on free ports and a temporary store;
 * resolves once /healthz is 200. `env` is its environment (what a config
 * file given with `-c` reads, such as passwords).
 */
export async function startNats(
  extraArgs: string[] = [],
  timeoutMs = 15_000,
  env: Record<string, string> = {},
): Promise<Nats> {
  const [port, monitorPort] = [await freePort(), await freePort()];
  return launchNats(
    { host: '127.0.0.1', port, monitorPort },
    `switchboard-test-${port}`,
    extraArgs,
    timeoutMs,
    env,
  );
}

async function launchNats(
  place: NatsPlace,
  name: string,
  extraArgs: string[],
  timeoutMs: number,
  env: Record<string, string> = {},
): Promise<Nats> {
  const { host, port, monitorPort } = place;
  const storeDir = mkdtempSync(join(tmpdir(), 'switchboard-nats-'));
  tempDirs.push(storeDir);
  const args = ['-js', '-a', host, '-p', String(port), '-m', String(monitorPort)];
  args.push('-sd', storeDir, '-n', name, ...extraArgs);

  let proc: Proc;
  let log = '';
  const launch = async () => {
    proc = run(...inNamespace(place.netns, 'nats-server', args), env);
    const current = proc;
    await waitUntil(
      async () => {
        if (exited(current)) throw new Error(`nats-server exited:\n${current.output()}`);
        return (await httpStatus(`http://${host}:${monitorPort}/healthz`)) === 200;
      },
      timeoutMs,
      () => `nats-server /healthz on ${host}:${monitorPort}:\n${current.output()}`,
    );
  };
  await launch();
  return {
    url: `nats://${host}:${port}`,
    host,
    port,
    monitorPort,
    storeDir,
    output: () => log + proc.output(),
    pid: () => proc.child.pid,
    stop: (signal) => proc.stop(signal),
    restart: async () => {
      await proc.stop();
      log += proc.output();
      await launch();
    },
  };
}

export interface NatsCluster {
  nodes: Nats[];
  /** Every node's URL, comma-separated, as SWITCHBOARD_NATS_URL takes them. */
  urls: string;
  /** The node that leads `stream` now (from the nodes' monitoring `/jsz`). */
  leaderOf(stream: string): Promise<Nats | undefined>;
  /**
   * Resolves once the cluster is whole: every node naming the same leader
   * for each stream, and that leader counting every replica current. After
   * a partition heals, the node that rejoins makes the groups it is in elect
   * again (nats-server 2.9 has no pre-vote): publishes wait for that
   * meanwhile. Not `/healthz`: it stays 503 for an ephemeral consumer left
   * behind on a node in the partition, long after the streams are whole.
   */
  whole(timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

/** Standard ports in a test network, where every server has an address of its own. */
const NET_PORTS = { client: 4222, monitor: 8222, route: 6222 };

/**
 * Three (or `size`) nats-servers clustered over routes, JetStream on each
 * with its own store, on 127.0.0.1 or, given a test network, node i on host
 * `hosts[i]`; with `tls`, clients and routes speak TLS only; resolves once every node is healthy and the JetStream meta
 * group has a leader.
 */
/** PEM files for a nats-server's TLS: clients and routes (mutual: the certificate serves both ends). */
export interface NatsTls {
  certFile: string;
  keyFile: string;
  caFile: string;
}

/** TLS for clients and for the cluster's routes (verified both ways), as nats-server config. */
function tlsConfig(tls: NatsTls): string {
  const block = `cert_file: "${tls.certFile}"\n  key_file: "${tls.keyFile}"\n  ca_file: "${tls.caFile}"`;
  return `tls {\n  ${block}\n}\ncluster {\n  tls {\n  ${block}\n  verify: true\n  }\n}\n`;
}

/** A config file of `text` for the servers of a cluster. */
function configFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'sb-nats-conf-'));
  tempDirs.push(dir);
  const file = join(dir, 'nats.conf');
  writeFileSync(file, text);
  return file;
}

export async function startNatsCluster(
  size = 3,
  {
    net,
    hosts = [],
    timeoutMs = 30_000,
    tls,
    config = '',
    env = {},
  }: {
    net?: TestNet;
    hosts?: string[];
    timeoutMs?: number;
    tls?: NatsTls;
    /** More nats-server configuration (users: `authorization {...}`), read with `env` (their passwords). */
    config?: string;
    env?: Record<string, string>;
  } = {},
): Promise<NatsCluster> {
  const places = await Promise.all(
    Array.from(
      { length: size },
      async (_, i): Promise<typeof NET_PORTS & { host: string; netns?: string }> =>
        net
          ? { ...NET_PORTS, host: net.address(hosts[i]!), netns: net.namespace(hosts[i]!) }
          : {
              client: await freePort(),
              monitor: await freePort(),
              route: await freePort(),
              host: '127.0.0.1',
            },
    ),
  );
  const routes = places.map((p) => `nats://${p.host}:${p.route}`).join(',');
  const tag = `${places[0]!.host}-${places[0]!.client}`;
  const text = (tls ? tlsConfig(tls) : '') + config;
  const configArgs = text ? ['-c', configFile(text)] : [];
  const nodes = await Promise.all(
    places.map((p, i) =>
      launchNats(
        { host: p.host, port: p.client, monitorPort: p.monitor, ...(p.netns ? { netns: p.netns } : {}) },
        `sb-test-n${i + 1}-${tag}`,
        [
          ...configArgs,
          '--cluster_name',
          `sb-test-${tag}`,
          '--cluster',
          `nats://${p.host}:${p.route}`,
          '--routes',
          routes,
        ],
        timeoutMs,
        env,
      ),
    ),
  );
  const jsz = async (node: Nats, query = '') => {
    const res = await fetch(`http://${node.host}:${node.monitorPort}/jsz${query}`, {
      signal: AbortSignal.timeout(2000),
    }).catch(() => undefined);
    return res?.ok ? ((await res.json()) as Record<string, any>) : undefined;
  };
  await waitUntil(
    async () => (await Promise.all(nodes.map((n) => jsz(n)))).every((j) => j?.meta_cluster?.leader),
    timeoutMs,
    () => 'a JetStream meta leader on every node',
  );
  return {
    nodes,
    urls: nodes.map((n) => n.url).join(','),
    leaderOf: async (stream) => {
      for (const node of nodes) {
        const info = await jsz(node, '?streams=true');
        const found = (info?.account_details ?? [])
          .flatMap((a: any) => a.stream_detail ?? [])
          .find((d: any) => d.name === stream);
        const leader = found?.cluster?.leader as string | undefined;
        if (leader) return nodes.find((_, i) => leader.startsWith(`sb-test-n${i + 1}-`));
      }
      return undefined;
    },
    whole: async (wholeTimeoutMs) => {
      let why = '';
      const healthy = async (): Promise<boolean> => {
        const views: { node: number; streams: any[] }[] = [];
        for (const [i, node] of nodes.entries()) {
          const info = await jsz(node, '?streams=true');
          if (!info) return !(why = `${node.url} /jsz unanswered`);
          views.push({
            node: i,
            streams: (info.account_details ?? []).flatMap((a: any) => a.stream_detail ?? []),
          });
        }
        // Only a group's leader tracks its replicas; every node must name the same leader.
        for (const name of new Set(views.flatMap((v) => v.streams.map((d) => d.name as string)))) {
          const leaders = new Set(views.map((v) => v.streams.find((d) => d.name === name)?.cluster?.leader));
          const [leader] = leaders;
          const at = views.find(
            (v) => typeof leader === 'string' && leader.startsWith(`sb-test-n${v.node + 1}-`),
          );
          const lagging = (at?.streams.find((d) => d.name === name)?.cluster?.replicas ?? [])
            .filter((r: any) => !r.current)
            .map((r: any) => r.name);
          if (leaders.size !== 1 || !at || lagging.length > 0)
            return !(why = `${name}: leaders ${[...leaders]}, not current ${lagging}`);
        }
        return true;
      };
      await waitUntil(healthy, wholeTimeoutMs, () => `the NATS cluster whole again (${why})`);
    },
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}

export interface Haproxy {
  /** ws://127.0.0.1:PORT/connection/websocket */
  url: string;
  port: number;
  /** With `tls`: the TLS bind's port, and wss://127.0.0.1:PORT/connection/websocket. */
  tlsPort?: number;
  wssUrl?: string;
  /** Stats frontend: `/metrics` (Prometheus), `/stats`, `/healthz`. */
  statsPort: number;
  output(): string;
  /** The state of each server (gw1 is gateways[0], ...): UP, DOWN, MAINT, DRAIN or NOLB. */
  servers(): Promise<Record<string, string>>;
  stop(): Promise<void>;
}

/** TLS on HAProxy's client frontend, as docker/haproxy.cfg's variables take it. */
export interface HaproxyTls {
  /** A PEM with certificate and key (pki.ts `pemFile`), or a directory of them. */
  cert: string;
  /** Redirect plain HTTP to the TLS bind (SWITCHBOARD_HAPROXY_HTTPS_REDIRECT). */
  redirect?: boolean;
  /** A Strict-Transport-Security value for responses over TLS (SWITCHBOARD_HAPROXY_HSTS). */
  hsts?: string;
}

/** Where HAProxy sends clients: gateways, or anything answering /readyz on `internalPort`. */
export type Upstream = Pick<Gateway, 'host' | 'clientPort' | 'internalPort'>;

/**
 * Starts HAProxy with docker/haproxy.cfg in front of one to three gateways
 * (server gwN is gateways[N-1]), with a TLS bind too when given `tls`;
 * resolves once every gateway has passed a /readyz check and is UP.
 */
export async function startHaproxy(
  gateways: Upstream[],
  { tls, timeoutMs = 15_000 }: { tls?: HaproxyTls; timeoutMs?: number } = {},
): Promise<Haproxy> {
  if (gateways.length < 1 || gateways.length > 3) throw new Error('docker/haproxy.cfg takes 1 to 3 gateways');
  const [port, statsPort] = [await freePort(), await freePort()];
  const tlsPort = tls ? await freePort() : undefined;
  const env: Record<string, string> = {
    SWITCHBOARD_HAPROXY_BIND: `127.0.0.1:${port}`,
    SWITCHBOARD_HAPROXY_STATS_BIND: `127.0.0.1:${statsPort}`,
  };
  if (tls) {
    env.SWITCHBOARD_HAPROXY_TLS_BIND = `127.0.0.1:${tlsPort}`;
    env.SWITCHBOARD_HAPROXY_TLS_CERT = tls.cert;
    if (tls.redirect) env.SWITCHBOARD_HAPROXY_HTTPS_REDIRECT = String(tlsPort);
    if (tls.hsts) env.SWITCHBOARD_HAPROXY_HSTS = tls.hsts;
  }
  gateways.forEach((gateway, i) => {
    env[`SWITCHBOARD_GW${i + 1}_ADDR`] = `${gateway.host}:${gateway.clientPort}`;
    env[`SWITCHBOARD_GW${i + 1}_CHECK_PORT`] = String(gateway.internalPort);
  });
  const proc = run('haproxy', ['-db', '-f', HAPROXY_CFG], env);

  const metrics = async (): Promise<string> => {
    const res = await fetch(`http://127.0.0.1:${statsPort}/metrics`, { signal: AbortSignal.timeout(2000) });
    if (res.status !== 200) throw new Error(`HAProxy /metrics answered ${res.status}`);
    return res.text();
  };
  const haproxy: Haproxy = {
    url: `ws://127.0.0.1:${port}/connection/websocket`,
    port,
    tlsPort,
    wssUrl: tlsPort === undefined ? undefined : `wss://127.0.0.1:${tlsPort}/connection/websocket`,
    statsPort,
    output: proc.output,
    servers: async () => serverStates(await metrics()),
    stop: () => proc.stop(),
  };
  try {
    await waitUntil(
      async () => {
        if (exited(proc)) throw new Error(`haproxy exited:\n${proc.output()}`);
        const text = await metrics().catch(() => '');
        // Servers count as UP before their first check, so also require a passed check.
        const states = serverStates(text);
        const checked = checkStates(text);
        return gateways.every((_, i) => states[`gw${i + 1}`] === 'UP' && checked[`gw${i + 1}`] === 'L7OK');
      },
      timeoutMs,
      () => `HAProxy with ${gateways.length} gateways up:\n${proc.output()}`,
    );
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return haproxy;
}

const SERVER_STATUS = /^haproxy_server_status\{proxy="gateways",server="([^"]+)",state="([A-Z]+)"\} 1$/gm;
const SERVER_CHECK =
  /^haproxy_server_check_status\{proxy="gateways",server="([^"]+)",state="([A-Z0-9]+)"\} 1$/gm;

export function serverStates(metrics: string): Record<string, string> {
  return Object.fromEntries([...metrics.matchAll(SERVER_STATUS)].map((m) => [m[1], m[2]]));
}

export function checkStates(metrics: string): Record<string, string> {
  return Object.fromEntries([...metrics.matchAll(SERVER_CHECK)].map((m) => [m[1], m[2]]));
}

/** NATS (one server, or a JetStream cluster), gateways in cluster mode over it and HAProxy in front. */
export interface ClusterOf<N extends { stop(): Promise<void> }> {
  nats: N;
  gateways: Gateway[];
  haproxy: Haproxy;
  /** Stops HAProxy, the gateways and NATS; safe to call after some of them died. */
  stop(): Promise<void>;
}

export type Cluster = ClusterOf<Nats>;

interface ClusterOptions {
  gateways?: number;
  env?: Record<string, string>;
  tls?: HaproxyTls;
}

/**
 * NATS, `gateways` gateways in cluster mode (node ids gw1, gw2, ...) and HAProxy
 * in front of them (with `tls`, a TLS bind too). `env` is added to every gateway's environment.
 */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const nats = await startNats();
  return behindHaproxy(nats, nats.url, options);
}

/**
 * As startCluster, over a JetStream cluster of three nats-servers
 * (startNatsCluster): every gateway gets all three URLs, and the streams and
 * KV buckets have three replicas.
 */
export async function startJetStreamCluster(options: ClusterOptions = {}): Promise<ClusterOf<NatsCluster>> {
  const nats = await startNatsCluster(3);
  return behindHaproxy(nats, nats.urls, options);
}

/** One nats-server and gateways in cluster mode over it, reached directly (no HAProxy). */
export interface NatsGateways {
  nats: Nats;
  gateways: Gateway[];
  /** Stops the gateways and NATS. */
  stop(): Promise<void>;
}

/**
 * As startCluster without HAProxy: a nats-server and `gateways` (default 3)
 * gateways over it, for tests that talk to each gateway by its own port.
 */
export async function startNatsGateways(options: Omit<ClusterOptions, 'tls'> = {}): Promise<NatsGateways> {
  const nats = await startNats();
  const gateways = await gatewaysOver(nats.url, options).catch(async (err: unknown) => {
    await nats.stop();
    throw err;
  });
  return {
    nats,
    gateways,
    stop: async () => {
      await Promise.all(gateways.map((g) => g.stop()));
      await nats.stop();
    },
  };
}

/** `options.gateways` gateways (default 3, node ids gw1, gw2, ...) over NATS at `urls`; none left running on a failure. */
async function gatewaysOver(urls: string, options: ClusterOptions): Promise<Gateway[]> {
  const started = await Promise.allSettled(
    Array.from({ length: options.gateways ?? 3 }, (_, i) =>
      startGateway({
        SWITCHBOARD_NODE_ID: `gw${i + 1}`,
        SWITCHBOARD_BROKER: 'nats',
        SWITCHBOARD_NATS_URL: urls,
        ...options.env,
      }),
    ),
  );
  const gateways = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  const failed = started.find((r) => r.status === 'rejected');
  if (failed) {
    await Promise.all(gateways.map((g) => g.stop()));
    throw failed.reason;
  }
  return gateways;
}

/** Gateways over `nats` (at `urls`) and HAProxy in front of them; on a failure everything is stopped. */
async function behindHaproxy<N extends { stop(): Promise<void> }>(
  nats: N,
  urls: string,
  options: ClusterOptions,
): Promise<ClusterOf<N>> {
  let gateways: Gateway[] = [];
  let haproxy: Haproxy | undefined;
  const stop = async () => {
    await haproxy?.stop();
    await Promise.all(gateways.map((g) => g.stop()));
    await nats.stop();
  };
  try {
    gateways = await gatewaysOver(urls, options);
    haproxy = await startHaproxy(gateways, { tls: options.tls });
  } catch (err) {
    await stop();
    throw err;
  }
  return { nats, gateways, haproxy, stop };
}

export interface BlockingProxy {
  /** Port that refuses WebSocket upgrades (403); everything else passes. */
  wsBlocked: number;
  /** Port that also refuses HTTP-streaming, so that only SSE gets through. */
  streamBlocked: number;
  stop(): Promise<void>;
}

/**
 * HAProxy as a corporate proxy in front of `upstreamPort` (a gateway or HAProxy): on `wsBlocked` it
 * refuses WebSocket upgrades; on `streamBlocked` also HTTP-streaming (as a
 * proxy that buffers responses would break it), so only SSE gets through.
 */
export async function startBlockingProxy(upstreamPort: number): Promise<BlockingProxy> {
  const [wsBlocked, streamBlocked] = [await freePort(), await freePort()];
  const dir = mkdtempSync(join(tmpdir(), 'sb-proxy-'));
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(
    cfg,
    `defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend ws_blocked
    bind 127.0.0.1:${wsBlocked}
    http-request deny deny_status 403 if { hdr(upgrade) -i websocket }
    default_backend gateway
frontend stream_blocked
    bind 127.0.0.1:${streamBlocked}
    http-request deny deny_status 403 if { hdr(upgrade) -i websocket }
    http-request deny deny_status 403 if { path /connection/http_stream }
    default_backend gateway
backend gateway
    server upstream 127.0.0.1:${upstreamPort}
`,
  );
  const proc = run('haproxy', ['-db', '-f', cfg]);
  await waitUntil(
    async () => {
      if (exited(proc)) throw new Error(`haproxy exited:\n${proc.output()}`);
      const res = await fetch(`http://127.0.0.1:${streamBlocked}/connection/http_stream`, {
        method: 'POST',
      }).catch(() => undefined);
      return res?.status === 403;
    },
    10_000,
    () => `blocking proxy up:\n${proc.output()}`,
  );
  return {
    wsBlocked,
    streamBlocked,
    stop: async () => {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
