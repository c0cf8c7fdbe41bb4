/** Presence of one gateway, in memory. */

import type { ClientInfo, ServiceEntry } from '@switchboard/protocol';
import { type GatewayEntry, type PresenceStats, type Registry, statsOf } from './registry.js';

export class MemoryRegistry implements Registry {
  private readonly channels = new Map<string, Map<string, ClientInfo>>();
  private describe: (() => GatewayEntry) | undefined;

  async start(describe: () => GatewayEntry): Promise<void> {
    this.describe = describe;
  }

  async gateways(): Promise<GatewayEntry[]> {
    return this.describe ? [this.describe()] : [];
  }

  /** In-process services of embedded mode are not announced anywhere. */
  async services(): Promise<ServiceEntry[]> {
    return [];
  }

  async addPresence(channel: string, info: ClientInfo): Promise<void> {
    let clients = this.channels.get(channel);
    if (!clients) {
      clients = new Map();
      this.channels.set(channel, clients);
    }
    clients.set(info.client, info);
  }

  async removePresence(channel: string, client: string): Promise<void> {
    const clients = this.channels.get(channel);
    if (!clients) return;
    clients.delete(client);
    if (clients.size === 0) this.channels.delete(channel);
  }

  async presence(channel: string): Promise<Record<string, ClientInfo>> {
    return Object.fromEntries(this.channels.get(channel) ?? []);
  }

  async presenceStats(channel: string): Promise<PresenceStats> {
    return statsOf(this.channels.get(channel)?.values() ?? []);
  }

  async close(): Promise<void> {}
}
