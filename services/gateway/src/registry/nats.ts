/**
 * Registry in NATS KV. Buckets have a TTL: every gateway re-puts its own
 * entries (itself, and the presence of its connections) at a third of it, so
 * the entries of a gateway that died expire within one TTL.
 */

import {
  type ClientInfo,
  encodeToken,
  isJsonObject as isObj,
  parseJsonBytes,
  type ServiceEntry,
  type Subjects,
} from '@switchboard/protocol';
import { jetstreamManager } from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import { openOrCreate, patiently } from '@switchboard/sdk';
import type { NatsConnection } from '@nats-io/transport-node';
import { isClientInfo } from '../broker/envelope.js';
import { isTransient } from '../broker/nats.js';
import type { Logger } from '../log.js';
import { counted, type KvOperation, type Metrics } from '../metrics.js';
import { type GatewayEntry, type PresenceStats, type Registry, statsOf } from './registry.js';

/** A gateway's own entry beats at least this often, so its figures stay fresh even with a long TTL. */
const MAX_HEARTBEAT_SECONDS = 5;

export class NatsRegistry implements Registry {
  private presenceKv: KV | undefined;
  private gatewaysKv: KV | undefined;
  private servicesKv: KV | undefined;
  private heartbeats: NodeJS.Timeout[] = [];
  /** This gateway's presence entries, re-put on every heartbeat. */
  private readonly own = new Map<string, ClientInfo>();
  private readonly gatewayKey: string;

  constructor(
    private readonly nc: () => NatsConnection,
    private readonly subjects: Subjects,
    nodeId: string,
    private readonly ttlSeconds: number,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly limits: {
      /** Nesting bound of entries (presence carries client info from tokens): client data plus envelopes. */
      maxDepth: number;
      /** Replicas of the buckets in a JetStream cluster. */
      replicas: number;
    },
  ) {
    this.gatewayKey = encodeToken(nodeId);
  }

  async start(describe: () => GatewayEntry): Promise<void> {
    const kvm = new Kvm(this.nc());
    const options = { ttl: this.ttlSeconds * 1000, history: 1, replicas: this.limits.replicas };
    // A cluster that has just started may still be electing its JetStream leader.
    const open = (kind: 'presence' | 'gateways' | 'services') =>
      patiently(
        async () => {
          const kv = await openOrCreate(kvm, this.subjects.bucket(kind), options);
          await this.scale(kv, this.subjects.bucket(kind));
          return kv;
        },
        { retryIf: isTransient },
      );
    this.presenceKv = await open('presence');
    this.gatewaysKv = await open('gateways');
    this.servicesKv = await open('services');
    const announce = () =>
      this.counted('heartbeat', async () => {
        await this.gatewaysKv!.put(this.gatewayKey, JSON.stringify(describe()));
        this.metrics.heartbeatAt = Date.now();
      });
    // Presence entries only need to beat their TTL: one put per subscription every third of it.
    const refreshPresence = () =>
      this.counted('presence_refresh', () =>
        Promise.all([...this.own].map(([key, info]) => this.presenceKv!.put(key, JSON.stringify(info)))),
      );
    // A bucket just made in a JetStream cluster has no leader for a moment.
    await patiently(announce, { retryIf: isTransient });
    const every = (seconds: number, beat: () => Promise<unknown>) =>
      setInterval(() => {
        beat().catch((err) => this.log.warn({ err }, 'registry heartbeat failed'));
      }, seconds * 1000).unref();
    this.heartbeats = [
      every(Math.min(this.ttlSeconds / 3, MAX_HEARTBEAT_SECONDS), announce),
      every(this.ttlSeconds / 3, refreshPresence),
    ];
  }

  /** Counts a failed KV call by operation. */
  private counted<T>(operation: KvOperation, call: () => Promise<T>): Promise<T> {
    return counted(this.metrics.kvErrors, operation, call);
  }

