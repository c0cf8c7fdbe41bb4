/**
 * One client connection's protocol state machine: connect, then subscribe,
 * publish, presence, history, RPC, refresh; pings, limits and expiry. Talks
 * to its transport through a Sink and to everything else through the Node.
 * Commands of one connection run in arrival order.
 */

import { randomFillSync } from 'node:crypto';
import {
  type ClientInfo,
  type Command,
  type ConnectionClaims,
  type ConnectRequest,
  type ConnectResult,
  type Disconnect,
  Disconnects,
  Errors,
  FLAG_REJECT_UNRECOVERED,
  type FilterNode,
  type HistoryRequest,
  matchesTagsFilter,
  type ParsedLine,
  type ProtocolError,
  type PublishRequest,
  parseFrame,
  type RefreshRequest,
  type Reply,
  type RpcRequest,
  type SubscribeOptions,
  type StreamPosition,
  type SubRefreshRequest,
  type SubscribeRecovery,
  type SubscribeRequest,
  type SubscribeResult,
  USER_BOUNDARY,
  USER_SEPARATOR,
  Unsubscribes,
  userAllowed,
} from '@switchboard/protocol';
import type { TokenCheck } from './auth.js';
import { deltaPublications, type Edge, type Frame, type Sink } from './hub.js';
import type { Config, NamespaceOptions } from './config.js';
import { logConnection } from './log.js';
import { andThen, type MaybePromise } from './maybe-promise.js';
import {
  BROKER_UNAVAILABLE,
  type Connecting,
  type Connection,
  type Node,
  type ResolvedChannel,
  VERSION,
} from './node.js';
import type { CallContext, Outcome, SubscribeDecision } from './proxy.js';
import { Subscriptions } from './subscriptions.js';

type State = 'connecting' | 'connected' | 'closed';

interface Subscription {
  readonly channel: string;
  readonly ns: NamespaceOptions;
  live: boolean;
  /** Frames that arrived while subscribing, sent once the subscribe reply is out; none once live. */
  buffered: { frame: Frame; offset: number | undefined }[] | undefined;
  /** Offset the client has up to, once the reply is built; buffered frames at or below it are skipped. */
  sentOffset: number;
  chanInfo: unknown;
  /** Subscription token expiry in seconds since the epoch; 0 never. */
  expiresAt: number;
  /** Missed publications (an offset gap on this gateway) make it recover: recovery or positioning on. */
  readonly positioned: boolean;
  /** Made by the server (token `channels`, server API): recovering it takes a reconnect. */
  readonly serverSide: boolean;
}

/** How subscribeCore subscribes: what the client asked, what its token or the server grants. */
interface SubscribeCoreOptions {
  recovery?: SubscribeRecovery | undefined;
  chanInfo?: unknown;
  /** The owning service's decision: refusal, initial data for the client, channel info. */
  authorize?: () => Promise<Outcome<SubscribeDecision>>;
  expiresAt: number;
  rejectUnrecovered?: boolean;
  /** The client's tags filter (validated by the parser), for live publications and recovery alike. */
  filter?: FilterNode | undefined;
  /** Delta compression negotiated (never with a filter: the parser refuses both). */
  delta?: boolean;
  /** The client asked for positioning (`allow_positioning` grants it). */
  positioned?: boolean;
  serverSide?: boolean;
}

/** Whether an object has no own enumerable keys, without building the list of them. */
function isEmptyObject(value: object): boolean {
  for (const key in value) if (Object.hasOwn(value, key)) return false;
  return true;
}

const isError = (v: unknown): v is ProtocolError =>
  typeof v === 'object' && v !== null && 'code' in v && 'message' in v && !('name' in v);

const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * An expiry (0: none) already past: a token's `expire_at` can be, where its
 * `exp` is checked with the token. Error 110, as Centrifugo answers.
 */
const isPast = (expiresAt: number) => expiresAt > 0 && expiresAt < nowSeconds();

/**
 * Whole milliseconds since the process started. A session keeps its times in
 * these: small integers are stored in the object itself, where a Date.now()
 * (beyond 2^31) would be a 16-byte heap number per field per connection.
 */
export const monotonicMs = () => Math.floor(performance.now());

/** Random bytes for client ids, drawn a batch at a time. */
const idPool = Buffer.alloc(4608);
let idOffset = idPool.length;

/**
 * A client id: 72 random bits as 12 base64url characters, unique across the
 * cluster without coordination and a 32-byte string where a UUID takes 56.
 */
function newClientId(): string {
  if (idOffset + 9 > idPool.length) {
    randomFillSync(idPool);
    idOffset = 0;
  }
  idOffset += 9;
  return idPool.toString('base64url', idOffset - 9, idOffset);
}

/**
 * A Pusher app's `private-` and `presence-` channels are guarded by the
 * Pusher auth on that edge: here only a subscription token opens them,
 * whatever the namespace allows.
 */
const pusherGuarded = (config: Config, namespace: string, channel: string): boolean =>
  config.pusher.namespaces.has(namespace) && /^(private|presence)-/.test(channel.slice(namespace.length + 1));

/** A subscribe ended by a resync while it was being prepared: the client tries again at once. */
const SUBSCRIBE_INTERRUPTED: ProtocolError = { ...Errors.internal, message: 'subscription interrupted' };
/** A subscribe with a tags filter where the namespace has no `allow_tags_filter`: 107, as Centrifugo answers. */
const TAGS_FILTER_NOT_ALLOWED: ProtocolError = { ...Errors.badRequest, message: 'tags filter not allowed' };
/** How long a subscribe waits for a reconnecting broker: within centrifuge-js's 5 s command timeout. */
const BROKER_PATIENCE_MS = 3000;

/** A connection without a token, where anonymous ones are allowed. */
const ANONYMOUS: TokenCheck<ConnectionClaims> = { ok: true, value: { user: '', expiresAt: 0, channels: [] } };

