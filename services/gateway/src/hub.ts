/**
 * Local index of connections and subscriptions, and fan-out: a publication is
 * encoded once and handed to the transport's topic publish, never encoded per
 * socket. Connections still subscribing get it into a buffer instead, so that
 * nothing falls between their history snapshot and the live stream. With a
 * coalescing window, a channel's publications within it go to the topic as
 * one frame of newline-separated pushes.
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

/** A coalesced frame goes out early once its pushes reach this many characters. */
export const COALESCE_MAX_CHARS = 16 * 1024;

/** A channel's pushes waiting for the coalescing window to end. */
interface Batch {
  frames: string[];
  chars: number;
  /** performance.now() of its first push: a batch past its window goes out with the next push, timer or not. */
  since: number;
}

export class Hub<M extends HubMember = HubMember> {
  private readonly clients = new Map<string, M>();
  /** A user's connections: the member itself while it is the only one (most users), a Set beyond. */
  private readonly users = new Map<string, M | Set<M>>();
  private readonly subscribers = new Map<string, Set<M>>();
  private readonly subscribing = new Map<string, Set<M>>();
  /** Live subscribers whose sink is not a topic member: frames go to them one by one. */
  private readonly direct = new Map<string, Set<M>>();
  private subscriptionCount = 0;
  private readonly batches = new Map<string, Batch>();
  private batchTimer: NodeJS.Timeout | undefined;

  private readonly traffic: Traffic;

  /** `coalesceWindowMs`: how long a channel's pushes may wait to share a topic frame (0: never). */
  constructor(
    private readonly topics: Topics,
    private readonly metrics: Metrics,
    private readonly coalesceWindowMs = 0,
  ) {
    this.traffic = metrics.traffic('websocket');
    metrics.hubCounts = () => ({ channels: this.subscribers.size, subscriptions: this.subscriptionCount });
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
    if (set.has(member)) return false;
    set.add(member);
    this.setOf(this.subscribing, channel).add(member);
    this.subscriptionCount++;
    return first;
  }

  /** Subscribing → live: from now on the transport's topic delivers to it. */
  activate(channel: string, member: M): void {
    const pending = this.subscribing.get(channel);
    if (!pending?.delete(member)) return;
    if (pending.size === 0) this.subscribing.delete(channel);
    if (isTopicSink(member.sink)) {
      // What waits in a batch reached this member through its buffer already.
      this.flush(channel);
      member.sink.joinTopic(channel);
    } else this.setOf(this.direct, channel).add(member);
  }

  /** True when it was the channel's last local subscriber. */
  removeSubscriber(channel: string, member: M): boolean {
    const set = this.subscribers.get(channel);
    if (!set?.delete(member)) return false;
    this.subscriptionCount--;
    const pending = this.subscribing.get(channel);
    if (pending?.delete(member) && pending.size === 0) this.subscribing.delete(channel);
    if (isTopicSink(member.sink)) {
      // Published while it was subscribed: it gets those before it leaves.
      this.flush(channel);
      member.sink.leaveTopic(channel);
    }
    const direct = this.direct.get(channel);
    if (direct?.delete(member) && direct.size === 0) this.direct.delete(channel);
    if (set.size > 0) return false;
    this.subscribers.delete(channel);
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
    const viaTopic = this.topics.numSubscribers(channel) - (skipTopic ? 1 : 0);
    if (skipTopic) {
      this.flush(channel);
      (skip.sink as TopicSink).publishExceptSelf(channel, frame);
      this.countTopicFrames(viaTopic, frame);
    } else if (viaTopic > 0 && this.coalesceWindowMs > 0) {
      this.coalesce(channel, frame);
    } else if (viaTopic > 0) {
      this.topics.publish(channel, frame);
      this.countTopicFrames(viaTopic, frame);
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

  /** Sends what waits in the channel's batch now (before anything that must come after it). */
  flush(channel: string): void {
    const batch = this.batches.get(channel);
    if (!batch) return;
    this.batches.delete(channel);
    this.publishBatch(channel, batch);
  }

  private coalesce(channel: string, frame: string): void {
    const now = performance.now();
    let batch = this.batches.get(channel);
    if (!batch) {
      batch = { frames: [], chars: 0, since: now };
      this.batches.set(channel, batch);
    }
    batch.frames.push(frame);
    batch.chars += frame.length;
    // Full, or due while the event loop was too busy to run the timer: out now.
    if (batch.chars >= COALESCE_MAX_CHARS || now - batch.since >= this.coalesceWindowMs) this.flush(channel);
    else this.batchTimer ??= setTimeout(() => this.flushAll(), this.coalesceWindowMs).unref();
  }

  private flushAll(): void {
    this.batchTimer = undefined;
    for (const [channel, batch] of this.batches) this.publishBatch(channel, batch);
    this.batches.clear();
  }

  private publishBatch(channel: string, batch: Batch): void {
    const frame = batch.frames.length === 1 ? batch.frames[0]! : batch.frames.join('\n');
    this.topics.publish(channel, frame);
    this.countTopicFrames(this.topics.numSubscribers(channel), frame);
  }

  private countTopicFrames(subscribers: number, frame: string): void {
    if (subscribers <= 0) return;
    this.traffic.messagesOut.inc(subscribers);
    this.traffic.bytesOut.inc(subscribers * Buffer.byteLength(frame));
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
