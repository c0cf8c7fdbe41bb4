/**
 * Every setting of the gateway: one table of keys, defaults and docs. Values
 * come from the defaults, then an optional JSON config file
 * (`SWITCHBOARD_CONFIG`, keys without the prefix in lower case), then
 * `SWITCHBOARD_*` environment variables, which win.
 */

import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import {
  DEFAULT_JSON_MAX_DEPTH,
  DELTA_TYPES,
  type DeltaType,
  ENVELOPE_DEPTH,
  MAX_JSON_DEPTH_BOUND,
} from '@switchboard/protocol';
import { proxyList } from './transport/client-address.js';
import { parseApps, type PusherApp } from './pusher/apps.js';

/** Example services the gateway can run in-process (see embedded.ts). */
const UNI_TRANSPORTS = ['websocket', 'sse', 'http_stream', 'grpc'];

export const EMBEDDED_SERVICE_NAMES = ['chat', 'store', 'jobs'];

export interface NamespaceOptions {
  /** `''` is the default namespace: channels without `ns:`. */
  name: string;
  /** Publications kept per channel for history and recovery; 0 turns history off. */
  history_size: number;
  /** Seconds a channel's history lives after its last publication. */
  history_ttl: number;
  /** Clients may recover missed publications on resubscribe (needs history). */
  recovery: boolean;
  /**
   * What a recovering subscriber gets: `''` or `stream` the publications it
   * missed, `cache` only the channel's latest one (a live key/value). Cache needs recovery.
   */
  force_recovery_mode: string;
  /**
   * Every subscriber is positioned: when this gateway misses one of the
   * channel's publications (an offset gap), it resubscribes (code 2500) or,
   * for a server-side subscription, reconnects (3010). Needs history.
   */
  force_positioning: boolean;
  /** Subscribers that ask for it (`positioned: true` on subscribe) are positioned. Needs history. */
  allow_positioning: boolean;
  presence: boolean;
  /** Push join/leave events to subscribers (needs presence). */
  join_leave: boolean;
  /** Authenticated clients may subscribe without a subscription token. */
  allow_subscribe_for_client: boolean;
  /** Anonymous clients may subscribe without a subscription token. */
  allow_subscribe_for_anonymous: boolean;
  /** Subscribers of a channel may publish to it. */
  allow_publish_for_subscriber: boolean;
  /** Any authenticated client may publish, subscribed or not. */
  allow_publish_for_client: boolean;
  allow_presence_for_subscriber: boolean;
  allow_history_for_subscriber: boolean;
  /** Subscribers may send a tags filter (`tf`) and receive only the publications whose tags match it. */
  allow_tags_filter: boolean;
  /**
   * Delta encodings subscribers may ask for (`delta: "fossil"`); empty turns
   * delta compression off. Needs history: deltas run between positioned publications.
   */
  allowed_delta_types: readonly DeltaType[];
  /** Every publication of the namespace, client ones included, as if published with `delta: true`. Needs allowed_delta_types. */
  delta_publish: boolean;
  /** Client publications are delivered to every subscriber except the publishing connection. */
  skip_sender: boolean;
  /** Owned by a backend service: it decides subscribes and client publications, and answers `ns:method` RPCs. */
  service: boolean;
  /**
   * Where the namespace's occupancy hooks are POSTed (channel occupied and
   * vacated, member added and removed, for the whole cluster); '' none. Needs presence.
   */
  webhook_url: string;
  /** The same occupancy hooks to the namespace's backend service over NATS (SDK `onOccupancy`). Needs service and presence. */
  service_hooks: boolean;
}

export const NAMESPACE_DEFAULTS: Omit<NamespaceOptions, 'name'> = {
  history_size: 0,
  history_ttl: 0,
  recovery: false,
  force_recovery_mode: '',
  force_positioning: false,
  allow_positioning: false,
  presence: false,
  join_leave: false,
  allow_subscribe_for_client: false,
  allow_subscribe_for_anonymous: false,
  allow_publish_for_subscriber: false,
  allow_publish_for_client: false,
  allow_presence_for_subscriber: false,
  allow_history_for_subscriber: false,
  allow_tags_filter: false,
  allowed_delta_types: [],
  delta_publish: false,
  skip_sender: false,
  service: false,
  webhook_url: '',
  service_hooks: false,
};

export const DEFAULT_NAMESPACES: Partial<NamespaceOptions>[] = [
  { name: '', allow_subscribe_for_client: true },
  {
    name: 'chat',
    history_size: 100,
    history_ttl: 300,
    recovery: true,
    presence: true,
    join_leave: true,
    allow_subscribe_for_client: true,
    allow_publish_for_subscriber: true,
    allow_presence_for_subscriber: true,
    allow_history_for_subscriber: true,
  },
  // Owned by the example services (services/chat, store, jobs): in-process in
  // embedded mode, their own processes in a cluster.
  {
    name: 'room',
    service: true,
    history_size: 100,
    history_ttl: 300,
    recovery: true,
    presence: true,
    join_leave: true,
    allow_presence_for_subscriber: true,
    allow_history_for_subscriber: true,
  },
  { name: 'store', service: true },
  { name: 'jobs', service: true, history_size: 20, history_ttl: 60, recovery: true },
];

