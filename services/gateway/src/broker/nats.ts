/**
 * Broker for a cluster of gateways over NATS (see the NATS map in
 * @switchboard/protocol's subject.ts and README):
 * - live traffic: core subject per channel, subscribed while the gateway has
 *   local subscribers;
 * - history: JetStream stream per namespace with per-channel size and age
 *   limits. A publication is appended with the channel's next offset under
 *   optimistic concurrency (expected last subject sequence), so offsets
 *   strictly increase per channel even with publishers on many gateways; the
 *   stream republishes what it stored, in order, to the live subject;
 * - control: one subject every gateway listens to.
 */

import { createHash, randomUUID } from 'node:crypto';
import {
  type ClientInfo,
  namespaceOf,
  parseJsonBytes,
  type Publication,
  type StreamPosition,
  Subjects,
} from '@switchboard/protocol';
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  type JetStreamClient,
  JetStreamApiError,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import {
  connect,
  errors,
  type NatsConnection,
  type NodeConnectionOptions,
  nanos,
  type Subscription,
} from '@nats-io/transport-node';
import { credentialOptions, patiently } from '@switchboard/sdk';
import type { NamespaceOptions, NatsSettings } from '../config.js';
import {
  type HistoryPage,
  type HistoryQuery,
  newEpoch,
  outdated,
  page,
  type PublicationVersion,
  type Recovery,
  recover,
} from '../history.js';
import { IDEMPOTENT_RESULT_TTL_MS } from '../idempotency.js';
import type { Logger } from '../log.js';
import type { MaybePromise } from '../maybe-promise.js';
import { counted, type JetStreamOperation, type Metrics } from '../metrics.js';
import {
  type Broker,
  type BrokerEvents,
  type ChannelCounts,
  type ControlMessage,
  HistoryUnavailable,
  type MemberEvent,
  type PublishOptions,
} from './broker.js';
import {
  addChannelCounts,
  channelCounts,
  type PubEnvelope,
  readControl,
  readEnvelope,
  readStored,
  readSurvey,
} from './envelope.js';

type Stored = Publication & { offset: number };

/** A channel's last stored publication: its stream sequence, position and application version. */
interface Top {
  seq: number;
  offset: number;
  epoch: string;
  version: PublicationVersion;
}

const NO_VERSION: PublicationVersion = { version: 0, epoch: '' };

const topOf = (seq: number, envelope: PubEnvelope): Top => ({
  seq,
  offset: envelope.pub.offset ?? 0,
  epoch: envelope.pub.epoch ?? '',
  version: envelope.ver === undefined ? NO_VERSION : { version: envelope.ver, epoch: envelope.vep ?? '' },
});

/** JetStream's error code for a failed `expect` on the last subject sequence. */
const WRONG_LAST_SEQUENCE = 10071;
/** How often the replicas of the history streams are looked at. */
const REPLICA_CHECK_MS = 10_000;
/** How long one append attempt waits for its acknowledgement before it is tried again. */
const ATTEMPT_TIMEOUT_MS = 2000;
/** How often the gateway checks that its writes reach a JetStream quorum. */
const QUORUM_CHECK_MS = 1000;
/**
 * A clustered server through which no write was stored for this long is cut
 * off from its cluster: move to another. Longer than a leader election on the
 * majority side (NATS waits up to 9 s), where moving would not help.
 */
const CUT_OFF_MS = 10_000;
/** At most one such move in this long (a whole cluster without quorum must not cause a reconnect storm). */
const MOVE_HOLDOFF_MS = 30_000;
/** How long a read waits out a leader change: under centrifuge-js's 5 s command timeout. */
const READ_PATIENCE_MS = 4000;

