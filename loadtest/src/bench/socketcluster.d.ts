// The parts of SocketCluster (no bundled types) the benchmark uses.

declare module 'socketcluster-server' {
  import type { Server } from 'node:http';
  const socketClusterServer: {
    attach(server: Server, options: Record<string, unknown>): unknown;
  };
  export default socketClusterServer;
}

declare module 'socketcluster-client' {
  interface Listener<T> {
    once(timeoutMs?: number): Promise<T>;
  }
  export interface AGChannel extends AsyncIterable<unknown> {
    name: string;
    listener(event: 'subscribe'): Listener<unknown>;
    listener(event: 'subscribeFail'): Listener<{ error: Error }>;
  }
  export interface AGClientSocket {
    state: string;
    listener(event: 'connect'): Listener<unknown>;
    listener(event: 'error'): Listener<{ error: Error }>;
    listener(event: 'close'): Listener<{ code: number; reason: string }>;
    authenticate(token: string): Promise<unknown>;
    subscribe(channel: string): AGChannel;
    invokePublish(channel: string, data: unknown): Promise<void>;
    invoke(event: string, data: unknown): Promise<unknown>;
    disconnect(code?: number, reason?: string): void;
  }
  const socketClusterClient: {
    create(options: Record<string, unknown>): AGClientSocket;
  };
  export default socketClusterClient;
}