type Kind = 'string' | 'int' | 'ratio' | 'bool' | 'list' | 'json';

interface KeySpec {
  kind: Kind;
  default: unknown;
  doc: string;
}

/** The settings table; README's configuration section lists exactly these keys. */
export const KEYS = {
  node_id: {
    kind: 'string',
    default: '',
    doc: 'Name of this gateway in metrics, logs and the registry (default: hostname and a random suffix).',
  },
  host: { kind: 'string', default: '0.0.0.0', doc: 'Address the three listeners bind to.' },
  client_port: {
    kind: 'int',
    default: 8000,
    doc: 'Client port: `/connection/websocket`, `/connection/sse`, `/connection/http_stream`, `/emulation`.',
  },
  tls_cert_file: {
    kind: 'string',
    default: '',
    doc: 'PEM certificate (with its chain) for the client port: with it the gateway itself serves `https://` and `wss://` (for installs without HAProxy in front). Re-read when the file changes, without dropping connections.',
  },
  tls_key_file: { kind: 'string', default: '', doc: 'PEM private key of `SWITCHBOARD_TLS_CERT_FILE`.' },
  tls_key_passphrase: {
    kind: 'string',
    default: '',
    doc: 'Passphrase of an encrypted `SWITCHBOARD_TLS_KEY_FILE`.',
  },
  tls_ca_file: {
    kind: 'string',
    default: '',
    doc: 'PEM CA certificates for client certificates: clients are asked for one, and a certificate that does not chain to these (or is not for client authentication) is refused; a client without one is let in (tokens still decide).',
  },
  internal_port: {
    kind: 'int',
    default: 9000,
    doc: 'Internal port: `/metrics`, `/healthz`, `/readyz`, `POST /api/<method>`.',
  },
  grpc_port: { kind: 'int', default: 10000, doc: 'gRPC server API port; 0 turns gRPC off.' },
  broker: {
    kind: 'string',
    default: 'memory',
    doc: 'Broker: `memory` (one gateway, embedded mode) or `nats` (cluster: publications, history, presence and registry in NATS).',
  },
  nats_url: {
    kind: 'list',
    default: ['nats://127.0.0.1:4222'],
    doc: 'Comma-separated NATS server URLs (`nats://` or `tls://`), used when the broker is `nats`.',
  },
  nats_prefix: {
    kind: 'string',
    default: 'sb',
    doc: 'Prefix of every NATS subject, stream and KV bucket of this deployment.',
  },
  nats_replicas: {
    kind: 'int',
    default: 0,
    doc: 'Replicas of the history streams and KV buckets (presence, registry) in a JetStream cluster; 0 picks 3 when `SWITCHBOARD_NATS_URL` names three or more servers, else 1. Existing streams are scaled to it at start-up.',
  },
  publish_timeout: {
    kind: 'int',
    default: 15000,
    doc: 'Milliseconds a publish to a channel with history may take while NATS changes leaders or reconnects: appends are retried (idempotently) until then, and only then answered with error 100 (temporary; `may still be stored` when an attempt went unanswered).',
  },
  nats_ping_interval: {
    kind: 'int',
    default: 2000,
    doc: 'Milliseconds between pings to the NATS server; two unanswered count the connection lost (a cut network shows no error): readiness turns 503 and the gateway reconnects to another server.',
  },
  broker_outage_disconnect: {
    kind: 'int',
    default: 10,
    doc: 'Seconds without the broker (NATS lost) after which the gateway disconnects its clients with 3004 (they reconnect, through HAProxy, to gateways that have it), in batches over a few seconds; 0 keeps them.',
  },
  nats_user: { kind: 'string', default: '', doc: 'NATS user name (with `SWITCHBOARD_NATS_PASSWORD`).' },
  nats_password: { kind: 'string', default: '', doc: 'NATS password.' },
  nats_token: { kind: 'string', default: '', doc: 'NATS authentication token.' },
  nats_creds_file: { kind: 'string', default: '', doc: 'Path to a NATS `.creds` file (JWT and NKey seed).' },
  nats_tls_ca: {
    kind: 'string',
    default: '',
    doc: "PEM file of the CA that signed the NATS servers' certificates (turns TLS on).",
  },
  nats_tls_cert: { kind: 'string', default: '', doc: 'PEM client certificate for NATS mutual TLS.' },
  nats_tls_key: { kind: 'string', default: '', doc: 'PEM client key for NATS mutual TLS.' },
  embedded_services: {
    kind: 'list',
    default: EMBEDDED_SERVICE_NAMES,
    doc: 'Example services run in-process in embedded mode (broker `memory`); empty for none. In a cluster they are processes of their own.',
  },
  service_timeout: {
    kind: 'int',
    default: 5000,
    doc: 'Milliseconds a backend service has to answer a subscribe, publish or RPC (then error 100, temporary).',
  },
  presence_ttl: {
    kind: 'int',
    default: 60,
    doc: "Seconds a presence or registry entry outlives its last heartbeat in NATS KV (a dead gateway's entries vanish after this).",
  },
  log_level: {
    kind: 'string',
    default: 'info',
    doc: 'Log level: `fatal`, `error`, `warn`, `info`, `debug`, `trace`.',
  },
  log_connection_sample: {
    kind: 'ratio',
    default: 0.01,
    doc: 'Share of connects and disconnects logged at `info` (0..1; `1` logs all, `0` none); at `debug` every one is logged. Metrics count them all.',
  },
  token_hmac_secret_key: {
    kind: 'list',
    default: [],
    doc: 'Comma-separated HS256 secrets for connection and subscription tokens: a token signed with any is accepted; what the gateway signs (demo tokens, `make token`) it signs with the first. A secret containing a comma: `SWITCHBOARD_TOKEN_HMAC_SECRET_KEY_FILE`.',
  },
  token_hmac_secret_key_file: {
    kind: 'string',
    default: '',
    doc: 'Instead of `SWITCHBOARD_TOKEN_HMAC_SECRET_KEY`: a file of HS256 secrets, one a line (blank and `#` lines skipped), re-read when it changes (a mounted Secret too); turned unreadable or empty, it leaves the secrets in use and logs an error.',
  },
  token_public_key: {
    kind: 'string',
    default: '',
    doc: 'PEM public key (RSA for RS256, EC P-256 for ES256), or a path to a PEM file.',
  },
  token_jwks_url: {
    kind: 'string',
    default: '',
    doc: 'JWKS URL to fetch RS256/ES256 keys from (cached, refetched on unknown `kid`).',
  },
  token_audience: { kind: 'string', default: '', doc: 'When set, tokens must carry this `aud`.' },
  token_issuer: { kind: 'string', default: '', doc: 'When set, tokens must carry this `iss`.' },
  allow_anonymous: {
    kind: 'bool',
    default: false,
    doc: 'Accept connections without a token (user id `""`).',
  },
  demo: {
    kind: 'bool',
    default: false,
    doc: 'Development only: with an HMAC secret set, `POST /demo/token` on the client port hands a short-lived token for a new random user to anyone who asks (for the demo page at `/`). Off: 404.',
  },
  api_key: {
    kind: 'list',
    default: [],
    doc: 'Comma-separated keys for the HTTP and gRPC server API (`X-API-Key`), any of them accepted (so that a key rotates: see Security: rotating keys); the API refuses every call while there is none.',
  },
  api_key_file: {
    kind: 'string',
    default: '',
    doc: 'Instead of `SWITCHBOARD_API_KEY`: a file of server API keys, one a line (blank and `#` lines skipped), re-read when it changes (a mounted Secret too); turned unreadable or empty, it leaves the keys in use and logs an error.',
  },
  api_batch_max_commands: {
    kind: 'int',
    default: 1000,
    doc: 'Most commands one server API `batch` call may carry (HTTP, gRPC, the bus); a longer batch is refused whole with error 107, none of it run.',
  },
  allowed_origins: {
    kind: 'list',
    default: ['http://localhost:8000', 'http://127.0.0.1:8000'],
    doc: 'Comma-separated Origin allow-list for browser connections (`*` allows any, `https://*.example.com` a subdomain wildcard). Requests without Origin (non-browser clients) pass.',
  },
  ping_interval: { kind: 'int', default: 25, doc: 'Seconds between server pings.' },
  pong_timeout: {
    kind: 'int',
    default: 8,
    doc: 'Seconds a client has to answer a ping before it is dropped as idle (disconnect 3012 `no pong`).',
  },
  expired_close_delay: {
    kind: 'int',
    default: 25,
    doc: 'Seconds past its token expiry a connection has to deliver a refresh before it is disconnected (3005 `connection expired`); a subscription token likewise before the subscription is ended (unsubscribe push 2501, the client resubscribes).',
  },
  connect_timeout: {
    kind: 'int',
    default: 10,
    doc: 'Seconds a new connection has to send its connect command (else disconnect 3502 `stale`, checked each second).',
  },
  max_message_size: {
    kind: 'int',
    default: 65536,
    doc: 'Largest client frame in bytes; larger frames close the connection with 1009.',
  },
  max_channels_per_connection: {
    kind: 'int',
    default: 128,
    doc: "Subscriptions one connection may hold (error 106 beyond); also the most channels a connection token's `subs` may name (more: disconnect 3500).",
  },
  max_connections_per_user: {
    kind: 'int',
    default: 100,
    doc: 'Connections one user may hold on this gateway; 0 is unlimited (disconnect 3504 beyond).',
  },
  user_subscribe_to_personal: {
    kind: 'bool',
    default: false,
    doc: "Subscribe every connection of a signed-in user (not anonymous ones) server-side to the user's personal channel `<SWITCHBOARD_USER_PERSONAL_CHANNEL_NAMESPACE>:#<user>` (`#<user>` in the default namespace), as Centrifugo's `user_subscribe_to_personal`.",
  },
  user_personal_channel_namespace: {
    kind: 'string',
    default: '',
    doc: 'The namespace of the personal channels (`SWITCHBOARD_USER_SUBSCRIBE_TO_PERSONAL`); `""` is the default namespace. It must be configured.',
  },
  user_personal_single_connection: {
    kind: 'bool',
    default: false,
    doc: "One connection per signed-in user in the whole cluster: a new connection disconnects the user's other connections on every gateway with 3504 `connection limit` (they do not reconnect). At most once, like any server API disconnect.",
  },
  max_connections: {
    kind: 'int',
    default: 100000,
    doc: 'Connections this gateway accepts; further upgrades get HTTP 503.',
  },
  commands_per_second: {
    kind: 'int',
    default: 100,
    doc: 'Commands per second per connection (token bucket, burst of the same size); excess gets error 111, sustained excess disconnect 3013.',
  },
  max_backpressure: {
    kind: 'int',
    default: 1048576,
    doc: 'Bytes queued for a slow client before it is disconnected with 3008 `slow` (checked each second); a burst past 4x this closes it at once.',
  },
  push_coalesce_window: {
    kind: 'int',
    default: 0,
    doc: "Milliseconds a channel's publications may wait to go out to its WebSocket subscribers together, newline-separated in one frame (the JSON protocol allows it; centrifuge-js reads it): on a busy channel fewer, larger frames for less CPU, at up to this much added latency. A batch goes out early at 16 KB. 0 sends each publication at once in its own frame.",
  },
  channel_max_length: { kind: 'int', default: 255, doc: 'Longest channel name accepted.' },
  json_max_depth: {
    kind: 'int',
    default: DEFAULT_JSON_MAX_DEPTH,
    doc: 'Deepest nesting of objects and arrays accepted in a client command or a server API request, data included (error 107 beyond, nothing stored; 4 to 1000); messages from services and other gateways get 8 levels more for their envelopes.',
  },
  trusted_proxies: {
    kind: 'list',
    default: [],
    doc: 'Comma-separated addresses or CIDR ranges of proxies (HAProxy) whose `X-Forwarded-For` names the client for per-IP limits and logs; from anyone else the header is ignored.',
  },
  connects_per_ip_per_second: {
    kind: 'int',
    default: 50,
    doc: 'New connections (WebSocket upgrades, SSE and HTTP-streaming opens) one client IP may start per second, burst of the same size (IPv6: per /64); beyond, HTTP 429. 0 turns it off (only where a proxy hides client IPs and `SWITCHBOARD_TRUSTED_PROXIES` cannot be set).',
  },
  emulation_requests_per_ip_per_second: {
    kind: 'int',
    default: 500,
    doc: '`POST /emulation` requests one client IP may send per second, burst of the same size; beyond, HTTP 429. 0 turns it off.',
  },
  demo_tokens_per_ip_per_second: {
    kind: 'int',
    default: 2,
    doc: '`POST /demo/token` requests one client IP may send per second, burst of 10; beyond, HTTP 429. 0 turns it off.',
  },
  history_max_publications: {
    kind: 'int',
    default: 1000,
    doc: 'Most publications one history call returns.',
  },
  shutdown_timeout: {
    kind: 'int',
    default: 10,
    doc: "Seconds a SIGTERM drain may take: `/readyz` turns 503, clients get 3001 (reconnect elsewhere) in jittered batches over 70 % of it, then NATS is drained; the process exits by then at the latest. Keep it below the orchestrator's grace period.",
  },
  namespaces: {
    kind: 'json',
    default: DEFAULT_NAMESPACES,
    doc: 'JSON array of namespace options (see Namespaces); replaces the defaults (`""`, `chat`, and `room`, `store`, `jobs` of the example services).',
  },
  pusher_apps: {
    kind: 'json',
    default: [],
    doc: 'JSON array of Pusher apps (see [docs/pusher.md](docs/pusher.md)): `id`, `key`, `secret`, `enabled`, `namespace`, limits and `allowed_origins`. With none, the Pusher edge (`/app/<key>` and `/apps/<id>/…`) is off. Holds secrets: pass it from a Secret.',
  },
  occupancy_debounce: {
    kind: 'int',
    default: 3000,
    doc: "Milliseconds a Pusher presence member stays absent (its user's last connection gone anywhere in the cluster), or a channel empty, before member_removed / channel_vacated is announced: a reload within it announces nothing. A gateway that dies is noticed after `SWITCHBOARD_PRESENCE_TTL`, then this.",
  },
  pusher_apps_bucket: {
    kind: 'bool',
    default: false,
    doc: 'Also take Pusher apps from the app store, managed with the server API (`pusher_app_put`, `pusher_app_delete`, `pusher_apps`) or `switchboard-apps`: the NATS KV bucket `<prefix>_apps` in a cluster (every gateway applies a change at once, no restart), memory in embedded mode (lost on restart). Turns the Pusher edge on even without `SWITCHBOARD_PUSHER_APPS`.',
  },
  pusher_activity_timeout: {
    kind: 'int',
    default: 120,
    doc: 'Seconds of silence after which a Pusher client pings (`activity_timeout` in `pusher:connection_established`); the gateway pings a silent client after as long and closes it with 4201 when no pong comes within `SWITCHBOARD_PONG_TIMEOUT`.',
  },
  uni_transports: {
    kind: 'list',
    default: [],
    doc: "Unidirectional transports to serve, any of `websocket`, `sse`, `http_stream` (`/connection/uni_websocket`, `/connection/uni_sse`, `/connection/uni_http_stream` on the client port) and `grpc` (Centrifugo's `CentrifugoUniStream` on `SWITCHBOARD_UNI_GRPC_PORT`): pushes only, for plain WebSocket, EventSource, fetch and gRPC clients without an SDK; channels from the token's `channels` or the server API's `subscribe` ([docs/protocol.md](docs/protocol.md#12-unidirectional-transports)). Empty: off.",
  },
  uni_grpc_port: {
    kind: 'int',
    default: 11000,
    doc: 'Port of the unidirectional gRPC stream (`uni_grpc` in `SWITCHBOARD_UNI_TRANSPORTS`), plaintext HTTP/2: it faces clients, so put TLS in front of it; unlike the server API port it may be public.',
  },
} satisfies Record<string, KeySpec>;

