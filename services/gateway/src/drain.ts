/**
 * Shutdown: readiness turns 503, listeners close, then clients are
 * disconnected in batches with a reconnect code (3001 shutdown) spread over
 * the timeout, so they reconnect elsewhere without a thundering herd.
 */

import { Disconnects } from '@switchboard/protocol';
import type { Node } from './node.js';
import { type us_listen_socket, uws } from './uws.js';

const BATCHES = 10;

export async function shutdown(node: Node, sockets: us_listen_socket[], timeoutMs: number): Promise<void> {
  node.draining = true;
  for (const socket of sockets) uws.us_listen_socket_close(socket);
  const sessions = [...node.hub.all()];
  const batchSize = Math.ceil(sessions.length / BATCHES) || 1;
  const pause = sessions.length > batchSize ? Math.floor((timeoutMs * 0.8) / BATCHES) : 0;
  for (let i = 0; i < sessions.length; i += batchSize) {
    for (const s of sessions.slice(i, i + batchSize)) s.disconnect(Disconnects.shutdown, 'shutdown');
    if (pause > 0 && i + batchSize < sessions.length) {
      await new Promise((r) => setTimeout(r, pause * (0.5 + Math.random() / 2)));
    }
  }
}