/** Whether a stream's configuration already has what a gateway would set. */
function sameStream(
  have: {
    subjects?: string[];
    max_msgs_per_subject?: number;
    max_age?: number;
    duplicate_window?: number;
    num_replicas?: number;
    republish?: { src?: string; dest?: string };
  },
  want: {
    subjects: string[];
    max_msgs_per_subject: number;
    max_age: number;
    duplicate_window: number;
    num_replicas: number;
    republish: { src: string; dest: string };
  },
): boolean {
  return (
    JSON.stringify(have.subjects) === JSON.stringify(want.subjects) &&
    have.max_msgs_per_subject === want.max_msgs_per_subject &&
    have.max_age === want.max_age &&
    have.duplicate_window === want.duplicate_window &&
    have.num_replicas === want.num_replicas &&
    have.republish?.src === want.republish.src &&
    have.republish?.dest === want.republish.dest
  );
}

/**
 * A history read whose consumer's fetch ended (expired) before it reached
 * the channel's last stored publication, as in a leader change or on a
 * replica still catching up: not the history up to there. Read again.
 */
class IncompleteRead extends Error {
  override name = 'IncompleteRead';
}

/**
 * Errors that pass once NATS has elected a stream leader or reconnected: a
 * request nobody answered (no leader: nats.js reports it as "JetStream not
 * enabled" or no responders), one answered too late, or 503 from JetStream.
 */
export function isTransient(err: unknown): boolean {
  return (
    // Not exported by @nats-io/jetstream's public API: known by name.
    (err instanceof Error && err.name === 'JetStreamNotEnabled') ||
    err instanceof errors.TimeoutError ||
    err instanceof errors.NoRespondersError ||
    (err instanceof errors.RequestError && err.isNoResponders()) ||
    (err instanceof JetStreamApiError && err.status === 503) ||
    err instanceof IncompleteRead
  );
}
/** How long a survey of the gateways waits for the ones it expects. */
const SURVEY_WAIT_MS = 1000;
/** Channels whose last history position this gateway remembers to skip a lookup per publish. */
const POSITION_CACHE = 10_000;

const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

/** Bytes nats.js holds for the server. Not in its public API (protocol.outbound): read defensively. */
function outboundBytes(nc: NatsConnection): number {
  const protocol = (nc as { protocol?: { outbound?: { size?: () => number } } }).protocol;
  return protocol?.outbound?.size?.() ?? 0;
}

export function connectionOptions(settings: NatsSettings, name: string): NodeConnectionOptions {
  const options: NodeConnectionOptions = {
    servers: settings.servers,
    name,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    waitOnFirstConnect: true,
    // A cut network answers nothing: unanswered pings are how the loss shows.
    pingInterval: settings.pingInterval,
    maxPingOut: 2,
    // Nor does a connect to an unreachable server fail: give up on it soon and try the next.
    timeout: Math.max(2000, 2 * settings.pingInterval),
  };
  return Object.assign(options, credentialOptions(settings));
}

/** What a NATS-backed part of the gateway (the webhook queue, the app store) is made with. */
export interface NatsParts {
  /** The broker's connection, once it has started. */
  nc: () => NatsConnection;
  subjects: Subjects;
  /** Replicas of its streams and buckets. */
  replicas: number;
  /** Nesting bound of what it reads from NATS. */
  maxDepth: number;
  log: Logger;
  metrics: Metrics;
}

export class NatsBroker implements Broker {
  readonly subjects: Subjects;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  private events: BrokerEvents | undefined;
  private connected = false;
  private readonly live = new Map<string, Subscription>();
  private readonly positions = new Map<string, Top>();
  private readonly appending = new Map<string, Promise<void>>();
  private readonly waiting = new Set<() => void>();
  private replicaWatch: NodeJS.Timeout | undefined;
  private quorumWatch: NodeJS.Timeout | undefined;
  /** When an append of this gateway was last stored, and when it last moved for lack of any. */
  private lastStoredAt = Date.now();
  private movedAt = 0;
  /** When the connection was (re-)established: a new server gets CUT_OFF_MS to prove itself. */
  private connectedAt = Date.now();
  /** When the quorum was last checked, and since when the checks ran without a pause of the gateway's own. */
  private quorumCheckedAt = Date.now();
  private quorumWatchedSince = Date.now();
  /** The server being left for lack of a leader (its pool entry and id, in case another entry names it too). */
  private leaving: { listen: string; serverId: string; tries: number } | undefined;