export type Key = keyof typeof KEYS;

export interface NatsSettings {
  servers: string[];
  prefix: string;
  /** Replicas of streams and KV buckets, resolved (never 0). */
  replicas: number;
  user: string;
  password: string;
  token: string;
  credsFile: string;
  tlsCa: string;
  tlsCert: string;
  tlsKey: string;
  /** Milliseconds between client pings to the server (`nats_ping_interval`). */
  pingInterval: number;
}

/** The client port's own TLS (`tls_*`); undefined when it serves plain HTTP. */
export interface TlsSettings {
  certFile: string;
  keyFile: string;
  passphrase: string;
  caFile: string;
}

export interface Config {
  nodeId: string;
  host: string;
  clientPort: number;
  tls: TlsSettings | undefined;
  internalPort: number;
  grpcPort: number;
  broker: 'memory' | 'nats';
  nats: NatsSettings;
  presenceTtl: number;
  serviceTimeout: number;
  publishTimeout: number;
  /** Seconds without the broker before clients are sent elsewhere; 0 never. */
  brokerOutageDisconnect: number;
  embeddedServices: string[];
  logLevel: string;
  logConnectionSample: number;
  token: {
    /** From `token_hmac_secret_key`; with `hmacSecretFile`, empty: keys.ts follows the file instead. */
    hmacSecrets: string[];
    hmacSecretFile: string;
    publicKey: string;
    jwksUrl: string;
    audience: string;
    issuer: string;
    /** Nesting bound of claims (`info`, `meta`): the same as client data. */
    maxDepth: number;
    /** Most channels of a connection token's `subs`: max_channels_per_connection. */
    maxSubs: number;
  };
  allowAnonymous: boolean;
  demo: boolean;
  /** From `api_key`; with `apiKeyFile`, empty: keys.ts follows the file instead. */
  apiKeys: string[];
  apiKeyFile: string;
  apiBatchMaxCommands: number;
  allowedOrigins: string[];
  /** Unidirectional transports served (transport/uni.ts): websocket, sse, http_stream. */
  uniTransports: string[];
  uniGrpcPort: number;
  pingInterval: number;
  pongTimeout: number;
  connectTimeout: number;
  expiredCloseDelay: number;
  maxMessageSize: number;
  maxChannelsPerConnection: number;
  maxConnectionsPerUser: number;
  /** The personal channels' namespace when every signed-in connection is subscribed to its user's; undefined: off. */
  personalNamespace: string | undefined;
  /** A new connection of a signed-in user disconnects the user's others, cluster-wide. */
  singleConnection: boolean;
  maxConnections: number;
  commandsPerSecond: number;
  maxBackpressure: number;
  /** Milliseconds publications of a channel may wait to share a WebSocket frame; 0 never (`push_coalesce_window`). */
  pushCoalesceWindow: number;
  channelMaxLength: number;
  jsonMaxDepth: number;
  trustedProxies: string[];
  connectsPerIpPerSecond: number;
  emulationRequestsPerIpPerSecond: number;
  demoTokensPerIpPerSecond: number;
  historyMaxPublications: number;
  shutdownTimeout: number;
  namespaces: Map<string, NamespaceOptions>;
  pusher: {
    apps: PusherApp[];
    /**
     * The apps' namespaces: their `private-` and `presence-` channels need a
     * subscription token on the Centrifugo edge. Grows with apps of the store.
     */
    namespaces: Set<string>;
    /** Apps also come from the app store (`pusher_apps_bucket`). */
    store: boolean;
    activityTimeout: number;
  };
  /** Milliseconds (`occupancy_debounce`). */
  occupancyDebounce: number;
}

