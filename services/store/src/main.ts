/**
 * The store service as its own process (cluster mode): answers the gateways'
 * requests for the `store` namespace over NATS, as one replica of a queue
 * group; run as many as you like. Records live in the NATS KV bucket
 * `<prefix>_store`, so every replica sees the same data. Settings: see
 * runService in the SDK.
 */

import { runService } from '@switchboard/sdk';
import { createStoreService, KvBackend } from './index.js';

await runService('store', async ({ bus, connection, prefix, registry, replicas }) =>
  createStoreService(bus, { prefix, registry, backend: await KvBackend.open(connection, prefix, replicas) }),
);
