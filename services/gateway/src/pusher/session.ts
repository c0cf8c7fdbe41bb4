/**
 * One Pusher protocol 7 connection's state machine: connection_established,
 * ping/pong and the activity timeout, subscribe (public, private, presence,
 * private-encrypted) with channel auth checked against the app secret,
 * unsubscribe, client events on private and presence channels, signin.
 * Talks to its transport through a Sink and to everything else through the
 * same Node as the Centrifugo edge's sessions.
 */

import {
  type ClientInfo,
  type Disconnect,
  Disconnects,
  type ProtocolError,
  type Publication,
} from '@switchboard/protocol';
import type { Edge, Sink } from '../hub.js';
import { logConnection } from '../log.js';
import type { PusherRejection } from '../metrics.js';
import type { Connection, Node, ResolvedChannel } from '../node.js';
import { monotonicMs } from '../session.js';
import { channelOf, type PusherApp, pusherName } from './apps.js';
import { EVENT_TAG, pusherEdge } from './edge.js';
import type { HookEvent, Webhooks } from '../hooks/webhooks.js';
import * as wire from './protocol.js';
import { verifyChannelAuth, verifyUserAuth } from './signature.js';

interface Subscription {
  /** The Switchboard channel (`<namespace>:<name>`). */
  readonly channel: string;
  live: boolean;
  /** Frames that arrived while subscribing, sent after subscription_succeeded. */
  buffered: string[] | undefined;
  /** This connection's presence entry, on presence channels. */
  member: ClientInfo | undefined;
  /** The namespace's join/leave pushes (for its Centrifugo subscribers). */
  joinLeave: boolean;
  /** Waiting for the broker: held against the limits, but not yet in the hub or presence. */
  pending: boolean;
}

/** Largest `channel_data` of a presence subscribe (the member's id and info), as Pusher bounds it. */
export const MAX_CHANNEL_DATA = 1024;
/** Largest `user_data` of a signin. */
export const MAX_USER_DATA = 4096;

/** The Pusher close a gateway-side disconnect becomes. */
function closeOf(disconnect: Disconnect): { code: number; reason: string } {
  switch (disconnect.code) {
    case Disconnects.shutdown.code:
      return { code: 4200, reason: 'server shutting down: reconnect' };
    case Disconnects.slow.code:
      return { code: 4100, reason: 'client too slow' };
    case Disconnects.noPong.code:
      return { code: 4201, reason: 'pong reply not received' };
    case Disconnects.tooManyRequests.code:
      return { code: 4100, reason: 'too many messages' };
    case Disconnects.connectionLimit.code:
      return { code: 4004, reason: 'over connection quota' };
    default:
      // A server API disconnect or terminate_connections: the client must not come straight back.
      return disconnect.code >= 4000 && disconnect.code < 4300
        ? { code: disconnect.code, reason: disconnect.reason }
        : { code: 4009, reason: 'connection terminated by the server' };
  }
}

const isError = (v: unknown): v is ProtocolError => typeof v === 'object' && v !== null && 'code' in v;

/**
 * Publishes a Pusher event (a client event or an HTTP API one) to the
 * channel, its name in the `event` tag; a cache channel keeps it as its last.
 * Returns the error when it was not published.
 */
export async function publishEvent(
  node: Node,
  app: PusherApp,
  resolved: ResolvedChannel,
  event: string,
  data: unknown,
  options: { info?: ClientInfo; skipClient: string | undefined; source: 'client' | 'api' },
): Promise<ProtocolError | undefined> {
  const tags = { [EVENT_TAG]: event };
  const published = await node.publish(resolved, data, { ...options, tags });
  if (isError(published)) return published;
  node.metrics.pusherEvents.inc({ app: app.id, source: options.source });
  const channel = resolved.name.channel;
  if (wire.channelKind(pusherName(channel)).cache) {
    const pub: Publication = options.info ? { data, info: options.info, tags } : { data, tags };
    await node.registry.keepLast(channel, pub);
  }
  return undefined;
}

export class PusherSession implements Connection {
  readonly client = wire.newSocketId();
  /** The hub's user key: `<app id>:<user id>` once signed in, so that apps never share users. */
  user = '';
  /** The signed-in user's id, as the app knows it. */
  private userId = '';
  private closedAt = 0;
  private readonly openedAt = monotonicMs();
  private readonly subs = new Map<string, Subscription>();
  private lastActivity = this.openedAt;
  private pongDueAt = 0;
  /** Token buckets: every frame (commands_per_second), and client events (the app's limit). */
  private frameTokens: number;
  private eventTokens: number;
  private refilledAt = this.openedAt;
  private overLimit = 0;
  private closeReason: string | undefined;

