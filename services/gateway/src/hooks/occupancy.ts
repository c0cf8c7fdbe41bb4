/**
 * Who is in which channel, for the whole cluster, and the transitions that
 * follow: a channel occupied and vacated, a member (a user, over however many
 * connections) added and removed. Fed with every presence entry's puts
 * (refreshes included) and deletes; an entry not refreshed within the TTL
 * belongs to a gateway that died and is gone. Removals wait `debounceMs`: a
 * page reload (leave, join again) announces nothing. What was announced is
 * remembered, so that a decider taking over announces exactly the
 * difference. Pure: no I/O, time passed in.
 */

import type { ClientInfo } from '@switchboard/protocol';

export type Transition =
  | { kind: 'channel_occupied'; channel: string }
  | { kind: 'channel_vacated'; channel: string }
  | { kind: 'member_added'; channel: string; user: string; info: ClientInfo }
  | { kind: 'member_removed'; channel: string; user: string };

/** A member's key in the announced set: channel and user, joined by a character neither holds. */
const memberKey = (channel: string, user: string) => `${channel}\n${user}`;

interface Entry {
  info: ClientInfo;
  /** When it was last put, in ms. */
  seenAt: number;
}

export interface Announced {
  channels: Iterable<string>;
  /** `[channel, user]` pairs. */
  members: Iterable<[string, string]>;
}

export class Occupancy {
  /** channel → client → entry. */
  private readonly entries = new Map<string, Map<string, Entry>>();
  private readonly occupied = new Set<string>();
  /** memberKey → the info it was announced with. */
  private readonly members = new Map<string, ClientInfo>();
  /** Announced, absent now, and not yet past the debounce: key → since. */
  private readonly vacating = new Map<string, number>();
  private readonly leaving = new Map<string, number>();

  /**
   * `isPresence`: channels whose members are announced (Pusher's
   * `presence-`); every channel's occupancy is.
   */
  constructor(
    private readonly ttlMs: number,
    private readonly debounceMs: number,
    private readonly isPresence: (channel: string) => boolean,
  ) {}

  /** Starts from what an earlier decider announced (nothing is announced for it until it changes). */
  restore(announced: Announced, now: number): void {
    for (const channel of announced.channels) {
      this.occupied.add(channel);
      this.vacating.set(channel, now);
    }
    for (const [channel, user] of announced.members) {
      const key = memberKey(channel, user);
      this.members.set(key, { user, client: '' });
      this.leaving.set(key, now);
    }
  }

  put(channel: string, info: ClientInfo, seenAt: number): Transition[] {
    let clients = this.entries.get(channel);
    if (!clients) {
      clients = new Map();
      this.entries.set(channel, clients);
    }
    clients.set(info.client, { info, seenAt });
    const out: Transition[] = [];
    this.vacating.delete(channel);
    if (!this.occupied.has(channel)) {
      this.occupied.add(channel);
      out.push({ kind: 'channel_occupied', channel });
    }
    if (this.isPresence(channel)) {
      const key = memberKey(channel, info.user);
      this.leaving.delete(key);
      if (!this.members.has(key)) {
        this.members.set(key, info);
        out.push({ kind: 'member_added', channel, user: info.user, info });
      }
    }
    return out;
  }

  delete(channel: string, client: string, now: number): void {
    const clients = this.entries.get(channel);
    const entry = clients?.get(client);
    if (!clients || !entry) return;
    clients.delete(client);
    if (clients.size === 0) this.entries.delete(channel);
    this.noteAbsences(channel, entry.info.user, now);
  }

  /** Expires entries not refreshed within the TTL, and announces removals past the debounce. */
  tick(now: number): Transition[] {
    for (const [channel, clients] of this.entries) {
      for (const [client, entry] of clients) {
        if (now - entry.seenAt <= this.ttlMs) continue;
        clients.delete(client);
        if (clients.size === 0) this.entries.delete(channel);
        this.noteAbsences(channel, entry.info.user, now);
      }
    }
    const out: Transition[] = [];
    for (const [key, since] of this.leaving) {
      if (now - since < this.debounceMs) continue;
      this.leaving.delete(key);
      const info = this.members.get(key)!;
      this.members.delete(key);
      const channel = key.slice(0, key.indexOf('\n'));
      out.push({ kind: 'member_removed', channel, user: info.user });
    }
    for (const [channel, since] of this.vacating) {
      if (now - since < this.debounceMs) continue;
      this.vacating.delete(channel);
      this.occupied.delete(channel);
      out.push({ kind: 'channel_vacated', channel });
    }
    return out;
  }

  /** A channel's connections and users now, as far as this model knows. */
  has(channel: string, user?: string): boolean {
    const clients = this.entries.get(channel);
    if (!clients) return false;
    if (user === undefined) return true;
    for (const entry of clients.values()) if (entry.info.user === user) return true;
    return false;
  }

  private noteAbsences(channel: string, user: string, now: number): void {
    if (!this.entries.has(channel) && this.occupied.has(channel) && !this.vacating.has(channel))
      this.vacating.set(channel, now);
    const key = memberKey(channel, user);
    if (this.members.has(key) && !this.has(channel, user) && !this.leaving.has(key))
      this.leaving.set(key, now);
  }
}
