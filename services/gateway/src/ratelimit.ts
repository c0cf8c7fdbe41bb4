/**
 * Token buckets per key (a client IP): `rate` per second, a burst of `burst`.
 * Memory is bounded: at most `maxKeys` buckets, full ones swept first and the
 * oldest dropped after that (a dropped key starts again with a full bucket,
 * so a flood of new addresses costs each of them one burst at most). Pure:
 * the clock is passed in.
 */

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private lastSweep = 0;

  /** `rate` 0 turns the limit off: every take succeeds. */
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly maxKeys = 100_000,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.buckets.size;
  }

  /** Takes one token for `key`; false when its bucket is empty. */
  take(key: string): boolean {
    if (this.rate === 0) return true;
    const now = this.now();
    let bucket = this.buckets.get(key);
    if (bucket) {
      bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) * this.rate) / 1000);
      bucket.at = now;
    } else {
      if (this.buckets.size >= this.maxKeys) this.makeRoom(now);
      bucket = { tokens: this.burst, at: now };
      this.buckets.set(key, bucket);
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  private makeRoom(now: number): void {
    // A sweep is linear: at most once a second; in between the oldest key goes.
    if (now - this.lastSweep >= 1000) {
      this.lastSweep = now;
      for (const [key, b] of this.buckets) {
        if (b.tokens + ((now - b.at) * this.rate) / 1000 >= this.burst) this.buckets.delete(key);
      }
    }
    if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
  }
}
