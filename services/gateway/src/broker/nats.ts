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

import { readFileSync } from 'node:fs';
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
  credsAuthenticator,
  type NatsConnection,
  type NodeConnectionOptions,
  nanos,
  type Subscription,
} from '@nats-io/transport-node';
import type { NamespaceOptions, NatsSettings } from '../config.js';
import { type HistoryPage, type HistoryQuery, newEpoch, page, type Recovery, recover } from '../history.js';
import type { Logger } from '../log.js';
import { counted, type JetStreamOperation, type Metrics } from '../metrics.js';
import type { Broker, BrokerEvents, ChannelCounts, ControlMessage, PublishOptions } from './broker.js';
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

/** JetStream's error code for a failed `expect` on the last subject sequence. */
const WRONG_LAST_SEQUENCE = 10071;
const APPEND_ATTEMPTS = 20;
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
  };
  if (settings.user) Object.assign(options, { user: settings.user, pass: settings.password });
  if (settings.token) options.token = settings.token;
  if (settings.credsFile) options.authenticator = credsAuthenticator(readFileSync(settings.credsFile));
  if (settings.tlsCa || settings.tlsCert) {
    options.tls = {
      ...(settings.tlsCa ? { caFile: settings.tlsCa } : {}),
      ...(settings.tlsCert ? { certFile: settings.tlsCert, keyFile: settings.tlsKey } : {}),
    };
  }
  return options;
}

export class NatsBroker implements Broker {
  readonly subjects: Subjects;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  private events: BrokerEvents | undefined;
  private connected = false;
  private readonly live = new Map<string, Subscription>();
  private readonly positions = new Map<string, { seq: number; offset: number; epoch: string }>();
  private readonly appending = new Map<string, Promise<void>>();

  constructor(
    private readonly settings: NatsSettings,
    private readonly namespaces: Map<string, NamespaceOptions>,
    private readonly nodeId: string,
    /** Bounds of what other gateways send: nesting (client data plus envelopes), survey pattern length. */
    private readonly limits: { maxDepth: number; patternMaxLength: number },
    private readonly log: Logger,
    private readonly metrics: Metrics,
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
    const nc = await connect(connectionOptions(this.settings, `switchboard ${this.nodeId}`));
    this.nc = nc;
    this.metrics.natsPendingSource = () => outboundBytes(nc);
    this.js = jetstream(nc);
    this.jsm = await jetstreamManager(nc);
    await this.ensureStreams();
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
    await nc.flush();
    this.setConnected(true);
    void this.watch(nc);
  }

  private setConnected(up: boolean): void {
    this.connected = up;
    this.metrics.brokerConnected.set(up ? 1 : 0);
  }

