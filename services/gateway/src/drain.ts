/**
 * Drain on SIGTERM (Kubernetes and compose alike): readiness turns 503 while
 * the internal port stays up (probes and HAProxy checks see it, metrics stay
 * scrapeable), the client listener closes, then clients are disconnected in
 * batches with a reconnect code (3001 shutdown) spread with jitter over most
 * of the timeout, so they reconnect elsewhere without a thundering herd. What
 * is left (NATS drain) gets the rest; a deadline exits regardless. A gateway
 * that lost its broker sends its clients elsewhere the same way.
 */

import { type Disconnect, Disconnects } from '@switchboard/protocol';
import type { Connection, Node } from './node.js';
import type { ClientListener } from './transport/listener.js';

const BATCHES = 10;
/** Share of the timeout spent disconnecting clients; the rest is for draining NATS and closing. */
const CLIENT_SHARE = 0.7;
/** How long the clients of a gateway without its broker are spread over as they are sent elsewhere. */
const OUTAGE_SPREAD_MS = 3000;

/**
 * Disconnects `sessions` in BATCHES batches spread over `spreadMs`, while
 * `wanted()` holds (a broker back in the meantime keeps the rest).
 */
async function inBatches(
  sessions: Connection[],
  disconnect: Disconnect,
  reason: string,
  spreadMs: number,
  wanted: () => boolean = () => true,
): Promise<void> {
  const batchSize = Math.ceil(sessions.length / BATCHES) || 1;
  const batches = Math.ceil(sessions.length / batchSize);
  const pause = batches > 1 ? spreadMs / (batches - 1) : 0;
  for (let i = 0; i < sessions.length && wanted(); i += batchSize) {
    for (const s of sessions.slice(i, i + batchSize)) s.disconnect(disconnect, reason);
    if (i + batchSize < sessions.length) {
      // Jitter: each pause lasts 50-100 % of its share, so batches of many gateways do not line up.
      await new Promise((r) => setTimeout(r, pause * (0.5 + Math.random() / 2)));
    }
  }
}

export async function disconnectClients(
  node: Node,
  listener: ClientListener,
  timeoutMs: number,
): Promise<void> {
  node.draining = true;
  listener.close();
  await inBatches([...node.hub.all()], Disconnects.shutdown, 'shutdown', timeoutMs * CLIENT_SHARE);
}

/**
 * A gateway cut off from its broker for `seconds` can deliver nothing: its
 * readiness is 503 (HAProxy sends new clients elsewhere), and its clients are
 * disconnected with a reconnect code, in batches, to recover on gateways that
 * have the broker. Returns the stop of the watch.
 */
export function watchBrokerOutage(node: Node, seconds: number): () => void {
  if (seconds === 0) return () => {};
  let since: number | undefined;
  let sending = false;
  const timer = setInterval(() => {
    if (node.broker.ready || node.draining) {
      since = undefined;
      return;
    }
    since ??= Date.now();
    if (sending || Date.now() - since < seconds * 1000) return;
    const sessions = [...node.hub.all()];
    if (sessions.length === 0) return;
    sending = true;
    node.log.warn({ seconds, clients: sessions.length }, 'broker unavailable: sending clients elsewhere');
    void inBatches(
      sessions,
      Disconnects.serverError,
      'broker_outage',
      OUTAGE_SPREAD_MS,
      () => !node.broker.ready,
    )
      .catch((err: unknown) => node.log.error({ err }, 'disconnecting clients failed'))
      .finally(() => {
        sending = false;
      });
  }, 1000);
  timer.unref();
  return () => clearInterval(timer);
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