const VERSION_JSON = JSON.stringify(VERSION);

/**
 * The usual JSON connect reply (no emulation session, no server-side
 * subscriptions) as JSON.stringify writes it, without its cost: a client id
 * is base64url, the version a constant, the rest numbers and booleans.
 */
function connectJson(id: number, r: ConnectResult): string {
  const expiry = r.expires ? `,"expires":true,"ttl":${r.ttl}` : '';
  return `{"id":${id},"connect":{"client":"${r.client}","version":${VERSION_JSON},"ping":${r.ping},"pong":${r.pong}${expiry}}}`;
}

/** What the older connections of a single-connection user get: 3504, they do not reconnect. */
const SINGLE_CONNECTION = Disconnects.connectionLimit;

/**
 * The user's personal channel when `user_subscribe_to_personal` is on:
 * `<namespace>:#<user>`. None for anonymous users, nor for a user id with a
 * `,` (it would name a channel of several users).
 */
function personalChannel(config: Config, user: string): string | undefined {
  const namespace = config.personalNamespace;
  if (namespace === undefined || user === '' || user.includes(USER_SEPARATOR)) return undefined;
  return `${namespace === '' ? '' : `${namespace}:`}${USER_BOUNDARY}${user}`;
}

/** A channel's namespace options with a token's per-connection `override` of presence, join/leave and recovery. */
function overridden(resolved: ResolvedChannel, options: SubscribeOptions): ResolvedChannel {
  const { presence, join_leave, recovery } = options;
  if (presence === undefined && join_leave === undefined && recovery === undefined) return resolved;
  const ns = { ...resolved.ns };
  if (presence !== undefined) ns.presence = presence;
  if (join_leave !== undefined) ns.join_leave = join_leave;
  // Recovery needs history: without it there is nothing to recover from.
  if (recovery !== undefined) ns.recovery = recovery && ns.history_size > 0;
  return { name: resolved.name, ns };
}

/** A command's empty result, answered by a frame written without JSON.stringify. */
const EMPTY: Record<string, never> = Object.freeze({});

/** A publish command's result: the error, or the empty result (the position is the server API's). */
const publishReply = (published: StreamPosition | undefined | ProtocolError): typeof EMPTY | ProtocolError =>
  isError(published) ? published : EMPTY;

/** The Centrifugo protocol's pushes: topics are the channel names, several pushes may share a frame. */
export const centrifugoEdge: Edge = {
  topicPrefix: '',
  coalesces: true,
  binary: false,
  transport: 'websocket',
  encode(channel, push) {
    if ('pub' in push) return JSON.stringify({ push: { channel, pub: push.pub } });
    if ('join' in push) return JSON.stringify({ push: { channel, join: { info: push.join } } });
    if ('leave' in push) return JSON.stringify({ push: { channel, leave: { info: push.leave } } });
    // Members (users across connections) are Pusher's: Centrifugo clients see each connection's join and leave.
    return undefined;
  },
};

export class Session implements Connection, Connecting {
  readonly client = newClientId();
  private readonly openedAt = monotonicMs();
  user = '';
  private state: State = 'connecting';
  private readonly subs = new Subscriptions<Subscription>();
  /** The last queued command while any is queued; commands run one after another. */
  private queue: Promise<void> | undefined;
  private queued = 0;
  /** Subscriptions with an expiry: the tick looks at subscriptions only when there are some. */
  private expiring = 0;
  private connInfo: unknown;
  private meta: Record<string, unknown> | undefined;
  private expiresAt = 0;
  /** Times in monotonicMs(). */
  private nextPingAt = 0;
  private pongDueAt = 0;
  /** Token bucket of commands_per_second, in whole tokens. */
  private tokens: number;
  private lastRefill = this.openedAt;
  private overLimit = 0;
  private closeReason: string | undefined;

  /** On the prototype, not in each connection's object. */
  get edge(): Edge {
    return centrifugoEdge;
  }

  constructor(
    readonly sink: Sink,
    protected readonly node: Node,
  ) {
    this.tokens = node.config.commandsPerSecond;
    node.connecting.add(this);
  }

  /** Called each second by the ticker until connected: the connect deadline (`connect_timeout`). */
  checkConnectDeadline(now: number): void {
    if (now - this.openedAt >= this.node.config.connectTimeout * 1000)
      this.disconnect(Disconnects.stale, 'stale');
  }

  /** The ping the tick sends: an empty push. */
  protected get pingFrame(): Frame {
    return '{}';
  }

  /** A reply or push as this session's frame; throws when it cannot be encoded. */
  protected encodeReply(reply: Reply): Frame {
    return JSON.stringify(reply);
  }

  /** A command's empty result (`{"id":1,"publish":{}}`), written without JSON.stringify. */
  protected emptyReply(id: number, method: string): Frame {
    return `{"id":${id},"${method}":{}}`;
  }

  // ---- transport → session

  handleFrame(frame: string): void {
    if (this.state === 'closed') return;
    this.handleLines(parseFrame(frame, this.node.frameLimits));
  }

