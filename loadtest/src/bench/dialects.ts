/**
 * Load-generator clients for the Socket.IO and SocketCluster peers, on their
 * own client libraries, behind the same Connection interface as the
 * Centrifugo client (src/connection.ts).
 */

import socketClusterClient from 'socketcluster-client';
import { io } from 'socket.io-client';
import type { Connection, Dialect } from '../connection.js';

export const socketio: Dialect = async ({ url, token, localAddress, timeoutMs }) => {
  const socket = io(url, {
    transports: ['websocket'],
    auth: { token },
    reconnection: false,
    forceNew: true,
    timeout: timeoutMs,
    ...(localAddress === undefined ? {} : { localAddress }),
  });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  const conn: Connection = {
    onPublication: () => {},
    onClose: () => {},
    subscribe: async (channel) => {
      await socket.timeout(timeoutMs).emitWithAck('subscribe', channel);
    },
    publish: async (channel, data) => {
      await socket.timeout(timeoutMs).emitWithAck('publish', channel, data);
    },
    rpc: () => Promise.reject(new Error('no rpc on the Socket.IO peer')),
    close: () => socket.disconnect(),
  };
  socket.on('pub', (channel: string, data: unknown) => conn.onPublication(channel, data));
  socket.once('disconnect', (reason) => conn.onClose(1000, reason));
  return conn;
};

export const socketcluster: Dialect = async ({ url, token, localAddress, timeoutMs }) => {
  const { hostname, port } = new URL(url);
  const socket = socketClusterClient.create({
    hostname,
    port: Number(port),
    autoReconnect: false,
    connectTimeout: timeoutMs,
    ackTimeout: timeoutMs,
    wsOptions: { perMessageDeflate: false, ...(localAddress === undefined ? {} : { localAddress }) },
  });
  const failed = socket.listener('error').once();
  await Promise.race([
    socket.listener('connect').once(timeoutMs),
    failed.then(({ error }) => Promise.reject(error)),
  ]);
  await socket.authenticate(token);
  const conn: Connection = {
    onPublication: () => {},
    onClose: () => {},
    subscribe: async (name) => {
      const channel = socket.subscribe(name);
      await channel.listener('subscribe').once(timeoutMs);
      void (async () => {
        for await (const data of channel) conn.onPublication(name, data);
      })();
    },
    publish: (channel, data) => socket.invokePublish(channel, data),
    rpc: () => Promise.reject(new Error('no rpc on the SocketCluster peer')),
    close: () => socket.disconnect(),
  };
  void socket
    .listener('close')
    .once()
    .then(({ code, reason }) => conn.onClose(code, reason));
  return conn;
};
