/**
 * Pusher apps (tenants): id, key, secret, enabled flag, limits and origins.
 * Each app's channels live in a namespace of their own (`namespace`, by
 * default the app id), so that the same channel name in two apps never
 * meets, and a Centrifugo client reaches an app's channel `room` as
 * `<namespace>:room`. Pure: parsing and look-up, no I/O.
 */

import { parseServerToUserChannel, serverToUserChannel } from './protocol.js';

/** The events a webhook may ask for, as Pusher names them. */
export const WEBHOOK_EVENTS = [
  'channel_occupied',
  'channel_vacated',
  'member_added',
  'member_removed',
  'client_event',
  'cache_miss',
] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

export interface Webhook {
  /** Where the events are POSTed (http or https). */
  url: string;
  /** The events it gets; all of them when the config names none. */
  event_types: WebhookEvent[];
}

export interface PusherApp {
  id: string;
  key: string;
  secret: string;
  enabled: boolean;
  namespace: string;
  /** Connections of this app on one gateway; 0 unlimited (close 4004 beyond). */
  max_connections: number;
  /** Client events per second per connection (Pusher's default 10); excess is refused with 4301. */
  max_client_events_per_second: number;
  /** Largest event `data` in bytes, from clients and the HTTP API (Pusher's 10 KB). */
  max_message_size: number;
  /** Subscriptions one connection may hold. */
  max_channels_per_connection: number;
  /** Origins allowed for browsers; empty: the gateway's `allowed_origins`. */
  allowed_origins: string[];
  webhooks: Webhook[];
}

const APP_DEFAULTS = {
  enabled: true,
  max_connections: 0,
  max_client_events_per_second: 10,
  max_message_size: 10240,
  max_channels_per_connection: 100,
  allowed_origins: [] as string[],
  webhooks: [] as Webhook[],
};

/** Ids and keys: what Pusher's dashboards hand out, and nothing that needs escaping in a path or a label. */
const ID = /^[A-Za-z0-9_-]{1,64}$/;
/** Namespace names as the namespace rules allow them. */
const NAMESPACE = /^[A-Za-z0-9_\-.]{1,64}$/;

/** Parses `pusher_apps`; throws Error naming the app and field on bad input. */
export function parseApps(raw: unknown): PusherApp[] {
  if (!Array.isArray(raw)) throw new Error('must be a JSON array of apps');
  const apps: PusherApp[] = [];
  const seen = { id: new Set<string>(), key: new Set<string>(), namespace: new Set<string>() };
  for (const [i, entry] of raw.entries()) {
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
      throw new Error(`app ${i} must be an object`);
    const where = `app ${typeof entry.id === 'string' ? JSON.stringify(entry.id) : i}`;
    for (const field of ['id', 'key', 'secret'] as const) {
      if (typeof entry[field] !== 'string' || entry[field] === '')
        throw new Error(`${where}: "${field}" must be a non-empty string`);
    }
    if (!ID.test(entry.id)) throw new Error(`${where}: id must be 1-64 of A-Z a-z 0-9 _ -`);
    if (!ID.test(entry.key)) throw new Error(`${where}: key must be 1-64 of A-Z a-z 0-9 _ -`);
    const app: PusherApp = {
      ...APP_DEFAULTS,
      id: entry.id,
      key: entry.key,
      secret: entry.secret,
      namespace: entry.id,
    };
    for (const [k, v] of Object.entries(entry)) {
      if (k === 'id' || k === 'key' || k === 'secret') continue;
      if (k === 'namespace') {
        if (typeof v !== 'string' || !NAMESPACE.test(v))
          throw new Error(`${where}: namespace must be 1-64 of A-Z a-z 0-9 _ - .`);
        app.namespace = v;
      } else if (k === 'allowed_origins') {
        if (!Array.isArray(v) || v.some((o) => typeof o !== 'string'))
          throw new Error(`${where}: allowed_origins must be an array of strings`);
        app.allowed_origins = v;
      } else if (k === 'webhooks') {
        app.webhooks = parseWebhooks(where, v);
      } else if (k === 'enabled') {
        if (typeof v !== 'boolean') throw new Error(`${where}: enabled must be true or false`);
        app.enabled = v;
      } else if (Object.hasOwn(APP_DEFAULTS, k)) {
        if (!Number.isSafeInteger(v) || (v as number) < 0)
          throw new Error(`${where}: ${k} must be a non-negative integer`);
        (app as unknown as Record<string, unknown>)[k] = v;
      } else {
        throw new Error(`${where}: unknown field ${k}`);
      }
    }
    for (const field of ['id', 'key', 'namespace'] as const) {
      if (seen[field].has(app[field])) throw new Error(`${where}: another app has the same ${field}`);
      seen[field].add(app[field]);
    }
    apps.push(app);
  }
  return apps;
}