  /** A frame's commands, parsed: run once the whole frame is read, a bad line anywhere refuses every command in it. */
  protected handleLines(lines: ParsedLine[]): void {
    if (this.state === 'closed') return;
    // One clock reading per frame: a frame's commands are charged as arriving together, however long they take.
    const now = monotonicMs();
    const commands: Command[] = [];
    for (const line of lines) {
      if (!line.ok && line.kind === 'bad_request') {
        this.node.log.debug({ client: this.client, detail: line.detail }, 'bad request');
        this.disconnect(Disconnects.badRequest, 'bad_request');
        return;
      }
      // Every line pays, known or not; a pong is never refused (that would drop an
      // honest client for no pong) but counts towards a sustained flood.
      const allowed = this.takeToken(now);
      if (this.isClosed() || this.closeReason !== undefined) return;
      if (line.ok && line.command.method === 'pong') {
        this.pongDueAt = 0;
        continue;
      }
      const id = line.ok ? line.command.id : line.id;
      if (!allowed) {
        if (id > 0) this.send({ id, error: Errors.tooManyRequests });
        continue;
      }
      if (!line.ok) {
        const error = line.kind === 'unknown_method' ? Errors.methodNotFound : line.error;
        this.node.metrics.commandErrors.inc({
          method: line.kind === 'unknown_method' ? 'unknown' : 'refused',
          code: String(error.code),
        });
        if (id > 0) this.send({ id, error });
        continue;
      }
      commands.push(line.command);
    }
    for (const command of commands) {
      // Nothing queued: the command starts now (its writes go out with this frame's); else after the last.
      this.queue = this.queued++ === 0 ? this.run(command) : this.queue!.then(() => this.run(command));
    }
  }

  /** A frame that is only `{}`, the client's pong, read by the transport without parsing: counted towards a flood, never refused. */
  pong(): void {
    if (this.state === 'closed') return;
    this.takeToken(monotonicMs());
    this.pongDueAt = 0;
  }

  /** The transport closed, whoever closed it; `reason` labels a close the transport understood. */
  closed(code: number, reason?: string): void {
    if (this.state === 'closed') return;
    const wasConnected = this.state === 'connected';
    this.state = 'closed';
    this.node.connecting.delete(this);
    this.node.hub.remove(this);
    const label =
      this.closeReason ??
      reason ??
      (code === 1000 || code === 1001 || code === 1005 ? 'client_close' : 'connection_lost');
    this.node.metrics.disconnects.inc({ transport: this.sink.transport, reason: label, code: String(code) });
    logConnection(this.node.log, this.node.config.logConnectionSample, 'disconnected', {
      client: this.client,
      user: this.user,
      reason: label,
      code,
    });
    if (label === 'slow')
      this.node.metrics.slowConsumerDrops.inc({
        transport: this.sink.transport,
        limit: this.closeReason ? 'soft' : 'hard',
      });
    this.node.metrics.lifespan.observe(
      { transport: this.sink.transport, reason: label },
      (monotonicMs() - this.openedAt) / 1000,
    );
    if (!wasConnected) return;
    for (const { channel } of this.subs.list()) {
      this.unsubscribeCore(channel).catch((err) =>
        this.node.log.warn({ err, channel }, 'cleanup after close failed'),
      );
    }
  }

  /** Closes the connection with a protocol disconnect code; `reason` labels the metric. */
  disconnect(disconnect: Disconnect, reason: string): void {
    if (this.state === 'closed' || this.closeReason !== undefined) return;
    this.closeReason = reason;
    this.sink.close(disconnect.code, disconnect.reason);
  }

  /** An async message push (no channel). */
  message(data: unknown): void {
    this.send({ push: { message: { data } } });
  }

  buffer(channel: string, frame: Frame, offset: number | undefined): void {
    const sub = this.subs.get(channel);
    if (sub && !sub.live) (sub.buffered ??= []).push({ frame, offset });
  }

  /**
   * Called every second (`now` in monotonicMs(), `epochSeconds` the wall
   * clock): pings, pong deadline, token expiry, slow consumers. Returns the
   * bytes queued. Allocates nothing for a connection with nothing to do.
   */
  tick(now: number, epochSeconds: number): number {
    if (this.state !== 'connected') return 0;
    const { config } = this.node;
    const buffered = this.sink.bufferedAmount();
    const drop =
      this.pongDueAt > 0 && now > this.pongDueAt
        ? Disconnects.noPong
        : this.expiresAt > 0 && epochSeconds >= this.expiresAt + config.expiredCloseDelay
          ? Disconnects.expired
          : buffered > config.maxBackpressure
            ? Disconnects.slow
            : undefined;
    if (drop) {
      this.disconnect(
        drop,
        drop === Disconnects.noPong ? 'no_pong' : drop === Disconnects.expired ? 'expired' : 'slow',
      );
      return 0;
    }
    if (now >= this.nextPingAt && this.pongDueAt === 0) {
      this.sink.send(this.pingFrame);
      if (!this.sink.unidirectional) this.pongDueAt = now + config.pongTimeout * 1000;
      this.nextPingAt = now + config.pingInterval * 1000;
    }
    if (this.expiring > 0) {
      for (const sub of this.subs.list()) {
        if (sub.expiresAt > 0 && epochSeconds >= sub.expiresAt + config.expiredCloseDelay)
          this.serverUnsubscribe(sub.channel, Unsubscribes.expired).catch((err) =>
            this.node.log.warn({ err, channel: sub.channel }, 'ending an expired subscription failed'),
          );
      }
    }
    return buffered;
  }

  // ---- server-side actions (server API)

  async serverSubscribe(channel: string, chanInfo?: unknown): Promise<ProtocolError | undefined> {
    if (this.state !== 'connected') return Errors.notAvailable;
    const resolved = this.node.resolve(channel);
    if (isError(resolved)) return resolved;
    if (this.subs.has(channel)) return Errors.alreadySubscribed;
    const result = await this.subscribeCore(resolved, { chanInfo, expiresAt: 0, serverSide: true });
    if (isError(result)) return result;
    return this.deliverSubscribed(channel, this.encode({ push: { channel, subscribe: result } }));
  }

  serverRefresh(expiresAt: number): void {
    if (this.state === 'connected') this.expiresAt = expiresAt;
  }

