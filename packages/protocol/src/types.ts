/**
 * JSON shapes of Centrifugo's client protocol v2 as they travel on the wire.
 * `data` fields carry any JSON value (the client's own payload).
 */

import type { ProtocolError } from './codes.js';

export type Json = unknown;

export interface ClientInfo {
  user: string;
  client: string;
  conn_info?: Json;
  chan_info?: Json;
}

export interface Publication {
  data: Json;
  offset?: number;
  /** The stream's epoch, on publications with an offset (the client keeps its position with it). */
  epoch?: string;
  info?: ClientInfo;
  tags?: Record<string, string>;
  /** Delta compression negotiated: `data` is a Fossil delta (as a JSON string) against the previous publication's data. */
  delta?: boolean;
}

export interface StreamPosition {
  offset: number;
  epoch: string;
}

// ---- client → server

export interface SubscribeRecovery {
  recover?: boolean;
  offset?: number;
  epoch?: string;
}

export interface ConnectRequest {
  token?: string;
  data?: Json;
  subs?: Record<string, SubscribeRecovery>;
  name?: string;
  version?: string;
  headers?: Record<string, string>;
}

export interface SubscribeRequest extends SubscribeRecovery {
  channel: string;
  token?: string;
  data?: Json;
  positioned?: boolean;
  recoverable?: boolean;
  join_leave?: boolean;
  /** Bitmask: 1 channel compaction allowed, 2 reject unrecovered (answer 112 instead of recovered:false). */
  flag?: number;
  /** Tags filter (centrifuge-js `tagsFilter`): only publications whose tags match are delivered; see filter.ts. */
  tf?: FilterNode;
  /** Delta compression asked for (centrifuge-js `delta`): only `fossil` is known; never with `tf`. */
  delta?: DeltaType;
}

/** The delta encodings of publications: Fossil's, the one Centrifugo and its SDKs speak. */
export const DELTA_TYPES = ['fossil'] as const;
export type DeltaType = (typeof DELTA_TYPES)[number];

/**
 * A node of a publication tags filter. A leaf (`op` absent or `""`) compares
 * tag `key` with `cmp`: `eq`, `neq`, `sw`, `ew`, `ct` (starts with, ends
 * with, contains) and the numeric `gt`, `gte`, `lt`, `lte` take `val`; `in`
 * and `nin` take `vals`; `ex` and `nex` (exists, does not) neither. `and`,
 * `or` and `not` (one child) combine `nodes`.
 */
export interface FilterNode {
  op?: '' | 'and' | 'or' | 'not';
  key?: string;
  cmp?: 'eq' | 'neq' | 'in' | 'nin' | 'ex' | 'nex' | 'sw' | 'ew' | 'ct' | 'gt' | 'gte' | 'lt' | 'lte';
  val?: string;
  vals?: string[];
  nodes?: FilterNode[];
}

export interface UnsubscribeRequest {
  channel: string;
}
export interface PublishRequest {
  channel: string;
  data: Json;
}
export interface PresenceRequest {
  channel: string;
}
export interface HistoryRequest {
  channel: string;
  limit?: number;
  since?: StreamPosition;
  reverse?: boolean;
}
export interface RpcRequest {
  method?: string;
  data?: Json;
}
export interface SendRequest {
  data: Json;
}
export interface RefreshRequest {
  token: string;
}
export interface SubRefreshRequest {
  channel: string;
  token: string;
}

export interface CommandBodies {
  connect: ConnectRequest;
  subscribe: SubscribeRequest;
  unsubscribe: UnsubscribeRequest;
  publish: PublishRequest;
  presence: PresenceRequest;
  presence_stats: PresenceRequest;
  history: HistoryRequest;
  rpc: RpcRequest;
  send: SendRequest;
  refresh: RefreshRequest;
  sub_refresh: SubRefreshRequest;
}

export type Method = keyof CommandBodies;

export const METHODS: readonly Method[] = [
  'connect',
  'subscribe',
  'unsubscribe',
  'publish',
  'presence',
  'presence_stats',
  'history',
  'rpc',
  'send',
  'refresh',
  'sub_refresh',
];

/** One parsed command: its id (0 for `send`), method and body. A pong is `{ method: 'pong' }`. */
export type Command =
  { [M in Method]: { id: number; method: M; body: CommandBodies[M] } }[Method] | { id: 0; method: 'pong' };

// ---- server → client

export interface SubscribeResult {
  expires?: boolean;
  ttl?: number;
  recoverable?: boolean;
  positioned?: boolean;
  epoch?: string;
  offset?: number;
  publications?: Publication[];
  recovered?: boolean;
  was_recovering?: boolean;
  data?: Json;
  /** Delta compression negotiated: publications may carry `delta: true`, and every publication's data is a JSON string. */
  delta?: boolean;
}

export interface ConnectResult {
  client: string;
  version: string;
  expires?: boolean;
  ttl?: number;
  data?: Json;
  subs?: Record<string, SubscribeResult>;
  ping?: number;
  pong?: boolean;
  session?: string;
  node?: string;
}

export interface RefreshResult {
  client: string;
  version: string;
  expires?: boolean;
  ttl?: number;
}

export interface PresenceResult {
  presence: Record<string, ClientInfo>;
}
export interface PresenceStatsResult {
  num_clients: number;
  num_users: number;
}
export interface HistoryResult {
  publications: Publication[];
  offset: number;
  epoch: string;
}
export interface RpcResult {
  data?: Json;
}
export interface SubRefreshResult {
  expires?: boolean;
  ttl?: number;
}

export type Push =
  | { channel: string; pub: Publication }
  | { channel: string; join: { info: ClientInfo } }
  | { channel: string; leave: { info: ClientInfo } }
  | { channel: string; unsubscribe: { code: number; reason: string } }
  | { channel: string; subscribe: SubscribeResult }
  | { message: { data: Json } }
  | { disconnect: { code: number; reason: string; reconnect: boolean } };

export interface Reply {
  id?: number;
  error?: ProtocolError;
  push?: Push;
  connect?: ConnectResult;
  subscribe?: SubscribeResult;
  unsubscribe?: Record<string, never>;
  publish?: Record<string, never>;
  presence?: PresenceResult;
  presence_stats?: PresenceStatsResult;
  history?: HistoryResult;
  rpc?: RpcResult;
  refresh?: RefreshResult;
  sub_refresh?: SubRefreshResult;
}
