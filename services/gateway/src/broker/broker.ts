/**
 * The broker moves publications, joins and leaves between gateways and keeps
 * history. `memory` serves one gateway; a NATS broker serves a cluster.
 */

import type { ClientInfo, Publication, StreamPosition } from '@switchboard/protocol';
import type { MaybePromise } from '../maybe-promise.js';
import type { HistoryLimits, HistoryPage, HistoryQuery, PublicationVersion, Recovery } from '../history.js';

/** A presence channel's member (a user, over all its connections in the cluster) came or went. */
export type MemberEvent = { op: 'added'; info: ClientInfo } | { op: 'removed'; user: string };

/** A server API action on connections wherever they are: every gateway applies it to its own. */
export type ControlMessage =
  | { op: 'subscribe'; user: string; channel: string; client?: string; info?: unknown }
  | { op: 'unsubscribe'; user: string; channel: string; client?: string }
  /** `whitelist`: client ids spared (a new connection of a single-connection user). */
  | { op: 'disconnect'; user: string; client?: string; whitelist?: string[]; code: number; reason: string }
  /** Server API `refresh`: `expired` ends the connections as expired, else `expire_at` (unix seconds, 0 none) is their new expiry. */
  | { op: 'refresh'; user: string; client?: string; expired: boolean; expire_at: number };

export interface BrokerEvents {
  /**
   * `skipClient`: the publishing connection that must not receive it; `delta`:
   * the publisher asked for delta compression (subscribers that negotiated it
   * may get it as a delta against the channel's previous publication).
   */
  publication(channel: string, pub: Publication, skipClient: string | undefined, delta: boolean): void;
  join(channel: string, info: ClientInfo): void;
  leave(channel: string, info: ClientInfo): void;
  /** `skipClient`: the connection that made the member come (it has itself in its roster). */
  member(channel: string, member: MemberEvent, skipClient?: string): void;
  control(message: ControlMessage): void;
  /** The broker came back after an outage: live traffic of the gap was not received. */
  reconnected(): void;
  /**
   * A namespace's history stream has a new leader: what the old one stored
   * last may never have been republished to the live subjects.
   */
  leaderChanged(namespace: string): void;
  /** Another gateway asks for this one's local channels and their subscriber counts. */
  channels(pattern: string | undefined): ChannelCounts;
}

export type ChannelCounts = Record<string, { num_clients: number }>;

export interface PublishOptions {
  /** Keep the publication in history with these limits; it then gets an offset. */
  history?: HistoryLimits | undefined;
  skipClient?: string | undefined;
  /** Deliver it as a delta to subscribers that negotiated delta compression (server API `delta`). */
  delta?: boolean;
  /**
   * Server API `idempotency_key`: with history, a cluster stores it once per
   * channel and key within the duplicate window (the gateway's own memory, see
   * idempotency.ts, answers retries that reach it again).
   */
  idempotencyKey?: string | undefined;
  /** With history: dropped (not stored, not delivered) when not newer than the channel's last. */
  version?: PublicationVersion | undefined;
}

/**
 * A publish that could not be stored within `publish_timeout`: the caller gets
 * a temporary error. `mayBeStored`: an attempt went unanswered (a timeout), so
 * JetStream may still store it (a leader that got it before an election); a
 * retry with the same idempotency key is stored once either way.
 */
export class HistoryUnavailable extends Error {
  constructor(
    channel: string,
    ms: number,
    readonly mayBeStored: boolean,
  ) {
    super(
      `history of ${channel} not writable within ${ms} ms (NATS has no leader for it or is unreachable)` +
        (mayBeStored ? '; an attempt went unanswered and may still be stored' : ''),
    );
  }
}

export interface Broker {
  start(events: BrokerEvents): Promise<void>;
  /** Whether the broker can take publications now (readiness). */
  readonly ready: boolean;
  /** Resolves true once the broker is ready (at once when it is), false after `timeoutMs`. */
  whenReady(timeoutMs: number): Promise<boolean>;
  /**
   * Hands a publication over; the position once stored when it keeps history.
   * Synchronous when nothing is waited for (no history, or history kept in
   * memory): a live publication is out when it returns. Throws or rejects
   * when it was not published.
   */
  publish(
    channel: string,
    pub: Publication,
    options: PublishOptions,
  ): MaybePromise<StreamPosition | undefined>;
  publishJoin(channel: string, info: ClientInfo): Promise<void>;
  publishLeave(channel: string, info: ClientInfo): Promise<void>;
  /** The occupancy decider's member events, to every gateway with subscribers of the channel. */
  publishMember(channel: string, member: MemberEvent, skipClient?: string): Promise<void>;
  /** Delivers a control message to every gateway, this one included. */
  publishControl(message: ControlMessage): Promise<void>;
  /** Channels with subscribers on any of `gateways` gateways (this one included), counts added up. */
  channels(pattern: string | undefined, gateways: number): Promise<ChannelCounts>;
  /** Start receiving a channel's traffic; called when its first local subscriber arrives. */
  subscribe(channel: string): Promise<void>;
  /** Stop receiving it; called when its last local subscriber leaves. */
  unsubscribe(channel: string): Promise<void>;
  position(channel: string): Promise<StreamPosition>;
  recover(channel: string, since: StreamPosition, maxPublications: number): Promise<Recovery>;
  history(channel: string, query: HistoryQuery): Promise<HistoryPage>;
  removeHistory(channel: string): Promise<void>;
  close(): Promise<void>;
}