  private async watch(nc: NatsConnection): Promise<void> {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect') {
        this.log.warn({ server: status.server }, 'NATS disconnected');
        this.setConnected(false);
      } else if (status.type === 'reconnect') {
        this.log.info({ server: status.server }, 'NATS reconnected');
        this.metrics.brokerReconnects.inc();
        // A restarted server without persistent storage lost the streams; recreate them.
        await this.ensureStreams().catch((err) => this.log.error({ err }, 'cannot ensure history streams'));
        this.positions.clear();
        this.setConnected(true);
        // Whatever was published while we were away never reached us: let subscribers recover it.
        this.guard('reconnect', () => this.events?.reconnected());
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
        republish: this.subjects.historyRepublish(ns.name),
      };
      const existing = await jsm.streams.info(name).catch(() => undefined);
      if (existing) await jsm.streams.update(name, config);
      else await jsm.streams.add(config);
    }
  }

  async publish(
    channel: string,
    pub: Publication,
    options: PublishOptions,
  ): Promise<StreamPosition | undefined> {
    const nc = this.connection;
    const ns = namespaceOf(channel);
    const envelope = {
      t: 'pub' as const,
      pub,
      ts: Date.now(),
      ...(options.skipClient ? { skip: options.skipClient } : {}),
    };
    if (!options.history) {
      nc.publish(this.subjects.live(ns, channel), encode(envelope));
      return undefined;
    }
    // Appends to one channel queue up on this gateway: they would only race each other.
    const previous = this.appending.get(channel) ?? Promise.resolve();
    const appended = previous.then(() => this.counted('append', () => this.append(ns, channel, envelope)));
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

  /** Appends with the channel's next offset; retries when another gateway appended first. */
  private async append(ns: string, channel: string, envelope: PubEnvelope): Promise<StreamPosition> {
    const subject = this.subjects.history(ns, channel);
    for (let attempt = 1; attempt <= APPEND_ATTEMPTS; attempt++) {
      const last = this.positions.get(channel) ?? (await this.lastStored(ns, channel));
      // No stored publication: history is new or was lost, so a new epoch tells clients so.
      const epoch = last?.epoch || newEpoch();
      const offset = (last?.offset ?? 0) + 1;
      try {
        const ack = await this.js!.publish(
          subject,
          encode({ ...envelope, pub: { ...envelope.pub, offset, epoch } }),
          {
            expect: { lastSubjectSequence: last?.seq ?? 0 },
          },
        );
        this.remember(channel, { seq: ack.seq, offset, epoch });
        return { offset, epoch };
      } catch (err) {
        this.positions.delete(channel);
        if (!(err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE)) throw err;
        // Another gateway appended first: back off a little, with jitter, and read the new last.
        await new Promise((resolve) => setTimeout(resolve, Math.random() * attempt));
      }
    }
    throw new Error(`history append to ${channel} lost ${APPEND_ATTEMPTS} races in a row`);
  }

  private remember(channel: string, position: { seq: number; offset: number; epoch: string }): void {
    if (this.positions.size >= POSITION_CACHE) this.positions.delete(this.positions.keys().next().value!);
    this.positions.set(channel, position);
  }

  private async lastStored(
    ns: string,
    channel: string,
  ): Promise<{ seq: number; offset: number; epoch: string } | undefined> {
    const msg = await this.jsm!.streams.getMessage(this.subjects.historyStream(ns), {
      last_by_subj: this.subjects.history(ns, channel),
    });
    if (!msg) return undefined;
    const envelope = this.decode(msg.data, 'history', readStored);
    // Not ours (someone wrote to the history subject): its offset is unknown, so nothing is appended after it.
    if (!envelope) throw new Error(`the last history entry of ${channel} is malformed`);
    return { seq: msg.seq, offset: envelope.pub.offset ?? 0, epoch: envelope.pub.epoch ?? '' };
  }

  async publishJoin(channel: string, info: ClientInfo): Promise<void> {
    this.connection.publish(this.subjects.live(namespaceOf(channel), channel), encode({ t: 'join', info }));
  }

  async publishLeave(channel: string, info: ClientInfo): Promise<void> {
    this.connection.publish(this.subjects.live(namespaceOf(channel), channel), encode({ t: 'leave', info }));
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
            events.publication(channel, envelope.pub, envelope.skip);
          } else if (envelope.t === 'join') events.join(channel, envelope.info);
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
    return this.counted('read', () => this.read(channel));
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
    try {
      const consumer = await this.js!.consumers.get(stream, name);
      const limit = this.namespaces.get(ns)?.history_size ?? 0;
      for await (const msg of await consumer.fetch({ max_messages: limit, expires: 2000 })) {
        const envelope = this.decode(msg.data, 'history', readStored);
        if (envelope && envelope.pub.epoch === last.epoch)
          items.push({ ...envelope.pub, offset: envelope.pub.offset ?? 0 });
        if (msg.seq >= last.seq) break;
      }
    } finally {
      await this.jsm!.consumers.delete(stream, name).catch(() => undefined);
    }
    return { epoch: last.epoch, offset: last.offset, items };
  }

  async position(channel: string): Promise<StreamPosition> {
    const last = await this.counted('last', () => this.lastStored(namespaceOf(channel), channel));
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
    this.setConnected(false);
    await this.nc?.drain();
  }
}