  async serverUnsubscribe(channel: string, code: Disconnect = Unsubscribes.serverUnsubscribe): Promise<void> {
    const sub = this.subs.get(channel);
    if (!sub) return;
    // One still subscribing hears of it as a temporary error of its subscribe (SUBSCRIBE_INTERRUPTED).
    // A live one gets what the channel published before the unsubscribe push, not after it.
    if (sub.live) {
      this.node.hub.flush(channel);
      this.send({ push: { channel, unsubscribe: code } });
    }
    await this.unsubscribeCore(channel);
  }

  async insufficientState(channel: string): Promise<void> {
    const sub = this.subs.get(channel);
    if (!sub?.positioned) return;
    // The client recovers a server-side subscription only by reconnecting (Centrifugo's 3010).
    if (sub.serverSide) return this.disconnect(Disconnects.insufficientState, 'insufficient_state');
    await this.serverUnsubscribe(channel, Unsubscribes.insufficientState);
  }

  // ---- commands

  /**
   * Runs one command and answers it. Synchronous (returns undefined) when the
   * command is (a publish to a channel without history); a promise otherwise.
   */
  private run(command: Command): Promise<void> | undefined {
    if (this.state === 'closed' || command.method === 'pong') return this.done();
    if (this.state === 'connecting' && command.method !== 'connect') {
      this.disconnect(Disconnects.badRequest, 'bad_request');
      return this.done();
    }
    const started = performance.now();
    try {
      const result = this.dispatch(command);
      if (result instanceof Promise) return this.settle(command, result, started);
      this.answer(command, result);
    } catch (err) {
      this.failed(command, err);
    }
    return this.done(command, started);
  }

  private async settle(command: Command, result: Promise<unknown>, started: number): Promise<void> {
    try {
      this.answer(command, await result);
    } catch (err) {
      this.failed(command, err);
    } finally {
      this.done(command, started);
    }
  }

  private answer(command: Command, result: unknown): void {
    if (command.id === 0 || this.isClosed() || result === undefined) return;
    if (isError(result)) {
      this.node.metrics.commandErrors.inc({ method: command.method, code: String(result.code) });
      this.send({ id: command.id, error: result });
    } else if (result === EMPTY) {
      this.sendFrame(this.emptyReply(command.id, command.method));
    } else {
      this.send({ id: command.id, [command.method]: result } as Reply);
    }
  }

  private failed(command: Command, err: unknown): void {
    this.node.log.error({ err, method: command.method, client: this.client }, 'command failed');
    this.node.metrics.commandErrors.inc({ method: command.method, code: String(Errors.internal.code) });
    if (command.id > 0) this.send({ id: command.id, error: Errors.internal });
  }

  /** A command done (timed when `started` is given); the last queued one done, an idle session keeps no settled promise. */
  private done(command?: Command, started?: number): undefined {
    if (--this.queued === 0) this.queue = undefined;
    if (command && started !== undefined)
      this.node.metrics.commandDuration.observe(
        { method: command.method },
        (performance.now() - started) / 1000,
      );
    return undefined;
  }

  private dispatch(command: Exclude<Command, { method: 'pong' }>): Promise<unknown> | unknown {
    switch (command.method) {
      case 'connect':
        return this.connect(command.id, command.body);
      case 'subscribe':
        return this.subscribe(command.id, command.body);
      case 'unsubscribe':
        return this.unsubscribeCore(command.body.channel).then(() => EMPTY);
      case 'publish':
        return this.publish(command.body);
      case 'presence':
        return this.presence(command.body.channel, false);
      case 'presence_stats':
        return this.presence(command.body.channel, true);
      case 'history':
        return this.history(command.body);
      case 'rpc':
        return this.rpc(command.body);
      case 'send':
        this.node.handler.message(this.context(), command.body.data);
        return undefined;
      case 'refresh':
        return this.refresh(command.body);
      case 'sub_refresh':
        return this.subRefresh(command.body);
    }
  }

  /**
   * Sends its own reply (then activates server-side subscriptions); returns
   * only errors. Synchronous when nothing is waited for: an HS256 token (or
   * none) and no server-side subscriptions.
   */
  private connect(id: number, req: ConnectRequest): MaybePromise<ProtocolError | undefined> {
    if (this.state !== 'connecting') {
      // A second connect must never swap the identity of a live connection.
      this.disconnect(Disconnects.badRequest, 'bad_request');
      return undefined;
    }
    if (req.token)
      return andThen(this.node.tokens.connection(req.token), (check) => this.admit(id, req, check));
    if (this.node.config.allowAnonymous) return this.admit(id, req, ANONYMOUS);
    this.rejectConnect('unauthorized');
    return Errors.unauthorized;
  }

  private rejectConnect(reason: string): void {
    this.node.metrics.connects.inc({ transport: this.sink.transport, outcome: 'rejected', reason });
  }

