/**
 * The app store: Pusher apps managed while the cluster runs (server API
 * `pusher_app_put`, `pusher_app_delete`, `pusher_apps`; `switchboard-apps`).
 * In a cluster a NATS KV bucket (`<prefix>_apps`) that every gateway
 * watches, so that a change applies everywhere at once; in embedded mode
 * memory. What the bucket holds is checked like the config (anyone who can
 * write it is a hostile peer until then); an entry that is not a valid app is
 * skipped and counted.
 */

import { type KV, Kvm } from '@nats-io/kv';
import { decodeToken, encodeToken, parseJsonBytes } from '@switchboard/protocol';
import { openOrCreate, patiently } from '@switchboard/sdk';
import { isTransient, type NatsParts } from '../broker/nats.js';
import { appNamespace, type Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { type Apps, type PublicApp, parseApps, type PusherApp } from './apps.js';

export interface AppStore {
  /** Every stored app now and every change from now on (`app` undefined: deleted). */
  watch(change: (id: string, app: unknown) => void): Promise<void>;
  put(app: PusherApp): Promise<void>;
  delete(id: string): Promise<void>;
  close(): Promise<void>;
}

export class MemoryAppStore implements AppStore {
  private change: ((id: string, app: unknown) => void) | undefined;

  async watch(change: (id: string, app: unknown) => void): Promise<void> {
    this.change = change;
  }

  async put(app: PusherApp): Promise<void> {
    this.change?.(app.id, structuredClone(app));
  }

  async delete(id: string): Promise<void> {
    this.change?.(id, undefined);
  }

  async close(): Promise<void> {
    this.change = undefined;
  }
}

export class KvAppStore implements AppStore {
  private kv: KV | undefined;
  private stop: (() => void) | undefined;

  constructor(private readonly nats: NatsParts) {}

  async watch(change: (id: string, app: unknown) => void): Promise<void> {
    const kv = await patiently(
      () =>
        openOrCreate(new Kvm(this.nats.nc()), this.nats.subjects.bucket('apps'), {
          history: 1,
          replicas: this.nats.replicas,
        }),
      { retryIf: isTransient },
    );
    this.kv = kv;
    const entries = await kv.watch({ key: '>' });
    this.stop = () => entries.stop();
    void (async () => {
      for await (const e of entries) {
        let id: string;
        try {
          id = decodeToken(e.key);
        } catch {
          this.nats.metrics.invalidMessages.inc({ source: 'apps' });
          continue;
        }
        if (e.operation !== 'PUT') {
          change(id, undefined);
          continue;
        }
        const parsed = parseJsonBytes(e.value, this.nats.maxDepth);
        if (parsed.ok) change(id, parsed.value);
        else this.nats.metrics.invalidMessages.inc({ source: 'apps' });
      }
    })().catch((err) => this.nats.log.warn({ err }, 'app store watch ended'));
  }

  async put(app: PusherApp): Promise<void> {
    await this.kv!.put(encodeToken(app.id), JSON.stringify(app));
  }

  async delete(id: string): Promise<void> {
    await this.kv!.delete(encodeToken(id));
  }

  async close(): Promise<void> {
    this.stop?.();
  }
}

/** A refusal of the app API: the message the caller gets with error 107 (bad request). */
export class AppRefused extends Error {}

/**
 * Keeps `apps` in step with the store, and checks what the server API
 * stores: an app is parsed as the config parses one, and may not take a
 * config app's id or another app's key or namespace.
 */
export class AppCatalog {
  constructor(
    private readonly apps: Apps,
    private readonly store: AppStore,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  async start(): Promise<void> {
    await this.store.watch((id, raw) => {
      if (raw === undefined) return this.apps.delete(id);
      const app = this.parse(raw);
      if (app && app.id === id && this.apps.conflict(app) === undefined) {
        this.apps.set(this.withNamespace(app));
        return;
      }
      this.metrics.invalidMessages.inc({ source: 'apps' });
      this.log.warn({ app: id }, 'app store entry skipped: not a valid app, or it conflicts with another');
    });
  }

  list(): PublicApp[] {
    return this.apps.list();
  }

  async put(raw: unknown): Promise<void> {
    let app: PusherApp;
    try {
      [app] = parseApps([raw]) as [PusherApp];
    } catch (err) {
      throw new AppRefused((err as Error).message);
    }
    const conflict = this.apps.conflict(app);
    if (conflict) throw new AppRefused(conflict);
    await this.store.put(app);
  }

  async delete(id: string): Promise<void> {
    if (!this.apps.byId(id)) throw new AppRefused(`no app ${id}`);
    if (this.apps.isFixed(id)) throw new AppRefused(`app ${id} is defined in the configuration`);
    await this.store.delete(id);
  }

  close(): Promise<void> {
    return this.store.close();
  }

  private parse(raw: unknown): PusherApp | undefined {
    try {
      return parseApps([raw])[0];
    } catch {
      return undefined;
    }
  }

  /** An app's namespace the configuration does not name gets its own, as at start-up. */
  private withNamespace(app: PusherApp): PusherApp {
    if (!this.config.namespaces.has(app.namespace))
      this.config.namespaces.set(app.namespace, appNamespace(app.namespace));
    this.config.pusher.namespaces.add(app.namespace);
    return app;
  }
}
