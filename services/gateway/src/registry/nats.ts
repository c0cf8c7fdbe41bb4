/**
 * Registry in NATS KV. Buckets have a TTL: every gateway re-puts its own
 * entries (itself, and the presence of its connections) at a third of it, so
 * the entries of a gateway that died expire within one TTL.
 */

import {
  type BucketKind,
  type ClientInfo,
  type Publication,
  decodeToken,
  encodeToken,
  isJsonObject as isObj,
  parseJsonBytes,
  type ServiceEntry,
  type Subjects,
} from '@switchboard/protocol';
import { createHash } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { type KV, Kvm } from '@nats-io/kv';
import { openOrCreate, patiently } from '@switchboard/sdk';
import type { NatsConnection } from '@nats-io/transport-node';
import { isClientInfo } from '../broker/envelope.js';
import { isTransient } from '../broker/nats.js';
import { IDEMPOTENT_RESULT_TTL_MS } from '../idempotency.js';
import type { Logger } from '../log.js';
import { counted, type KvOperation, type Metrics } from '../metrics.js';
import type { Announced, Transition } from '../hooks/occupancy.js';
import { isPublication } from '../broker/envelope.js';
import {
  CACHE_TTL_SECONDS,
  type GatewayEntry,
  type PresenceChange,
  type PresenceStats,
  type Registry,
  statsOf,
} from './registry.js';

/** A lease (the occupancy decider's) lapses this long after its holder's last renewal. */
export const LEASE_TTL_MS = 6000;

/** A gateway's own entry beats at least this often, so its figures stay fresh even with a long TTL. */
const MAX_HEARTBEAT_SECONDS = 5;

/** A channel's idempotency key as a KV key: a digest, so that any key and channel name fit. */
const idempotencyId = (channel: string, key: string): string =>
  createHash('sha256')
    .update(JSON.stringify([channel, key]))
    .digest('base64url');

