/**
 * Who is where: presence per channel and the live gateways. `memory` for one
 * gateway; NATS KV with TTLs for a cluster, where a dead gateway's entries
 * expire on their own.
 */

import type { ClientInfo, ServiceEntry } from '@switchboard/protocol';

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
  close(): Promise<void>;
}

export function statsOf(clients: Iterable<ClientInfo>): PresenceStats {
  const all = [...clients];
  return { numClients: all.length, numUsers: new Set(all.map((c) => c.user)).size };
}
