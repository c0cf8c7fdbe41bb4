/**
 * A TCP proxy that holds every chunk for a fixed delay in each direction, in
 * order: added latency on a link where this kernel has no netem.
 */

import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';

export interface DelayProxy {
  port: number;
  stop(): Promise<void>;
}

/** Listens on `host` (a free port) and forwards to `target`, `delayMs` later each way. */
export async function delayProxy(
  host: string,
  target: { host: string; port: number },
  delayMs: number,
): Promise<DelayProxy> {
  const sockets = new Set<Socket>();
  const relay = (from: Socket, to: Socket) => {
    from.on('data', (chunk) => setTimeout(() => to.writable && to.write(chunk), delayMs));
    from.on('end', () => setTimeout(() => to.end(), delayMs));
    from.on('error', () => to.destroy());
    from.on('close', () => setTimeout(() => to.destroy(), delayMs));
  };
  const server = createServer((downstream) => {
    const upstream = connect(target.port, target.host);
    for (const s of [downstream, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    }
    relay(downstream, upstream);
    relay(upstream, downstream);
  });
  server.listen(0, host);
  await once(server, 'listening');
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('delay proxy has no port');
  return {
    port: address.port,
    stop: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}