export class ConfigError extends Error {}

/** The namespace of a Pusher app that the configuration does not name: presence on, for `presence-` channels. */
export const appNamespace = (name: string): NamespaceOptions => ({
  name,
  ...NAMESPACE_DEFAULTS,
  presence: true,
  join_leave: true,
});

/** The nesting bound of what services and other gateways send: client data plus our envelopes. */
export const internalDepth = (config: Config): number => config.jsonMaxDepth + ENVELOPE_DEPTH;

export const envName = (key: string) => `SWITCHBOARD_${key.toUpperCase()}`;

function coerce(key: string, kind: Kind, raw: unknown): unknown {
  const where = envName(key);
  if (kind === 'string') return String(raw);
  if (kind === 'int') {
    const s = String(raw).trim();
    // Number('') is 0 and Number('0x10') is 16: accept plain decimal digits only.
    const n = typeof raw === 'number' ? raw : /^\d+$/.test(s) ? Number(s) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < 0)
      throw new ConfigError(`${where} must be a non-negative integer, got ${JSON.stringify(raw)}`);
    return n;
  }
  if (kind === 'ratio') {
    const n =
      typeof raw === 'number'
        ? raw
        : /^\s*(\d+(\.\d*)?|\.\d+)\s*$/.test(String(raw))
          ? Number(raw)
          : Number.NaN;
    if (!(n >= 0 && n <= 1))
      throw new ConfigError(`${where} must be a number from 0 to 1, got ${JSON.stringify(raw)}`);
    return n;
  }
  if (kind === 'bool') {
    if (typeof raw === 'boolean') return raw;
    const s = String(raw).trim().toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(s)) return true;
    if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
    throw new ConfigError(`${where} must be true or false, got ${JSON.stringify(raw)}`);
  }
  if (kind === 'list') {
    if (Array.isArray(raw)) return raw.map(String);
    return String(raw)
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  }
  if (typeof raw !== 'string') return raw;
  try {
    return JSON.parse(raw);
  } catch {
    throw new ConfigError(`${where} must be JSON`);
  }
}