export class NatsRegistry implements Registry {
  private presenceKv: KV | undefined;
  private gatewaysKv: KV | undefined;
  private leasesKv: KV | undefined;
  private hooksKv: KV | undefined;
  private cacheKv: KV | undefined;
  /** Opened with the first publish that claims an idempotency key (most deployments never do). */
  private idempotencyKv: Promise<KV> | undefined;
  private readonly nodeId: string;
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
      /** The occupancy decider's and cache channels' buckets are wanted (the Pusher edge or occupancy hooks are on). */
      hooks: boolean;
    },
  ) {
    this.gatewayKey = encodeToken(nodeId);
    this.nodeId = nodeId;
  }

  get presenceTtlMs(): number {
    return this.ttlSeconds * 1000;
  }

  async start(describe: () => GatewayEntry): Promise<void> {
    const kvm = new Kvm(this.nc());
    const options = { ttl: this.ttlSeconds * 1000, history: 1, replicas: this.limits.replicas };
    // A cluster that has just started may still be electing its JetStream leader.
    const open = (kind: BucketKind, ttl = options.ttl) =>
      patiently(
        async () => {
          const kv = await openOrCreate(kvm, this.subjects.bucket(kind), { ...options, ttl });
          await this.scale(kv, this.subjects.bucket(kind));
          return kv;
        },
        { retryIf: isTransient },
      );
    this.presenceKv = await open('presence');
    this.gatewaysKv = await open('gateways');
    // Services write their entries themselves; a gateway only reads them.
    await open('services');
    // Only where something uses them: each is a replicated stream more for the NATS cluster to keep.
    if (this.limits.hooks) {
      this.leasesKv = await open('leases', LEASE_TTL_MS);
      // What the decider announced lives until it announces otherwise.
      this.hooksKv = await open('hooks', 0);
      this.cacheKv = await open('cache', CACHE_TTL_SECONDS * 1000);
    }
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
    return this.values('gateways', '*', isGatewayEntry);
  }

  async services(): Promise<ServiceEntry[]> {
    return this.values('services', '*.*', isServiceEntry);
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
    // `>`, not `*`: a Pusher socket id (`<digits>.<digits>`) makes the key one token longer.
    const infos = await this.values('presence', `${encodeToken(channel)}.>`, isClientInfo);
    return Object.fromEntries(infos.map((info) => [info.client, info]));
  }

  async presenceStats(channel: string): Promise<PresenceStats> {
    return statsOf(Object.values(await this.presence(channel)));
  }

  async watchPresence(change: (c: PresenceChange) => void, caughtUp: () => void): Promise<() => void> {
    // Caught up with an empty bucket at once, else at the last entry of the first pass (delta 0)
    // or the first update, whichever comes first.
    let behind = (await this.presenceKv!.status()).values > 0;
    if (!behind) caughtUp();
    const watch = await this.presenceKv!.watch({ key: '>' });
    void (async () => {
      for await (const e of watch) {
        if (behind && (e.isUpdate || e.delta === 0)) {
          behind = false;
          queueMicrotask(caughtUp);
        }
        const dot = e.key.indexOf('.');
        let channel: string;
        try {
          channel = decodeToken(e.key.slice(0, dot));
        } catch {
          this.metrics.invalidMessages.inc({ source: 'registry' });
          continue;
        }
        const client = e.key.slice(dot + 1);
        if (e.operation !== 'PUT') {
          change({ op: 'delete', channel, client });
          continue;
        }
        const parsed = parseJsonBytes(e.value, this.limits.maxDepth);
        if (parsed.ok && isClientInfo(parsed.value) && parsed.value.client === client)
          change({ op: 'put', channel, info: parsed.value, at: e.created.getTime() });
        else this.metrics.invalidMessages.inc({ source: 'registry' });
      }
    })().catch((err) => this.log.warn({ err }, 'presence watch ended'));
    return () => watch.stop();
  }

  async holdLease(name: string): Promise<boolean> {
    const kv = this.leasesKv!;
    const key = encodeToken(name);
    return this.counted('lease', async () => {
      const held = await kv.get(key);
      if (held?.operation === 'PUT' && held.value.length > 0) {
        if (held.string() !== this.nodeId) return false;
        // Renewed only if nobody took it meanwhile.
        await kv.update(key, this.nodeId, held.revision);
        return true;
      }
      try {
        await kv.create(key, this.nodeId);
        return true;
      } catch {
        return false;
      }
    }).catch(() => false);
  }

  async announced(): Promise<Announced> {
    const channels: string[] = [];
    const members: [string, string][] = [];
    await this.counted('read', async () => {
      for (const { key } of await this.live('hooks', '>')) {
        const [kind, channel, user] = key.split('.');
        try {
          if (kind === 'o' && channel && user === undefined) channels.push(decodeToken(channel));
          else if (kind === 'm' && channel && user) members.push([decodeToken(channel), decodeToken(user)]);
        } catch {
          this.metrics.invalidMessages.inc({ source: 'registry' });
        }
      }
    });
    return { channels, members };
  }

  async announce(transitions: readonly Transition[]): Promise<void> {
    const kv = this.hooksKv!;
    await this.counted('announce', async () => {
      for (const t of transitions) {
        const key =
          t.kind === 'channel_occupied' || t.kind === 'channel_vacated'
            ? `o.${encodeToken(t.channel)}`
            : `m.${encodeToken(t.channel)}.${encodeToken(t.user)}`;
        if (t.kind === 'channel_occupied' || t.kind === 'member_added') await kv.put(key, '1');
        else await kv.purge(key);
      }
    });
  }

  async keepLast(channel: string, pub: Publication): Promise<void> {
    await this.counted('cache', () => this.cacheKv!.put(encodeToken(channel), JSON.stringify(pub)));
  }

  async last(channel: string): Promise<Publication | undefined> {
    const entry = await this.counted('cache', () => this.cacheKv!.get(encodeToken(channel)));
    if (!entry || entry.operation !== 'PUT' || entry.value.length === 0) return undefined;
    const parsed = parseJsonBytes(entry.value, this.limits.maxDepth);
    if (parsed.ok && isPublication(parsed.value)) return parsed.value;
    this.metrics.invalidMessages.inc({ source: 'registry' });
    return undefined;
  }

  async claimIdempotencyKey(channel: string, key: string): Promise<boolean> {
    const kv = await this.idempotencyBucket();
    const id = idempotencyId(channel, key);
    return this.counted('idempotency', async () => {
      try {
        await kv.create(id, '');
        return true;
      } catch (err) {
        if (isTransient(err)) throw err;
        // Refused because the key exists (a claim within the window), or for a reason to report.
        const entry = await kv.get(id);
        if (entry?.operation === 'PUT') return false;
        throw err;
      }
    });
  }

  async releaseIdempotencyKey(channel: string, key: string): Promise<void> {
    const kv = await this.idempotencyBucket();
    await this.counted('idempotency', () => kv.delete(idempotencyId(channel, key)));
  }

  private idempotencyBucket(): Promise<KV> {
    this.idempotencyKv ??= (async () => {
      const name = this.subjects.bucket('idempotency');
      const kv = await openOrCreate(new Kvm(this.nc()), name, {
        ttl: IDEMPOTENT_RESULT_TTL_MS,
        history: 1,
        replicas: this.limits.replicas,
      });
      await this.scale(kv, name);
      return kv;
    })();
    // A failed open is tried again by the next claim.
    this.idempotencyKv.catch(() => (this.idempotencyKv = undefined));
    return this.idempotencyKv;
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

  private values<T>(bucket: BucketKind, filter: string, check: (v: unknown) => v is T): Promise<T[]> {
    return this.counted('read', async () => {
      const values: T[] = [];
      for (const { value } of await this.live(bucket, filter)) {
        const parsed = parseJsonBytes(value, this.limits.maxDepth);
        if (parsed.ok && check(parsed.value)) values.push(parsed.value);
        else this.metrics.invalidMessages.inc({ source: 'registry' });
      }
      return values;
    });
  }

  /**
   * The live entries under `filter` (anyone can write a bucket: a value is checked by the caller).
   * Listed and read through the bucket's stream leader, so a put this gateway has just had
   * acknowledged is always seen: `kv.keys()` walks an ephemeral consumer that may sit on a
   * lagging replica (and waits out a 5 s heartbeat when it misses the end), and a direct get
   * may be answered by any replica.
   */
  private async live(bucket: BucketKind, filter: string): Promise<{ key: string; value: Uint8Array }[]> {
    const name = this.subjects.bucket(bucket);
    const stream = `KV_${name}`;
    const prefix = `$KV.${name}.`;
    // No account check per read: the buckets were opened at start-up.
    const jsm = await jetstreamManager(this.nc(), { checkAPI: false });
    const info = await jsm.streams.info(stream, { subjects_filter: prefix + filter });
    const subjects = Object.keys(info.state.subjects ?? {});
    const messages = await Promise.all(
      subjects.map((subject) => jsm.streams.getMessage(stream, { last_by_subj: subject })),
    );
    const entries: { key: string; value: Uint8Array }[] = [];
    for (const m of messages) {
      // A delete or purge leaves a marker (an empty message with a KV-Operation header).
      if (!m || m.data.length === 0 || m.header?.get('KV-Operation')) continue;
      entries.push({ key: m.subject.slice(prefix.length), value: m.data });
    }
    return entries;
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
