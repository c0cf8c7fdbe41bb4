/**
 * Socket.IO peer: WebSocket transport only, no compression, the HS256 token
 * checked in a middleware, channels as rooms, publications as `io.to(room).emit`.
 */

import http from 'node:http';
import { Server } from 'socket.io';
import { verifyHs256 } from '../../jwt.js';
import { announce, BENCH_KEEPALIVE_SECONDS, peerSettings } from './lite-protocol.js';

const { port, secret } = peerSettings();
const io = new Server({
  transports: ['websocket'],
  perMessageDeflate: false,
  serveClient: false,
  pingInterval: BENCH_KEEPALIVE_SECONDS * 1000,
});

io.use((socket, next) => {
  const token = (socket.handshake.auth as { token?: unknown }).token;
  next(typeof token === 'string' && verifyHs256(token, secret) ? undefined : new Error('invalid token'));
});

io.on('connection', (socket) => {
  socket.on('subscribe', (channel: string, ack: () => void) => {
    void socket.join(channel);
    ack();
  });
  socket.on('publish', (channel: string, data: unknown, ack: () => void) => {
    io.to(channel).emit('pub', channel, data);
    ack();
  });
});

const httpServer = http.createServer();
io.attach(httpServer);
httpServer.listen(port, '127.0.0.1', () => announce(port));
