/**
 * Channel names inside NATS subjects. A subject token may not hold `.`, `*`,
 * `>` or whitespace; we go further and keep only `A-Z a-z 0-9 -` as they are,
 * writing every other byte of the UTF-8 name as `_` and two hex digits. The
 * encoding is injective and never yields a wildcard or a token separator, so
 * no client-chosen name can address another channel's subject.
 */

import type { ServiceOperation } from './service.js';

const RAW = /^[A-Za-z0-9-]$/;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

/** One subject token for any string; `''` becomes `_` (never produced otherwise). */
export function encodeToken(value: string): string {
  if (value === '') return '_';
  let out = '';
  for (const byte of utf8.encode(value)) {
    const ch = String.fromCharCode(byte);
    out += byte < 0x80 && RAW.test(ch) ? ch : `_${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The inverse of encodeToken; throws on a token it could not have produced. */
export function decodeToken(token: string): string {
  if (token === '_') return '';
  const bytes: number[] = [];
  for (let i = 0; i < token.length; i++) {
    const ch = token[i]!;
    if (ch === '_') {
      const hex = token.slice(i + 1, i + 3);
      if (!/^[0-9A-F]{2}$/.test(hex)) throw new Error(`invalid subject token ${JSON.stringify(token)}`);
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else if (RAW.test(ch)) {
      bytes.push(ch.charCodeAt(0));
    } else {
      throw new Error(`invalid subject token ${JSON.stringify(token)}`);
    }
  }
  return fromUtf8.decode(Uint8Array.from(bytes));
}

/**
 * The NATS map of a deployment under `prefix`:
 * - `live`: a channel's traffic as gateways receive it (`<prefix>.live.<ns>.<channel>`)
 * - `history`: where publications to channels with history are appended
 *   (JetStream stream per namespace, republished in order to `live`)
 * - `service`: requests to the backend service owning a namespace
 * - `api`, `serviceApi`: the server API on the bus, whole (for callers with
 *   the NATS `api` role) or limited to one namespace's channels (for the
 *   namespace's backend service), so that NATS permissions can tell them apart
 */
export class Subjects {
  constructor(readonly prefix: string) {
    if (!/^[A-Za-z0-9_-]+$/.test(prefix)) throw new Error(`invalid subject prefix ${JSON.stringify(prefix)}`);
  }

  live(namespace: string, channel: string): string {
    return `${this.prefix}.live.${encodeToken(namespace)}.${encodeToken(channel)}`;
  }

  history(namespace: string, channel: string): string {
    return `${this.prefix}.hist.${encodeToken(namespace)}.${encodeToken(channel)}`;
  }

  /** Subjects a namespace's history stream captures. */
  historyWildcard(namespace: string): string {
    return `${this.prefix}.hist.${encodeToken(namespace)}.*`;
  }

  /** Where a namespace's history stream republishes what it stored: the channel's live subject. */
  historyRepublish(namespace: string): { src: string; dest: string } {
    return {
      src: this.historyWildcard(namespace),
      dest: `${this.prefix}.live.${encodeToken(namespace)}.{{wildcard(1)}}`,
    };
  }

  /**
   * JetStream's advisories that a stream elected a leader, the stream's name
   * last (a wildcard is a whole token: subscribers pick this deployment's
   * history streams by name).
   */
  get leaderElected(): string {
    return '$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.*';
  }

  /** Name of a namespace's history stream (stream names allow no `.`, `*`, `>`). */
  /** The work queue of webhook jobs, one subject per app. */
  get hooksStream(): string {
    return `${this.prefix.toUpperCase()}_HOOKS`;
  }

  hooks(app: string): string {
    return `${this.prefix}.hooks.${app === '>' ? '>' : encodeToken(app)}`;
  }

  historyStream(namespace: string): string {
    return `${this.prefix.toUpperCase()}_HIST_${encodeToken(namespace)}`;
  }

  service(namespace: string, operation: ServiceOperation): string {
    return `${this.prefix}.svc.${encodeToken(namespace)}.${operation}`;
  }

  /** Queue group of a namespace's service replicas: each request reaches one. */
  serviceQueue(namespace: string): string {
    return `${this.prefix}.svc.${encodeToken(namespace)}`;
  }

  /** The server API over the bus: any one gateway answers (`api.<method>`, queue `api`). */
  api(method: string): string {
    return `${this.prefix}.api.${encodeToken(method)}`;
  }

  get apiQueue(): string {
    return `${this.prefix}.api`;
  }

  /** The server API for a namespace's service: only channels of that namespace (`svcapi.<ns>.<method>`). */
  serviceApi(namespace: string, method: string): string {
    return `${this.prefix}.svcapi.${encodeToken(namespace)}.${encodeToken(method)}`;
  }

  get serviceApiQueue(): string {
    return `${this.prefix}.svcapi`;
  }

  /** Cluster-wide control messages (server API actions on connections anywhere). */
  get control(): string {
    return `${this.prefix}.ctl`;
  }

  /** Commands of HTTP-transport clients, routed to the gateway (`node`) that holds their stream. */
  emulation(node: string): string {
    return `${this.prefix}.emu.${encodeToken(node)}`;
  }

  /** Questions to every gateway at once (e.g. their channels), answered by each. */
  get survey(): string {
    return `${this.prefix}.ctl.survey`;
  }

  /** KV bucket names (letters, digits, `-` and `_`). */
  bucket(kind: BucketKind): string {
    return `${this.prefix}_${kind}`;
  }

  /** The KV bucket a namespace's service may keep its own data in (the store's records): `<prefix>_<ns>`. */
  serviceBucket(namespace: string): string {
    if ((BUCKET_KINDS as readonly string[]).includes(namespace))
      throw new Error(`namespace ${JSON.stringify(namespace)} would share a KV bucket with the gateways`);
    return `${this.prefix}_${encodeToken(namespace)}`;
  }
}

/** The gateways' KV buckets. */
export const BUCKET_KINDS = [
  'gateways',
  'services',
  'sessions',
  'presence',
  'leases',
  'hooks',
  'cache',
  'apps',
  'idempotency',
] as const;
export type BucketKind = (typeof BUCKET_KINDS)[number];
