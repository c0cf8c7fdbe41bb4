/**
 * Prometheus metrics of one gateway. Label values are bounded: transports,
 * methods, reasons, codes and namespaces, never channel names or user ids.
 */

import { performance } from 'node:perf_hooks';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { HotCounter, HotHistogram, type Tally } from './hot-metrics.js';
import { KEY_KINDS } from './keys.js';

/** The Centrifugo protocol's transports. */
export type CentrifugoTransport = 'websocket' | 'sse' | 'http_stream';
/** The unidirectional ones (transport/uni.ts): pushes only, for plain WebSocket, EventSource and fetch. */
export type UniTransport = 'uni_websocket' | 'uni_sse' | 'uni_http_stream' | 'uni_grpc';
/** Transport label values: the Centrifugo transports and the Pusher edge's WebSocket. */
export type Transport = CentrifugoTransport | UniTransport | 'pusher';

let lastUtilization = performance.eventLoopUtilization();
export type Direction = 'in' | 'out';

/** Frame and byte counters of one transport, each direction. */
export interface Traffic {
  messagesIn: Tally;
  messagesOut: Tally;
  bytesIn: Tally;
  bytesOut: Tally;
}

export const JETSTREAM_OPERATIONS = ['append', 'last', 'read', 'purge', 'streams'] as const;
export type JetStreamOperation = (typeof JETSTREAM_OPERATIONS)[number];
export const KV_OPERATIONS = [
  'heartbeat',
  'presence_refresh',
  'presence_put',
  'presence_delete',
  'read',
  'lease',
  'announce',
  'cache',
  'idempotency',
] as const;
export type KvOperation = (typeof KV_OPERATIONS)[number];

/** Where a handler's last-line catch may count an error (`switchboard_handler_errors_total{where}`). */
export const HANDLER_PLACES = [
  'http_api',
  'grpc',
  'emulation',
  'session',
  'websocket',
  'stream',
  'broker_channel',
  'broker_control',
  'broker_survey',
  'broker_reconnect',
  'broker_leader',
  'pusher',
  'pusher_api',
] as const;
/** Why the Pusher edge refuses a frame, subscription or API call (`switchboard_pusher_rejections_total{reason}`). */
export const PUSHER_REJECTIONS = [
  'bad_frame',
  'bad_channel',
  'auth',
  'client_event_not_allowed',
  'client_event_rate',
  'too_large',
  'api_unauthorized',
  'api_bad_request',
] as const;
export type PusherRejection = (typeof PUSHER_REJECTIONS)[number];
/** What sends the messages `switchboard_invalid_messages_total{source}` counts. */
export const MESSAGE_SOURCES = [
  'channel',
  'history',
  'control',
  'survey',
  'service',
  'api_bus',
  'registry',
  'hooks',
  'apps',
] as const;
export const IP_LIMITS = ['connect', 'emulation', 'demo_token'] as const;
/** Why the server API refuses a call before running it (`switchboard_api_refused_total{reason}`). */
export const API_REFUSALS = ['missing_key', 'wrong_key', 'no_key_configured'] as const;
export type ApiRefusal = (typeof API_REFUSALS)[number];
export type IpLimitName = (typeof IP_LIMITS)[number];

export class Metrics {
  readonly registry = new Registry();

  /**
   * What the connection and subscription gauges show, read when they are
   * scraped (the admission and the hub set these) rather than set on every
   * connect and subscribe.
   */
  openConnections: () => { byTransport: ReadonlyMap<Transport, number>; capacity: number } = () => ({
    byTransport: new Map(),
    capacity: 0,
  });
  hubCounts: () => { channels: number; subscriptions: number } = () => ({ channels: 0, subscriptions: 0 });