  async gateways(): Promise<GatewayEntry[]> {
    return this.values(this.gatewaysKv!, '*', isGatewayEntry);
  }

  async services(): Promise<ServiceEntry[]> {
    return this.values(this.servicesKv!, '*.*', isServiceEntry);
  }

  private key(channel: string, client: string): string {
    return `${encodeToken(channel)}.${client}`;
  }

  async addPresence(channel: string, info: ClientInfo): Promise<void> {
    const key = this.key(channel, info.client);
    this.own.set(key, info);
    await this.counted('presence_put', () => this.presenceKv!.put(key, JSON.stringify(info)));
  }

  async removePresence(channel: string, client: string): Promise<void> {
    const key = this.key(channel, client);
    this.own.delete(key);
    await this.counted('presence_delete', () => this.presenceKv!.delete(key));
  }

  async presence(channel: string): Promise<Record<string, ClientInfo>> {
    const infos = await this.values(this.presenceKv!, `${encodeToken(channel)}.*`, isClientInfo);
    return Object.fromEntries(infos.map((info) => [info.client, info]));
  }

  async presenceStats(channel: string): Promise<PresenceStats> {
    return statsOf(Object.values(await this.presence(channel)));
  }

  /** A bucket made with fewer replicas (before the cluster grew) is scaled up: it is a stream `KV_<name>`. */
  private async scale(kv: KV, name: string): Promise<void> {
    const status = await kv.status();
    if (status.replicas >= this.limits.replicas) return;
    const jsm = await jetstreamManager(this.nc());
    const stream = `KV_${name}`;
    const info = await jsm.streams.info(stream);
    await jsm.streams
      .update(stream, { ...info.config, num_replicas: this.limits.replicas })
      .catch((err: Error) => {
        if (isTransient(err)) throw err;
        throw new Error(
          `cannot scale KV bucket ${name} from ${status.replicas} to ${this.limits.replicas} replicas: ${err.message}. ` +
            `Scale it yourself (nats stream edit ${stream} --replicas ${this.limits.replicas}) or set SWITCHBOARD_NATS_REPLICAS=${status.replicas}`,
        );
      });
    this.log.info(
      { bucket: name, from: status.replicas, to: this.limits.replicas },
      'KV bucket replicas changed',
    );
  }

  private values<T>(kv: KV, filter: string, check: (v: unknown) => v is T): Promise<T[]> {
    return this.counted('read', () => this.read(kv, filter, check));
  }

  /** The live entries under `filter`; one not of the expected shape (anyone can write the bucket) is skipped and counted. */
  private async read<T>(kv: KV, filter: string, check: (v: unknown) => v is T): Promise<T[]> {
    const keys: string[] = [];
    for await (const key of await kv.keys(filter)) keys.push(key);
    const entries = await Promise.all(keys.map((key) => kv.get(key)));
    const values: T[] = [];
    for (const e of entries) {
      if (!e || e.operation !== 'PUT' || e.value.length === 0) continue;
      const parsed = parseJsonBytes(e.value, this.limits.maxDepth);
      if (parsed.ok && check(parsed.value)) values.push(parsed.value);
      else this.metrics.invalidMessages.inc({ source: 'registry' });
    }
    return values;
  }

  async close(): Promise<void> {
    for (const timer of this.heartbeats) clearInterval(timer);
    // Leave at once rather than after a TTL: others stop listing this gateway and its connections.
    await Promise.allSettled([
      this.gatewaysKv?.delete(this.gatewayKey),
      ...[...this.own.keys()].map((key) => this.presenceKv?.delete(key)),
    ]);
    this.own.clear();
  }
}

function isGatewayEntry(v: unknown): v is GatewayEntry {
  return isObj(v) && typeof v.uid === 'string' && typeof v.num_clients === 'number';
}

function isServiceEntry(v: unknown): v is ServiceEntry {
  return isObj(v) && typeof v.namespace === 'string' && typeof v.instance === 'string';
}
