/**
 * Local index of connections and subscriptions, and fan-out: a publication is
 * encoded once per client protocol edge (Centrifugo, Pusher) that has
 * subscribers to the channel and handed to the transport's topic publish,
 * never encoded per socket. Connections still subscribing get it into a
 * buffer instead, so that nothing falls between their history snapshot and
 * the live stream. With a coalescing window, a channel's publications within
 * it go to the topic as one frame of newline-separated pushes. Subscribers
 * with a tags filter stay out of the topic: each gets the publications that
 * match its filter one by one (the frame still encoded once), so that a
 * channel without them does no per-publication filter work at all.
 * Subscribers that negotiated delta compression stay out of the topic too:
 * for a channel with some, the hub keeps the previous publication's data and
 * encodes each publication twice at most per edge (a Fossil delta against it,
 * and the full data raw: a JSON string, or bytes for Protobuf), whatever the
 * number of delta subscribers; each
 * gets the delta when it holds that previous publication, else the full one.
 */

import {
  type ClientInfo,
  type FilterNode,
  fossilDelta,
  matchesTagsFilter,
  type Publication,
} from '@switchboard/protocol';
import type { MemberEvent } from './broker/broker.js';
import type { Metrics, Traffic, Transport } from './metrics.js';

/**
 * A frame for a client: text (JSON, Pusher) or binary (Protobuf). Only
 * binary-capable transports (WebSocket) ever get binary frames, and text-only
 * sinks declare `send(frame: string)`: a binary session is made on them never.
 */
export type Frame = string | Uint8Array;

/** What the hub needs of a transport connection. */
export interface Sink {
  readonly transport: Transport;
  /** False when the frame was dropped because the client is too slow. */
  send(frame: Frame): boolean;
  close(code: number, reason: string): void;
  bufferedAmount(): number;
  /** Set by HTTP-based transports: the id `/emulation` requests name to reach this connection. */
  readonly emulationSession?: string | undefined;
  /** A unidirectional transport: the client cannot answer pings, so no pong is awaited. */
  readonly unidirectional?: boolean;
}

/**
 * A connection of the transport server's own topics (uWS WebSockets): one
 * topic publish reaches all of them. Other sinks get frames one by one.
 */
export interface TopicSink extends Sink {
  joinTopic(topic: string): void;
  leaveTopic(topic: string): void;
  /** Publishes to a topic from this connection: every subscriber but this one gets it. */
  publishExceptSelf(topic: string, frame: Frame): void;
}

/** What the hub fans out: a channel's publication, or a subscriber's join or leave. */
export type Push =
  /** `delta`: the publisher asked for delta compression. */
  | { readonly pub: Publication; readonly delta?: boolean }
  | { readonly join: ClientInfo }
  | { readonly leave: ClientInfo }
  | { readonly member: MemberEvent };

/** A client protocol edge: how its connections see a push, and where their topics are. */
export interface Edge {
  /** A connection of this edge is in topic `topicPrefix + channel` ('' for the first edge). */
  readonly topicPrefix: string;
  /** Its clients read several pushes in one frame (push coalescing): newline-separated text, or concatenated binary. */
  readonly coalesces: boolean;
  /** Its frames are binary, and a delta subscriber's publication data goes as raw bytes (Protobuf). */
  readonly binary: boolean;
  /** Labels the bytes and frames its topic publishes send. */
  readonly transport: Transport;
  /** The push as this edge's frame; undefined when its connections do not see it. */
  encode(channel: string, push: Push): Frame | undefined;
}

/** Topic publish of the transport server (uWS app). */
export interface Topics {
  publish(topic: string, frame: Frame): void;
  numSubscribers(topic: string): number;
}

/** What the hub needs of a session. */
export interface HubMember {
  readonly client: string;
  readonly user: string;
  readonly sink: Sink;
  readonly edge: Edge;
  /** A frame for a channel this member is still subscribing to. */
  buffer(channel: string, frame: Frame, offset: number | undefined): void;
}