  readonly connections: Gauge<'transport'> = new Gauge({
    name: 'switchboard_connections',
    help: 'Client connections open now, by transport.',
    labelNames: ['transport'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [transport, n] of this.openConnections().byTransport) this.connections.set({ transport }, n);
    },
  });

  /** Pusher connections per app id, read at scrape time (set by the Pusher edge). */
  pusherCounts: () => ReadonlyMap<string, number> = () => new Map();

  readonly pusherConnections: Gauge<'app'> = new Gauge({
    name: 'switchboard_pusher_connections',
    help: 'Pusher connections open now on this gateway, by app.',
    labelNames: ['app'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [app, n] of this.pusherCounts()) this.pusherConnections.set({ app }, n);
    },
  });

  readonly pusherEvents = new Counter({
    name: 'switchboard_pusher_events_total',
    help: 'Pusher events published through this gateway, by app and source (client: client events; api: the Pusher HTTP API).',
    labelNames: ['app', 'source'] as const,
    registers: [this.registry],
  });

  readonly pusherRejections = new Counter({
    name: 'switchboard_pusher_rejections_total',
    help: 'Pusher frames, subscriptions, client events and API calls refused, by app and reason.',
    labelNames: ['app', 'reason'] as const,
    registers: [this.registry],
  });

  readonly pusherWebhooks = new Counter({
    name: 'switchboard_pusher_webhooks_total',
    help: 'Pusher webhook POSTs sent by this gateway, by app and outcome (delivered: 2xx; retried: refused or timed out, tried again with backoff; failed: given up after every attempt).',
    labelNames: ['app', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly namespaceWebhooks = new Counter({
    name: 'switchboard_namespace_webhooks_total',
    help: 'Occupancy hooks of Centrifugo namespaces (webhook_url) POSTed by this gateway, by namespace and outcome (delivered, retried, failed).',
    labelNames: ['namespace', 'outcome'] as const,
    registers: [this.registry],
  });

  /** An app's series start at 0. */
  pusherApp(app: string): void {
    for (const outcome of ['delivered', 'retried', 'failed']) this.pusherWebhooks.inc({ app, outcome }, 0);
    this.pusherConnections.set({ app }, 0);
    for (const source of ['client', 'api']) this.pusherEvents.inc({ app, source }, 0);
    for (const reason of PUSHER_REJECTIONS) this.pusherRejections.inc({ app, reason }, 0);
  }

  readonly connects = new HotCounter({
    name: 'switchboard_connects_total',
    help: 'Connection attempts by outcome (accepted, rejected) and reason.',
    labelNames: ['transport', 'outcome', 'reason'] as const,
    registers: [this.registry],
  });

  readonly disconnects = new HotCounter({
    name: 'switchboard_disconnects_total',
    help: 'Closed connections by reason and code (client_close, no_pong, slow, limit, expired, shutdown, ...).',
    labelNames: ['transport', 'reason', 'code'] as const,
    registers: [this.registry],
  });

  readonly lifespan = new HotHistogram(
    'switchboard_connection_lifespan_seconds',
    'How long connections lived, by transport and why they ended (as in switchboard_disconnects_total).',
    ['transport', 'reason'] as const,
    [1, 5, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600],
    this.registry,
  );

  readonly connectDuration = new HotHistogram(
    'switchboard_connect_duration_seconds',
    'From the socket opening to the connect reply: token check, limits and server-side subscriptions.',
    ['transport'] as const,
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    this.registry,
  );

  readonly capacity: Gauge = new Gauge({
    name: 'switchboard_capacity_ratio',
    help: 'Open connections over SWITCHBOARD_MAX_CONNECTIONS: 1 means new clients are refused.',
    registers: [this.registry],
    collect: () => {
      this.capacity.set(this.openConnections().capacity);
    },
  });

  readonly eventLoopUtilization = new Gauge({
    name: 'switchboard_event_loop_utilization',
    help: 'Share of time the event loop was busy since the previous scrape (0..1): the CPU headroom of this gateway.',
    registers: [this.registry],
    collect() {
      const now = performance.eventLoopUtilization();
      this.set(performance.eventLoopUtilization(now, lastUtilization).utilization);
      lastUtilization = now;
    },
  });

  readonly bytes = new HotCounter({
    name: 'switchboard_transport_bytes_total',
    help: 'Payload bytes received (in) and sent (out), by transport.',
    labelNames: ['transport', 'direction'] as const,
    registers: [this.registry],
  });

  readonly messages = new HotCounter({
    name: 'switchboard_transport_messages_total',
    help: 'Frames received (in) and sent (out), by transport.',
    labelNames: ['transport', 'direction'] as const,
    registers: [this.registry],
  });

  readonly emulationRequests = new Counter({
    name: 'switchboard_emulation_requests_total',
    help: 'POST /emulation requests of SSE/HTTP-streaming clients by outcome: local, routed (to the gateway holding the stream), unknown, unavailable, bad_request, too_large, origin_not_allowed.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly commandDuration = new HotHistogram(
    'switchboard_command_duration_seconds',
    'Time to answer a client command, by method.',
    ['method'] as const,
    [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    this.registry,
  );

  readonly commandErrors = new Counter({
    name: 'switchboard_command_errors_total',
    help: 'Client commands answered with an error, by method and error code.',
    labelNames: ['method', 'code'] as const,
    registers: [this.registry],
  });

  readonly publications = new HotCounter({
    name: 'switchboard_publications_total',
    help: 'Publications accepted for broadcast, by namespace and source (client, api).',
    labelNames: ['namespace', 'source'] as const,
    registers: [this.registry],
  });

  readonly deliveries = new HotCounter({
    name: 'switchboard_deliveries_total',
    help: 'Publication frames handed to client connections (fan-out).',
    labelNames: [] as const,
    registers: [this.registry],
  }).of({});

  readonly sendBufferBytes = new Gauge({
    name: 'switchboard_send_buffer_bytes',
    help: 'Bytes queued for clients that read slower than we write (sampled each second).',
    registers: [this.registry],
  });

  readonly backloggedConnections = new Gauge({
    name: 'switchboard_backlogged_connections',
    help: 'Connections with bytes queued for them at the last check: the ones hogging memory.',
    registers: [this.registry],
  });

  readonly channels: Gauge = new Gauge({
    name: 'switchboard_channels',
    help: 'Channels with at least one local subscriber.',
    registers: [this.registry],
    collect: () => {
      this.channels.set(this.hubCounts().channels);
    },
  });

  readonly subscriptions: Gauge = new Gauge({
    name: 'switchboard_subscriptions',
    help: 'Channel subscriptions held by local connections.',
    registers: [this.registry],
    collect: () => {
      this.subscriptions.set(this.hubCounts().subscriptions);
    },
  });

  readonly brokerConnected = new Gauge({
    name: 'switchboard_broker_connected',
    help: 'Whether the broker (NATS in a cluster) is connected: 1 or 0.',
    registers: [this.registry],
  });

  /** Reads the bytes the NATS client holds for sending; the NATS broker sets it. */
  natsPendingSource: () => number = () => 0;

  readonly natsPendingBytes: Gauge = new Gauge({
    name: 'switchboard_nats_pending_bytes',
    help: 'Bytes the NATS client holds for sending: grows while NATS is slow or unreachable.',
    registers: [this.registry],
    collect: () => {
      this.natsPendingBytes.set(this.natsPendingSource());
    },
  });

  readonly jetstreamErrors = new Counter({
    name: 'switchboard_jetstream_errors_total',
    help: 'Failed JetStream calls (history), by operation: append, last, read, purge, streams.',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });

  readonly kvErrors = new Counter({
    name: 'switchboard_kv_errors_total',
    help: 'Failed NATS KV calls (registry), by operation: heartbeat, presence_refresh, presence_put, presence_delete, read.',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });

  /** When the registry last stored this gateway's entry (ms since epoch; undefined until the first): a write that reached a JetStream quorum, which the NATS broker watches. */
  heartbeatAt: number | undefined;

  readonly heartbeatAge: Gauge = new Gauge({
    name: 'switchboard_registry_heartbeat_age_seconds',
    help: "Seconds since this gateway's registry entry was last stored (0 in embedded mode): past the TTL, others think it dead.",
    registers: [this.registry],
    collect: () => {
      this.heartbeatAge.set(this.heartbeatAt === undefined ? 0 : (Date.now() - this.heartbeatAt) / 1000);
    },
  });

  readonly slowConsumerDrops = new Counter({
    name: 'switchboard_slow_consumer_drops_total',
    help: 'Connections dropped for reading slower than we write, by transport and limit: soft (max_backpressure at the check) or hard (a burst past 4x, closed at once).',
    labelNames: ['transport', 'limit'] as const,
    registers: [this.registry],
  });

  readonly brokerReconnects = new Counter({
    name: 'switchboard_broker_reconnects_total',
    help: 'Times the connection to NATS was re-established.',
    registers: [this.registry],
  });

  readonly publishToDeliver = new Histogram({
    name: 'switchboard_publish_to_deliver_seconds',
    help: "From accepting a publication on any gateway to handing it to this gateway's hub.",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });

  readonly serviceDuration = new Histogram({
    name: 'switchboard_service_request_duration_seconds',
    help: 'Requests to backend services (subscribe, publish, rpc), by namespace and operation.',
    labelNames: ['namespace', 'operation'] as const,
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  });

  readonly serviceErrors = new Counter({
    name: 'switchboard_service_errors_total',
    help: 'Backend service requests answered with an error, unavailable (108) or timed out (100).',
    labelNames: ['namespace', 'operation', 'code'] as const,
    registers: [this.registry],
  });

  readonly apiRequests = new Counter({
    name: 'switchboard_api_requests_total',
    help: 'Server API calls by protocol (http, grpc), method and outcome (ok, error, unauthorized).',
    labelNames: ['protocol', 'method', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly apiRefused = new Counter({
    name: 'switchboard_api_refused_total',
    help: 'Server API calls refused for their key, by protocol (http, grpc) and reason (missing_key, wrong_key, no_key_configured).',
    labelNames: ['protocol', 'reason'] as const,
    registers: [this.registry],
  });

  readonly keys = new Gauge({
    name: 'switchboard_keys',
    help: 'Keys in use by kind: api_key (server API keys), token_hmac (HS256 token secrets); two while one rotates.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly olderKeyUses = new Counter({
    name: 'switchboard_older_key_uses_total',
    help: 'Server API calls (api_key) and tokens (token_hmac) accepted with a key other than the first: while it grows, an older key is still in use.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly keyReloads = new Counter({
    name: 'switchboard_key_reloads_total',
    help: 'Key files read at start-up or after a change, by kind and outcome: changed (new keys in use) or error (unreadable or no key; the keys in use stay).',
    labelNames: ['kind', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly jetstreamRetries = new Counter({
    name: 'switchboard_jetstream_retries_total',
    help: 'History appends tried again, by reason: race (another gateway took the offset) or unavailable (no stream leader yet, a leader change, NATS reconnecting).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly leaderChanges = new Counter({
    name: 'switchboard_jetstream_leader_changes_total',
    help: 'History streams that elected a new leader (a NATS server lost or restarted): positions of local channels are checked after each.',
    registers: [this.registry],
  });

  readonly staleReads = new Counter({
    name: 'switchboard_stale_history_reads_total',
    help: 'History reads answered behind what this gateway already delivered (a replica catching up during a leader change), read again.',
    registers: [this.registry],
  });

  readonly streamReplicas = new Gauge({
    name: 'switchboard_jetstream_stream_replicas',
    help: 'Replicas of each history stream as JetStream reports them (checked every 10 s): configured, and current (the leader and the replicas that are caught up).',
    labelNames: ['stream', 'state'] as const,
    registers: [this.registry],
  });

  readonly tlsReloads = new Counter({
    name: 'switchboard_tls_reloads_total',
    help: "Reloads of the client port's TLS certificate after its files changed, by outcome (reloaded, failed: the old one kept).",
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly tlsCertificateExpiry = new Gauge({
    name: 'switchboard_tls_certificate_expiry_timestamp_seconds',
    help: "When the client port's TLS certificate expires (Unix time; 0 without TLS).",
    registers: [this.registry],
  });

  readonly natsMoves = new Counter({
    name: 'switchboard_nats_moves_total',
    help: 'Reconnects to another NATS server because no write through the connected one was stored for 10 s (cut off from its cluster).',
    registers: [this.registry],
  });

  readonly natsPermissionErrors = new Counter({
    name: 'switchboard_nats_permission_errors_total',
    help: "Publishes and subscriptions NATS refused for the gateway's user lacking the permission, by operation (publish, subscription).",
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });

  readonly natsServer = new Gauge({
    name: 'switchboard_nats_server',
    help: 'The NATS server this gateway is connected to now (1), by address.',
    labelNames: ['server'] as const,
    registers: [this.registry],
  });

  readonly handlerErrors = new Counter({
    name: 'switchboard_handler_errors_total',
    help: 'Errors caught at the last line of a handler (http_api, grpc, emulation, broker, survey, session, ...): answered with code 100 and logged; a bug or a hostile peer.',
    labelNames: ['where'] as const,
    registers: [this.registry],
  });

  readonly invalidMessages = new Counter({
    name: 'switchboard_invalid_messages_total',
    help: 'Messages from NATS or a backend service dropped or refused as malformed or nested too deep, by source (channel, history, control, survey, service, api_bus).',
    labelNames: ['source'] as const,
    registers: [this.registry],
  });

  readonly rateLimited = new Counter({
    name: 'switchboard_rate_limited_total',
    help: 'Requests shed by a per-IP limit (connect, emulation, demo_token), answered with HTTP 429.',
    labelNames: ['limit'] as const,
    registers: [this.registry],
  });

  readonly uncaughtErrors = new Counter({
    name: 'switchboard_uncaught_errors_total',
    help: 'Errors that reached the process last resort, by kind (unhandled_rejection: logged, serving goes on; uncaught_exception: logged, then a drain and exit).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'switchboard_' });
    // Known error series start at 0, so that rate() and alerts see the first failure.
    for (const op of JETSTREAM_OPERATIONS) this.jetstreamErrors.inc({ operation: op }, 0);
    for (const op of KV_OPERATIONS) this.kvErrors.inc({ operation: op }, 0);
    for (const kind of ['unhandled_rejection', 'uncaught_exception']) this.uncaughtErrors.inc({ kind }, 0);
    for (const where of HANDLER_PLACES) this.handlerErrors.inc({ where }, 0);
    for (const source of MESSAGE_SOURCES) this.invalidMessages.inc({ source }, 0);
    for (const limit of IP_LIMITS) this.rateLimited.inc({ limit }, 0);
    for (const reason of ['race', 'unavailable']) this.jetstreamRetries.inc({ reason }, 0);
    for (const protocol of ['http', 'grpc'])
      for (const reason of API_REFUSALS) this.apiRefused.inc({ protocol, reason }, 0);
    for (const kind of KEY_KINDS) {
      this.olderKeyUses.inc({ kind }, 0);
      for (const outcome of ['changed', 'error']) this.keyReloads.inc({ kind, outcome }, 0);
    }
    for (const operation of ['publish', 'subscription']) this.natsPermissionErrors.inc({ operation }, 0);
    for (const outcome of ['reloaded', 'failed']) this.tlsReloads.inc({ outcome }, 0);
  }

  private readonly trafficOf = new Map<Transport, Traffic>();

  /** Bandwidth counters of one transport, with labels bound once rather than per frame or request. */
  traffic(transport: Transport): Traffic {
    let traffic = this.trafficOf.get(transport);
    if (!traffic) {
      traffic = {
        messagesIn: this.messages.of({ transport, direction: 'in' }),
        messagesOut: this.messages.of({ transport, direction: 'out' }),
        bytesIn: this.bytes.of({ transport, direction: 'in' }),
        bytesOut: this.bytes.of({ transport, direction: 'out' }),
      };
      this.trafficOf.set(transport, traffic);
    }
    return traffic;
  }
}

/** Runs `call`, counting a failure under `counter{operation}` before passing it on. */
export async function counted<T>(
  counter: Counter<'operation'>,
  operation: string,
  call: () => Promise<T>,
): Promise<T> {
  try {
    return await call();
  } catch (err) {
    counter.inc({ operation });
    throw err;
  }
}
