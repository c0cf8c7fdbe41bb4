/**
 * The Pusher edge on a real cluster, for tests: a JetStream cluster of three
 * nats-servers and three gateways over it behind HAProxy (startJetStreamCluster),
 * and what the tests ask of it: pusher-js clients on a chosen gateway, the
 * `pusher` SDK, the gateways still alive and replacements for those a test
 * killed, the occupancy decider read from its lease in the `sb_leases` KV
 * bucket, and a channel's presence entries.
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { type KV, Kvm } from '@nats-io/kv';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { encodeToken, Subjects } from '@switchboard/protocol';
import type PusherServer from 'pusher';
import { LEASE_TTL_MS } from '../src/registry/nats.js';
import { type ClusterOf, type NatsCluster, startJetStreamCluster } from './cluster.js';
import { api, type Gateway, startGateway, waitUntil } from './harness.js';
import { type As, type Client, pusherClient, pusherSdk, type PusherTarget } from './pusher-conformance.js';

/** How often a gateway renews or tries to take the decider's lease (LEASE_EVERY_MS of hooks/decider.ts). */
export const LEASE_EVERY_MS = 2000;
/** Room for the decider's tick (250 ms), NATS, the webhook work queue and a loaded 2-core machine (upper bounds only). */
export const SLACK_MS = 3000;

/** A Pusher app as the tests know it. */
export interface PusherApp {
  appId: string;
  key: string;
  secret: string;
}

/** Where a pusher-js client connects: a gateway's client port, or HAProxy's. */
export interface Place {
  host: string;
  port: number;
}

/** Channel names of one run only, so that channels of earlier runs or other tests never match. */
export function uniqueNames(label: string): (prefix: string) => string {
  const run = randomBytes(4).toString('hex');
  let counter = 0;
  return (prefix) => `${prefix}${label}-${run}-${++counter}`;
}

export class PusherCluster {
  /** Each gateway's node id. */
  readonly nodeIds = new Map<Gateway, string>();

  private constructor(
    readonly cluster: ClusterOf<NatsCluster>,
    /** The gateways' environment (added to the cluster's), replacements' too. */
    private readonly env: Record<string, string>,
    private readonly nc: NatsConnection,
    private readonly leases: KV,
    /** The app clients and the SDK are of unless told otherwise. */
    readonly app: PusherApp,
  ) {
    cluster.gateways.forEach((g, i) => this.nodeIds.set(g, `gw${i + 1}`));
  }

  /** The cluster with `env` for every gateway; `app` is the default of clients and the SDK. */
  static async start(app: PusherApp, env: Record<string, string>): Promise<PusherCluster> {
    const cluster = await startJetStreamCluster({ env });
    try {
      const nc = await connect({ servers: cluster.nats.urls.split(',') });
      const leases = await new Kvm(nc).open(new Subjects('sb').bucket('leases'));
      return new PusherCluster(cluster, env, nc, leases, app);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
  }

  async stop(): Promise<void> {
    await this.nc.close();
    await this.cluster.stop();
  }

  gateway(i: number): Gateway {
    return this.cluster.gateways[i]!;
  }

  /** The gateways not killed. */
  live(): Gateway[] {
    return this.cluster.gateways.filter((g) => g.process.exitCode === null && g.process.signalCode === null);
  }

  /** Starts gateways (not behind HAProxy) until `count` are alive. */
  async replenish(count = 3): Promise<void> {
    while (this.live().length < count) {
      const id = `gw${this.cluster.gateways.length + 1}`;
      const replacement = await startGateway({
        SWITCHBOARD_NODE_ID: id,
        SWITCHBOARD_BROKER: 'nats',
        SWITCHBOARD_NATS_URL: this.cluster.nats.urls,
        ...this.env,
      });
      this.cluster.gateways.push(replacement);
      this.nodeIds.set(replacement, id);
    }
  }

  clientsOf(g: Gateway): Place {
    return { host: g.host, port: g.clientPort };
  }

  /** `app` with clients at `ws` and its HTTP API at `http`'s internal port. */
  target(app: PusherApp, ws: Place, http: Gateway): PusherTarget {
    return {
      name: 'switchboard cluster',
      wsHost: ws.host,
      wsPort: ws.port,
      httpHost: http.host,
      httpPort: http.internalPort,
      ...app,
    };
  }

  /** The pusher SDK of `app` at `via`'s HTTP API. */
  sdk(via: Gateway, app: PusherApp = this.app): PusherServer {
    return pusherSdk(this.target(app, this.clientsOf(via), via));
  }

  /**
   * Connects pusher-js clients for one test, all disconnected after it
   * (channel auth is signed locally: the first gateway's address only names the API).
   */
  clients(t: TestContext): (label: string, at: Gateway | Place, as?: As, app?: PusherApp) => Promise<Client> {
    const opened: Client[] = [];
    t.after(() => {
      for (const c of opened) c.disconnect();
    });
    return async (label, at, as = {}, app = this.app) => {
      const place = 'clientPort' in at ? this.clientsOf(at) : at;
      const c = pusherClient(this.target(app, place, this.gateway(0)), label, as);
      opened.push(c);
      await c.connected(10_000);
      return c;
    };
  }

  /** The connections in a channel's presence (NATS KV), by socket id, through the Centrifugo server API. */
  async presenceClients(channel: string, via: Gateway, app: PusherApp = this.app): Promise<string[]> {
    const res = await api(via, 'presence', { channel: `${app.appId}:${channel}` });
    return Object.keys(res.body.result?.presence ?? {});
  }

  /** The node id holding the occupancy decider's lease, from the leases bucket. */
  async leaseHolder(): Promise<string | undefined> {
    const entry = await this.leases.get(encodeToken('occupancy'));
    return entry?.operation === 'PUT' && entry.value.length > 0 ? entry.string() : undefined;
  }

  /** The gateway holding the occupancy decider's lease (waiting for one to take it). */
  async decider(): Promise<Gateway> {
    let holder: string | undefined;
    await waitUntil(
      async () => (holder = await this.leaseHolder()) !== undefined,
      LEASE_TTL_MS + LEASE_EVERY_MS,
      () => 'a holder of the occupancy lease',
    );
    const found = [...this.nodeIds].find(([, id]) => id === holder)?.[0];
    assert.ok(found, `the lease holder ${holder} is one of the gateways`);
    return found;
  }

  /** Waits until a gateway other than `than` holds the lease (within `timeoutMs`); returns it. */
  async successor(than: Gateway, timeoutMs: number): Promise<Gateway> {
    let holder: string | undefined;
    await waitUntil(
      async () => {
        holder = await this.leaseHolder();
        return holder !== undefined && holder !== this.nodeIds.get(than);
      },
      timeoutMs,
      () => `another gateway than ${this.nodeIds.get(than)} holding the occupancy lease`,
    );
    const found = [...this.nodeIds].find(([, id]) => id === holder)?.[0];
    assert.ok(found, `the lease holder ${holder} is one of the gateways`);
    return found;
  }
}
