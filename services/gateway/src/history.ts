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

  /** Appends a publication and returns it with its offset. */
  add(channel: string, pub: Publication, limits: HistoryLimits): Publication & { offset: number } {
    const now = this.now();
    const stream = this.live(channel, now, true)!;
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
      stream = { epoch: newEpoch(), offset: 0, items: [], metaExpiresAt: now + this.metaTtlSeconds * 1000 };
      this.streams.set(channel, stream);
      return stream;
    }
    let expired = 0;
    while (expired < stream.items.length && stream.items[expired]!.expiresAt <= now) expired++;
    if (expired > 0) stream.items.splice(0, expired);
    return stream;
  }
}
