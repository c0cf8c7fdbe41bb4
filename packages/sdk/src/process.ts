/**
 * Runs a service as a process of its own in a cluster: connects to NATS
 * (`SWITCHBOARD_NATS_URL`, comma-separated, default nats://127.0.0.1:4222;
 * subject prefix `SWITCHBOARD_NATS_PREFIX`, default sb; credentials
 * `SWITCHBOARD_NATS_USER` and `SWITCHBOARD_NATS_PASSWORD`, or
 * `SWITCHBOARD_NATS_TOKEN`, or `SWITCHBOARD_NATS_CREDS_FILE`; TLS with
 * `SWITCHBOARD_NATS_TLS_CA`, and `_TLS_CERT`/`_TLS_KEY`), announces the
 * replica in the registry, logs one JSON line when requests can reach it, and
 * stops cleanly on SIGTERM or SIGINT (exit 0, or 1 when stopping failed).
 */

import type { NatsConnection } from '@nats-io/transport-node';
import {
  connectNats,
  type NatsConnectOptions,
  NatsBus,
  natsCredentialsFromEnv,
  natsServiceRegistry,
} from './nats.js';
import { patiently } from './patiently.js';
import type { Service, ServiceRegistry } from './service.js';

export interface ServiceContext {
  bus: NatsBus;
  connection: NatsConnection;
  prefix: string;
  registry: ServiceRegistry;
  /** Replicas for KV buckets the service makes: `SWITCHBOARD_NATS_REPLICAS`, else 3 with three servers or more. */
  replicas: number;
}

/** Seconds a replica's registry entry outlives its last heartbeat. */
const REGISTRY_TTL = 15;

const log = (level: string, msg: string, fields: Record<string, unknown> = {}) =>
  console.log(JSON.stringify({ time: new Date().toISOString(), level, msg, ...fields }));

const warn = (what: string) => (err: unknown) =>
  log('warn', `${what} failed, trying again`, { error: (err as Error).message });

/** `nats` overrides what the environment says (servers, credentials). */
export async function runService(
  name: string,
  create: (context: ServiceContext) => Service | Promise<Service>,
  nats: Partial<NatsConnectOptions> = {},
): Promise<void> {
  const options: NatsConnectOptions = {
    servers: (process.env.SWITCHBOARD_NATS_URL ?? 'nats://127.0.0.1:4222')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
    name: `switchboard-service-${name}`,
    ...natsCredentialsFromEnv(),
    ...nats,
  };
  const prefix = process.env.SWITCHBOARD_NATS_PREFIX ?? 'sb';
  const connection = await connectNats(options);
  const replicas = Number(process.env.SWITCHBOARD_NATS_REPLICAS) || (options.servers.length >= 3 ? 3 : 1);
  const registry = await patiently(() => natsServiceRegistry(connection, prefix, REGISTRY_TTL, replicas), {
    failed: warn('opening the service registry'),
  });
  const service = await patiently(
    async () => create({ bus: new NatsBus(connection), connection, prefix, registry, replicas }),
    { failed: warn('starting') },
  );
  await service.start();
  log('info', 'service ready', {
    service: name,
    namespace: service.namespace,
    instance: service.instance,
    prefix,
  });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log('info', 'stopping', { service: name, signal });
    let code = 0;
    try {
      await service.stop();
      await connection.drain();
    } catch (err) {
      code = 1;
      log('error', String(err), { service: name });
    }
    process.exit(code);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}