function namespaces(raw: unknown): Map<string, NamespaceOptions> {
  if (!Array.isArray(raw)) throw new ConfigError('SWITCHBOARD_NAMESPACES must be a JSON array');
  const out = new Map<string, NamespaceOptions>();
  for (const entry of raw) {
    if (typeof entry !== 'object' || entry === null || typeof entry.name !== 'string') {
      throw new ConfigError('each namespace needs a string "name"');
    }
    if (!/^[A-Za-z0-9_\-.]*$/.test(entry.name))
      throw new ConfigError(`namespace name ${JSON.stringify(entry.name)} is invalid`);
    const ns: NamespaceOptions = { name: entry.name, ...NAMESPACE_DEFAULTS };
    for (const [k, v] of Object.entries(entry)) {
      if (k === 'name') continue;
      if (!Object.hasOwn(NAMESPACE_DEFAULTS, k))
        throw new ConfigError(`namespace ${JSON.stringify(entry.name)}: unknown option ${k}`);
      if (k === 'allowed_delta_types') {
        if (!Array.isArray(v) || v.some((t) => !(DELTA_TYPES as readonly unknown[]).includes(t)))
          throw new ConfigError(
            `namespace ${JSON.stringify(entry.name)}: allowed_delta_types must be an array of ${DELTA_TYPES.map((t) => JSON.stringify(t)).join(', ')}`,
          );
        ns.allowed_delta_types = v as DeltaType[];
        continue;
      }
      const want = typeof NAMESPACE_DEFAULTS[k as keyof typeof NAMESPACE_DEFAULTS];
      if (typeof v !== want)
        throw new ConfigError(`namespace ${JSON.stringify(entry.name)}: ${k} must be a ${want}`);
      if (want === 'number' && (!Number.isSafeInteger(v) || (v as number) < 0))
        throw new ConfigError(`namespace ${JSON.stringify(entry.name)}: ${k} must be a non-negative integer`);
      (ns as unknown as Record<string, unknown>)[k] = v;
    }
    if (ns.recovery && ns.history_size === 0)
      throw new ConfigError(`namespace ${JSON.stringify(ns.name)}: recovery needs history_size > 0`);
    if (!['', 'stream', 'cache'].includes(ns.force_recovery_mode))
      throw new ConfigError(
        `namespace ${JSON.stringify(ns.name)}: force_recovery_mode must be "stream" or "cache"`,
      );
    if ((ns.force_positioning || ns.allow_positioning) && ns.history_size === 0)
      throw new ConfigError(`namespace ${JSON.stringify(ns.name)}: positioning needs history_size > 0`);
    if (ns.force_recovery_mode === 'cache' && !ns.recovery)
      throw new ConfigError(
        `namespace ${JSON.stringify(ns.name)}: force_recovery_mode "cache" needs recovery`,
      );
    if (ns.history_size > 0 && ns.history_ttl === 0)
      throw new ConfigError(`namespace ${JSON.stringify(ns.name)}: history needs history_ttl > 0`);
    if (ns.delta_publish && ns.allowed_delta_types.length === 0)
      throw new ConfigError(`namespace ${JSON.stringify(ns.name)}: delta_publish needs allowed_delta_types`);
    if (ns.allowed_delta_types.length > 0 && ns.history_size === 0)
      throw new ConfigError(
        `namespace ${JSON.stringify(ns.name)}: allowed_delta_types needs history_size > 0`,
      );
    if (ns.join_leave && !ns.presence)
      throw new ConfigError(`namespace ${JSON.stringify(ns.name)}: join_leave needs presence`);
    if (ns.service_hooks && !(ns.service && ns.presence))
      throw new ConfigError(`namespace ${JSON.stringify(ns.name)}: service_hooks needs service and presence`);
    if (ns.webhook_url !== '') {
      if (!ns.presence)
        throw new ConfigError(`namespace ${JSON.stringify(ns.name)}: webhook_url needs presence`);
      if (!/^https?:\/\/[^/]/.test(ns.webhook_url))
        throw new ConfigError(
          `namespace ${JSON.stringify(ns.name)}: webhook_url must be an http or https URL`,
        );
    }
    out.set(ns.name, ns);
  }
  return out;
}