const isTopicSink = (sink: Sink): sink is TopicSink => 'joinTopic' in sink;

/** A tags filter holds back publications that do not match it; joins, leaves and members always pass. */
const passes = (filter: FilterNode, push: Push): boolean =>
  !('pub' in push) || matchesTagsFilter(filter, push.pub.tags);

/** A channel's previous publication, the base of the next one's delta. */
interface DeltaBase {
  offset: number;
  epoch: string;
  /** Its data as JSON text in UTF-8, the bytes centrifuge-js keeps and applies the delta to. */
  bytes: Buffer;
}

/** A delta subscriber that holds no publication a delta could be made against. */
const NO_BASE = -1;

/** A publication's data as the JSON text a delta subscriber gets and keeps as its base. */
const jsonText = (data: unknown): string => JSON.stringify(data) ?? 'null';

/** A Fossil delta of `target` against `source`; undefined when it is not smaller than `target`. */
function deltaBytes(source: Buffer, target: Buffer): Buffer | undefined {
  const delta = fossilDelta(source, target);
  if (delta.byteLength >= target.byteLength) return undefined;
  return Buffer.from(delta.buffer, delta.byteOffset, delta.byteLength);
}

/**
 * A delta subscriber's publication data: for a text edge a JSON string (the
 * encoder never cuts a UTF-8 sequence, so the delta of JSON text is UTF-8
 * text itself), for a binary edge the bytes.
 */
const rawData = (bytes: Buffer, binary: boolean): string | Buffer => (binary ? bytes : bytes.toString());

/**
 * Publications of a delta subscriber's subscribe reply (recovered ones, in
 * order): the first in full, each later one as a delta against the one before
 * it where that is smaller; every data raw (rawData), as delta compression wants.
 */
export function deltaPublications(pubs: readonly Publication[], binary: boolean): Publication[] {
  let previous: Buffer | undefined;
  return pubs.map((pub) => {
    const bytes = Buffer.from(jsonText(pub.data));
    const delta = previous && deltaBytes(previous, bytes);
    previous = bytes;
    return delta === undefined
      ? { ...pub, data: rawData(bytes, binary) }
      : { ...pub, data: rawData(delta, binary), delta: true };
  });
}

/** Frames of one edge as one: text newline-separated, binary (varint-delimited already) concatenated. */
function joinFrames(frames: Frame[]): Frame {
  return typeof frames[0] === 'string' ? frames.join('\n') : Buffer.concat(frames as Uint8Array[]);
}

/** A coalesced frame goes out early once its pushes reach this many characters. */
export const COALESCE_MAX_CHARS = 16 * 1024;

/** A channel's pushes waiting for the coalescing window to end. */
interface Batch {
  /** Index of the edge whose topic it is. */
  edge: number;
  frames: Frame[];
  /** Characters of text frames, bytes of binary ones. */
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
  /** Subscribers with a tags filter (subscribing or live), never topic members: matching publications go to them one by one. */
  private readonly filtered = new Map<string, Map<M, FilterNode>>();
  /**
   * Subscribers that negotiated delta compression (subscribing or live), never
   * topic members: the offset of the publication each live one holds as its
   * delta base (NO_BASE: none, its next publication goes in full).
   */
  private readonly deltas = new Map<string, Map<M, number>>();
  /** The previous publication of each channel with delta subscribers (one per channel, dropped with the last of them). */
  private readonly deltaBases = new Map<string, DeltaBase>();
  private subscriptionCount = 0;
  /** Coalesced pushes waiting, per topic. */
  private readonly batches = new Map<string, Batch>();
  private batchTimer: NodeJS.Timeout | undefined;

  private readonly traffic: Traffic[];
  /** Topic subscriptions per edge: a broadcast asks uWS for the subscribers of an edge's topic only when it has some. */
  private readonly topicMembers: number[];
  /** One push's frame per edge, encoded on first use (reused by every broadcast). */
  private readonly frames: (Frame | undefined | null)[];
  /** A delta broadcast's frames per edge: the delta, and the full data (null: not encoded yet). */
  private readonly deltaFrames: (Frame | undefined | null)[];
  private readonly fullFrames: (Frame | undefined | null)[];

