/**
 * Drain on SIGTERM (Kubernetes and compose alike): readiness turns 503 while
 * the internal port stays up (probes and HAProxy checks see it, metrics stay
 * scrapeable), the client listener closes, then clients are disconnected in
 * batches with a reconnect code (3001 shutdown) spread with jitter over most
 * of the timeout, so they reconnect elsewhere without a thundering herd. What
 * is left (NATS drain) gets the rest; a deadline exits regardless.
 */

import { Disconnects } from '@switchboard/protocol';
import type { Node } from './node.js';
import { type us_listen_socket, uws } from './uws.js';

const BATCHES = 10;
/** Share of the timeout spent disconnecting clients; the rest is for draining NATS and closing. */
const CLIENT_SHARE = 0.7;

export async function disconnectClients(
  node: Node,
  clientSockets: us_listen_socket[],
  timeoutMs: number,
): Promise<void> {
  node.draining = true;
  for (const socket of clientSockets) uws.us_listen_socket_close(socket);
  const sessions = [...node.hub.all()];
  const batchSize = Math.ceil(sessions.length / BATCHES) || 1;
  const batches = Math.ceil(sessions.length / batchSize);
  const pause = batches > 1 ? (timeoutMs * CLIENT_SHARE) / (batches - 1) : 0;
  for (let i = 0; i < sessions.length; i += batchSize) {
    for (const s of sessions.slice(i, i + batchSize)) s.disconnect(Disconnects.shutdown, 'shutdown');
    if (i + batchSize < sessions.length) {
      // Jitter: each pause lasts 50-100 % of its share, so batches of many gateways do not line up.
      await new Promise((r) => setTimeout(r, pause * (0.5 + Math.random() / 2)));
    }
  }
}

/**
 * Runs `stop`, exiting with `code` (0) when it is done and with 1 when it fails or
 * outlasts `timeoutMs` (a hung NATS drain must not outlive the grace period).
 */
export function exitAfter(
  stop: () => Promise<void>,
  timeoutMs: number,
  onTimeout: () => void,
  code = 0,
): void {
  const deadline = setTimeout(() => {
    onTimeout();
    process.exit(1);
  }, timeoutMs);
  stop().then(
    () => {
      clearTimeout(deadline);
      process.exit(code);
    },
    () => process.exit(1),
  );
}
