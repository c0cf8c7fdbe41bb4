/** Broker for one gateway: delivery is a function call, history lives in memory. */

import type { ClientInfo, Publication, StreamPosition } from '@switchboard/protocol';
import type { HistoryPage, HistoryQuery, MemoryHistory, Recovery } from '../history.js';
import type {
  Broker,
  BrokerEvents,
  ChannelCounts,
  ControlMessage,
  MemberEvent,
  PublishOptions,
} from './broker.js';

export class MemoryBroker implements Broker {
  private events: BrokerEvents | undefined;
  private readonly sweeper: NodeJS.Timeout;
  readonly ready = true;

  async whenReady(): Promise<boolean> {
    return true;
  }

  constructor(private readonly historyStore: MemoryHistory) {
    this.sweeper = setInterval(() => this.historyStore.sweep(), 10_000).unref();
  }

  async start(events: BrokerEvents): Promise<void> {
    this.events = events;
  }

  publish(channel: string, pub: Publication, options: PublishOptions): StreamPosition | undefined {
    const stored = options.history
      ? this.historyStore.add(channel, pub, options.history, options.version)
      : pub;
    // Outdated (`version`): dropped, answered with the stream's position as Centrifugo does.
    if (stored === undefined) return this.historyStore.position(channel);
    this.events?.publication(channel, stored, options.skipClient, options.delta === true);
    return options.history ? this.historyStore.position(channel) : undefined;
  }

  async publishJoin(channel: string, info: ClientInfo): Promise<void> {
    this.events?.join(channel, info);
  }

  async publishLeave(channel: string, info: ClientInfo): Promise<void> {
    this.events?.leave(channel, info);
  }

  async publishMember(channel: string, member: MemberEvent, skipClient?: string): Promise<void> {
    this.events?.member(channel, member, skipClient);
  }

  async publishControl(message: ControlMessage): Promise<void> {
    this.events?.control(message);
  }

  async channels(pattern: string | undefined): Promise<ChannelCounts> {
    return this.events?.channels(pattern) ?? {};
  }

  // Every publication reaches the local hub anyway; nothing to subscribe to.
  async subscribe(): Promise<void> {}
  async unsubscribe(): Promise<void> {}

  async position(channel: string): Promise<StreamPosition> {
    return this.historyStore.position(channel);
  }

  async recover(channel: string, since: StreamPosition, maxPublications: number): Promise<Recovery> {
    return this.historyStore.recover(channel, since, maxPublications);
  }

  async history(channel: string, query: HistoryQuery): Promise<HistoryPage> {
    return this.historyStore.page(channel, query);
  }

  async removeHistory(channel: string): Promise<void> {
    this.historyStore.remove(channel);
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }
}