  constructor(
    private readonly settings: NatsSettings,
    private readonly namespaces: Map<string, NamespaceOptions>,
    private readonly nodeId: string,
    /** Bounds of what other gateways send: nesting (client data plus envelopes), survey pattern length. */
    private readonly limits: { maxDepth: number; patternMaxLength: number },
    private readonly log: Logger,
    private readonly metrics: Metrics,
    /** Milliseconds an append is retried before the publish is refused (`publish_timeout`). */
    private readonly publishTimeout: number,
  ) {
    this.subjects = new Subjects(settings.prefix);
  }

  get ready(): boolean {
    return this.connected;
  }

  /** The connection, for the registry that shares it. */
  get connection(): NatsConnection {
    if (!this.nc) throw new Error('NATS broker not started');
    return this.nc;
  }

  async start(events: BrokerEvents): Promise<void> {
    this.events = events;
    const nc = await connect({
      ...connectionOptions(this.settings, `switchboard ${this.nodeId}`),
      // Moving off a server cut off from its cluster: dial any other.
      reconnectToServer: (pool) =>
        (this.leaving && pool.find((s) => s.listen !== this.leaving!.listen)) || null,
    });
    this.nc = nc;
    this.metrics.natsPendingSource = () => outboundBytes(nc);
    // Every JetStream call answers within ATTEMPT_TIMEOUT_MS or is tried again: a
    // leader change shows as requests nobody answers, and waiting 5 s each would
    // use up publish_timeout in two tries.
    this.js = jetstream(nc, { timeout: ATTEMPT_TIMEOUT_MS });
    // A cluster that has just started may still be electing its JetStream leader.
    this.jsm = await patiently(() => jetstreamManager(nc, { timeout: ATTEMPT_TIMEOUT_MS }), {
      retryIf: isTransient,
    });
    await patiently(() => this.ensureStreams(), { retryIf: isTransient });
    nc.subscribe(this.subjects.control, {
      callback: (err, msg) => {
        if (err) return this.log.warn({ err }, 'control subscription failed');
        const message = this.decode(msg.data, 'control', readControl);
        if (message) this.guard('control', () => events.control(message));
      },
    });
    nc.subscribe(this.subjects.survey, {
      callback: (err, msg) => {
        if (err) return;
        const survey = this.decode(msg.data, 'survey', (v) => readSurvey(v, this.limits.patternMaxLength));
        if (survey) this.guard('survey', () => msg.respond(encode(events.channels(survey.pattern))));
      },
    });
    nc.subscribe(this.subjects.leaderElected, {
      callback: (err, msg) => {
        if (err) return;
        const stream = msg.subject.slice(msg.subject.lastIndexOf('.') + 1);
        const ns = [...this.namespaces.keys()].find((name) => this.subjects.historyStream(name) === stream);
        if (ns === undefined) return;
        this.metrics.leaderChanges.inc();
        this.log.info({ stream }, 'history stream has a new leader');
        this.guard('leader', () => events.leaderChanged(ns));
      },
    });
    await nc.flush();
    this.setConnected(true);
    this.serverIs(nc.info?.host && nc.info.port ? `${nc.info.host}:${nc.info.port}` : '');
    void this.watch(nc);
    this.replicaWatch = setInterval(() => void this.checkReplicas(), REPLICA_CHECK_MS).unref();
    this.quorumWatch = setInterval(() => this.checkQuorum(nc), QUORUM_CHECK_MS).unref();
    void this.checkReplicas();
  }

  private setConnected(up: boolean): void {
    this.connected = up;
    if (up) this.connectedAt = Date.now();
    this.metrics.brokerConnected.set(up ? 1 : 0);
    if (!up) return;
    for (const wake of this.waiting) wake();
    this.waiting.clear();
  }

  /** The server this gateway is connected to, as a metric. */
  private serverIs(server: string): void {
    this.metrics.natsServer.reset();
    if (server) this.metrics.natsServer.set({ server }, 1);
  }

