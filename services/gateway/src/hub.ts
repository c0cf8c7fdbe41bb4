/**
 * Local index of connections and subscriptions, and fan-out: a publication is
 * encoded once and handed to the transport's topic publish, never encoded per
 * socket. Connections still subscribing get it into a buffer instead, so that
 * nothing falls between their history snapshot and the live stream.
 */

import type { Metrics, Traffic, Transport } from './metrics.js';

/** What the hub needs of a transport connection. */
export interface Sink {
  readonly transport: Transport;
  /** False when the frame was dropped because the client is too slow. */
  send(frame: string): boolean;
  close(code: number, reason: string): void;
  bufferedAmount(): number;
  /** Set by HTTP-based transports: the id `/emulation` requests name to reach this connection. */
  readonly emulationSession?: string;
}

/**
 * A connection of the transport server's own topics (uWS WebSockets): one
 * topic publish reaches all of them. Other sinks get frames one by one.
 */
export interface TopicSink extends Sink {
  joinTopic(channel: string): void;
  leaveTopic(channel: string): void;
  /** Publishes to a topic from this connection: every subscriber but this one gets it. */
  publishExceptSelf(channel: string, frame: string): void;
}

/** Topic publish of the transport server (uWS app). */
export interface Topics {
  publish(topic: string, frame: string): void;
  numSubscribers(topic: string): number;
}

/** What the hub needs of a session. */
export interface HubMember {
  readonly client: string;
  readonly user: string;
  readonly sink: Sink;
  /** A frame for a channel this member is still subscribing to. */
  buffer(channel: string, frame: string, offset: number | undefined): void;
}

const isTopicSink = (sink: Sink): sink is TopicSink => 'joinTopic' in sink;

export class Hub<M extends HubMember = HubMember> {
  private readonly clients = new Map<string, M>();
  /** A user's connections: the member itself while it is the only one (most users), a Set beyond. */
  private readonly users = new Map<string, M | Set<M>>();
  private readonly subscribers = new Map<string, Set<M>>();
  private readonly subscribing = new Map<string, Set<M>>();
  /** Live subscribers whose sink is not a topic member: frames go to them one by one. */
  private readonly direct = new Map<string, Set<M>>();
  private subscriptionCount = 0;

  private readonly traffic: Traffic;

  constructor(
    private readonly topics: Topics,
    private readonly metrics: Metrics,
  ) {
    this.traffic = metrics.traffic('websocket');
  }

  get size(): number {
    return this.clients.size;
  }

  add(member: M): void {
    this.clients.set(member.client, member);
    const existing = this.users.get(member.user);
    if (existing === undefined) this.users.set(member.user, member);
    else if (existing instanceof Set) existing.add(member);
    else if (existing !== member) this.users.set(member.user, new Set([existing, member]));
  }

  remove(member: M): void {
    if (this.clients.get(member.client) !== member) return;
    this.clients.delete(member.client);
    const existing = this.users.get(member.user);
    if (existing === member) this.users.delete(member.user);
    else if (existing instanceof Set) {
      existing.delete(member);
      if (existing.size === 1) this.users.set(member.user, existing.values().next().value as M);
    }
  }

  client(id: string): M | undefined {
    return this.clients.get(id);
  }

  /** Distinct users with a connection here. */
  get userCount(): number {
    return this.users.size;
  }

  userConnections(user: string): M[] {
    const existing = this.users.get(user);
    return existing === undefined ? [] : existing instanceof Set ? [...existing] : [existing];
  }

  userConnectionCount(user: string): number {
    const existing = this.users.get(user);
    return existing === undefined ? 0 : existing instanceof Set ? existing.size : 1;
  }

  all(): IterableIterator<M> {
    return this.clients.values();
  }

  /** Registers a subscriber in the subscribing state; true when it is the channel's first. */
  addSubscriber(channel: string, member: M): boolean {
    const first = !this.subscribers.has(channel);
    const set = this.setOf(this.subscribers, channel);
    if (first) this.metrics.channels.set(this.subscribers.size);
    if (set.has(member)) return false;
    set.add(member);
    this.setOf(this.subscribing, channel).add(member);
    this.metrics.subscriptions.set(++this.subscriptionCount);
    return first;
  }

  /** Subscribing → live: from now on the transport's topic delivers to it. */
  activate(channel: string, member: M): void {
    const pending = this.subscribing.get(channel);
    if (!pending?.delete(member)) return;
    if (pending.size === 0) this.subscribing.delete(channel);
    if (isTopicSink(member.sink)) member.sink.joinTopic(channel);
    else this.setOf(this.direct, channel).add(member);
  }

  /** True when it was the channel's last local subscriber. */
  removeSubscriber(channel: string, member: M): boolean {
    const set = this.subscribers.get(channel);
    if (!set?.delete(member)) return false;
    this.metrics.subscriptions.set(--this.subscriptionCount);
    const pending = this.subscribing.get(channel);
    if (pending?.delete(member) && pending.size === 0) this.subscribing.delete(channel);
    if (isTopicSink(member.sink)) member.sink.leaveTopic(channel);
    const direct = this.direct.get(channel);
    if (direct?.delete(member) && direct.size === 0) this.direct.delete(channel);
    if (set.size > 0) return false;
    this.subscribers.delete(channel);
    this.metrics.channels.set(this.subscribers.size);
    return true;
  }

  subscribersOf(channel: string): M[] {
    return [...(this.subscribers.get(channel) ?? [])];
  }

  channels(): IterableIterator<[string, ReadonlySet<M>]> {
    return this.subscribers.entries();
  }

  get channelCount(): number {
    return this.subscribers.size;
  }

  /** Sends an encoded push to every local subscriber of the channel (but `skipClient`). */
  broadcast(channel: string, frame: string, offset: number | undefined, skipClient?: string): void {
    const set = this.subscribers.get(channel);
    if (!set) return;
    const pending = this.subscribing.get(channel);
    const skip = skipClient === undefined ? undefined : this.clients.get(skipClient);
    const skipTopic = skip !== undefined && isTopicSink(skip.sink) && set.has(skip) && !pending?.has(skip);
    if (skipTopic) (skip.sink as TopicSink).publishExceptSelf(channel, frame);
    else this.topics.publish(channel, frame);
    const viaTopic = this.topics.numSubscribers(channel) - (skipTopic ? 1 : 0);
    if (viaTopic > 0) {
      this.traffic.messagesOut.inc(viaTopic);
      this.traffic.bytesOut.inc(viaTopic * Buffer.byteLength(frame));
    }
    let count = viaTopic;
    for (const member of this.direct.get(channel) ?? []) {
      if (member === skip) continue;
      member.sink.send(frame);
      count++;
    }
    if (pending) {
      for (const member of pending) {
        if (member === skip) continue;
        member.buffer(channel, frame, offset);
        count++;
      }
    }
    if (count > 0) this.metrics.deliveries.inc(count);
  }

  private setOf(map: Map<string, Set<M>>, key: string): Set<M> {
    let set = map.get(key);
    if (!set) {
      set = new Set();
      map.set(key, set);
    }
    return set;
  }
}
