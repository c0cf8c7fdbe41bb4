/**
 * In-memory history streams: per channel an epoch, a strictly increasing
 * offset and the last publications within size and age limits. Recovery
 * tells `recovered: false` whenever it cannot prove nothing was missed.
 */

import { randomBytes } from 'node:crypto';
import type { Publication, StreamPosition } from '@switchboard/protocol';

export interface HistoryLimits {
  size: number;
  ttlSeconds: number;
}

/**
 * An application's version of a publication (server API `version`,
 * `version_epoch`): one not newer than the channel's last in the same epoch
 * is dropped. An empty epoch matches any.
 */
export interface PublicationVersion {
  version: number;
  epoch: string;
}

/** Whether a publication at `next` is not newer than the channel's last stored one (`top`). Pure. */
export function outdated(top: PublicationVersion | undefined, next: PublicationVersion): boolean {
  if (top === undefined || next.version === 0) return false;
  return (next.epoch === '' || next.epoch === top.epoch) && next.version <= top.version;
}

export interface HistoryQuery {
  limit: number;
  since?: StreamPosition;
  reverse?: boolean;
}

export interface HistoryPage {
  publications: Publication[];
  position: StreamPosition;
}

export interface Recovery {
  recovered: boolean;
  publications: Publication[];
  position: StreamPosition;
}

interface Stored {
  pub: Publication & { offset: number };
  expiresAt: number;
}

interface Stream {
  epoch: string;
  offset: number;
  items: Stored[];
  /** The application's version of the last publication ({0, ''} when it gave none). */
  version: PublicationVersion;
  /** Offsets and epoch are forgotten after this: a new epoch then tells clients history was lost. */
  metaExpiresAt: number;
}

/** A fresh epoch: a stream that lost its history gets a new one so that clients learn of the loss. */
export const newEpoch = () => randomBytes(4).toString('hex');

/**
 * What a client that saw everything up to `since` missed. Pure: `items` are
 * the stream's retained publications in ascending offset order.
 */
export function recover(
  stream: { epoch: string; offset: number; items: readonly (Publication & { offset: number })[] },
  since: StreamPosition,
  maxPublications: number,
): Recovery {
  const position = { offset: stream.offset, epoch: stream.epoch };
  const fail = { recovered: false, publications: [], position };
  // An empty epoch means "any epoch" to the client; "_" is its poison value after a state reset.
  if (since.epoch !== '' && since.epoch !== stream.epoch) return fail;
  if (since.offset > stream.offset) return fail;
  if (since.offset === stream.offset) return { recovered: true, publications: [], position };
  const first = stream.items[0];
  if (first === undefined || first.offset > since.offset + 1) return fail;
  const missed = stream.items.filter((p) => p.offset > since.offset);
  if (missed.length > maxPublications) return fail;
  return { recovered: true, publications: missed, position };
}

/**
 * Cache recovery (`force_recovery_mode: "cache"`): the channel's latest
 * publication instead of what was missed, as Centrifugo decides it. Pure:
 * `newest` are retained publications newest first (what the subscriber's
 * tags filter lets through first, when it has one), `latest` the newest one
 * unfiltered. Recovered when the newest publication is the top of the stream,
 * or, with nothing retained, when the client is at that top already; the
 * latest publication is sent unless the client has it already.
 */
export function recoverLatest(
  position: StreamPosition,
  latest: (Publication & { offset: number }) | undefined,
  newest: Publication | undefined,
  since: StreamPosition,
): Recovery {
  const current = since.offset > 0 && since.offset === position.offset && since.epoch === position.epoch;
  if (latest === undefined) return { recovered: current, publications: [], position };
  const recovered = latest.offset === position.offset;
  const publications = recovered && !current && newest !== undefined ? [newest] : [];
  return { recovered, publications, position };
}

