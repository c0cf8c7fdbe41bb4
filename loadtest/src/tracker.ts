/**
 * Publications carry a per-channel sequence number and the publish time;
 * every receiving connection checks the sequence, so that the report can
 * count lost, duplicated and reordered messages apart, and records
 * publish-to-deliver latency.
 */

import { Histogram } from './histogram.js';

/** What a benchmark publication carries: sequence in its channel, publish time (ms since epoch), padding. */
export interface Payload {
  s: number;
  t: number;
  p: string;
}

export const now = () => performance.timeOrigin + performance.now();

export function payload(seq: number, padBytes: number): Payload {
  return { s: seq, t: now(), p: 'x'.repeat(padBytes) };
}

/** What one receiver has of one channel: every sequence below `next`, and these above it. */
interface Seen {
  next: number;
  ahead: Set<number>;
}

/**
 * Counts each publication once per receiver: delivered (first arrival),
 * duplicated (arrived again), reordered (arrived after a later one). Lost is
 * what never arrived: expected minus delivered. Memory per receiver and
 * channel is the sequences that arrived ahead of a gap, none when in order.
 */
export class DeliveryTracker {
  readonly latency = new Histogram();
  delivered = 0;
  duplicated = 0;
  /** Publications that arrived after a later one of the same channel (delivered, out of order). */
  reordered = 0;
  private readonly seen = new Map<string, Seen>();

  /** Records a publication received by connection `receiver`. */
  receive(receiver: number, channel: string, data: unknown): void {
    const { s, t } = data as Payload;
    this.latency.record(now() - t);
    const key = `${receiver} ${channel}`;
    let seen = this.seen.get(key);
    if (!seen) {
      seen = { next: 0, ahead: new Set() };
      this.seen.set(key, seen);
    }
    if (s < seen.next || seen.ahead.has(s)) {
      this.duplicated++;
      return;
    }
    this.delivered++;
    if (s > seen.next) {
      seen.ahead.add(s);
      return;
    }
    // The one the receiver waited for: anything held ahead of it arrived earlier, so this is reordered.
    if (seen.ahead.size > 0) this.reordered++;
    seen.next++;
    while (seen.ahead.delete(seen.next)) seen.next++;
  }

  /** Resolves once `target` unique deliveries arrived, or the timeout passed (then fewer). */
  waitFor(target: number, timeoutMs: number): Promise<void> {
    return waitForDeliveries(this, target, timeoutMs, 10);
  }
}

/**
 * Resolves once `counter.delivered` reached `target`, after `timeoutMs`, or
 * once nothing arrived for 3 s (the rest is lost); looks every `pollMs`.
 */
export async function waitForDeliveries(
  counter: { readonly delivered: number },
  target: number,
  timeoutMs: number,
  pollMs = 5,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = counter.delivered;
  let quietSince = performance.now();
  while (counter.delivered < target && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, pollMs));
    if (counter.delivered !== last) {
      last = counter.delivered;
      quietSince = performance.now();
    } else if (performance.now() - quietSince > Math.min(timeoutMs, 3000)) {
      return; // nothing arrived for a while: the rest is lost
    }
  }
}

/**
 * Calls `send(i)` for i = 0 .. count-1 at a fixed rate without waiting for
 * answers (open loop: a slow server makes latency grow, not the offered load
 * shrink). Failures go to `onError`.
 */
export async function openLoop(
  count: number,
  rate: number,
  send: (i: number) => Promise<unknown>,
  onError: (err: unknown) => void,
): Promise<void> {
  const started = performance.now();
  const answers: Promise<unknown>[] = [];
  let sent = 0;
  while (sent < count) {
    const due = Math.min(count, Math.floor(((performance.now() - started) * rate) / 1000) + 1);
    while (sent < due) answers.push(send(sent++).catch(onError));
    if (sent < count) await new Promise((r) => setTimeout(r, 1));
  }
  await Promise.all(answers);
}