  get edge(): Edge {
    return pusherEdge;
  }

  constructor(
    readonly sink: Sink,
    private readonly node: Node,
    readonly app: PusherApp,
    private readonly webhooks: Webhooks | undefined,
  ) {
    this.frameTokens = node.config.commandsPerSecond;
    this.eventTokens = app.max_client_events_per_second;
    node.hub.add(this);
    node.metrics.connects.inc({ transport: 'pusher', outcome: 'accepted', reason: 'ok' });
    logConnection(node.log, node.config.logConnectionSample, 'connected', {
      client: this.client,
      app: app.id,
      transport: 'pusher',
    });
    this.sink.send(wire.connectionEstablished(this.client, node.config.pusher.activityTimeout));
  }

  // ---- transport → session

  handleFrame(text: string): void {
    if (this.closedAt > 0) return;
    this.lastActivity = monotonicMs();
    this.pongDueAt = 0;
    if (!this.takeToken()) return;
    const parsed = wire.parseClientFrame(text, this.node.frameLimits);
    if (!parsed.ok) return this.rejectEvent('bad_frame', parsed.reason);
    const frame = parsed.value;
    switch (frame.type) {
      case 'ping':
        this.sink.send(wire.pong());
        return;
      case 'pong':
        return;
      case 'subscribe':
        this.subscribe(frame.channel, frame.auth, frame.channelData).catch((err) =>
          this.failed(err, frame.channel),
        );
        return;
      case 'unsubscribe':
        this.unsubscribe(frame.channel).catch((err) => this.failed(err, frame.channel));
        return;
      case 'signin':
        this.signin(frame.auth, frame.userData);
        return;
      case 'client':
        this.clientEvent(frame.event, frame.channel, frame.data).catch((err) =>
          this.failed(err, frame.channel),
        );
        return;
      case 'unknown':
        this.rejectEvent('bad_frame', `unknown event ${JSON.stringify(frame.event.slice(0, 64))}`);
    }
  }

  /** A frame over max_message_size, read by the transport but not parsed: refused, the connection stays (as Pusher does). */
  oversized(limit: number): void {
    if (this.closedAt > 0 || !this.takeToken()) return;
    this.rejectEvent(
      'too_large',
      `frames are limited to ${limit} bytes`,
      wire.PusherErrors.clientEventRateLimit.code,
    );
  }

  /** The transport closed, whoever closed it. */
  closed(code: number, reason?: string): void {
    if (this.closedAt > 0) return;
    this.closedAt = monotonicMs();
    this.node.hub.remove(this);
    const label =
      this.closeReason ??
      reason ??
      (code === 1000 || code === 1001 || code === 1005 ? 'client_close' : 'connection_lost');
    this.node.metrics.disconnects.inc({ transport: 'pusher', reason: label, code: String(code) });
    this.node.metrics.lifespan.observe(
      { transport: 'pusher', reason: label },
      (this.closedAt - this.openedAt) / 1000,
    );
    logConnection(this.node.log, this.node.config.logConnectionSample, 'disconnected', {
      client: this.client,
      app: this.app.id,
      reason: label,
      code,
    });
    for (const [name] of this.subs) {
      this.unsubscribe(name).catch((err) =>
        this.node.log.warn({ err, channel: name }, 'cleanup after close failed'),
      );
    }
  }

  // ---- Connection (node, ticker, drain, server API)

  disconnect(disconnect: Disconnect, reason: string): void {
    if (this.closedAt > 0 || this.closeReason !== undefined) return;
    this.closeReason = reason;
    const close = closeOf(disconnect);
    this.sink.close(close.code, close.reason);
  }

  /** Pusher clients take no messages outside channels. */
  message(): void {}

  /** Server-side subscriptions are the Centrifugo edge's: a Pusher client subscribes itself. */
  async serverSubscribe(): Promise<ProtocolError | undefined> {
    return { code: 108, message: 'not available' };
  }

  async serverUnsubscribe(channel: string): Promise<void> {
    const name = channel.slice(this.app.namespace.length + 1);
    await this.unsubscribe(name);
  }

  buffer(channel: string, frame: string): void {
    const sub = this.subs.get(channel.slice(this.app.namespace.length + 1));
    if (sub && !sub.live) (sub.buffered ??= []).push(frame);
  }

