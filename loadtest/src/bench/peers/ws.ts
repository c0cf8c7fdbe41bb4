/**
 * `ws` peer: the lite protocol, a map of channel → sockets, and one send per
 * subscriber (the frame is encoded once).
 */

import { WebSocketServer, type WebSocket } from 'ws';
import { announce, handleFrame, type LiteSocket, peerSettings } from './lite-protocol.js';

const { port, secret } = peerSettings();
const channels = new Map<string, Set<WebSocket>>();
const server = new WebSocketServer({
  host: '127.0.0.1',
  port,
  path: '/connection/websocket',
  perMessageDeflate: false,
});

const publish = (channel: string, frame: string) => {
  for (const ws of channels.get(channel) ?? []) ws.send(frame);
};

server.on('connection', (ws) => {
  const joined: string[] = [];
  const socket: LiteSocket = {
    authenticated: false,
    send: (frame) => ws.send(frame),
    subscribe: (channel) => {
      let set = channels.get(channel);
      if (!set) channels.set(channel, (set = new Set()));
      set.add(ws);
      joined.push(channel);
    },
    close: () => ws.close(3500, 'invalid token'),
  };
  ws.on('message', (data: Buffer) => handleFrame(data.toString(), socket, secret, publish));
  ws.on('close', () => {
    for (const channel of joined) {
      const set = channels.get(channel);
      set?.delete(ws);
      if (set?.size === 0) channels.delete(channel);
    }
  });
});
server.on('listening', () => announce(port));
