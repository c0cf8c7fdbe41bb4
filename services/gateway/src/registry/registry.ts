/**
 * Who is where: presence per channel (later also gateways, services and
 * sessions). `memory` for one gateway; NATS KV with TTLs for a cluster.
 */

import type { ClientInfo } from '@switchboard/protocol';

export interface PresenceStats {
  numClients: number;
  numUsers: number;
}

export interface Registry {
  addPresence(channel: string, info: ClientInfo): Promise<void>;
  removePresence(channel: string, client: string): Promise<void>;
  presence(channel: string): Promise<Record<string, ClientInfo>>;
  presenceStats(channel: string): Promise<PresenceStats>;
  close(): Promise<void>;
}