  /** The connection's identity from its checked token (or none), then the limits, then the reply. */
  private admit(
    id: number,
    req: ConnectRequest,
    check: TokenCheck<ConnectionClaims>,
  ): MaybePromise<ProtocolError | undefined> {
    const { config, hub, metrics, log } = this.node;
    if (!check.ok) {
      this.rejectConnect(check.expired ? 'token_expired' : 'invalid_token');
      if (check.expired) return Errors.tokenExpired;
      log.debug({ reason: check.reason }, 'connection token refused');
      this.disconnect(Disconnects.invalidToken, 'invalid_token');
      return undefined;
    }
    const claims = check.value;
    if (isPast(claims.expiresAt)) {
      this.rejectConnect('expired');
      return Errors.expired;
    }
    if (this.isClosed()) return undefined;
    this.user = claims.user;
    this.connInfo = claims.info;
    this.meta = claims.meta;
    this.expiresAt = claims.expiresAt;
    const personal = personalChannel(config, this.user);
    const channels =
      personal === undefined || claims.channels.includes(personal)
        ? claims.channels
        : [...claims.channels, personal];
    if (this.node.draining) {
      this.rejectConnect('shutdown');
      this.disconnect(Disconnects.shutdown, 'shutdown');
      return undefined;
    }
    if (
      config.maxConnectionsPerUser > 0 &&
      hub.userConnectionCount(this.user) >= config.maxConnectionsPerUser
    ) {
      this.rejectConnect('user_limit');
      this.disconnect(Disconnects.connectionLimit, 'limit');
      return undefined;
    }
    this.node.connecting.delete(this);
    this.state = 'connected';
    hub.add(this);
    metrics.connects.inc({ transport: this.sink.transport, outcome: 'accepted', reason: 'ok' });
    logConnection(log, config.logConnectionSample, 'connected', {
      client: this.client,
      user: this.user,
      transport: this.sink.transport,
    });
    this.nextPingAt = monotonicMs() + config.pingInterval * 1000;

    const result: ConnectResult = {
      client: this.client,
      version: VERSION,
      ping: config.pingInterval,
      pong: !this.sink.unidirectional,
    };
    if (this.expiresAt > 0)
      Object.assign(result, { expires: true, ttl: Math.max(1, this.expiresAt - nowSeconds()) });
    // HTTP-based transports: where the client's `/emulation` requests must go.
    if (this.sink.emulationSession)
      Object.assign(result, { session: this.sink.emulationSession, node: config.nodeId });
    if (channels.length === 0) return this.connected(id, result, []);
    return this.subscribeServerSide(channels, req, claims).then((subs) => {
      if (subs.length > 0) result.subs = Object.fromEntries(subs);
      return this.connected(id, result, subs);
    });
  }

  /** The token's channels (and the personal one), subscribed before the connect reply goes out. */
  private async subscribeServerSide(
    channels: readonly string[],
    req: ConnectRequest,
    claims: ConnectionClaims,
  ): Promise<[string, SubscribeResult][]> {
    const { config, log } = this.node;
    const subs: [string, SubscribeResult][] = [];
    for (const channel of channels) {
      const resolved = this.node.resolve(channel);
      if (isError(resolved) || this.subs.has(channel) || this.subs.size >= config.maxChannelsPerConnection) {
        log.warn(
          { client: this.client, channel: channel.slice(0, 64) },
          'server-side subscription from token skipped',
        );
        continue;
      }
      const recovery = req.subs && Object.hasOwn(req.subs, channel) ? req.subs[channel] : undefined;
      const options = claims.subs?.get(channel);
      const sub = await this.subscribeCore(options ? overridden(resolved, options) : resolved, {
        recovery,
        chanInfo: options?.info,
        expiresAt: 0,
        serverSide: true,
      });
      if (isError(sub)) continue;
      if (options?.data !== undefined) sub.data = options.data;
      subs.push([channel, sub]);
    }
    return subs;
  }

  /** The connect reply, then what arrived for the server-side subscriptions meanwhile. */
  private connected(
    id: number,
    result: ConnectResult,
    subs: readonly [string, SubscribeResult][],
  ): ProtocolError | undefined {
    const { config, metrics, log } = this.node;
    if (this.state !== 'connected') return undefined;
    const frame =
      this.edge.binary || result.session !== undefined || result.subs !== undefined
        ? this.encode({ id, connect: result })
        : connectJson(id, result);
    if (frame === undefined) {
      this.disconnect(Disconnects.serverError, 'internal');
      return undefined;
    }
    this.sendFrame(frame);
    metrics.connectDuration.observe(
      { transport: this.sink.transport },
      (monotonicMs() - this.openedAt) / 1000,
    );
    for (const [channel] of subs) this.activate(channel);
    // Every gateway ends the user's other connections, this one spared.
    if (config.singleConnection && this.user !== '')
      this.node.broker
        .publishControl({ op: 'disconnect', user: this.user, whitelist: [this.client], ...SINGLE_CONNECTION })
        .catch((err) => log.warn({ err, client: this.client }, 'single connection disconnect failed'));
    return undefined;
  }

  /**
   * Sends its own reply, then the traffic buffered meanwhile; returns only
   * errors. Synchronous when nothing is waited for (no service to ask, no
   * history or presence to read or write, a ready broker already subscribed
   * to the channel).
   */
  private subscribe(id: number, req: SubscribeRequest): MaybePromise<ProtocolError | undefined> {
    const { config, tokens } = this.node;
    const resolved = this.node.resolve(req.channel);
    if (isError(resolved)) return resolved;
    const { name, ns } = resolved;
    if (req.tf !== undefined && !ns.allow_tags_filter) return TAGS_FILTER_NOT_ALLOWED;
    if (this.subs.has(req.channel)) return Errors.alreadySubscribed;
    if (this.subs.size >= config.maxChannelsPerConnection) return Errors.limitExceeded;
    if (req.token)
      return andThen(tokens.subscription(req.token), (check) => {
        if (!check.ok) return check.expired ? Errors.tokenExpired : Errors.permissionDenied;
        if (check.value.channel !== req.channel || check.value.user !== this.user)
          return Errors.permissionDenied;
        if (isPast(check.value.expiresAt)) return Errors.expired;
        // What a subscription token grants beyond the subscription: info, data, overrides.
        return this.subscribeGranted(id, req, resolved, check.value, check.value.expiresAt);
      });
    if (!userAllowed(name, this.user) || pusherGuarded(config, ns.name, req.channel))
      return Errors.permissionDenied;
    if (ns.service)
      // Asked once live traffic is buffered (see prepareSubscription): nothing the
      // service publishes while it answers falls between its data and the stream.
      return this.subscribeGranted(id, req, resolved, {}, 0, () =>
        this.node.handler.subscribe(this.context(), ns.name, req.channel, req.data),
      );
    if (
      name.users === undefined &&
      !(this.user === '' ? ns.allow_subscribe_for_anonymous : ns.allow_subscribe_for_client)
    )
      return Errors.permissionDenied;
    return this.subscribeGranted(id, req, resolved, {}, 0);
  }