  /** Replicas of each history stream, configured and current, as JetStream reports them. */
  private async checkReplicas(): Promise<void> {
    if (!this.connected) return;
    for (const ns of this.namespaces.values()) {
      if (ns.history_size === 0) continue;
      const stream = this.subjects.historyStream(ns.name);
      const info = await this.jsm!.streams.info(stream).catch(() => undefined);
      if (!info) continue;
      const current = info.cluster
        ? (info.cluster.leader ? 1 : 0) + (info.cluster.replicas ?? []).filter((r) => r.current).length
        : 1;
      this.metrics.streamReplicas.set({ stream, state: 'configured' }, info.config.num_replicas);
      this.metrics.streamReplicas.set({ stream, state: 'current' }, current);
    }
  }

  /**
   * A server cut off from the rest of its cluster (a minority partition)
   * still answers pings, so the connection looks fine, but no write through
   * it reaches a quorum: appends wait, and live messages from the other side
   * do not arrive. Writes show it: this gateway's registry heartbeat (every
   * few seconds) and its appends. After CUT_OFF_MS without a stored one,
   * reconnect to another server (the reconnect resyncs every channel).
   */
  private checkQuorum(nc: NatsConnection): void {
    const now = Date.now();
    // A gateway that was not running (suspended, its loop blocked) tried no writes meanwhile: that
    // proves nothing about the server, which gets CUT_OFF_MS from now.
    if (now - this.quorumCheckedAt > 3 * QUORUM_CHECK_MS) this.quorumWatchedSince = now;
    this.quorumCheckedAt = now;
    if (!this.connected || !nc.info?.cluster) return;
    const lastWrite = Math.max(
      this.lastStoredAt,
      this.metrics.heartbeatAt ?? 0,
      this.connectedAt,
      this.quorumWatchedSince,
    );
    if (now - lastWrite < CUT_OFF_MS || now - this.movedAt < MOVE_HOLDOFF_MS) return;
    this.movedAt = now;
    this.metrics.natsMoves.inc();
    this.log.warn(
      { server: nc.getServer(), seconds: CUT_OFF_MS / 1000 },
      'no write stored through this NATS server (cut off from its cluster?): moving to another server',
    );
    this.leaving = { listen: nc.getServer(), serverId: nc.info?.server_id ?? '', tries: 0 };
    nc.reconnect().catch((err: unknown) => this.log.warn({ err }, 'moving to another NATS server failed'));
  }

