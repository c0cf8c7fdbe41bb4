/**
 * The gateway's core: resolves channels to namespaces, publishes through the
 * broker, hands broker events to the hub as pushes, and carries
 * out server-side actions on local connections. Sessions and the server API
 * both go through it.
 */

import {
  type ChannelName,
  type ClientInfo,
  compilePattern,
  DEFAULT_PROTOBUF_LIMITS,
  type Disconnect,
  Disconnects,
  Errors,
  type FilterNode,
  type FrameLimits,
  matchesPattern,
  matchesTagsFilter,
  namespaceOf,
  type ProtobufFrameLimits,
  type ProtocolError,
  type Publication,
  parseChannel,
  type StreamPosition,
  Unsubscribes,
} from '@switchboard/protocol';
import type { TokenVerifier } from './auth.js';
import { type Broker, type ChannelCounts, type ControlMessage, HistoryUnavailable } from './broker/broker.js';
import type { Config, NamespaceOptions } from './config.js';
import {
  type HistoryLimits,
  type PublicationVersion,
  type Recovery,
  recoverLatest,
  sequence,
} from './history.js';
import type { Hub, HubMember } from './hub.js';
import { IdempotentResults } from './idempotency.js';
import type { KeyRing } from './keys.js';
import type { Logger } from './log.js';
import type { MaybePromise } from './maybe-promise.js';
import type { AppCatalog } from './pusher/app-store.js';
import type { Metrics } from './metrics.js';
import type { BackendHandler } from './proxy.js';
import type { GatewayEntry, Registry } from './registry/registry.js';

export const VERSION = '0.1.0';

/** How long a read that is behind this gateway's own deliveries is tried again. */
const STALE_READ_PATIENCE_MS = 3000;
/** How long after a stream's leader change its channels' positions are checked. */
const POSITION_CHECK_DELAY_MS = 1000;

/** While the broker is down nothing is accepted that it could not deliver; clients retry. */
export const BROKER_UNAVAILABLE: ProtocolError = { ...Errors.internal, message: 'broker unavailable' };
/** History could not be written within `publish_timeout` (no stream leader): nothing was stored, try again. */
export const HISTORY_UNAVAILABLE: ProtocolError = { ...Errors.internal, message: 'history unavailable' };
/** Not stored in time, but an attempt went unanswered: it may be stored yet (retry with an idempotency key). */
export const HISTORY_UNANSWERED: ProtocolError = {
  ...Errors.internal,
  message: 'history unavailable: the publication may still be stored',
};

export interface ResolvedChannel {
  name: ChannelName;
  ns: NamespaceOptions;
}

export interface PublishOptions {
  info?: ClientInfo;
  skipClient?: string | undefined;
  tags?: Record<string, string>;
  source: 'client' | 'api';
  /** Server API `delta` (or the namespace's `delta_publish`): subscribers that negotiated delta compression may get it as a delta. */
  delta?: boolean;
  /** Server API `idempotency_key`: a retry with it within the window is not published again. */
  idempotencyKey?: string;
  /** Server API `version`/`version_epoch`: dropped when not newer than the channel's last. */
  version?: PublicationVersion;
}

/** A client connection of either edge, as the node, the ticker and drain use it. */
export interface Connection extends HubMember {
  /** Once a second (`now` in monotonic ms): pings, deadlines, slow consumers; returns the bytes queued. */
  tick(now: number, epochSeconds: number): number;
  /** Closes with a Centrifugo disconnect code (an edge maps it to its own); `reason` labels the metric. */
  disconnect(disconnect: Disconnect, reason: string): void;
  serverSubscribe(channel: string, chanInfo?: unknown): Promise<ProtocolError | undefined>;
  serverUnsubscribe(channel: string, code?: Disconnect): Promise<void>;
  /**
   * This gateway missed publications of the channel: a positioned subscription
   * must recover (Centrifugo's insufficient state). Edges without positioning
   * leave it out: they resubscribe where the namespace has recovery.
   */
  insufficientState?(channel: string): Promise<void>;
  /** Server API `refresh`: the connection's new expiry in unix seconds (0: none); only connections with tokens have one. */
  serverRefresh?(expiresAt: number): void;
  /** An async message from a backend service (`send` answered). */
  message(data: unknown): void;
}