  private subscribeGranted(
    id: number,
    req: SubscribeRequest,
    resolved: ResolvedChannel,
    granted: SubscribeOptions,
    expiresAt: number,
    authorize?: () => Promise<Outcome<SubscribeDecision>>,
  ): MaybePromise<ProtocolError | undefined> {
    // Asked again: a token check may have been waited for.
    if (this.subs.has(req.channel)) return Errors.alreadySubscribed;
    const { ns } = resolved;
    const subscribed = this.subscribeCore(overridden(resolved, granted), {
      recovery: req,
      chanInfo: granted.info,
      ...(authorize ? { authorize } : {}),
      expiresAt,
      rejectUnrecovered: ((req.flag ?? 0) & FLAG_REJECT_UNRECOVERED) !== 0,
      filter: req.tf,
      positioned: req.positioned === true,
      // A type the namespace does not allow is not negotiated (full publications), as in Centrifugo.
      delta: req.delta !== undefined && ns.allowed_delta_types.includes(req.delta),
    });
    return andThen(subscribed, (result) => {
      if (isError(result)) return result;
      if (granted.data !== undefined) result.data = granted.data;
      const frame = isEmptyObject(result)
        ? this.emptyReply(id, 'subscribe')
        : this.encode({ id, subscribe: result });
      return this.deliverSubscribed(req.channel, frame);
    });
  }

  /**
   * Sends a subscribe reply or push and goes live; a reply that could not be
   * encoded (`frame` undefined) undoes the subscription (no half state: no hub
   * entry, no presence), and the client gets error 100.
   */
  private deliverSubscribed(
    channel: string,
    frame: Frame | undefined,
  ): MaybePromise<ProtocolError | undefined> {
    if (frame === undefined) return this.unsubscribeCore(channel).then(() => Errors.internal);
    this.sendFrame(frame);
    this.activate(channel);
    return undefined;
  }

  /**
   * Registers the subscription (buffering live traffic), reads the stream
   * position or recovers, adds presence and announces the join. The caller
   * sends the result and then calls activate().
   */
  private subscribeCore(
    resolved: ResolvedChannel,
    options: SubscribeCoreOptions,
  ): MaybePromise<SubscribeResult | ProtocolError> {
    // A broker reconnecting (a lost NATS server) is waited out briefly rather than refused at once.
    if (!this.node.broker.ready)
      return this.node.broker
        .whenReady(BROKER_PATIENCE_MS)
        .then((ready) => (ready ? this.startSubscription(resolved, options) : BROKER_UNAVAILABLE));
    return this.startSubscription(resolved, options);
  }

  private startSubscription(
    resolved: ResolvedChannel,
    options: SubscribeCoreOptions,
  ): MaybePromise<SubscribeResult | ProtocolError> {
    const sub: Subscription = {
      channel: resolved.name.channel,
      ns: resolved.ns,
      live: false,
      buffered: undefined,
      sentOffset: 0,
      chanInfo: options.chanInfo,
      expiresAt: 0,
      positioned:
        resolved.ns.recovery ||
        resolved.ns.force_positioning ||
        (resolved.ns.allow_positioning && options.positioned === true),
      serverSide: options.serverSide === true,
    };
    this.subs.set(sub);
    this.setExpiry(sub, options.expiresAt);
    try {
      const prepared = this.prepareSubscription(sub, options);
      return prepared instanceof Promise ? prepared.catch((err: unknown) => this.undo(sub, err)) : prepared;
    } catch (err) {
      return this.undo(sub, err);
    }
  }

  /** A subscription that failed half way: leave nothing behind (no hub entry, no presence), then fail. */
  private async undo(sub: Subscription, err: unknown): Promise<never> {
    if (this.subs.get(sub.channel) === sub) await this.unsubscribeCore(sub.channel, false);
    throw err;
  }

  private prepareSubscription(
    sub: Subscription,
    options: SubscribeCoreOptions,
  ): MaybePromise<SubscribeResult | ProtocolError> {
    const { ns, channel } = sub;
    const { filter } = options;
    // Before the hub registers the subscriber, so that nothing unfiltered reaches its buffer.
    if (filter) this.node.hub.filterSubscriber(channel, this, filter);
    if (options.delta) this.node.hub.deltaSubscriber(channel, this);
    // The broker is asked only for a channel's first local subscriber: no wait for the others.
    const adding = this.node.addSubscriber(channel, this);
    const result: SubscribeResult = options.delta ? { delta: true } : {};
    if (adding || options.authorize || ns.history_size > 0 || ns.presence)
      return this.prepareFurther(sub, options, adding, result);
    return this.prepared(sub, result);
  }

