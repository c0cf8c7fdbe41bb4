/** The bus and the service registry over a NATS connection. */

import { type KV, Kvm, type KvOptions } from '@nats-io/kv';
import { errors, type NatsConnection } from '@nats-io/transport-node';
import { encodeToken, type ServiceEntry, Subjects } from '@switchboard/protocol';
import { type Bus, type Handler, NoResponders, RequestTimeout } from './bus.js';
import type { ServiceRegistry } from './service.js';

export class NatsBus implements Bus {
  constructor(readonly connection: NatsConnection) {}

  async request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    try {
      return (await this.connection.request(subject, data, { timeout: timeoutMs })).data;
    } catch (err) {
      if (err instanceof errors.NoRespondersError) throw new NoResponders(subject);
      if (err instanceof errors.TimeoutError) throw new RequestTimeout(subject, timeoutMs);
      if (err instanceof errors.RequestError && err.isNoResponders()) throw new NoResponders(subject);
      throw err;
    }
  }

  flush(): Promise<void> {
    return this.connection.flush();
  }

  serve(subject: string, queue: string, handler: Handler): () => void {
    const sub = this.connection.subscribe(subject, {
      queue,
      callback: (err, msg) => {
        if (err) return;
        handler(msg.data).then(
          (reply) => msg.respond(reply),
          () =>
            msg.respond(
              new TextEncoder().encode(
                '{"error":{"code":100,"message":"internal server error","temporary":true}}',
              ),
            ),
        );
      },
    });
    return () => sub.unsubscribe();
  }
}

/** Services announce themselves in the `<prefix>_services` KV bucket; entries expire after `ttlSeconds`. */
export async function natsServiceRegistry(
  connection: NatsConnection,
  prefix: string,
  ttlSeconds: number,
  replicas = 1,
): Promise<ServiceRegistry> {
  const kv = await openOrCreate(new Kvm(connection), new Subjects(prefix).bucket('services'), {
    ttl: ttlSeconds * 1000,
    history: 1,
    replicas,
  });
  const key = (entry: ServiceEntry) => `${encodeToken(entry.namespace)}.${entry.instance}`;
  return {
    announce: async (entry) => {
      await kv.put(key(entry), JSON.stringify(entry));
    },
    withdraw: async (entry) => {
      await kv.delete(key(entry));
    },
  };
}

/**
 * Opens a bucket, creating it with `options` only when it does not exist yet:
 * whoever came first (a gateway, a service) set its TTL, and a differing
 * setting elsewhere must not stop anyone from starting.
 */
export async function openOrCreate(kvm: Kvm, name: string, options: Partial<KvOptions>): Promise<KV> {
  const kv = await kvm.open(name);
  // open() does not look: status() fails when the bucket's stream is missing.
  const exists = await kv.status().then(
    () => true,
    () => false,
  );
  return exists ? kv : kvm.create(name, options);
}
