/**
 * Store, an example backend service owning the `store` namespace: the
 * seed's REST-like realtime API.
 *
 * - RPC `get {key}`: one value (`Type/id/field`) or every field under a
 *   prefix (`Type/id`, `Type`).
 * - RPC `set {key, value}` / `delete {key}`: write with a fresh mtime and
 *   publish the change to the key's channel and its parents
 *   (`store:Type/id/field`, `store:Type/id`, `store:Type`).
 * - Subscribe `store:<prefix>` with `data: {"<key>": <mtime>}` (what the
 *   client holds): the reply's data carries only what changed under the
 *   prefix, deletions included; live changes follow as publications.
 * - Client publications are refused: writes go through `set`.
 */

import { Errors, type ServiceRequest } from '@switchboard/protocol';
import { ApiCallError, type Bus, Service, ServiceError, type ServiceRegistry } from '@switchboard/sdk';
import { isTombstone, MemoryBackend, type StoreBackend } from './backend.js';
import { catchUp, type StoreEvent } from './catchup.js';
import { isFullKey, isKey, levels } from './keys.js';

export * from './backend.js';
export * from './catchup.js';
export * from './keys.js';
export { KvBackend } from './kv.js';

export type Action = 'read' | 'write';

export interface StoreOptions {
  /** Subject prefix of the deployment (`SWITCHBOARD_NATS_PREFIX`), default `sb`. */
  prefix?: string;
  /** Where the replica announces itself (the NATS KV registry in a cluster). */
  registry?: ServiceRegistry;
  /** Namespace the service owns, default `store`. */
  namespace?: string;
  /** Where records live, default in memory (one replica); KvBackend shares them between replicas. */
  backend?: StoreBackend;
  /** Who may read (get, subscribe) and write (set, delete) a key; default: any authenticated user. */
  authorize?: (req: ServiceRequest, action: Action, key: string) => boolean;
  /** Largest value, as JSON bytes; default 64 KiB. */
  maxValueBytes?: number;
  /** Most keys a subscribe may claim to hold; default 10000. */
  maxKnownKeys?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

export function createStoreService(bus: Bus, options: StoreOptions = {}): Service {
  const namespace = options.namespace ?? 'store';
  const backend = options.backend ?? new MemoryBackend();
  const authorize = options.authorize ?? ((req: ServiceRequest) => req.user !== '');
  const maxValueBytes = options.maxValueBytes ?? 64 * 1024;
  const maxKnownKeys = options.maxKnownKeys ?? 10_000;
  const now = options.now ?? Date.now;
  const service = new Service(
    bus,
    { namespace, ...(options.prefix ? { prefix: options.prefix } : {}) },
    options.registry,
  );

  const allow = (req: ServiceRequest, action: Action, key: string) => {
    if (!authorize(req, action, key)) throw ServiceError.from(Errors.permissionDenied);
  };

  /** Publishes a change to the key's channel and its parents'. */
  const announce = async (event: StoreEvent) => {
    const results = await Promise.allSettled(
      levels(event.key).map((level) => service.publish(`${namespace}:${level}`, event)),
    );
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (!failed) return;
    // Stored but not (fully) announced: say so; a retry writes again and announces a newer mtime.
    const error = failed.reason instanceof ApiCallError ? failed.reason.error : Errors.internal;
    throw new ServiceError(
      error.code,
      `stored at mtime ${event.mtime}, not published: ${error.message}`,
      true,
    );
  };

  return service
    .onSubscribe(async (req) => {
      const head = `${namespace}:`;
      const prefix = req.channel.startsWith(head) ? req.channel.slice(head.length) : '';
      if (!isKey(prefix))
        throw new ServiceError(107, `channel must be ${head}Type, ${head}Type/id or ${head}Type/id/field`);
      allow(req, 'read', prefix);
      const has = knownKeys(req.data, maxKnownKeys);
      return { data: { entries: catchUp(prefix, await backend.list(prefix), has) } };
    })
    .onPublish(() => {
      throw new ServiceError(103, `clients do not publish here: write with RPC ${namespace}:set`);
    })
    .onRpc('get', async (req) => {
      const key = field(req.data, 'key');
      if (!isKey(key))
        throw new ServiceError(107, 'key must be Type, Type/id or Type/id/field ([A-Za-z0-9_-])');
      allow(req, 'read', key);
      if (isFullKey(key)) {
        const record = await backend.get(key);
        return !record || isTombstone(record) ? { key, value: null } : record;
      }
      const entries = (await backend.list(key)).filter((r) => !isTombstone(r));
      return { key, entries };
    })
    .onRpc('set', async (req) => {
      const key = fullKey(req.data);
      if (!isObject(req.data) || req.data.value === undefined || req.data.value === null)
        throw new ServiceError(107, `value is required (to remove a key, use ${namespace}:delete)`);
      const value = req.data.value;
      const size = Buffer.byteLength(JSON.stringify(value));
      if (size > maxValueBytes) throw new ServiceError(107, `value larger than ${maxValueBytes} bytes`);
      allow(req, 'write', key);
      const entry = await backend.set(key, value, now());
      await announce(entry);
      return { mtime: entry.mtime };
    })
    .onRpc('delete', async (req) => {
      const key = fullKey(req.data);
      allow(req, 'write', key);
      const tombstone = await backend.delete(key, now());
      if (!tombstone) return { deleted: false };
      await announce(tombstone);
      return { deleted: true, mtime: tombstone.mtime };
    });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function field(data: unknown, name: string): unknown {
  return isObject(data) ? data[name] : undefined;
}

function fullKey(data: unknown): string {
  const key = field(data, 'key');
  if (!isFullKey(key)) throw new ServiceError(107, 'key must be Type/id/field ([A-Za-z0-9_-] segments)');
  return key;
}

/** The subscribe data: `{key: mtime}` of what the client holds, or nothing. */
function knownKeys(data: unknown, max: number): Record<string, number> {
  if (data === undefined || data === null) return {};
  if (!isObject(data))
    throw new ServiceError(107, 'subscribe data must be {"<Type/id/field>": <mtime>, ...}');
  const entries = Object.entries(data);
  if (entries.length > max) throw new ServiceError(107, `subscribe data holds more than ${max} keys`);
  const has: Record<string, number> = {};
  for (const [key, mtime] of entries) {
    if (!isFullKey(key) || typeof mtime !== 'number' || !Number.isFinite(mtime) || mtime < 0)
      throw new ServiceError(
        107,
        `subscribe data: ${JSON.stringify(key)} must be a Type/id/field key with an mtime`,
      );
    has[key] = mtime;
  }
  return has;
}