  /**
   * `edges`: the client protocols served (the first one's topics are the
   * channel names themselves); `coalesceWindowMs`: how long a channel's pushes
   * may wait to share a topic frame (0: never).
   */
  constructor(
    private readonly topics: Topics,
    private readonly metrics: Metrics,
    private readonly edges: readonly Edge[],
    private readonly coalesceWindowMs = 0,
  ) {
    this.traffic = edges.map((edge) => metrics.traffic(edge.transport));
    this.frames = edges.map(() => null);
    this.topicMembers = edges.map(() => 0);
    this.deltaFrames = edges.map(() => null);
    this.fullFrames = edges.map(() => null);
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

  /**
   * Gives the member's coming subscription to `channel` a tags filter: called
   * just before addSubscriber, it holds until removeSubscriber.
   */
  filterSubscriber(channel: string, member: M, filter: FilterNode): void {
    let filters = this.filtered.get(channel);
    if (!filters) {
      filters = new Map();
      this.filtered.set(channel, filters);
    }
    filters.set(member, filter);
  }

  /**
   * Gives the member's coming subscription to `channel` delta compression:
   * called just before addSubscriber, it holds until removeSubscriber.
   */
  deltaSubscriber(channel: string, member: M): void {
    let members = this.deltas.get(channel);
    if (!members) {
      members = new Map();
      this.deltas.set(channel, members);
    }
    members.set(member, NO_BASE);
  }

  /**
   * Subscribing → live: from now on the transport's topic delivers to it (the
   * hub itself, when filtered or delta). `deltaBase`: the offset of the last
   * publication a delta subscriber got in full while subscribing, if any.
   */
  activate(channel: string, member: M, deltaBase?: number): void {
    const pending = this.subscribing.get(channel);
    if (!pending?.delete(member)) return;
    if (pending.size === 0) this.subscribing.delete(channel);
    if (this.filtered.get(channel)?.has(member)) return;
    const deltas = this.deltas.get(channel);
    if (deltas?.has(member)) {
      deltas.set(member, deltaBase ?? NO_BASE);
      return;
    }
    if (isTopicSink(member.sink)) {
      // What waits in a batch reached this member through its buffer already.
      const topic = member.edge.topicPrefix + channel;
      this.flushTopic(topic);
      member.sink.joinTopic(topic);
      this.topicMembers[this.edges.indexOf(member.edge)]!++;
    } else this.setOf(this.direct, channel).add(member);
  }

  /** True when it was the channel's last local subscriber. */
  removeSubscriber(channel: string, member: M): boolean {
    const filters = this.filtered.get(channel);
    const wasFiltered = filters?.delete(member) === true;
    if (filters?.size === 0) this.filtered.delete(channel);
    const deltas = this.deltas.get(channel);
    const wasDelta = deltas?.delete(member) === true;
    if (deltas?.size === 0) {
      this.deltas.delete(channel);
      this.deltaBases.delete(channel);
    }
    const set = this.subscribers.get(channel);
    if (!set?.delete(member)) return false;
    this.subscriptionCount--;
    const pending = this.subscribing.get(channel);
    const wasPending = pending?.delete(member) === true;
    if (wasPending && pending!.size === 0) this.subscribing.delete(channel);
    if (!wasFiltered && !wasDelta && !wasPending && isTopicSink(member.sink)) {
      // Published while it was subscribed: it gets those before it leaves.
      const topic = member.edge.topicPrefix + channel;
      this.flushTopic(topic);
      member.sink.leaveTopic(topic);
      this.topicMembers[this.edges.indexOf(member.edge)]!--;
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

  /** Sends a push to every local subscriber of the channel (but `skipClient`), encoded once per edge. */
  broadcast(channel: string, push: Push, offset: number | undefined, skipClient?: string): void {
    const set = this.subscribers.get(channel);
    if (!set) return;
    // Each of these maps is looked up only while some channel has such subscribers: most have none.
    const pending = this.subscribing.size === 0 ? undefined : this.subscribing.get(channel);
    const filters = this.filtered.size === 0 ? undefined : this.filtered.get(channel);
    const deltas = this.deltas.size === 0 ? undefined : this.deltas.get(channel);
    const skip = skipClient === undefined ? undefined : this.clients.get(skipClient);
    const skipLive =
      skip !== undefined && set.has(skip) && !pending?.has(skip) && !filters?.has(skip) && !deltas?.has(skip);
    const frames = this.frames;
    frames.fill(null);
    let count = 0;
    for (let i = 0; i < this.edges.length; i++) {
      if (this.topicMembers[i] === 0) continue;
      const edge = this.edges[i]!;
      const topic = i === 0 ? channel : edge.topicPrefix + channel;
      const skipTopic = skipLive && skip.edge === edge && isTopicSink(skip.sink);
      const viaTopic = this.topics.numSubscribers(topic) - (skipTopic ? 1 : 0);
      if (viaTopic <= 0) continue;
      const frame = this.frameOf(i, channel, push);
      if (frame === undefined) continue;
      count += viaTopic;
      if (skipTopic) {
        this.flushTopic(topic);
        (skip.sink as TopicSink).publishExceptSelf(topic, frame);
        this.countTopicFrames(i, viaTopic, frame);
      } else if (edge.coalesces && this.coalesceWindowMs > 0) {
        this.coalesce(i, topic, frame);
      } else {
        this.topics.publish(topic, frame);
        this.countTopicFrames(i, viaTopic, frame);
      }
    }
    const direct = this.direct.size === 0 ? undefined : this.direct.get(channel);
    if (direct) {
      for (const member of direct) {
        if (member === skip) continue;
        const frame = this.frameOf(this.edges.indexOf(member.edge), channel, push);
        if (frame === undefined) continue;
        member.sink.send(frame);
        count++;
      }
    }
    if (filters) {
      for (const [member, filter] of filters) {
        if (member === skip || pending?.has(member) || !passes(filter, push)) continue;
        const frame = this.frameOf(this.edges.indexOf(member.edge), channel, push);
        if (frame === undefined) continue;
        member.sink.send(frame);
        count++;
      }
    }
    if (deltas) count += this.deliverDeltas(channel, deltas, push, pending, skip);
    if (pending) {
      for (const member of pending) {
        if (member === skip || deltas?.has(member)) continue;
        const filter = filters?.get(member);
        if (filter !== undefined && !passes(filter, push)) continue;
        const frame = this.frameOf(this.edges.indexOf(member.edge), channel, push);
        if (frame === undefined) continue;
        member.buffer(channel, frame, offset);
        count++;
      }
    }
    if (count > 0) this.metrics.deliveries.inc(count);
  }

  /**
   * A push to the channel's delta subscribers. A publication goes as a delta
   * to each live one that holds the publication just before it (when the
   * publisher asked for delta and the delta is smaller than the data), in full
   * with its data as a JSON string to the others, buffered in full to those
   * still subscribing; either frame is made once. Joins and leaves go as they
   * are. Returns the deliveries.
   */
  private deliverDeltas(
    channel: string,
    members: Map<M, number>,
    push: Push,
    pending: Set<M> | undefined,
    skip: M | undefined,
  ): number {
    let count = 0;
    if (!('pub' in push)) {
      for (const member of members.keys()) {
        if (member === skip) continue;
        const frame = this.frameOf(this.edges.indexOf(member.edge), channel, push);
        if (frame === undefined) continue;
        if (pending?.has(member)) member.buffer(channel, frame, undefined);
        else member.sink.send(frame);
        count++;
      }
      return count;
    }
    const { pub } = push;
    const bytes = Buffer.from(jsonText(pub.data));
    const { offset } = pub;
    const epoch = pub.epoch ?? '';
    const previous = this.deltaBases.get(channel);
    // Only against the publication just before this one: after a gap or a new epoch all get it in full.
    const base =
      push.delta === true &&
      previous !== undefined &&
      offset !== undefined &&
      previous.offset === offset - 1 &&
      previous.epoch === epoch
        ? previous
        : undefined;
    const fulls = this.fullFrames.fill(null);
    const deltas = this.deltaFrames.fill(null);
    /** The delta's bytes, made once for every edge (null: not yet; undefined: none smaller than the data). */
    let delta: Buffer | undefined | null = base ? null : undefined;
    for (const [member, held] of members) {
      const subscribing = pending?.has(member) === true;
      if (member === skip) {
        // It misses this one: its next publication cannot be a delta.
        if (!subscribing) members.set(member, NO_BASE);
        continue;
      }
      const { edge } = member;
      const i = this.edges.indexOf(edge);
      let frame: Frame | undefined;
      if (!subscribing && base !== undefined && held === base.offset) {
        if (delta === null) delta = deltaBytes(base.bytes, bytes);
        if (delta !== undefined && deltas[i] === null)
          deltas[i] = edge.encode(channel, {
            pub: { ...pub, data: rawData(delta, edge.binary), delta: true },
          });
        frame = deltas[i] ?? undefined;
      }
      if (frame === undefined) {
        if (fulls[i] === null)
          fulls[i] = edge.encode(channel, { pub: { ...pub, data: rawData(bytes, edge.binary) } });
        frame = fulls[i] ?? undefined;
      }
      if (frame === undefined) continue;
      if (subscribing) member.buffer(channel, frame, offset);
      // A frame dropped (a slow client, closed for it) leaves it without a base.
      else members.set(member, member.sink.send(frame) ? (offset ?? NO_BASE) : NO_BASE);
      count++;
    }
    if (offset === undefined) this.deltaBases.delete(channel);
    else this.deltaBases.set(channel, { offset, epoch, bytes });
    return count;
  }

  private frameOf(edge: number, channel: string, push: Push): Frame | undefined {
    let frame = this.frames[edge];
    if (frame === null) frame = this.frames[edge] = this.edges[edge]!.encode(channel, push);
    return frame;
  }

  /** Sends what waits in the channel's batches now (before anything that must come after it). */
  flush(channel: string): void {
    if (this.batches.size === 0) return;
    for (const edge of this.edges) if (edge.coalesces) this.flushTopic(edge.topicPrefix + channel);
  }

  private flushTopic(topic: string): void {
    const batch = this.batches.get(topic);
    if (!batch) return;
    this.batches.delete(topic);
    this.publishBatch(topic, batch);
  }

  private coalesce(edge: number, topic: string, frame: Frame): void {
    const now = performance.now();
    let batch = this.batches.get(topic);
    if (!batch) {
      batch = { edge, frames: [], chars: 0, since: now };
      this.batches.set(topic, batch);
    }
    batch.frames.push(frame);
    batch.chars += frame.length;
    // Full, or due while the event loop was too busy to run the timer: out now.
    if (batch.chars >= COALESCE_MAX_CHARS || now - batch.since >= this.coalesceWindowMs)
      this.flushTopic(topic);
    else this.batchTimer ??= setTimeout(() => this.flushAll(), this.coalesceWindowMs).unref();
  }

  private flushAll(): void {
    this.batchTimer = undefined;
    for (const [topic, batch] of this.batches) this.publishBatch(topic, batch);
    this.batches.clear();
  }

  private publishBatch(topic: string, batch: Batch): void {
    const frame = batch.frames.length === 1 ? batch.frames[0]! : joinFrames(batch.frames);
    this.topics.publish(topic, frame);
    this.countTopicFrames(batch.edge, this.topics.numSubscribers(topic), frame);
  }

  private countTopicFrames(edge: number, subscribers: number, frame: Frame): void {
    if (subscribers <= 0) return;
    const traffic = this.traffic[edge]!;
    traffic.messagesOut.inc(subscribers);
    traffic.bytesOut.inc(subscribers * Buffer.byteLength(frame));
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
