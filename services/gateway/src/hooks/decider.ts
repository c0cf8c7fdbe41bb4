/**
 * The occupancy decider: one gateway of the cluster (the holder of a lease in
 * the registry) watches every presence entry of the Pusher apps' namespaces
 * (and of Centrifugo namespaces with occupancy hooks) and announces what changed for the whole cluster: members added and removed
 * (to the channel's subscribers on every gateway), and, to `onTransition`,
 * channels occupied and vacated (webhooks). A gateway that dies stops
 * refreshing its entries; once they are past the TTL its members are removed.
 * Another gateway takes the lease when the holder goes, and announces the
 * difference between what was announced and what it finds.
 */

import type { Broker } from '../broker/broker.js';
import type { Logger } from '../log.js';
import type { PresenceChange, Registry } from '../registry/registry.js';
import { Occupancy, type Transition } from './occupancy.js';

/** How often the lease is taken or renewed (a third of its TTL). */
const LEASE_EVERY_MS = 2000;
/** How often expiry and the debounce are looked at. */
const TICK_MS = 250;
const LEASE = 'occupancy';

export interface DeciderOptions {
  registry: Registry;
  broker: Broker;
  log: Logger;
  /** Namespaces whose channels it follows (Pusher apps', and those with occupancy hooks). */
  follows: (namespace: string) => boolean;
  /** Channels whose members (users) are followed. */
  isPresence: (channel: string) => boolean;
  /** Channels whose subscribers are told of members (Pusher's presence channels). */
  announcesMembers: (channel: string) => boolean;
  debounceMs: number;
  /** Every transition, once announced (webhooks). */
  onTransition?: (t: Transition) => void;
}

export class Decider {
  private leaseTimer: NodeJS.Timeout | undefined;
  private leading:
    { model: Occupancy; stopWatch: () => void; ticker: NodeJS.Timeout | undefined } | undefined;
  /** Transitions are announced one batch after another, in order. */
  private announcing: Promise<void> = Promise.resolve();

  constructor(private readonly options: DeciderOptions) {}

  get isLeader(): boolean {
    return this.leading !== undefined;
  }

  start(): void {
    const beat = () =>
      this.beat().catch((err) => this.options.log.warn({ err }, 'occupancy lease check failed'));
    void beat();
    this.leaseTimer = setInterval(beat, LEASE_EVERY_MS).unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.leaseTimer);
    this.unlead();
    await this.announcing;
  }

  private async beat(): Promise<void> {
    const held = await this.options.registry.holdLease(LEASE);
    if (held && !this.leading) await this.lead();
    else if (!held && this.leading) {
      this.options.log.warn('occupancy decider lease lost to another gateway');
      this.unlead();
    }
  }

  private async lead(): Promise<void> {
    const { registry, log, debounceMs, isPresence } = this.options;
    const model = new Occupancy(registry.presenceTtlMs, debounceMs, isPresence);
    model.restore(await registry.announced(), Date.now());
    // Nothing is expired or removed before the model has every entry there was: a slow first
    // pass over a large bucket must not vacate what is still occupied.
    let caughtUp = false;
    const tick = () => {
      const leading = this.leading;
      if (leading?.model !== model || leading.ticker) return;
      leading.ticker = setInterval(() => this.emit(model.tick(Date.now())), TICK_MS).unref();
    };
    const stopWatch = await registry.watchPresence(
      (change) => this.feed(model, change),
      () => {
        caughtUp = true;
        tick();
      },
    );
    this.leading = { model, stopWatch, ticker: undefined };
    // Caught up already (an empty bucket, memory) before `leading` was set.
    if (caughtUp) tick();
    log.info('occupancy decider: this gateway announces members and occupancy for the cluster');
  }

  private unlead(): void {
    if (!this.leading) return;
    this.leading.stopWatch();
    clearInterval(this.leading.ticker);
    this.leading = undefined;
  }

  private feed(model: Occupancy, change: PresenceChange): void {
    const colon = change.channel.indexOf(':');
    if (!this.options.follows(colon < 0 ? '' : change.channel.slice(0, colon))) return;
    if (change.op === 'put') this.emit(model.put(change.channel, change.info, change.at));
    else model.delete(change.channel, change.client, Date.now());
  }

  private emit(transitions: Transition[]): void {
    if (transitions.length === 0) return;
    const { broker, registry, log, onTransition, announcesMembers } = this.options;
    this.announcing = this.announcing
      .then(async () => {
        for (const t of transitions) {
          // Recorded before member_added goes out, forgotten after member_removed has: a decider
          // dying in between leaves its successor a removal to repeat, never a ghost member.
          const told = announcesMembers(t.channel);
          if (t.kind === 'member_added' && told) {
            await registry.announce([t]);
            await broker.publishMember(t.channel, { op: 'added', info: t.info }, t.info.client);
          } else if (t.kind === 'member_removed' && told) {
            await broker.publishMember(t.channel, { op: 'removed', user: t.user });
            await registry.announce([t]);
          } else await registry.announce([t]);
          onTransition?.(t);
        }
      })
      .catch((err) => log.warn({ err }, 'announcing occupancy changes failed'));
  }
}