function parseWebhooks(where: string, raw: unknown): Webhook[] {
  if (!Array.isArray(raw)) throw new Error(`${where}: webhooks must be an array`);
  return raw.map((hook, i) => {
    const at = `${where}: webhooks[${i}]`;
    if (typeof hook !== 'object' || hook === null || Array.isArray(hook))
      throw new Error(`${at} must be an object`);
    for (const k of Object.keys(hook))
      if (k !== 'url' && k !== 'event_types') throw new Error(`${at}: unknown field ${k}`);
    let url: URL;
    try {
      url = new URL(String(hook.url));
    } catch {
      throw new Error(`${at}: url must be an http or https URL`);
    }
    if (typeof hook.url !== 'string' || (url.protocol !== 'http:' && url.protocol !== 'https:'))
      throw new Error(`${at}: url must be an http or https URL`);
    const types = hook.event_types ?? [...WEBHOOK_EVENTS];
    if (!Array.isArray(types) || types.some((t) => !(WEBHOOK_EVENTS as readonly unknown[]).includes(t)))
      throw new Error(`${at}: event_types must name events of ${WEBHOOK_EVENTS.join(', ')}`);
    return { url: hook.url, event_types: types as WebhookEvent[] };
  });
}

/** An app as the server API lists it: everything but its secret. */
export type PublicApp = Omit<PusherApp, 'secret'>;

/**
 * The apps by key (clients connect with it) and by id (the HTTP API names
 * it): those of the config, fixed, and those of the app store, which come,
 * change and go while the gateway runs. A changed app is updated in place,
 * so that its connections see new limits and a new secret at once.
 */
export class Apps {
  private readonly keys = new Map<string, PusherApp>();
  private readonly ids = new Map<string, PusherApp>();
  private readonly fixed = new Set<string>();
  private readonly listeners: ((app: PusherApp, removed: boolean) => void)[] = [];

  constructor(apps: readonly PusherApp[]) {
    for (const app of apps) {
      this.keys.set(app.key, app);
      this.ids.set(app.id, app);
      this.fixed.add(app.id);
    }
  }

  get size(): number {
    return this.ids.size;
  }

  byKey(key: string): PusherApp | undefined {
    return this.keys.get(key);
  }

  byId(id: string): PusherApp | undefined {
    return this.ids.get(id);
  }

  all(): IterableIterator<PusherApp> {
    return this.ids.values();
  }

  /** The app whose namespace this is. */
  byNamespace(namespace: string): PusherApp | undefined {
    for (const app of this.ids.values()) if (app.namespace === namespace) return app;
    return undefined;
  }

  /** Called after an app came, changed (`removed` false) or went. */
  onChange(listener: (app: PusherApp, removed: boolean) => void): void {
    this.listeners.push(listener);
  }

  /** A config app: the store cannot change it. */
  isFixed(id: string): boolean {
    return this.fixed.has(id);
  }

  /** Why `app` cannot be stored: a config app's id, or another app's key or namespace; undefined when it can. */
  conflict(app: PusherApp): string | undefined {
    if (this.fixed.has(app.id)) return `app ${app.id} is defined in the configuration`;
    for (const other of this.ids.values()) {
      if (other.id === app.id) continue;
      if (other.key === app.key) return `app ${other.id} has the key ${app.key}`;
      if (other.namespace === app.namespace) return `app ${other.id} has the namespace ${app.namespace}`;
    }
    return undefined;
  }

  /** An app of the store came or changed; refused (false) when it conflicts. */
  set(app: PusherApp): boolean {
    if (this.conflict(app) !== undefined) return false;
    const current = this.ids.get(app.id);
    if (current) {
      this.keys.delete(current.key);
      Object.assign(current, app);
    }
    const stored = current ?? app;
    this.ids.set(stored.id, stored);
    this.keys.set(stored.key, stored);
    for (const listener of this.listeners) listener(stored, false);
    return true;
  }

  /** An app of the store went (config apps stay). */
  delete(id: string): void {
    const app = this.ids.get(id);
    if (!app || this.fixed.has(id)) return;
    this.ids.delete(id);
    this.keys.delete(app.key);
    for (const listener of this.listeners) listener(app, true);
  }

  /** Every app without its secret. */
  list(): PublicApp[] {
    return [...this.ids.values()].map(({ secret: _secret, ...rest }) => rest);
  }
}

/**
 * The Switchboard channel of an app's Pusher channel: `<namespace>:<name>`;
 * a signed-in user's `#server-to-user-<id>` is the user's personal channel
 * `<namespace>:#<id>`, where Centrifugo clients of that user get it too.
 */
export function channelOf(app: PusherApp, name: string): string {
  const user = parseServerToUserChannel(name);
  return user === undefined ? `${app.namespace}:${name}` : `${app.namespace}:#${user}`;
}

/** The Pusher name of a Switchboard channel of an app's namespace. */
export function pusherName(channel: string): string {
  const name = channel.slice(channel.indexOf(':') + 1);
  return name.startsWith('#') ? serverToUserChannel(name.slice(1)) : name;
}