  /** Activity timeout: a silent client is pinged, and closed with 4201 when no pong follows. */
  tick(now: number): number {
    if (this.closedAt > 0) return 0;
    const { config } = this.node;
    const buffered = this.sink.bufferedAmount();
    if (this.pongDueAt > 0 && now > this.pongDueAt) {
      this.disconnect(Disconnects.noPong, 'no_pong');
      return 0;
    }
    if (buffered > config.maxBackpressure) {
      this.disconnect(Disconnects.slow, 'slow');
      return 0;
    }
    if (this.pongDueAt === 0 && now - this.lastActivity >= config.pusher.activityTimeout * 1000) {
      this.sink.send(wire.ping());
      this.pongDueAt = now + config.pongTimeout * 1000;
    }
    return buffered;
  }

  // ---- events

  private async subscribe(
    name: string,
    auth: string | undefined,
    channelData: string | undefined,
  ): Promise<void> {
    const refuse = (status: number, message: string) => {
      this.count(status === 401 ? 'auth' : 'bad_channel');
      this.sink.send(wire.subscriptionError(name, status, message));
    };
    // pusher-js subscribes a signed-in connection to its user's own channel, without auth.
    const toUser = wire.parseServerToUserChannel(name);
    const badName =
      toUser === undefined
        ? wire.checkChannelName(name)
        : toUser === this.userId
          ? undefined
          : "only a signed-in user's own server-to-user channel";
    if (badName) return refuse(toUser === undefined ? 400 : 403, badName);
    if (this.subs.has(name)) return refuse(400, `already subscribed to ${name}`);
    if (this.subs.size >= this.app.max_channels_per_connection)
      return refuse(400, `at most ${this.app.max_channels_per_connection} channels per connection`);
    const kind = wire.channelKind(name);
    let member: ClientInfo | undefined;
    if (kind.kind !== 'public' && toUser === undefined) {
      // Signed with channel_data whenever the client sends it, as Pusher's libraries sign.
      if (
        typeof auth !== 'string' ||
        !verifyChannelAuth(this.app.key, this.app.secret, this.client, name, auth, channelData)
      )
        return refuse(401, 'invalid signature');
    }
    if (kind.kind === 'presence') {
      const parsed = wire.parseChannelData(channelData, MAX_CHANNEL_DATA, this.node.frameLimits.maxDepth);
      if (!parsed.ok) return refuse(400, parsed.reason);
      member = { user: parsed.value.userId, client: this.client };
      if (parsed.value.userInfo !== undefined) member.chan_info = parsed.value.userInfo;
    }
    const channel = channelOf(this.app, name);
    const resolved = this.node.resolve(channel);
    if (isError(resolved)) return refuse(400, resolved.message);
    // With webhooks every subscription has a presence entry: the occupancy decider sees channels fill and empty.
    if (!member && this.app.webhooks.length > 0) member = { user: this.userId, client: this.client };
    const sub: Subscription = {
      channel,
      live: false,
      buffered: undefined,
      member,
      joinLeave: resolved.ns.join_leave,
      pending: true,
    };
    // Held from now on, while a reconnecting broker is waited for: the limit, a second
    // subscribe of the channel and an unsubscribe all see it.
    this.subs.set(name, sub);
    const ready = await this.node.broker.whenReady(this.node.config.publishTimeout);
    // Unsubscribed or closed meanwhile: nothing was added, nothing to undo.
    if (this.subs.get(name) !== sub || this.closedAt > 0) return;
    if (!ready) {
      this.subs.delete(name);
      return refuse(503, 'broker unavailable');
    }
    sub.pending = false;
    await this.node.addSubscriber(channel, this);
    if (member) {
      // The occupancy decider sees the entry and tells the others of a new member.
      const { registry, broker } = this.node;
      await registry.addPresence(channel, member);
      if (sub.joinLeave) await broker.publishJoin(channel, member);
    }
    const succeeded =
      kind.kind === 'presence'
        ? wire.subscriptionSucceeded(
            name,
            wire.presenceMembers(Object.values(await this.node.registry.presence(channel))),
          )
        : wire.subscriptionSucceeded(name);
    if (this.subs.get(name) !== sub || this.closedAt > 0) return;
    this.sink.send(succeeded);
    // A cache channel's last event (or word that there is none) comes before the live ones.
    if (kind.cache) {
      const last = await this.node.registry.last(channel);
      if (this.subs.get(name) !== sub || this.closedAt > 0) return;
      this.sink.send(last ? pusherEdge.encode(channel, { pub: last })! : wire.cacheMiss(name));
      if (!last) this.webhooks?.emit(this.app.id, { name: 'cache_miss', channel: name });
    }
    sub.live = true;
    for (const frame of sub.buffered ?? []) this.sink.send(frame);
    sub.buffered = undefined;
    this.node.hub.activate(channel, this);
  }

