/**
 * Metrics counted on hot paths (per frame, delivery, command or connect).
 * prom-client's own `inc` and `observe` hash the label set on every call,
 * about a microsecond each: as long as a whole delivery takes. Here a series
 * is a plain number (or bucket array) found once, and prom-client sees the
 * totals when it is scraped.
 */

import { Counter, type CounterConfiguration, type Metric, type Registry } from 'prom-client';

/** One counter series: add to it freely, it reaches Prometheus at the next scrape. */
export class Tally {
  pending = 0;

  inc(value = 1): void {
    this.pending += value;
  }
}

/**
 * Series of a labeled metric by label values, in the order of its label
 * names: a Map per label, so that finding one builds no key string.
 */
class SeriesTable<L extends string, S> {
  private readonly root = new Map<string, unknown>();
  private readonly all: { labels: Record<L, string>; series: S }[] = [];

  constructor(
    private readonly labelNames: readonly L[],
    private readonly make: () => S,
  ) {}

  of(labels: Record<L, string>): S {
    const names = this.labelNames;
    let level = this.root;
    for (let i = 0; i < names.length - 1; i++) {
      const value = labels[names[i]!];
      let next = level.get(value) as Map<string, unknown> | undefined;
      if (!next) {
        next = new Map();
        level.set(value, next);
      }
      level = next;
    }
    const last = names.length > 0 ? labels[names[names.length - 1]!] : '';
    let series = level.get(last) as S | undefined;
    if (series === undefined) {
      series = this.make();
      level.set(last, series);
      this.all.push({ labels: { ...labels }, series });
    }
    return series;
  }

  entries(): readonly { labels: Record<L, string>; series: S }[] {
    return this.all;
  }
}

/** A prom-client counter whose increments are tallied and added to it when it is collected. */
export class HotCounter<L extends string> {
  readonly counter: Counter<L>;
  private readonly tallies: SeriesTable<L, Tally>;

  constructor(config: CounterConfiguration<L> & { labelNames: readonly L[] }) {
    this.tallies = new SeriesTable(config.labelNames, () => new Tally());
    const tallies = this.tallies;
    this.counter = new Counter({
      ...config,
      collect() {
        for (const { labels, series } of tallies.entries()) {
          if (series.pending === 0) continue;
          this.inc(labels, series.pending);
          series.pending = 0;
        }
      },
    });
  }

  /** The series of these label values (look it up once where the values are fixed). */
  of(labels: Record<L, string>): Tally {
    return this.tallies.of(labels);
  }

  inc(labels: Record<L, string>, value = 1): void {
    this.tallies.of(labels).pending += value;
  }
}

/** One histogram series: counts per bucket (the last is +Inf), sum and count. */
export class HistogramSeries {
  readonly counts: number[];
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  metricName: string;
}

/**
 * A labeled histogram in the text format prom-client's registry writes
 * (`_bucket` with cumulative `le`, `_sum`, `_count`), registered as one of
 * its metrics.
 */
export class HotHistogram<L extends string> {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly table: SeriesTable<L, HistogramSeries>;

  constructor(
    readonly name: string,
    readonly help: string,
    labelNames: readonly L[],
    private readonly buckets: readonly number[],
    registry: Registry,
  ) {
    this.table = new SeriesTable(labelNames, () => new HistogramSeries(buckets));
    registry.registerMetric(this as unknown as Metric);
  }

  of(labels: Record<L, string>): HistogramSeries {
    return this.table.of(labels);
  }

  observe(labels: Record<L, string>, value: number): void {
    this.table.of(labels).observe(value);
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: MetricValue[] } {
    const values: MetricValue[] = [];
    for (const { labels, series } of this.table.entries()) {
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += series.counts[i]!;
        values.push({ value: cumulative, labels: { le, ...labels }, metricName: `${this.name}_bucket` });
      });
      cumulative += series.counts[this.buckets.length]!;
      values.push({
        value: cumulative,
        labels: { le: '+Inf', ...labels },
        metricName: `${this.name}_bucket`,
      });
      values.push({ value: series.sum, labels, metricName: `${this.name}_sum` });
      values.push({ value: series.count, labels, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
