/**
 * Who is where: presence per channel and the live gateways. `memory` for one
 * gateway; NATS KV with TTLs for a cluster, where a dead gateway's entries
 * expire on their own.
 */

import type { ClientInfo, Publication, ServiceEntry } from '@switchboard/protocol';
import type { Announced, Transition } from '../hooks/occupancy.js';

/** A presence entry put (its first put or a refresh; `at` in ms since the epoch) or deleted, on any gateway. */
export type PresenceChange =
  | { op: 'put'; channel: string; info: ClientInfo; at: number }
  | { op: 'delete'; channel: string; client: string };

export interface PresenceStats {
  numClients: number;
  numUsers: number;
}

/** What a gateway says of itself in the registry (the `info` API lists these). */
export interface GatewayEntry {
  uid: string;
  name: string;
  version: string;
  num_clients: number;
  num_users: number;
  num_channels: number;
  uptime: number;
  process: { rss: number; heap_used: number };
}

export interface Registry {
  /** Starts heartbeats: `describe` is asked for this gateway's entry each time. */
  start(describe: () => GatewayEntry): Promise<void>;
  gateways(): Promise<GatewayEntry[]>;
  /** Live backend service replicas (they announce themselves through the SDK). */
  services(): Promise<ServiceEntry[]>;
  addPresence(channel: string, info: ClientInfo): Promise<void>;
  removePresence(channel: string, client: string): Promise<void>;
  presence(channel: string): Promise<Record<string, ClientInfo>>;
  presenceStats(channel: string): Promise<PresenceStats>;
  /** How long a presence entry lives without a refresh (Infinity where no gateway can die unnoticed). */
  readonly presenceTtlMs: number;
  /**
   * Every presence entry now and every change from now on, cluster-wide;
   * `caughtUp` once every entry there was at the start has been handed over.
   * Resolves to a stop function.
   */
  watchPresence(change: (c: PresenceChange) => void, caughtUp: () => void): Promise<() => void>;
  /** Takes or keeps the named lease for this gateway (one holder in the cluster); false while another holds it. */
  holdLease(name: string): Promise<boolean>;
  /** What the occupancy decider announced so far, kept across deciders. */
  announced(): Promise<Announced>;
  /** Records announced transitions. */
  announce(transitions: readonly Transition[]): Promise<void>;
  /** Keeps a cache channel's last publication for CACHE_TTL_SECONDS. */
  keepLast(channel: string, pub: Publication): Promise<void>;
  /** A cache channel's last publication, if one is kept. */
  last(channel: string): Promise<Publication | undefined>;
  /**
   * Claims a publish's `idempotency_key` on a channel without history for
   * the whole cluster, for IDEMPOTENT_RESULT_TTL_MS (with history,
   * JetStream's duplicate window does it): false when some gateway claimed
   * it already, and the publish is a retry not to publish again.
   */
  claimIdempotencyKey(channel: string, key: string): Promise<boolean>;
  /** Gives a claimed key up again: its publish failed, so a retry must publish. */
  releaseIdempotencyKey(channel: string, key: string): Promise<void>;
  close(): Promise<void>;
}

/** How long a cache channel keeps its last event: Pusher's 30 minutes. */
export const CACHE_TTL_SECONDS = 1800;

export function statsOf(clients: Iterable<ClientInfo>): PresenceStats {
  const all = [...clients];
  return { numClients: all.length, numUsers: new Set(all.map((c) => c.user)).size };
}