export interface NodeParts {
  config: Config;
  log: Logger;
  metrics: Metrics;
  hub: Hub<Connection>;
  broker: Broker;
  registry: Registry;
  handler: BackendHandler;
  tokens: TokenVerifier;
  /** The server API keys in use. */
  apiKeys: KeyRing;
}

/** A connection that has not connected yet, as the session ticker sees it. */
export interface Connecting {
  /** Closes it as stale when `now` (monotonicMs()) is past its connect deadline. */
  checkConnectDeadline(now: number): void;
}

export class Node {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly hub: Hub<Connection>;
  readonly broker: Broker;
  readonly registry: Registry;
  readonly handler: BackendHandler;
  readonly tokens: TokenVerifier;
  readonly apiKeys: KeyRing;
  readonly startedAt = Date.now();
  /**
   * Connections still to send their connect command: the session ticker
   * closes those past `connect_timeout` (a Set entry per connect instead of a
   * timer each).
   */
  readonly connecting = new Set<Connecting>();
  /** The bound every client frame is parsed with. */
  readonly frameLimits: FrameLimits;
  /** What a Protobuf client's frame may hold: the JSON depth bound, commands up to max_message_size. */
  readonly protobufLimits: ProtobufFrameLimits;
  /** Results of publications with an idempotency key. */
  private readonly idempotent = new IdempotentResults<StreamPosition | undefined | ProtocolError>();
  /** Last offset seen per channel with local subscribers, to notice gaps. */
  private readonly lastSeen = new Map<string, StreamPosition>();
  /** The Pusher app store's catalog, for the server API (`pusher_app_*`); undefined without `pusher_apps_bucket`. */
  pusherApps: AppCatalog | undefined;
  draining = false;
  /** Every listener is up and the registry joined: readiness waits for it. */
  started = false;

  constructor(parts: NodeParts) {
    this.config = parts.config;
    this.log = parts.log;
    this.metrics = parts.metrics;
    this.hub = parts.hub;
    this.broker = parts.broker;
    this.registry = parts.registry;
    this.handler = parts.handler;
    this.tokens = parts.tokens;
    this.apiKeys = parts.apiKeys;
    this.frameLimits = { maxDepth: this.config.jsonMaxDepth };
    this.protobufLimits = {
      ...DEFAULT_PROTOBUF_LIMITS,
      maxDepth: this.config.jsonMaxDepth,
      maxCommandSize: this.config.maxMessageSize,
    };
  }

  async start(): Promise<void> {
    await this.broker.start({
      publication: (channel, pub, skipClient, delta) => this.deliver(channel, pub, skipClient, delta),
      join: (channel, info) => this.hub.broadcast(channel, { join: info }, undefined),
      leave: (channel, info) => this.hub.broadcast(channel, { leave: info }, undefined),
      member: (channel, member, skipClient) => this.hub.broadcast(channel, { member }, undefined, skipClient),
      control: (message) => this.applyControl(message),
      channels: (pattern) => this.channels(pattern),
      reconnected: () => {
        for (const channel of [...this.hub.channels()].map(([name]) => name)) this.resync(channel);
      },
      leaderChanged: (namespace) => {
        // Republishes in flight arrive first; then whatever the stream holds beyond them was missed.
        setTimeout(() => this.verifyPositions(namespace), POSITION_CHECK_DELAY_MS).unref();
      },
    });
    await this.registry.start(() => this.describe());
  }

