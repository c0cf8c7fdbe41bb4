/**
 * A connection's subscriptions by channel. Most connections hold one, so the
 * first lives in a field and a Map is made only for a second: a Map and its
 * hash table cost about 180 bytes, more than the rest of an idle subscription.
 */

export interface Keyed {
  readonly channel: string;
}

export class Subscriptions<S extends Keyed> {
  private first: S | undefined;
  private rest: Map<string, S> | undefined;

  get size(): number {
    return (this.first === undefined ? 0 : 1) + (this.rest?.size ?? 0);
  }

  get(channel: string): S | undefined {
    if (this.first?.channel === channel) return this.first;
    return this.rest?.get(channel);
  }

  has(channel: string): boolean {
    return this.get(channel) !== undefined;
  }

  /** Adds or replaces the subscription of `sub.channel`. */
  set(sub: S): void {
    if (this.first === undefined || this.first.channel === sub.channel) {
      if (this.first === undefined && this.rest?.has(sub.channel)) this.rest.set(sub.channel, sub);
      else this.first = sub;
      return;
    }
    (this.rest ??= new Map()).set(sub.channel, sub);
  }

  delete(channel: string): boolean {
    if (this.first?.channel === channel) {
      this.first = undefined;
      return true;
    }
    const deleted = this.rest?.delete(channel) ?? false;
    if (this.rest?.size === 0) this.rest = undefined;
    return deleted;
  }

  /** A snapshot: the caller may change the subscriptions while it walks them. */
  list(): S[] {
    const all = this.rest ? [...this.rest.values()] : [];
    if (this.first) all.unshift(this.first);
    return all;
  }
}
