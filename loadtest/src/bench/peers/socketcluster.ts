/**
 * SocketCluster peer: its own HS256 JWT authentication (`authKey`), channels
 * and publish through its in-process exchange, no compression.
 */

import http from 'node:http';
import socketClusterServer from 'socketcluster-server';
import { announce, BENCH_KEEPALIVE_SECONDS, peerSettings } from './lite-protocol.js';

const { port, secret } = peerSettings();
const httpServer = http.createServer();
socketClusterServer.attach(httpServer, {
  authKey: secret,
  perMessageDeflate: false,
  pingInterval: BENCH_KEEPALIVE_SECONDS * 1000,
  pingTimeout: (BENCH_KEEPALIVE_SECONDS + 60) * 1000,
});
httpServer.listen(port, '127.0.0.1', () => announce(port));
