/**
 * Latency histogram with bounded relative error (about 0.5 %): exact buckets
 * below 1 ms at 1 µs resolution, logarithmic buckets above. Constant memory
 * however many values are recorded, so percentiles over millions of
 * deliveries stay cheap.
 */

const LINEAR_US = 1000;
const GROWTH = Math.log(1.005);
const MAX_INDEX = LINEAR_US + Math.ceil(Math.log(3_600_000_000 / LINEAR_US) / GROWTH);

export class Histogram {
  private counts = new Float64Array(MAX_INDEX + 1);
  count = 0;
  max = 0;
  private sum = 0;

  /** Records one value in milliseconds. */
  record(ms: number): void {
    const us = Math.max(0, ms * 1000);
    const index =
      us < LINEAR_US
        ? Math.floor(us)
        : Math.min(MAX_INDEX, LINEAR_US + Math.floor(Math.log(us / LINEAR_US) / GROWTH));
    this.counts[index]!++;
    this.count++;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
  }

  /** The value (ms) at or below which `p` percent of the recorded values fall; 0 when empty. */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i <= MAX_INDEX; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(this.max, bucketTop(i) / 1000);
    }
    return this.max;
  }

  mean(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }

  reset(): void {
    this.counts.fill(0);
    this.count = 0;
    this.max = 0;
    this.sum = 0;
  }
}

/** Upper bound (µs) of a bucket. */
function bucketTop(index: number): number {
  return index < LINEAR_US ? index + 1 : LINEAR_US * Math.exp((index - LINEAR_US + 1) * GROWTH);
}
