/**
 * Subscription with catch-up: the client says which keys it holds and their
 * mtimes; it gets back only what changed under the subscribed prefix.
 */

import { isTombstone, type StoreRecord } from './backend.js';
import { under } from './keys.js';

/** What subscribers receive: a value, or the news that a key is gone. */
export type StoreEvent =
  { key: string; value: unknown; mtime: number } | { key: string; deleted: true; mtime: number };

/**
 * `records`: everything at or under `prefix` (tombstones included).
 * `has`: `{key: mtime}` the client holds (keys outside `prefix` are ignored).
 * Returns, sorted by key: entries the client lacks or holds an older mtime
 * of, and deletions of keys it holds. A key the client holds that the store
 * has no record of at all is reported deleted with the client's mtime.
 */
export function catchUp(prefix: string, records: StoreRecord[], has: Record<string, number>): StoreEvent[] {
  const out: StoreEvent[] = [];
  const seen = new Set<string>();
  for (const record of records) {
    if (!under(record.key, prefix)) continue;
    seen.add(record.key);
    const known = Object.hasOwn(has, record.key) ? has[record.key] : undefined;
    if (isTombstone(record)) {
      if (known !== undefined) out.push({ key: record.key, deleted: true, mtime: record.mtime });
    } else if (known === undefined || record.mtime > known) {
      out.push({ key: record.key, value: record.value, mtime: record.mtime });
    }
  }
  for (const [key, mtime] of Object.entries(has)) {
    if (under(key, prefix) && !seen.has(key)) out.push({ key, deleted: true, mtime });
  }
  return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}
