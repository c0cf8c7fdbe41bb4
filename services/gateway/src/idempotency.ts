/**
 * Results of publications with an `idempotency_key` (server API), per
 * channel and key, for `IDEMPOTENT_RESULT_TTL_MS` as in Centrifugo: a retry
 * within it is not published again and answers what the first call answered.
 * This is the gateway's own memory; across a cluster JetStream's duplicate
 * window does the same for channels with history (see broker/nats.ts), and
 * for channels without a key claimed in the registry's NATS KV bucket.
 */

/** How long a result is kept: Centrifugo's 5 minutes. */
export const IDEMPOTENT_RESULT_TTL_MS = 5 * 60_000;
/** The longest key accepted (characters). */
export const IDEMPOTENCY_KEY_MAX_LENGTH = 256;
/** Results kept at most: beyond, the oldest go first (memory stays bounded under any load). */
const MAX_RESULTS = 100_000;

export class IdempotentResults<T> {
  private readonly results = new Map<string, { result: Promise<T>; expiresAt: number }>();

  constructor(
    private readonly ttlMs = IDEMPOTENT_RESULT_TTL_MS,
    private readonly max = MAX_RESULTS,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The result of the first `publish` with this channel and key within the
   * window, running it when there is none. Concurrent calls share one run; a
   * run that throws or whose result `failed` says is an error is forgotten,
   * so that a retry runs again.
   */
  once(channel: string, key: string, publish: () => Promise<T>, failed: (result: T) => boolean): Promise<T> {
    const id = JSON.stringify([channel, key]);
    const now = this.now();
    const known = this.results.get(id);
    if (known && known.expiresAt > now) return known.result;
    this.results.delete(id);
    // Insertion order is expiry order (one TTL for all): expired and surplus entries are at the front.
    for (const [oldest, entry] of this.results) {
      if (entry.expiresAt > now && this.results.size < this.max) break;
      this.results.delete(oldest);
    }
    const result = publish();
    const entry = { result, expiresAt: now + this.ttlMs };
    this.results.set(id, entry);
    const forget = () => {
      if (this.results.get(id) === entry) this.results.delete(id);
    };
    result.then((r) => failed(r) && forget(), forget);
    return result;
  }

  get size(): number {
    return this.results.size;
  }
}
