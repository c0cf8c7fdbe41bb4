/** The bus and the service registry over a NATS connection, and how to open one. */

import { readFileSync } from 'node:fs';
import { type KV, Kvm, type KvOptions } from '@nats-io/kv';
import {
  connect,
  credsAuthenticator,
  errors,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node';
import { encodeToken, inboxPrefix, type ServiceEntry, Subjects } from '@switchboard/protocol';
import { type Bus, type Handler, NoResponders, RequestTimeout } from './bus.js';
import type { ServiceRegistry } from './service.js';

/** How a process proves who it is to NATS: a user and password, a token, or a `.creds` file (JWT and NKey seed). */
export interface NatsCredentials {
  user?: string;
  password?: string;
  token?: string;
  credsFile?: string;
  /** PEM CA of the NATS servers' certificates: TLS on. */
  tlsCa?: string;
  /** PEM client certificate and key, for servers that verify clients. */
  tlsCert?: string;
  tlsKey?: string;
}

/** The credentials in `SWITCHBOARD_NATS_USER`, `_PASSWORD`, `_TOKEN`, `_CREDS_FILE` and `_TLS_CA`, `_TLS_CERT`, `_TLS_KEY`, as the gateway reads them. */
export function natsCredentialsFromEnv(env: NodeJS.ProcessEnv = process.env): NatsCredentials {
  return {
    user: env.SWITCHBOARD_NATS_USER,
    password: env.SWITCHBOARD_NATS_PASSWORD,
    token: env.SWITCHBOARD_NATS_TOKEN,
    credsFile: env.SWITCHBOARD_NATS_CREDS_FILE,
    tlsCa: env.SWITCHBOARD_NATS_TLS_CA,
    tlsCert: env.SWITCHBOARD_NATS_TLS_CERT,
    tlsKey: env.SWITCHBOARD_NATS_TLS_KEY,
  };
}

/**
 * nats.js options for `credentials`. A user gets replies on an inbox of its
 * own (`_INBOX.<user>`): the NATS users that nats-config writes let no one
 * else read them.
 */
export function credentialOptions(credentials: NatsCredentials): Partial<NodeConnectionOptions> {
  const { user, password, token, credsFile, tlsCa, tlsCert, tlsKey } = credentials;
  return {
    ...(user ? { user, pass: password ?? '', inboxPrefix: inboxPrefix(user) } : {}),
    ...(token ? { token } : {}),
    ...(credsFile ? { authenticator: credsAuthenticator(readFileSync(credsFile)) } : {}),
    ...(tlsCa || tlsCert
      ? {
          tls: {
            ...(tlsCa ? { caFile: tlsCa } : {}),
            ...(tlsCert ? { certFile: tlsCert, keyFile: tlsKey } : {}),
          },
        }
      : {}),
  };
}

export interface NatsConnectOptions extends NatsCredentials {
  servers: string[];
  /** The connection's name as NATS monitoring shows it. */
  name: string;
}

/** Connects as a service does: waits for a first server, and reconnects for ever. */
export function connectNats(options: NatsConnectOptions): Promise<NatsConnection> {
  return connect({
    servers: options.servers,
    name: options.name,
    waitOnFirstConnect: true,
    maxReconnectAttempts: -1,
    ...credentialOptions(options),
  });
}

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
