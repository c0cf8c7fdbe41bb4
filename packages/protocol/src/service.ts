/**
 * What gateways and backend services say to each other (JSON over the bus,
 * subjects from Subjects.service and Subjects.api). A service owns a
 * namespace: it decides who subscribes (and may hand initial data), checks or
 * rewrites client publications, and answers RPCs named `namespace:method`.
 */

import type { ProtocolError } from './codes.js';

export type ServiceOperation = 'subscribe' | 'publish' | 'rpc' | 'occupancy';
export const SERVICE_OPERATIONS: readonly ServiceOperation[] = ['subscribe', 'publish', 'rpc', 'occupancy'];

/**
 * An occupancy hook of a namespace (`service_hooks`), decided for the whole
 * cluster: a channel occupied or vacated, a member (a user over all its
 * connections) added or removed. Delivered at least once: the service's
 * answer acknowledges it, an error or no answer has it sent again.
 */
export interface OccupancyEvent {
  name: 'channel_occupied' | 'channel_vacated' | 'member_added' | 'member_removed';
  channel: string;
  user?: string;
}

/** Who asks, and what. */
export interface ServiceRequest {
  client: string;
  user: string;
  /** The connection token's `info`. */
  info?: unknown;
  /** The connection token's `meta` (never shown to clients). */
  meta?: Record<string, unknown>;
  channel?: string;
  /** RPC method without the namespace. */
  method?: string;
  /** Subscribe data (e.g. what the client already has), publication data or RPC data. */
  data?: unknown;
}

export type ServiceReply<T> = { result: T } | { error: ProtocolError };

/** Allowed: `data` goes to the client in the subscribe reply, `info` becomes its `chan_info`. */
export interface SubscribeDecision {
  data?: unknown;
  info?: unknown;
}

/** Allowed: `data` replaces what the client published when present. */
export interface PublishDecision {
  data?: unknown;
  /** Deliver to every subscriber except the publishing connection. */
  skip_sender?: boolean;
}

export interface RpcAnswer {
  data?: unknown;
}

/** A service replica's entry in the registry. */
export interface ServiceEntry {
  namespace: string;
  instance: string;
  started: number;
}