  /**
   * Fans a publication out, watching the channel's offsets: a gap means this
   * gateway missed something (broker outage, dropped messages), so its
   * subscribers are sent to recover from history instead of silently skipping;
   * an offset seen already is dropped.
   */
  private deliver(channel: string, pub: Publication, skipClient: string | undefined, delta: boolean): void {
    if (pub.offset !== undefined) {
      const last = this.lastSeen.get(channel);
      const position = { offset: pub.offset, epoch: pub.epoch ?? '' };
      const order = sequence(last, position);
      // Seen already (a stream republished it again after a leader change): never deliver twice.
      if (order === 'seen') return;
      this.lastSeen.set(channel, position);
      if (order === 'gap') {
        this.log.warn({ channel, expected: last!.offset + 1, got: pub.offset }, 'publication gap: resync');
        this.resync(channel);
      }
    }
    this.hub.broadcast(channel, delta ? { pub, delta } : { pub }, pub.offset, skipClient);
  }

  /**
   * Compares the stream position of each local channel of `namespace` with the
   * last publication delivered here; subscribers of a channel behind it
   * recover (a quiet channel would otherwise never show the gap).
   */
  private async verifyPositions(namespace: string): Promise<void> {
    for (const [channel] of [...this.hub.channels()]) {
      const last = this.lastSeen.get(channel);
      if (!last || namespaceOf(channel) !== namespace) continue;
      const position = await this.broker.position(channel).catch(() => undefined);
      if (position && (position.epoch !== last.epoch || position.offset > last.offset)) {
        this.log.warn(
          { channel, seen: last.offset, stored: position.offset },
          'missed after a leader change: resync',
        );
        this.resync(channel);
      }
    }
  }

  /**
   * The channel's stream position, or its recovery from `since`, read until it
   * is not behind what this gateway delivered already: in a leader change a
   * read may be answered from a replica that has not caught up yet.
   */
  async position(channel: string): Promise<StreamPosition> {
    return this.fresh(
      channel,
      () => this.broker.position(channel),
      (p) => p,
    );
  }

  async recover(channel: string, since: StreamPosition): Promise<Recovery> {
    const read = () => this.broker.recover(channel, since, this.config.historyMaxPublications);
    return this.fresh(channel, read, (r) => r.position);
  }

  /**
   * Cache recovery from `since`: the channel's latest publication (the newest
   * that passes `filter`, when the subscriber has a tags filter).
   */
  async recoverLatest(channel: string, since: StreamPosition, filter?: FilterNode): Promise<Recovery> {
    const limit = filter ? this.config.historyMaxPublications : 1;
    const read = async () => {
      const { publications, position } = await this.broker.history(channel, { limit, reverse: true });
      const latest = publications[0];
      return recoverLatest(
        position,
        latest && { ...latest, offset: latest.offset ?? 0 },
        filter ? publications.find((pub) => matchesTagsFilter(filter, pub.tags)) : latest,
        since,
      );
    };
    return this.fresh(channel, read, (r) => r.position);
  }