  /** What a subscription waits for: the broker's subscription, the service's decision, the stream, presence. */
  private async prepareFurther(
    sub: Subscription,
    options: SubscribeCoreOptions,
    adding: Promise<void> | undefined,
    result: SubscribeResult,
  ): Promise<SubscribeResult | ProtocolError> {
    const { ns, channel } = sub;
    const { broker, registry } = this.node;
    const { filter } = options;
    if (adding) await adding;
    if (options.authorize) {
      const decision = await options.authorize();
      if (!decision.ok) {
        await this.unsubscribeCore(channel, false);
        return decision.error;
      }
      if (decision.value.info !== undefined) sub.chanInfo = decision.value.info;
      if (decision.value.data !== undefined) result.data = decision.value.data;
    }
    if (ns.history_size > 0) {
      let position: StreamPosition;
      const since = options.recovery;
      if (ns.recovery && since?.recover) {
        const from = { offset: since.offset ?? 0, epoch: since.epoch ?? '' };
        // Cache mode: the latest publication only, already filtered (and never refused as unrecovered, as in Centrifugo).
        const cache = ns.force_recovery_mode === 'cache';
        const recovered = cache
          ? await this.node.recoverLatest(channel, from, filter)
          : await this.node.recover(channel, from);
        if (!recovered.recovered && options.rejectUnrecovered && !cache) {
          await this.unsubscribeCore(channel, false);
          return Errors.unrecoverablePosition;
        }
        Object.assign(result, {
          was_recovering: true,
          recovered: recovered.recovered,
          // The position still covers the publications the filter holds back: they are not missed.
          publications: filter
            ? recovered.publications.filter((pub) => matchesTagsFilter(filter, pub.tags))
            : recovered.publications,
        });
        position = recovered.position;
      } else {
        position = await this.node.position(channel);
      }
      Object.assign(result, {
        recoverable: ns.recovery,
        positioned: sub.positioned,
        epoch: position.epoch,
        offset: position.offset,
      });
      sub.sentOffset = position.offset;
      this.node.noteSubscribed(channel, position);
    }
    const prepared = this.prepared(sub, result);
    if (isError(prepared)) return prepared;
    if (ns.presence) {
      const info = this.clientInfo(sub.chanInfo);
      await registry.addPresence(channel, info);
      if (ns.join_leave) await broker.publishJoin(channel, info);
    }
    if (options.delta && result.publications)
      result.publications = deltaPublications(result.publications, this.edge.binary);
    return result;
  }

  /** The result once nothing more is waited for, or why the subscription ended meanwhile. */
  private prepared(sub: Subscription, result: SubscribeResult): SubscribeResult | ProtocolError {
    // Closed or unsubscribed meanwhile: the cleanup already ran, add no presence after it. A
    // resync (the broker reconnected) ended it: the client subscribes again, so it is temporary.
    if (this.isClosed()) return Errors.notAvailable;
    if (this.subs.get(sub.channel) !== sub) return SUBSCRIBE_INTERRUPTED;
    if (sub.expiresAt > 0)
      Object.assign(result, { expires: true, ttl: Math.max(1, sub.expiresAt - nowSeconds()) });
    return result;
  }

  /** Subscribing → live: flush what arrived meanwhile (beyond what the reply carried), then join the topic. */
  private activate(channel: string): void {
    const sub = this.subs.get(channel);
    if (!sub || sub.live) return;
    sub.live = true;
    // A delta subscriber's base: the last publication it got in full while subscribing (joins have no offset).
    let deltaBase: number | undefined;
    for (const { frame, offset } of sub.buffered ?? []) {
      if (offset !== undefined && offset <= sub.sentOffset) continue;
      this.sink.send(frame);
      if (offset !== undefined) deltaBase = offset;
    }
    sub.buffered = undefined;
    this.node.hub.activate(channel, this, deltaBase);
  }

  private async unsubscribeCore(channel: string, announce = true): Promise<void> {
    const sub = this.subs.get(channel);
    if (!sub) return;
    this.subs.delete(channel);
    this.setExpiry(sub, 0);
    await this.node.removeSubscriber(channel, this);
    if (!sub.ns.presence) return;
    await this.node.registry.removePresence(channel, this.client);
    if (announce && sub.ns.join_leave)
      await this.node.broker.publishLeave(channel, this.clientInfo(sub.chanInfo));
  }

  private publish(req: PublishRequest): MaybePromise<typeof EMPTY | ProtocolError> {
    const resolved = this.node.resolve(req.channel);
    if (isError(resolved)) return resolved;
    const { name, ns } = resolved;
    const sub = this.subs.get(req.channel);
    if (!userAllowed(name, this.user)) return Errors.permissionDenied;
    if (ns.service) return this.publishThroughService(resolved, req, sub);
    if (!ns.allow_publish_for_client && !(ns.allow_publish_for_subscriber && sub))
      return Errors.permissionDenied;
    return this.publishAs(resolved, req.data, ns.skip_sender, sub);
  }

  /** The namespace's service decides first: a refusal, or other data to publish. */
  private async publishThroughService(
    resolved: ResolvedChannel,
    req: PublishRequest,
    sub: Subscription | undefined,
  ): Promise<typeof EMPTY | ProtocolError> {
    const decision = await this.node.handler.publish(this.context(), resolved.ns.name, req.channel, req.data);
    if (!decision.ok) return decision.error;
    const { data, skip_sender } = decision.value;
    return this.publishAs(
      resolved,
      data !== undefined ? data : req.data,
      resolved.ns.skip_sender || skip_sender === true,
      sub,
    );
  }

  private publishAs(
    resolved: ResolvedChannel,
    data: unknown,
    skipSender: boolean,
    sub: Subscription | undefined,
  ): MaybePromise<typeof EMPTY | ProtocolError> {
    const published = this.node.publish(resolved, data, {
      info: this.clientInfo(sub?.chanInfo),
      source: 'client',
      skipClient: skipSender ? this.client : undefined,
    });
    return andThen(published, publishReply);
  }

  private async presence(channel: string, stats: boolean): Promise<unknown> {
    const resolved = this.node.resolve(channel);
    if (isError(resolved)) return resolved;
    if (!resolved.ns.presence) return Errors.notAvailable;
    if (!(resolved.ns.allow_presence_for_subscriber && this.subs.has(channel)))
      return Errors.permissionDenied;
    if (!stats) return { presence: await this.node.registry.presence(channel) };
    const s = await this.node.registry.presenceStats(channel);
    return { num_clients: s.numClients, num_users: s.numUsers };
  }