  /** Publishes wait out a reconnect (a lost NATS server) this long rather than being refused at once. */
  whenReady(timeoutMs: number): Promise<boolean> {
    if (this.connected) return Promise.resolve(true);
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.waiting.delete(wake);
        resolve(false);
      }, timeoutMs);
      this.waiting.add(wake);
    });
  }

  private async watch(nc: NatsConnection): Promise<void> {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') {
        this.log.warn({ server: status.server }, 'NATS disconnected');
        this.setConnected(false);
      } else if (status.type === 'reconnect') {
        this.log.info({ server: status.server }, 'NATS reconnected');
        if (this.leaving && nc.info?.server_id === this.leaving.serverId && ++this.leaving.tries < 3) {
          // Another name of the server being left: on to the next.
          void nc.reconnect();
          continue;
        }
        this.leaving = undefined;
        this.serverIs(String(status.server));
        this.metrics.brokerReconnects.inc();
        this.positions.clear();
        this.setConnected(true);
        // A restarted single server without persistent storage lost the streams: recreate them,
        // in the background (appends retry meanwhile), since in a cluster the JetStream meta
        // leader may still be electing itself and this would hold every publish.
        void patiently(() => this.ensureStreams(), { ms: this.publishTimeout }).catch((err) =>
          this.log.error({ err }, 'cannot ensure history streams'),
        );
        // Whatever was published while we were away never reached us: let subscribers recover it.
        this.guard('reconnect', () => this.events?.reconnected());
      } else if (status.type === 'error' && status.error instanceof errors.PermissionViolationError) {
        // Its NATS user lacks a permission this gateway needs (nats-server logs it too).
        this.metrics.natsPermissionErrors.inc({ operation: status.error.operation });
        this.log.error({ err: status.error }, 'NATS refused a publish or subscription: permission violation');
      }
    }
  }

  /** Bounded JSON of a message from the bus, checked by `read`; undefined (counted, logged) when it is not ours. */
  private decode<T>(
    data: Uint8Array,
    source: string,
    read: (value: unknown) => T | undefined,
  ): T | undefined {
    const parsed = parseJsonBytes(data, this.limits.maxDepth);
    const value = parsed.ok ? read(parsed.value) : undefined;
    if (value === undefined) {
      this.metrics.invalidMessages.inc({ source });
      this.log.warn(
        { source, reason: parsed.ok ? 'unexpected shape' : parsed.reason },
        'invalid message dropped',
      );
    }
    return value;
  }

  /** Runs a handler of a bus message: nothing it throws may escape into the NATS client. */
  private guard(where: string, run: () => void): void {
    try {
      run();
    } catch (err) {
      this.metrics.handlerErrors.inc({ where: `broker_${where}` });
      this.log.error({ err, where }, 'bus message handler failed');
    }
  }

  /** Counts a failed JetStream call by operation. */
  private counted<T>(operation: JetStreamOperation, call: () => Promise<T>): Promise<T> {
    return counted(this.metrics.jetstreamErrors, operation, call);
  }

  /** One history stream per namespace with history, with that namespace's limits. */
  private ensureStreams(): Promise<void> {
    return this.counted('streams', () => this.createStreams());
  }

  private async createStreams(): Promise<void> {
    const jsm = this.jsm!;
    for (const ns of this.namespaces.values()) {
      if (ns.history_size === 0) continue;
      const name = this.subjects.historyStream(ns.name);
      const wildcard = this.subjects.historyWildcard(ns.name);
      const config = {
        name,
        subjects: [wildcard],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        discard: DiscardPolicy.Old,
        max_msgs_per_subject: ns.history_size,
        max_age: nanos(ns.history_ttl * 1000),
        // Idempotent publishes: JetStream allows no window beyond the age limit.
        duplicate_window: nanos(Math.min(IDEMPOTENT_RESULT_TTL_MS, ns.history_ttl * 1000)),
        republish: this.subjects.historyRepublish(ns.name),
        num_replicas: this.settings.replicas,
      };
      const existing = await jsm.streams.info(name).catch(() => undefined);
      if (!existing) {
        await jsm.streams.add(config);
        continue;
      }
      const had = existing.config.num_replicas;
      // Gateways start together: only one that finds the stream differing updates it.
      if (sameStream(existing.config, config)) continue;
      // Scaling replicas (R1 to R3 when a single server became a cluster) is a stream update.
      await jsm.streams.update(name, config).catch((err: Error) => {
        if (isTransient(err)) throw err;
        throw new Error(
          `cannot update history stream ${name} (${had} replicas) to ${config.num_replicas}: ${err.message}. ` +
            `Scale it yourself (nats stream edit ${name} --replicas ${config.num_replicas}) or set SWITCHBOARD_NATS_REPLICAS=${had}`,
        );
      });
      if (had !== config.num_replicas)
        this.log.info(
          { stream: name, from: had, to: config.num_replicas },
          'history stream replicas changed',
        );
    }
  }

  /** A live publication (no history) is written to the NATS connection at once; an append resolves once stored. */
  publish(
    channel: string,
    pub: Publication,
    options: PublishOptions,
  ): MaybePromise<StreamPosition | undefined> {
    const nc = this.connection;
    const ns = namespaceOf(channel);
    const envelope = {
      t: 'pub' as const,
      pub,
      ts: Date.now(),
      ...(options.skipClient ? { skip: options.skipClient } : {}),
      ...(options.delta ? { delta: true as const } : {}),
      ...(options.version ? { ver: options.version.version, vep: options.version.epoch } : {}),
    };
    if (!options.history) {
      nc.publish(this.subjects.live(ns, channel), encode(envelope));
      return undefined;
    }
    // Appends to one channel queue up on this gateway: they would only race each other.
    const previous = this.appending.get(channel) ?? Promise.resolve();
    const appended = previous.then(() =>
      this.counted('append', () => this.append(ns, channel, envelope, options.idempotencyKey)),
    );
    const settled = appended.then(
      () => undefined,
      () => undefined,
    );
    this.appending.set(channel, settled);
    void settled.then(() => {
      if (this.appending.get(channel) === settled) this.appending.delete(channel);
    });
    return appended;
  }

  /**
   * Appends with the channel's next offset, acknowledged once JetStream
   * stored it (on a quorum of the stream's replicas). Retried until
   * `publish_timeout`: when another gateway appended first (the offset is
   * taken again), and while the stream has no leader or NATS reconnects (a
   * leader change, a lost server). Every attempt carries the same message id,
   * so JetStream's duplicate window stores a retried append once even when an
   * earlier attempt was stored and only its answer was lost. With an
   * idempotency key the id is the channel's and key's: any gateway's retry
   * within the window is that duplicate too. A publication whose version is
   * outdated is not appended: the answer is the channel's position.
   */
  private async append(
    ns: string,
    channel: string,
    envelope: PubEnvelope,
    idempotencyKey: string | undefined,
  ): Promise<StreamPosition> {
    const subject = this.subjects.history(ns, channel);
    const msgID =
      idempotencyKey === undefined
        ? randomUUID()
        : createHash('sha256')
            .update(JSON.stringify([channel, idempotencyKey]))
            .digest('base64url');
    const version =
      envelope.ver === undefined ? undefined : { version: envelope.ver, epoch: envelope.vep ?? '' };
    const deadline = Date.now() + this.publishTimeout;
    /** An attempt was sent and went unanswered: JetStream may have stored it, or still store it. */
    let unanswered = false;
    for (let attempt = 1; ; attempt++) {
      let reason: 'race' | 'unavailable';
      let sent = false;
      try {
        const cached = this.positions.get(channel);
        const last = cached ?? (await this.lastStored(ns, channel));
        if (version && last && outdated(last.version, version)) {
          // Decided on what this gateway remembers, it is read again: another may have appended since.
          this.positions.delete(channel);
          if (!cached) return { offset: last.offset, epoch: last.epoch };
          continue;
        }
        // No stored publication: history is new or was lost, so a new epoch tells clients so.
        const epoch = last?.epoch || newEpoch();
        const offset = (last?.offset ?? 0) + 1;
        sent = true;
        const ack = await this.js!.publish(
          subject,
          encode({ ...envelope, pub: { ...envelope.pub, offset, epoch } }),
          {
            msgID,
            expect: { lastSubjectSequence: last?.seq ?? 0 },
            timeout: Math.max(100, Math.min(ATTEMPT_TIMEOUT_MS, deadline - Date.now())),
          },
        );
        // A duplicate: an earlier attempt was stored after all, with the offset it had then.
        const stored = ack.duplicate
          ? await this.storedAt(ns, channel, ack.seq)
          : { seq: ack.seq, offset, epoch, version: version ?? NO_VERSION };
        this.remember(channel, stored);
        this.lastStoredAt = Date.now();
        return { offset: stored.offset, epoch: stored.epoch };
      } catch (err) {
        this.positions.delete(channel);
        if (err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE) reason = 'race';
        else if (isTransient(err)) reason = 'unavailable';
        else throw err;
        if (sent && err instanceof errors.TimeoutError) unanswered = true;
      }
      this.metrics.jetstreamRetries.inc({ reason });
      if (Date.now() >= deadline) {
        // Stored after all, with only its answer lost: the last entry carries this message id.
        const stored = unanswered ? await this.storedWithId(ns, channel, msgID) : undefined;
        if (stored) {
          this.remember(channel, stored);
          return { offset: stored.offset, epoch: stored.epoch };
        }
        throw new HistoryUnavailable(channel, this.publishTimeout, unanswered);
      }
      // A race: jitter, and read the new last; no leader yet: back off a little more each time.
      const pause =
        reason === 'race' ? Math.random() * attempt : Math.min(25 * attempt, 250) * (0.5 + Math.random());
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }

  /**
   * A read (position, history, recovery) retried while the stream has no
   * leader, for at most READ_PATIENCE_MS: a subscribe or history call during
   * a leader change answers late rather than with an error, within the
   * client's own command timeout.
   */
  private patiently<T>(read: () => Promise<T>): Promise<T> {
    return patiently(read, { ms: Math.min(READ_PATIENCE_MS, this.publishTimeout), retryIf: isTransient });
  }

  /** The position of the publication stored at stream sequence `seq`. */
  private async storedAt(ns: string, channel: string, seq: number): Promise<Top> {
    const msg = await this.jsm!.streams.getMessage(this.subjects.historyStream(ns), { seq });
    const envelope = msg ? this.decode(msg.data, 'history', readStored) : undefined;
    if (!envelope) throw new Error(`history entry ${seq} of ${channel} is missing or malformed`);
    return topOf(seq, envelope);
  }

  private remember(channel: string, position: Top): void {
    if (this.positions.size >= POSITION_CACHE) this.positions.delete(this.positions.keys().next().value!);
    this.positions.set(channel, position);
  }

  /** The channel's last entry when it is the publication with message id `msgID`; undefined when not, or not known. */
  private async storedWithId(ns: string, channel: string, msgID: string): Promise<Top | undefined> {
    const msg = await this.lastEntry(ns, channel).catch(() => null);
    if (msg?.header?.get('Nats-Msg-Id') !== msgID) return undefined;
    const envelope = this.decode(msg.data, 'history', readStored);
    return envelope && topOf(msg.seq, envelope);
  }

  private lastEntry(ns: string, channel: string) {
    return this.jsm!.streams.getMessage(this.subjects.historyStream(ns), {
      last_by_subj: this.subjects.history(ns, channel),
    });
  }

  private async lastStored(ns: string, channel: string): Promise<Top | undefined> {
    const msg = await this.lastEntry(ns, channel);
    if (!msg) return undefined;
    const envelope = this.decode(msg.data, 'history', readStored);
    // Not ours (someone wrote to the history subject): its offset is unknown, so nothing is appended after it.
    if (!envelope) throw new Error(`the last history entry of ${channel} is malformed`);
    return topOf(msg.seq, envelope);
  }

  async publishJoin(channel: string, info: ClientInfo): Promise<void> {
    this.connection.publish(this.subjects.live(namespaceOf(channel), channel), encode({ t: 'join', info }));
  }

  async publishLeave(channel: string, info: ClientInfo): Promise<void> {
    this.connection.publish(this.subjects.live(namespaceOf(channel), channel), encode({ t: 'leave', info }));
  }

  async publishMember(channel: string, member: MemberEvent, skipClient?: string): Promise<void> {
    const envelope =
      skipClient === undefined ? { t: 'member', member } : { t: 'member', member, skip: skipClient };
    this.connection.publish(this.subjects.live(namespaceOf(channel), channel), encode(envelope));
  }

  async publishControl(message: ControlMessage): Promise<void> {
    this.connection.publish(this.subjects.control, encode(message));
    await this.connection.flush();
  }

  async channels(pattern: string | undefined, gateways: number): Promise<ChannelCounts> {
    const merged = new Map<string, number>();
    const replies = await this.connection.requestMany(this.subjects.survey, encode({ pattern }), {
      strategy: 'count',
      maxMessages: gateways,
      maxWait: SURVEY_WAIT_MS,
    });
    for await (const reply of replies) {
      const parsed = parseJsonBytes(reply.data, this.limits.maxDepth);
      if (!parsed.ok || !addChannelCounts(merged, parsed.value))
        this.metrics.invalidMessages.inc({ source: 'survey' });
    }
    return channelCounts(merged);
  }

  async subscribe(channel: string): Promise<void> {
    if (this.live.has(channel)) return;
    const nc = this.connection;
    const sub = nc.subscribe(this.subjects.live(namespaceOf(channel), channel), {
      callback: (err, msg) => {
        if (err) return this.log.warn({ err, channel }, 'channel subscription failed');
        const envelope = this.decode(msg.data, 'channel', readEnvelope);
        if (!envelope) return;
        const events = this.events!;
        this.guard('channel', () => {
          if (envelope.t === 'pub') {
            this.metrics.publishToDeliver.observe((Date.now() - envelope.ts) / 1000);
            events.publication(channel, envelope.pub, envelope.skip, envelope.delta === true);
          } else if (envelope.t === 'member') events.member(channel, envelope.member, envelope.skip);
          else if (envelope.t === 'join') events.join(channel, envelope.info);
          else events.leave(channel, envelope.info);
        });
      },
    });
    this.live.set(channel, sub);
    // The server has the interest once flushed: nothing published after this is missed.
    await nc.flush();
  }

  async unsubscribe(channel: string): Promise<void> {
    this.live.get(channel)?.unsubscribe();
    this.live.delete(channel);
  }

  /** The channel's retained publications and position, read in order from its stream. */
  private stream(channel: string): Promise<{ epoch: string; offset: number; items: Stored[] }> {
    return this.counted('read', () => this.patiently(() => this.read(channel)));
  }

  private async read(channel: string): Promise<{ epoch: string; offset: number; items: Stored[] }> {
    const ns = namespaceOf(channel);
    const last = await this.lastStored(ns, channel);
    if (!last) return { epoch: '', offset: 0, items: [] };
    // An ephemeral consumer with a single filter subject: nats-server 2.9 knows no filter_subjects.
    const stream = this.subjects.historyStream(ns);
    const { name } = await this.jsm!.consumers.add(stream, {
      filter_subject: this.subjects.history(ns, channel),
      deliver_policy: DeliverPolicy.All,
      ack_policy: AckPolicy.None,
      mem_storage: true,
      inactive_threshold: nanos(30_000),
    });
    const items: Stored[] = [];
    let reached = 0;
    try {
      const consumer = await this.js!.consumers.get(stream, name);
      const limit = this.namespaces.get(ns)?.history_size ?? 0;
      for await (const msg of await consumer.fetch({ max_messages: limit, expires: 2000 })) {
        const envelope = this.decode(msg.data, 'history', readStored);
        if (envelope && envelope.pub.epoch === last.epoch)
          items.push({ ...envelope.pub, offset: envelope.pub.offset ?? 0 });
        reached = msg.seq;
        if (msg.seq >= last.seq) break;
      }
    } finally {
      await this.jsm!.consumers.delete(stream, name).catch(() => undefined);
    }
    // Short of the last stored publication, it is no history up to `last`: a recovery would
    // answer "recovered" at that position without what is missing, and the client never gets it.
    if (reached < last.seq) {
      this.log.warn({ channel, reached, last: last.seq }, 'history read ended early: reading again');
      throw new IncompleteRead(`history of ${channel} read up to stream sequence ${reached} of ${last.seq}`);
    }
    return { epoch: last.epoch, offset: last.offset, items };
  }

  async position(channel: string): Promise<StreamPosition> {
    const last = await this.counted('last', () =>
      this.patiently(() => this.lastStored(namespaceOf(channel), channel)),
    );
    return { offset: last?.offset ?? 0, epoch: last?.epoch ?? '' };
  }

  async recover(channel: string, since: StreamPosition, maxPublications: number): Promise<Recovery> {
    return recover(await this.stream(channel), since, maxPublications);
  }

  async history(channel: string, query: HistoryQuery): Promise<HistoryPage> {
    if (query.limit === 0 && !query.since)
      return { publications: [], position: await this.position(channel) };
    return page(await this.stream(channel), query);
  }

  async removeHistory(channel: string): Promise<void> {
    const ns = namespaceOf(channel);
    await this.counted('purge', () =>
      this.jsm!.streams.purge(this.subjects.historyStream(ns), {
        filter: this.subjects.history(ns, channel),
      }),
    );
    this.positions.delete(channel);
  }

  async close(): Promise<void> {
    clearInterval(this.replicaWatch);
    clearInterval(this.quorumWatch);
    this.setConnected(false);
    await this.nc?.drain();
  }
}