  private async fresh<T>(channel: string, read: () => Promise<T>, at: (t: T) => StreamPosition): Promise<T> {
    const deadline = Date.now() + STALE_READ_PATIENCE_MS;
    for (;;) {
      const result = await read();
      const position = at(result);
      const seen = this.lastSeen.get(channel);
      const stale = seen !== undefined && seen.epoch === position.epoch && position.offset < seen.offset;
      if (!stale || Date.now() >= deadline) return result;
      this.metrics.staleReads.inc();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  /** The position a subscriber started from: later gaps are measured from it. */
  noteSubscribed(channel: string, position: StreamPosition): void {
    if (!this.lastSeen.has(channel)) this.lastSeen.set(channel, position);
  }

  /** Tells the channel's local positioned subscribers to resubscribe, recovering what they missed. */
  private resync(channel: string): void {
    const resolved = this.resolve(channel);
    if ('code' in resolved) return;
    for (const session of this.hub.subscribersOf(channel)) {
      const done = session.insufficientState
        ? session.insufficientState(channel)
        : resolved.ns.recovery
          ? session.serverUnsubscribe(channel, Unsubscribes.insufficientState)
          : undefined;
      done?.catch((err) => this.log.warn({ err, channel }, 'resync failed'));
    }
  }

  /** Carries out a server API action on this gateway's connections of the user. */
  private applyControl(message: ControlMessage): void {
    for (const session of this.sessionsOf(message.user, message.client)) {
      const done =
        message.op === 'subscribe'
          ? session.serverSubscribe(message.channel, message.info)
          : message.op === 'unsubscribe'
            ? session.serverUnsubscribe(message.channel)
            : message.op === 'refresh'
              ? Promise.resolve(
                  message.expired
                    ? session.disconnect(Disconnects.expired, 'expired')
                    : session.serverRefresh?.(message.expire_at),
                )
              : message.whitelist?.includes(session.client)
                ? Promise.resolve()
                : Promise.resolve(session.disconnect({ code: message.code, reason: message.reason }, 'api'));
      done.catch((err) => this.log.warn({ err, op: message.op }, 'control action failed'));
    }
  }

  /** The channel's parsed name and namespace, or the error a client gets. */
  resolve(channel: string): ResolvedChannel | ProtocolError {
    const parsed = parseChannel(channel, { maxLength: this.config.channelMaxLength });
    if (!parsed.ok) return { ...Errors.badRequest, message: parsed.reason };
    const ns = this.config.namespaces.get(parsed.value.namespace);
    if (!ns) return Errors.unknownChannel;
    return { name: parsed.value, ns };
  }

  historyLimits(ns: NamespaceOptions): HistoryLimits | undefined {
    return ns.history_size > 0 ? { size: ns.history_size, ttlSeconds: ns.history_ttl } : undefined;
  }

  /**
   * Publishes; the position once stored when the channel keeps history. A
   * broker that is reconnecting is waited for, and an append retried, up to
   * `publish_timeout`; after that the publish is refused with a temporary
   * error (the caller retries), never half done. Synchronous when the broker
   * is (see Broker.publish) and nothing else is waited for.
   */
  publish(
    resolved: ResolvedChannel,
    data: unknown,
    options: PublishOptions,
  ): MaybePromise<StreamPosition | undefined | ProtocolError> {
    const key = options.idempotencyKey;
    if (key === undefined) return this.publishNow(resolved, data, options);
    return this.idempotent.once(
      resolved.name.channel,
      key,
      async () => this.publishNow(resolved, data, options),
      (r) => r !== undefined && 'code' in r,
    );
  }

  private publishNow(
    resolved: ResolvedChannel,
    data: unknown,
    options: PublishOptions,
  ): MaybePromise<StreamPosition | undefined | ProtocolError> {
    const pub: Publication = { data };
    if (options.info) pub.info = options.info;
    if (options.tags) pub.tags = options.tags;
    const history = this.historyLimits(resolved.ns);
    // Without history no stream dedupes a retry that reaches another gateway: the registry's claim does.
    const claim = !history && options.idempotencyKey !== undefined;
    if (!this.broker.ready || claim) return this.publishWhenReady(resolved, pub, history, options, claim);
    return this.hand(resolved, pub, history, options, false);
  }

  /** Waits for a reconnecting broker and claims the idempotency key first, as `claim` says. */
  private async publishWhenReady(
    resolved: ResolvedChannel,
    pub: Publication,
    history: HistoryLimits | undefined,
    options: PublishOptions,
    claim: boolean,
  ): Promise<StreamPosition | undefined | ProtocolError> {
    if (!this.broker.ready && !(await this.broker.whenReady(this.config.publishTimeout)))
      return BROKER_UNAVAILABLE;
    const channel = resolved.name.channel;
    if (claim) {
      const first = await this.registry
        .claimIdempotencyKey(channel, options.idempotencyKey!)
        .catch((err: unknown) => {
          this.log.warn({ err, channel }, 'idempotency key not claimed: publish refused');
          return BROKER_UNAVAILABLE;
        });
      if (first !== true) return first === false ? undefined : first;
    }
    return this.hand(resolved, pub, history, options, claim);
  }

  /** Gives the publication to the broker; a refused one releases the key it claimed. */
  private hand(
    resolved: ResolvedChannel,
    pub: Publication,
    history: HistoryLimits | undefined,
    options: PublishOptions,
    claimed: boolean,
  ): MaybePromise<StreamPosition | undefined | ProtocolError> {
    let position: MaybePromise<StreamPosition | undefined>;
    try {
      position = this.broker.publish(resolved.name.channel, pub, {
        history,
        skipClient: options.skipClient,
        delta: options.delta === true || resolved.ns.delta_publish,
        idempotencyKey: options.idempotencyKey,
        version: options.version,
      });
    } catch (err) {
      return this.refused(err, resolved, options, claimed);
    }
    if (position instanceof Promise)
      return position.then(
        (stored) => this.published(resolved, options, stored),
        (err: unknown) => this.refused(err, resolved, options, claimed),
      );
    return this.published(resolved, options, position);
  }

  private published(
    resolved: ResolvedChannel,
    options: PublishOptions,
    position: StreamPosition | undefined,
  ): StreamPosition | undefined {
    this.metrics.publications.inc({ namespace: resolved.ns.name, source: options.source });
    return position;
  }

  /** Not published: a retry must not find the key taken; history that could not be written is a temporary error. */
  private async refused(
    err: unknown,
    resolved: ResolvedChannel,
    options: PublishOptions,
    claimed: boolean,
  ): Promise<ProtocolError> {
    const channel = resolved.name.channel;
    if (claimed)
      await this.registry
        .releaseIdempotencyKey(channel, options.idempotencyKey!)
        .catch((e: unknown) => this.log.warn({ err: e, channel }, 'idempotency key not released'));
    if (!(err instanceof HistoryUnavailable)) throw err;
    this.log.warn({ err: err.message }, 'publish refused');
    return err.mayBeStored ? HISTORY_UNANSWERED : HISTORY_UNAVAILABLE;
  }

  /** A local connection starts or stops subscribing: the broker follows the first and the last. */
  addSubscriber(channel: string, session: Connection): Promise<void> | undefined {
    return this.hub.addSubscriber(channel, session) ? this.broker.subscribe(channel) : undefined;
  }

  async removeSubscriber(channel: string, session: Connection): Promise<void> {
    if (!this.hub.removeSubscriber(channel, session)) return;
    this.lastSeen.delete(channel);
    await this.broker.unsubscribe(channel);
  }

  /**
   * Channels with subscribers anywhere in the cluster, counts added up. A
   * survey of the live gateways, answered within a bound: a dead gateway's
   * channels are missing from it, never waited for.
   */
  async clusterChannels(pattern?: string): Promise<ChannelCounts> {
    const gateways = (await this.registry.gateways()).length;
    return this.broker.channels(pattern, Math.max(gateways, 1));
  }

  /** Local connections of a user, optionally one client only. */
  sessionsOf(user: string, client?: string): Connection[] {
    const sessions = this.hub.userConnections(user);
    return client ? sessions.filter((s) => s.client === client) : sessions;
  }

  /**
   * Local channels with subscribers and their counts, optionally filtered by
   * a `*` pattern (linear-time matching: no pattern can stall the loop). A Map
   * turned into entries, so that a channel named `__proto__` is listed too.
   */
  channels(pattern?: string): Record<string, { num_clients: number }> {
    const compiled = pattern ? compilePattern(pattern) : undefined;
    const out = new Map<string, { num_clients: number }>();
    for (const [channel, members] of this.hub.channels()) {
      if (!compiled || matchesPattern(compiled, channel)) out.set(channel, { num_clients: members.size });
    }
    return Object.fromEntries(out);
  }

  /** This gateway's registry entry. */
  describe(): GatewayEntry {
    const mem = process.memoryUsage();
    return {
      uid: this.config.nodeId,
      name: this.config.nodeId,
      version: VERSION,
      num_clients: this.hub.size,
      num_users: this.hub.userCount,
      num_channels: this.hub.channelCount,
      uptime: Math.floor((Date.now() - this.startedAt) / 1000),
      process: { rss: mem.rss, heap_used: mem.heapUsed },
    };
  }
}
