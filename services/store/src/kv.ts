/**
 * The store in a NATS KV bucket of its namespace's own (`<prefix>_store`,
 * which the service's NATS user may use), shared by every replica.
 * A key `Product/123/price` is the KV key `Product.123.price`, so a prefix
 * lists with `Product.123.>`. Values are JSON `{value, mtime}`, tombstones
 * `{deleted: true, mtime}` (plain puts: a KV delete would lose the mtime).
 * Writes are compare-and-set on the key's last revision and retried when
 * (after a short random pause) when another replica wrote in between, so
 * mtimes strictly increase per key.
 */

import { type KV, Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { Subjects } from '@switchboard/protocol';
import { openOrCreate } from '@switchboard/sdk';
import {
  isTombstone,
  nextMtime,
  type StoreBackend,
  type StoreEntry,
  type StoreRecord,
  type Tombstone,
} from './backend.js';

/** JetStream's "wrong last sequence": someone else wrote the key since we read it. */
const WRONG_LAST_SEQUENCE = new Set([10071, 10164]);
/** Tries of a contended write before giving up (with a short random pause between them). */
const ATTEMPTS = 30;

type Stored = { value: unknown; mtime: number } | { deleted: true; mtime: number };

const toKv = (key: string) => key.replaceAll('/', '.');

export class KvBackend implements StoreBackend {
  constructor(private readonly kv: KV) {}

  /** Opens the namespace's bucket (`<prefix>_store`), creating it (one revision per key, `replicas` copies) when missing. */
  static async open(connection: NatsConnection, prefix: string, replicas = 1): Promise<KvBackend> {
    const bucket = new Subjects(prefix).serviceBucket('store');
    return new KvBackend(await openOrCreate(new Kvm(connection), bucket, { history: 1, replicas }));
  }

  async get(key: string): Promise<StoreRecord | undefined> {
    return (await this.read(key)).record;
  }

  async set(key: string, value: unknown, now: number): Promise<StoreEntry> {
    // `next` always answers an entry here, so `write` does too.
    return (await this.write(key, (previous) => ({ key, value, mtime: nextMtime(previous, now) })))!;
  }

  async delete(key: string, now: number): Promise<Tombstone | undefined> {
    return this.write(key, (previous) =>
      previous && !isTombstone(previous)
        ? { key, deleted: true, mtime: nextMtime(previous, now) }
        : undefined,
    );
  }

  async list(prefix: string): Promise<StoreRecord[]> {
    if (prefix.split('/').length === 3) {
      const record = await this.get(prefix);
      return record ? [record] : [];
    }
    const keys: string[] = [];
    for await (const k of await this.kv.keys(`${toKv(prefix)}.>`)) keys.push(k.replaceAll('.', '/'));
    const records = await Promise.all(keys.map((k) => this.get(k)));
    return records
      .filter((r): r is StoreRecord => r !== undefined)
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  private async read(key: string): Promise<{ record: StoreRecord | undefined; revision: number }> {
    const entry = await this.kv.get(toKv(key));
    if (!entry) return { record: undefined, revision: 0 };
    if (entry.operation !== 'PUT') return { record: undefined, revision: entry.revision };
    const stored = entry.json<Stored>();
    const record: StoreRecord =
      'deleted' in stored
        ? { key, deleted: true, mtime: stored.mtime }
        : { key, value: stored.value, mtime: stored.mtime };
    return { record, revision: entry.revision };
  }

  /** Read, compute, put if nobody wrote meanwhile; again when someone did. */
  private async write<T extends StoreRecord>(
    key: string,
    next: (previous: StoreRecord | undefined) => T | undefined,
  ): Promise<T | undefined> {
    for (let attempt = 1; ; attempt++) {
      const { record, revision } = await this.read(key);
      const value = next(record);
      if (value === undefined) return undefined;
      const stored: Stored = isTombstone(value)
        ? { deleted: true, mtime: value.mtime }
        : { value: (value as StoreEntry).value, mtime: value.mtime };
      try {
        await this.kv.put(toKv(key), JSON.stringify(stored), { previousSeq: revision });
        return value;
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (attempt >= ATTEMPTS || typeof code !== 'number' || !WRONG_LAST_SEQUENCE.has(code)) throw err;
        await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(attempt, 10) * 2));
      }
    }
  }
}
