/**
 * The jobs service as its own process (cluster mode): answers the gateways'
 * requests for the `jobs` namespace over NATS, as one replica of a queue
 * group; run as many as you like.
 *
 *   SWITCHBOARD_NATS_URL     comma-separated servers, default nats://127.0.0.1:4222
 *   SWITCHBOARD_NATS_PREFIX  subject prefix, default sb
 */

import { connect } from '@nats-io/transport-node';
import { NatsBus, natsServiceRegistry } from '@switchboard/sdk';
import { createJobsService } from './index.js';

const servers = (process.env.SWITCHBOARD_NATS_URL ?? 'nats://127.0.0.1:4222')
  .split(',')
  .map((s) => s.trim())
  .filter((s) => s !== '');
const prefix = process.env.SWITCHBOARD_NATS_PREFIX ?? 'sb';

const nc = await connect({
  servers,
  name: 'switchboard-service-jobs',
  waitOnFirstConnect: true,
  maxReconnectAttempts: -1,
});
const registry = await natsServiceRegistry(nc, prefix, 15);
const service = createJobsService(new NatsBus(nc), { prefix, registry });
await service.start();
// Ready means the service's subscriptions are in place on the server.
await nc.flush();
console.log(
  JSON.stringify({
    time: new Date().toISOString(),
    level: 'info',
    msg: 'service ready',
    service: 'jobs',
    namespace: service.namespace,
    instance: service.instance,
    prefix,
  }),
);

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(JSON.stringify({ time: new Date().toISOString(), level: 'info', msg: 'stopping', signal }));
  let code = 0;
  try {
    await service.stop();
    await nc.drain();
  } catch (err) {
    code = 1;
    console.error(JSON.stringify({ time: new Date().toISOString(), level: 'error', msg: String(err) }));
  }
  process.exit(code);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