  private async history(req: HistoryRequest): Promise<unknown> {
    const resolved = this.node.resolve(req.channel);
    if (isError(resolved)) return resolved;
    if (resolved.ns.history_size === 0) return Errors.notAvailable;
    if (!(resolved.ns.allow_history_for_subscriber && this.subs.has(req.channel)))
      return Errors.permissionDenied;
    const page = await this.node.broker.history(req.channel, {
      limit: Math.min(req.limit ?? 0, this.node.config.historyMaxPublications),
      ...(req.since ? { since: req.since } : {}),
      ...(req.reverse ? { reverse: true } : {}),
    });
    return { publications: page.publications, offset: page.position.offset, epoch: page.position.epoch };
  }

  private async rpc(req: RpcRequest): Promise<unknown> {
    const outcome = await this.node.handler.rpc(this.context(), req.method ?? '', req.data);
    if (!outcome.ok) return outcome.error;
    return outcome.value === undefined ? EMPTY : { data: outcome.value };
  }

  private async refresh(req: RefreshRequest): Promise<unknown> {
    const check = await this.node.tokens.connection(req.token);
    if (!check.ok && check.expired) return Errors.tokenExpired;
    if (!check.ok || check.value.user !== this.user) {
      this.disconnect(Disconnects.invalidToken, 'invalid_token');
      return undefined;
    }
    if (isPast(check.value.expiresAt)) return Errors.expired;
    this.expiresAt = check.value.expiresAt;
    const result = { client: this.client, version: VERSION, expires: this.expiresAt > 0 };
    return this.expiresAt > 0 ? { ...result, ttl: Math.max(1, this.expiresAt - nowSeconds()) } : result;
  }

  private async subRefresh(req: SubRefreshRequest): Promise<unknown> {
    const sub = this.subs.get(req.channel);
    if (!sub) return Errors.permissionDenied;
    const check = await this.node.tokens.subscription(req.token);
    if (!check.ok) return check.expired ? Errors.tokenExpired : Errors.permissionDenied;
    if (check.value.channel !== req.channel || check.value.user !== this.user) return Errors.permissionDenied;
    if (isPast(check.value.expiresAt)) return Errors.expired;
    this.setExpiry(sub, check.value.expiresAt);
    return sub.expiresAt > 0 ? { expires: true, ttl: Math.max(1, sub.expiresAt - nowSeconds()) } : {};
  }

  // ---- helpers

  /** A subscription's token expiry (0: none), counted in `expiring` for the tick. */
  private setExpiry(sub: Subscription, expiresAt: number): void {
    this.expiring += (expiresAt > 0 ? 1 : 0) - (sub.expiresAt > 0 ? 1 : 0);
    sub.expiresAt = expiresAt;
  }

  /** State read after an await, where TypeScript's narrowing no longer holds. */
  private isClosed(): boolean {
    return this.state === 'closed';
  }

  private clientInfo(chanInfo?: unknown): ClientInfo {
    const info: ClientInfo = { user: this.user, client: this.client };
    if (this.connInfo !== undefined) info.conn_info = this.connInfo;
    if (chanInfo !== undefined) info.chan_info = chanInfo;
    return info;
  }

  private context(): CallContext {
    const ctx: CallContext = { client: this.client, user: this.user };
    if (this.connInfo !== undefined) ctx.info = this.connInfo;
    if (this.meta !== undefined) ctx.meta = this.meta;
    return ctx;
  }

  /**
   * Encodes a reply or push; undefined when it cannot be (data the edge
   * bounds never gets there, so this is a bug or a hostile peer: logged, counted).
   */
  private encode(reply: Reply): Frame | undefined {
    try {
      return this.encodeReply(reply);
    } catch (err) {
      this.node.log.error({ err, client: this.client }, 'reply cannot be encoded');
      this.node.metrics.handlerErrors.inc({ where: 'session' });
      return undefined;
    }
  }

  private sendFrame(frame: Frame): void {
    if (this.state === 'closed') return;
    if (!this.sink.send(frame)) this.disconnect(Disconnects.slow, 'slow');
  }

  /** Sends a reply or push; one that cannot be encoded becomes error 100 for a reply with an id. */
  private send(reply: Reply): void {
    const frame = this.encode(reply);
    if (frame !== undefined) this.sendFrame(frame);
    else if ((reply.id ?? 0) > 0) this.sendFrame(this.encodeReply({ id: reply.id, error: Errors.internal }));
  }

  /**
   * Token bucket of commands_per_second in whole tokens (small integers, kept
   * in the object): the refill moves `lastRefill` by the time the tokens
   * earned stand for, so that no fraction is lost between commands.
   * Sustained excess (a second's worth refused) disconnects.
   */
  private takeToken(now: number): boolean {
    const rate = this.node.config.commandsPerSecond;
    if (this.tokens < rate) {
      const earned = Math.floor(((now - this.lastRefill) * rate) / 1000);
      if (this.tokens + earned >= rate) {
        this.tokens = rate;
        this.lastRefill = now;
      } else if (earned > 0) {
        this.tokens += earned;
        this.lastRefill += Math.floor((earned * 1000) / rate);
      }
    }
    if (this.tokens >= 1) {
      this.tokens -= 1;
      this.overLimit = 0;
      return true;
    }
    if (++this.overLimit > rate) this.disconnect(Disconnects.tooManyRequests, 'rate_limit');
    return false;
  }
}

/** Runs every session's tick once a second (and closes the stale of those still connecting), and reports send backlogs. */
export function startSessionTicker(node: Node): NodeJS.Timeout {
  return setInterval(() => {
    const now = monotonicMs();
    for (const connecting of node.connecting) connecting.checkConnectDeadline(now);
    const epochSeconds = Date.now() / 1000;
    let bytes = 0;
    let backlogged = 0;
    for (const session of node.hub.all()) {
      const buffered = session.tick(now, epochSeconds);
      bytes += buffered;
      if (buffered > 0) backlogged++;
    }
    node.metrics.sendBufferBytes.set(bytes);
    node.metrics.backloggedConnections.set(backlogged);
  }, 1000).unref();
}
