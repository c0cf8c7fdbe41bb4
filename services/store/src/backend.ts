/**
 * Where the store keeps its records. Deletions leave tombstones, so that a
 * client catching up learns that a key it holds is gone. The backend assigns
 * mtimes: `max(now, previous mtime + 1)`, strictly increasing per key even
 * across deletes and re-creates and across replicas sharing one backend.
 */

import { under } from './keys.js';

export interface StoreEntry {
  key: string;
  value: unknown;
  mtime: number;
}

export interface Tombstone {
  key: string;
  deleted: true;
  mtime: number;
}

export type StoreRecord = StoreEntry | Tombstone;

export function isTombstone(record: StoreRecord): record is Tombstone {
  return 'deleted' in record;
}

export interface StoreBackend {
  /** The record under a full key, tombstone included; undefined when never written. */
  get(key: string): Promise<StoreRecord | undefined>;
  /** Stores `value` with a fresh mtime. */
  set(key: string, value: unknown, now: number): Promise<StoreEntry>;
  /** Replaces a live entry with a tombstone; undefined when there was nothing to delete. */
  delete(key: string, now: number): Promise<Tombstone | undefined>;
  /** Every record at or under `prefix`, tombstones included, sorted by key. */
  list(prefix: string): Promise<StoreRecord[]>;
}

export function nextMtime(previous: StoreRecord | undefined, now: number): number {
  return previous ? Math.max(now, previous.mtime + 1) : now;
}

/** In one process (embedded mode, tests): gone with the process; tombstones are kept. */
export class MemoryBackend implements StoreBackend {
  private readonly records = new Map<string, StoreRecord>();

  async get(key: string): Promise<StoreRecord | undefined> {
    return this.records.get(key);
  }

  async set(key: string, value: unknown, now: number): Promise<StoreEntry> {
    const entry: StoreEntry = { key, value, mtime: nextMtime(this.records.get(key), now) };
    this.records.set(key, entry);
    return entry;
  }

  async delete(key: string, now: number): Promise<Tombstone | undefined> {
    const previous = this.records.get(key);
    if (!previous || isTombstone(previous)) return undefined;
    const tombstone: Tombstone = { key, deleted: true, mtime: nextMtime(previous, now) };
    this.records.set(key, tombstone);
    return tombstone;
  }

  async list(prefix: string): Promise<StoreRecord[]> {
    return [...this.records.values()]
      .filter((r) => under(r.key, prefix))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
}
