/**
 * The gateway's core: resolves channels to namespaces, publishes through the
 * broker, turns broker events into encoded pushes for the hub, and carries
 * out server-side actions on local connections. Sessions and the server API
 * both go through it.
 */

import {
  type ChannelName,
  type ClientInfo,
  compilePattern,
  ENVELOPE_DEPTH,
  Errors,
  type FrameLimits,
  matchesPattern,
  type ProtocolError,
  type Publication,
  parseChannel,
  type StreamPosition,
  Unsubscribes,
} from '@switchboard/protocol';
import type { TokenVerifier } from './auth.js';
import type { Broker, ControlMessage } from './broker/broker.js';
import type { Config, NamespaceOptions } from './config.js';
import type { HistoryLimits } from './history.js';
import type { Hub } from './hub.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import type { BackendHandler } from './proxy.js';
import type { GatewayEntry, Registry } from './registry/registry.js';
import type { Session } from './session.js';

export const VERSION = '0.1.0';

/** While the broker is down nothing is accepted that it could not deliver; clients retry. */
export const BROKER_UNAVAILABLE: ProtocolError = { ...Errors.internal, message: 'broker unavailable' };

export interface ResolvedChannel {
  name: ChannelName;
  ns: NamespaceOptions;
}

export interface PublishOptions {
  info?: ClientInfo;
  skipClient?: string;
  tags?: Record<string, string>;
  source: 'client' | 'api';
}

export interface NodeParts {
  config: Config;
  log: Logger;
  metrics: Metrics;
  hub: Hub<Session>;
  broker: Broker;
  registry: Registry;
  handler: BackendHandler;
  tokens: TokenVerifier;
}

export class Node {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly hub: Hub<Session>;
  readonly broker: Broker;
  readonly registry: Registry;
  readonly handler: BackendHandler;
  readonly tokens: TokenVerifier;
  readonly startedAt = Date.now();
  /** The bound every client frame is parsed with. */
  readonly frameLimits: FrameLimits;
  /** The nesting bound of messages from services and other gateways: client data plus our envelopes. */
  readonly internalDepth: number;
  /** Last offset seen per channel with local subscribers, to notice gaps. */
  private readonly lastSeen = new Map<string, StreamPosition>();
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
    this.frameLimits = { maxDepth: this.config.jsonMaxDepth };
    this.internalDepth = this.config.jsonMaxDepth + ENVELOPE_DEPTH;
  }

  async start(): Promise<void> {
    await this.broker.start({
      publication: (channel, pub, skipClient) => this.deliver(channel, pub, skipClient),
      join: (channel, info) =>
        this.hub.broadcast(channel, JSON.stringify({ push: { channel, join: { info } } }), undefined),
      leave: (channel, info) =>
        this.hub.broadcast(channel, JSON.stringify({ push: { channel, leave: { info } } }), undefined),
      control: (message) => this.applyControl(message),
      channels: (pattern) => this.channels(pattern),
      reconnected: () => {
        for (const channel of [...this.hub.channels()].map(([name]) => name)) this.resync(channel);
      },
    });
    await this.registry.start(() => this.describe());
  }

  /**
   * Fans a publication out, watching the channel's offsets: a gap means this
   * gateway missed something (broker outage, dropped messages), so its
   * subscribers are sent to recover from history instead of silently skipping.
   */
  private deliver(channel: string, pub: Publication, skipClient?: string): void {
    if (pub.offset !== undefined) {
      const last = this.lastSeen.get(channel);
      this.lastSeen.set(channel, { offset: pub.offset, epoch: pub.epoch ?? '' });
      if (last && last.epoch === (pub.epoch ?? '') && pub.offset > last.offset + 1) {
        this.log.warn({ channel, expected: last.offset + 1, got: pub.offset }, 'publication gap: resync');
        this.resync(channel);
      }
    }
    this.hub.broadcast(channel, JSON.stringify({ push: { channel, pub } }), pub.offset, skipClient);
  }

  /** Tells the channel's local subscribers to resubscribe, recovering what they missed. */
  private resync(channel: string): void {
    const resolved = this.resolve(channel);
    if ('code' in resolved || !resolved.ns.recovery) return;
    for (const session of this.hub.subscribersOf(channel)) {
      session
        .serverUnsubscribe(channel, Unsubscribes.insufficientState)
        .catch((err) => this.log.warn({ err, channel }, 'resync failed'));
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

  async publish(
    resolved: ResolvedChannel,
    data: unknown,
    options: PublishOptions,
  ): Promise<StreamPosition | undefined> {
    const pub: Publication = { data };
    if (options.info) pub.info = options.info;
    if (options.tags) pub.tags = options.tags;
    const history = this.historyLimits(resolved.ns);
    const position = await this.broker.publish(resolved.name.channel, pub, {
      ...(history ? { history } : {}),
      ...(options.skipClient ? { skipClient: options.skipClient } : {}),
    });
    this.metrics.publications.inc({ namespace: resolved.ns.name, source: options.source });
    return position;
  }

  /** A local connection starts or stops subscribing: the broker follows the first and the last. */
  async addSubscriber(channel: string, session: Session): Promise<void> {
    if (this.hub.addSubscriber(channel, session)) await this.broker.subscribe(channel);
  }

  async removeSubscriber(channel: string, session: Session): Promise<void> {
    if (!this.hub.removeSubscriber(channel, session)) return;
    this.lastSeen.delete(channel);
    await this.broker.unsubscribe(channel);
  }

  /** Local connections of a user, optionally one client only. */
  sessionsOf(user: string, client?: string): Session[] {
    const sessions = [...this.hub.userConnections(user)];
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
      num_users: new Set([...this.hub.all()].map((s) => s.user)).size,
      num_channels: [...this.hub.channels()].length,
      uptime: Math.floor((Date.now() - this.startedAt) / 1000),
      process: { rss: mem.rss, heap_used: mem.heapUsed },
    };
  }
}