  private async unsubscribe(name: string): Promise<void> {
    const sub = this.subs.get(name);
    if (!sub) return;
    this.subs.delete(name);
    // Still waiting for the broker: its subscribe finds it gone and adds nothing.
    if (sub.pending) return;
    await this.node.removeSubscriber(sub.channel, this);
    if (!sub.member) return;
    // The occupancy decider removes the member once the user's last connection is gone.
    await this.node.registry.removePresence(sub.channel, this.client);
    if (sub.joinLeave) await this.node.broker.publishLeave(sub.channel, sub.member);
  }

  private async clientEvent(event: string, name: string, data: unknown): Promise<void> {
    const sub = this.subs.get(name);
    const kind = wire.channelKind(name).kind;
    if (kind !== 'private' && kind !== 'presence')
      return this.rejectEvent(
        'client_event_not_allowed',
        'client events are only allowed on private and presence channels',
      );
    if (!sub?.live) return this.rejectEvent('client_event_not_allowed', `not subscribed to ${name}`);
    if (!this.takeEventToken()) {
      const { code, message } = wire.PusherErrors.clientEventRateLimit;
      return this.rejectEvent('client_event_rate', message, code);
    }
    const size = Buffer.byteLength(typeof data === 'string' ? data : JSON.stringify(data));
    if (size > this.app.max_message_size)
      return this.rejectEvent('too_large', `event data larger than ${this.app.max_message_size} bytes`);
    const resolved = this.node.resolve(sub.channel);
    if (isError(resolved)) return this.rejectEvent('bad_channel', resolved.message);
    const info: ClientInfo = { user: sub.member?.user ?? this.userId, client: this.client };
    const published = await publishEvent(this.node, this.app, resolved, event, data, {
      info,
      skipClient: this.client,
      source: 'client',
    });
    if (published) return void this.sink.send(wire.error(null, published.message));
    const hook: HookEvent = {
      name: 'client_event',
      channel: name,
      event,
      data: wire.eventData(data),
      socket_id: this.client,
    };
    if (wire.channelKind(name).kind === 'presence') hook.user_id = info.user;
    this.webhooks?.emit(this.app.id, hook);
  }

  private rejectEvent(reason: PusherRejection, message: string, code: number | null = null): void {
    this.count(reason);
    this.sink.send(wire.error(code, message));
  }

  private count(reason: PusherRejection): void {
    this.node.metrics.pusherRejections.inc({ app: this.app.id, reason });
  }

  /** `pusher:signin`: the user's identity, signed by the app's auth endpoint. */
  private signin(auth: string, userData: string): void {
    if (userData.length > MAX_USER_DATA) return this.rejectEvent('too_large', 'user_data too large');
    const user = wire.parseUserData(userData, this.node.frameLimits.maxDepth);
    if (!user.ok) return this.rejectEvent('bad_frame', user.reason);
    if (!verifyUserAuth(this.app.key, this.app.secret, this.client, userData, auth)) {
      this.count('auth');
      this.sink.send(wire.error(wire.PusherErrors.unauthorized.code, 'invalid signin signature'));
      this.disconnect(
        { code: wire.PusherErrors.unauthorized.code, reason: 'invalid signin signature' },
        'invalid_token',
      );
      return;
    }
    this.node.hub.remove(this);
    this.userId = user.value.id;
    this.user = `${this.app.id}:${user.value.id}`;
    this.node.hub.add(this);
    this.sink.send(wire.signinSuccess(userData));
  }

  private failed(err: unknown, channel: string): void {
    this.node.log.error({ err, client: this.client, channel }, 'pusher event failed');
    this.node.metrics.handlerErrors.inc({ where: 'pusher' });
    this.sink.send(wire.error(null, 'internal error'));
  }

  /** Every frame takes one of commands_per_second (burst of as many); a second's worth refused in a row closes. */
  private takeToken(): boolean {
    this.refill();
    if (this.frameTokens >= 1) {
      this.frameTokens--;
      this.overLimit = 0;
      return true;
    }
    if (++this.overLimit > this.node.config.commandsPerSecond)
      this.disconnect(Disconnects.tooManyRequests, 'rate_limit');
    return false;
  }

  private takeEventToken(): boolean {
    if (this.eventTokens < 1) return false;
    this.eventTokens--;
    return true;
  }

  /** Both buckets fill up once per whole second gone by. */
  private refill(): void {
    const now = monotonicMs();
    const seconds = Math.floor((now - this.refilledAt) / 1000);
    if (seconds < 1) return;
    this.refilledAt += seconds * 1000;
    this.frameTokens = Math.min(
      this.node.config.commandsPerSecond,
      this.frameTokens + seconds * this.node.config.commandsPerSecond,
    );
    this.eventTokens = Math.min(
      this.app.max_client_events_per_second,
      this.eventTokens + seconds * this.app.max_client_events_per_second,
    );
  }
}
