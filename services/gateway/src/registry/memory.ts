/** Presence of one gateway, in memory. */

import type { ClientInfo, Publication, ServiceEntry } from '@switchboard/protocol';
import type { Announced, Transition } from '../hooks/occupancy.js';
import {
  CACHE_TTL_SECONDS,
  type GatewayEntry,
  type PresenceChange,
  type PresenceStats,
  type Registry,
  statsOf,
} from './registry.js';

export class MemoryRegistry implements Registry {
  private readonly channels = new Map<string, Map<string, ClientInfo>>();
  private describe: (() => GatewayEntry) | undefined;
  private readonly watchers = new Set<(c: PresenceChange) => void>();
  private readonly occupied = new Set<string>();
  private readonly members = new Map<string, [string, string]>();
  /** Cache channels' last publications and when they expire (ms). */
  private readonly lastOf = new Map<string, { pub: Publication; until: number }>();
  /** One process: its entries never outlive it unnoticed. */
  readonly presenceTtlMs = Number.POSITIVE_INFINITY;

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
    for (const watch of this.watchers) watch({ op: 'put', channel, info, at: Date.now() });
  }

  async removePresence(channel: string, client: string): Promise<void> {
    const clients = this.channels.get(channel);
    if (!clients) return;
    if (!clients.delete(client)) return;
    if (clients.size === 0) this.channels.delete(channel);
    for (const watch of this.watchers) watch({ op: 'delete', channel, client });
  }

  async presence(channel: string): Promise<Record<string, ClientInfo>> {
    return Object.fromEntries(this.channels.get(channel) ?? []);
  }

  async presenceStats(channel: string): Promise<PresenceStats> {
    return statsOf(this.channels.get(channel)?.values() ?? []);
  }

  async watchPresence(change: (c: PresenceChange) => void, caughtUp: () => void): Promise<() => void> {
    for (const [channel, clients] of this.channels)
      for (const info of clients.values()) change({ op: 'put', channel, info, at: Date.now() });
    caughtUp();
    this.watchers.add(change);
    return () => this.watchers.delete(change);
  }

  async holdLease(): Promise<boolean> {
    return true;
  }

  async announced(): Promise<Announced> {
    return { channels: [...this.occupied], members: [...this.members.values()] };
  }

  async announce(transitions: readonly Transition[]): Promise<void> {
    for (const t of transitions) {
      if (t.kind === 'channel_occupied') this.occupied.add(t.channel);
      else if (t.kind === 'channel_vacated') this.occupied.delete(t.channel);
      else if (t.kind === 'member_added') this.members.set(`${t.channel}\n${t.user}`, [t.channel, t.user]);
      else this.members.delete(`${t.channel}\n${t.user}`);
    }
  }

  async keepLast(channel: string, pub: Publication): Promise<void> {
    this.lastOf.set(channel, { pub, until: Date.now() + CACHE_TTL_SECONDS * 1000 });
  }

  async last(channel: string): Promise<Publication | undefined> {
    const kept = this.lastOf.get(channel);
    if (kept && kept.until > Date.now()) return kept.pub;
    this.lastOf.delete(channel);
    return undefined;
  }

  /** One gateway: its own results of idempotent publishes (node.ts) are the whole cluster's. */
  async claimIdempotencyKey(): Promise<boolean> {
    return true;
  }

  async releaseIdempotencyKey(): Promise<void> {}

  async close(): Promise<void> {
    this.watchers.clear();
  }
}