/**
 * How a publication at `next` follows the last one delivered of its channel
 * (`last`, undefined before the first): `seen` already (a republish, never
 * delivered twice), a `gap` (one in between was missed: positioned
 * subscribers must recover), or `next` (in order, or a new epoch). Pure.
 */
export function sequence(last: StreamPosition | undefined, next: StreamPosition): 'next' | 'seen' | 'gap' {
  if (last === undefined || last.epoch !== next.epoch) return 'next';
  if (next.offset <= last.offset) return 'seen';
  return next.offset > last.offset + 1 ? 'gap' : 'next';
}

/** A page of history: after `since` (or before it when reversed), newest first when reversed. Pure. */
export function page(
  stream: { epoch: string; offset: number; items: readonly (Publication & { offset: number })[] },
  query: HistoryQuery,
): HistoryPage {
  const position = { offset: stream.offset, epoch: stream.epoch };
  let pubs = [...stream.items];
  if (query.since) {
    if (query.since.epoch !== '' && query.since.epoch !== stream.epoch) return { publications: [], position };
    const from = query.since.offset;
    pubs = query.reverse
      ? pubs.filter((p) => p.offset < from || from === 0)
      : pubs.filter((p) => p.offset > from);
  }
  if (query.reverse) pubs.reverse();
  return { publications: pubs.slice(0, query.limit), position };
}

export class MemoryHistory {
  private readonly streams = new Map<string, Stream>();

  constructor(
    private readonly metaTtlSeconds: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Appends a publication and returns it with its offset; undefined when its `version` is outdated (dropped). */
  add(
    channel: string,
    pub: Publication,
    limits: HistoryLimits,
    version: PublicationVersion = { version: 0, epoch: '' },
  ): (Publication & { offset: number }) | undefined {
    const now = this.now();
    const stream = this.live(channel, now, true)!;
    if (outdated(stream.version, version)) return undefined;
    stream.version = version;
    stream.offset += 1;
    const stored = { ...pub, offset: stream.offset, epoch: stream.epoch };
    stream.items.push({ pub: stored, expiresAt: now + limits.ttlSeconds * 1000 });
    if (stream.items.length > limits.size) stream.items.splice(0, stream.items.length - limits.size);
    stream.metaExpiresAt = now + Math.max(this.metaTtlSeconds, limits.ttlSeconds) * 1000;
    return stored;
  }

  position(channel: string): StreamPosition {
    const stream = this.live(channel, this.now(), true)!;
    return { offset: stream.offset, epoch: stream.epoch };
  }

  recover(channel: string, since: StreamPosition, maxPublications: number): Recovery {
    const stream = this.live(channel, this.now(), true)!;
    return recover({ ...stream, items: stream.items.map((s) => s.pub) }, since, maxPublications);
  }

  page(channel: string, query: HistoryQuery): HistoryPage {
    const stream = this.live(channel, this.now(), true)!;
    return page({ ...stream, items: stream.items.map((s) => s.pub) }, query);
  }

  remove(channel: string): void {
    const stream = this.streams.get(channel);
    if (stream) stream.items = [];
  }

  /** Drops expired publications and forgotten streams; called periodically. */
  sweep(): void {
    const now = this.now();
    for (const channel of this.streams.keys()) this.live(channel, now, false);
  }

  private live(channel: string, now: number, create: boolean): Stream | undefined {
    let stream = this.streams.get(channel);
    if (stream && stream.metaExpiresAt <= now) {
      this.streams.delete(channel);
      stream = undefined;
    }
    if (!stream) {
      if (!create) return undefined;
      stream = {
        epoch: newEpoch(),
        offset: 0,
        items: [],
        version: { version: 0, epoch: '' },
        metaExpiresAt: now + this.metaTtlSeconds * 1000,
      };
      this.streams.set(channel, stream);
      return stream;
    }
    let expired = 0;
    while (expired < stream.items.length && stream.items[expired]!.expiresAt <= now) expired++;
    if (expired > 0) stream.items.splice(0, expired);
    return stream;
  }
}
