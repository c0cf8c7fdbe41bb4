/**
 * SocketCluster peer: its own HS256 JWT authentication (`authKey`), channels
 * and publish through its in-process exchange, no compression.
 */

import http from 'node:http';
import socketClusterServer from 'socketcluster-server';
import { announce, peerSettings } from './lite-protocol.js';

const { port, secret } = peerSettings();
const httpServer = http.createServer();
socketClusterServer.attach(httpServer, {
  authKey: secret,
  perMessageDeflate: false,
  pingInterval: 25_000,
  pingTimeout: 60_000,
});
httpServer.listen(port, '127.0.0.1', () => announce(port));