/** Reads the settings; throws ConfigError with the offending key on bad input. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  let file: Record<string, unknown> = {};
  const path = env.SWITCHBOARD_CONFIG;
  if (path) {
    try {
      file = JSON.parse(readFileSync(path, 'utf8'));
    } catch (err) {
      throw new ConfigError(`SWITCHBOARD_CONFIG ${path}: ${(err as Error).message}`);
    }
    if (typeof file !== 'object' || file === null || Array.isArray(file))
      throw new ConfigError(`SWITCHBOARD_CONFIG ${path}: must hold a JSON object`);
    for (const k of Object.keys(file))
      if (!Object.hasOwn(KEYS, k)) throw new ConfigError(`config file ${path}: unknown key ${k}`);
  }
  const v = {} as Record<Key, unknown>;
  for (const [key, spec] of Object.entries(KEYS) as [Key, KeySpec][]) {
    const fromEnv = env[envName(key)];
    const raw = fromEnv !== undefined ? fromEnv : key in file ? file[key] : spec.default;
    v[key] = coerce(key, spec.kind, raw);
  }
  if (v.broker !== 'memory' && v.broker !== 'nats')
    throw new ConfigError(`SWITCHBOARD_BROKER must be memory or nats, got ${JSON.stringify(v.broker)}`);
  if ((v.presence_ttl as number) < 3) throw new ConfigError('SWITCHBOARD_PRESENCE_TTL must be at least 3');
  for (const name of v.embedded_services as string[]) {
    if (!EMBEDDED_SERVICE_NAMES.includes(name)) {
      throw new ConfigError(
        `SWITCHBOARD_EMBEDDED_SERVICES: unknown service ${JSON.stringify(name)} (chat, store, jobs)`,
      );
    }
  }
  for (const name of v.uni_transports as string[]) {
    if (!UNI_TRANSPORTS.includes(name))
      throw new ConfigError(
        `SWITCHBOARD_UNI_TRANSPORTS: unknown transport ${JSON.stringify(name)} (websocket, sse, http_stream, grpc)`,
      );
  }
  if ((v.nats_url as string[]).length === 0) throw new ConfigError('SWITCHBOARD_NATS_URL must name a server');
  if ((v.nats_replicas as number) > 5) throw new ConfigError('SWITCHBOARD_NATS_REPLICAS must be at most 5');
  if (Boolean(v.tls_cert_file) !== Boolean(v.tls_key_file))
    throw new ConfigError('SWITCHBOARD_TLS_CERT_FILE and SWITCHBOARD_TLS_KEY_FILE go together');
  for (const key of ['tls_cert_file', 'tls_key_file', 'tls_ca_file'] as const) {
    const file = v[key] as string;
    if (file && !existsSync(file))
      throw new ConfigError(`SWITCHBOARD_${key.toUpperCase()}: no such file ${JSON.stringify(file)}`);
  }
  if ((v.nats_ping_interval as number) < 100)
    throw new ConfigError('SWITCHBOARD_NATS_PING_INTERVAL must be at least 100 (milliseconds)');
  if ((v.push_coalesce_window as number) < 0 || (v.push_coalesce_window as number) > 1000)
    throw new ConfigError('SWITCHBOARD_PUSH_COALESCE_WINDOW must be 0 (off) to 1000 milliseconds');
  if ((v.broker_outage_disconnect as number) < 0)
    throw new ConfigError('SWITCHBOARD_BROKER_OUTAGE_DISCONNECT must be 0 (never) or more seconds');
  if ((v.ping_interval as number) < 1) throw new ConfigError('SWITCHBOARD_PING_INTERVAL must be at least 1');
  if ((v.api_batch_max_commands as number) < 1)
    throw new ConfigError('SWITCHBOARD_API_BATCH_MAX_COMMANDS must be at least 1');
  if ((v.max_connections as number) < 1)
    throw new ConfigError('SWITCHBOARD_MAX_CONNECTIONS must be at least 1');
  const depth = v.json_max_depth as number;
  if (depth < 4 || depth > MAX_JSON_DEPTH_BOUND)
    throw new ConfigError(`SWITCHBOARD_JSON_MAX_DEPTH must be from 4 to ${MAX_JSON_DEPTH_BOUND}`);
  if ((v.commands_per_second as number) < 1)
    throw new ConfigError('SWITCHBOARD_COMMANDS_PER_SECOND must be at least 1');
  try {
    proxyList(v.trusted_proxies as string[]);
  } catch (err) {
    throw new ConfigError(`SWITCHBOARD_TRUSTED_PROXIES: ${(err as Error).message}`);
  }
  for (const [list, file] of [
    ['api_key', 'api_key_file'],
    ['token_hmac_secret_key', 'token_hmac_secret_key_file'],
  ] as const) {
    if ((v[list] as string[]).length > 0 && v[file])
      throw new ConfigError(`set ${envName(list)} or ${envName(file)}, not both`);
  }
  let apps: PusherApp[];
  try {
    apps = parseApps(v.pusher_apps);
  } catch (err) {
    throw new ConfigError(`SWITCHBOARD_PUSHER_APPS: ${(err as Error).message}`);
  }
  if ((v.occupancy_debounce as number) > 600_000)
    throw new ConfigError('SWITCHBOARD_OCCUPANCY_DEBOUNCE must be at most 600000 (milliseconds)');
  if ((v.pusher_activity_timeout as number) < 1)
    throw new ConfigError('SWITCHBOARD_PUSHER_ACTIVITY_TIMEOUT must be at least 1');
  const spaces = namespaces(v.namespaces);
  for (const app of apps)
    if (!spaces.has(app.namespace)) spaces.set(app.namespace, appNamespace(app.namespace));
  const personal = v.user_personal_channel_namespace as string;
  if (v.user_subscribe_to_personal && !spaces.has(personal))
    throw new ConfigError(
      `SWITCHBOARD_USER_PERSONAL_CHANNEL_NAMESPACE: no namespace ${JSON.stringify(personal)}`,
    );

  let publicKey = v.token_public_key as string;
  if (publicKey && !publicKey.includes('-----BEGIN')) publicKey = readFileSync(publicKey, 'utf8');
  return {
    nodeId: (v.node_id as string) || `${hostname()}-${Math.random().toString(36).slice(2, 8)}`,
    host: v.host as string,
    clientPort: v.client_port as number,
    tls: v.tls_cert_file
      ? {
          certFile: v.tls_cert_file as string,
          keyFile: v.tls_key_file as string,
          passphrase: v.tls_key_passphrase as string,
          caFile: v.tls_ca_file as string,
        }
      : undefined,
    internalPort: v.internal_port as number,
    grpcPort: v.grpc_port as number,
    broker: v.broker as 'memory' | 'nats',
    nats: {
      servers: v.nats_url as string[],
      prefix: v.nats_prefix as string,
      replicas: (v.nats_replicas as number) || ((v.nats_url as string[]).length >= 3 ? 3 : 1),
      user: v.nats_user as string,
      password: v.nats_password as string,
      token: v.nats_token as string,
      credsFile: v.nats_creds_file as string,
      tlsCa: v.nats_tls_ca as string,
      tlsCert: v.nats_tls_cert as string,
      tlsKey: v.nats_tls_key as string,
      pingInterval: v.nats_ping_interval as number,
    },
    presenceTtl: v.presence_ttl as number,
    serviceTimeout: v.service_timeout as number,
    publishTimeout: v.publish_timeout as number,
    brokerOutageDisconnect: v.broker_outage_disconnect as number,
    embeddedServices: v.embedded_services as string[],
    logLevel: v.log_level as string,
    logConnectionSample: v.log_connection_sample as number,
    token: {
      hmacSecrets: v.token_hmac_secret_key as string[],
      hmacSecretFile: v.token_hmac_secret_key_file as string,
      publicKey,
      jwksUrl: v.token_jwks_url as string,
      audience: v.token_audience as string,
      issuer: v.token_issuer as string,
      maxDepth: v.json_max_depth as number,
      maxSubs: v.max_channels_per_connection as number,
    },
    allowAnonymous: v.allow_anonymous as boolean,
    demo: v.demo as boolean,
    apiKeys: v.api_key as string[],
    apiKeyFile: v.api_key_file as string,
    apiBatchMaxCommands: v.api_batch_max_commands as number,
    allowedOrigins: v.allowed_origins as string[],
    uniTransports: v.uni_transports as string[],
    uniGrpcPort: v.uni_grpc_port as number,
    pingInterval: v.ping_interval as number,
    pongTimeout: v.pong_timeout as number,
    connectTimeout: v.connect_timeout as number,
    expiredCloseDelay: v.expired_close_delay as number,
    maxMessageSize: v.max_message_size as number,
    maxChannelsPerConnection: v.max_channels_per_connection as number,
    maxConnectionsPerUser: v.max_connections_per_user as number,
    personalNamespace: v.user_subscribe_to_personal ? personal : undefined,
    singleConnection: v.user_personal_single_connection as boolean,
    maxConnections: v.max_connections as number,
    commandsPerSecond: v.commands_per_second as number,
    maxBackpressure: v.max_backpressure as number,
    pushCoalesceWindow: v.push_coalesce_window as number,
    channelMaxLength: v.channel_max_length as number,
    jsonMaxDepth: v.json_max_depth as number,
    trustedProxies: v.trusted_proxies as string[],
    connectsPerIpPerSecond: v.connects_per_ip_per_second as number,
    emulationRequestsPerIpPerSecond: v.emulation_requests_per_ip_per_second as number,
    demoTokensPerIpPerSecond: v.demo_tokens_per_ip_per_second as number,
    historyMaxPublications: v.history_max_publications as number,
    shutdownTimeout: v.shutdown_timeout as number,
    namespaces: spaces,
    occupancyDebounce: v.occupancy_debounce as number,
    pusher: {
      apps,
      namespaces: new Set(apps.map((a) => a.namespace)),
      store: v.pusher_apps_bucket as boolean,
      activityTimeout: v.pusher_activity_timeout as number,
    },
  };
}
