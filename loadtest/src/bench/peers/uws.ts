/**
 * Bare uWebSockets.js peer (the same package the gateway runs on): the lite
 * protocol, subscriptions as uWS topics, publications with `app.publish`.
 */

import { uws as uWS } from '@switchboard/gateway/dist/src/uws.js';
import {
  announce,
  BENCH_KEEPALIVE_SECONDS,
  handleFrame,
  type LiteSocket,
  peerSettings,
} from './lite-protocol.js';

const { port, secret } = peerSettings();
const app = uWS.App();
const decoder = new TextDecoder();

app.ws<{ socket?: LiteSocket }>('/connection/websocket', {
  compression: uWS.DISABLED,
  maxPayloadLength: 65536,
  // uWS pings a socket that sent nothing for idleTimeout less a 16 s margin (for idleTimeouts of 32 s and more).
  idleTimeout: BENCH_KEEPALIVE_SECONDS + 16,
  sendPingsAutomatically: true,
  upgrade: (res, req, context) => {
    res.upgrade(
      {},
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    ws.getUserData().socket = {
      authenticated: false,
      send: (frame) => void ws.send(frame, false, false),
      subscribe: (channel) => void ws.subscribe(channel),
      close: () => ws.end(3500, 'invalid token'),
    };
  },
  message: (ws, message) => {
    handleFrame(decoder.decode(message), ws.getUserData().socket!, secret, (channel, frame) =>
      app.publish(channel, frame, false, false),
    );
  },
});

app.listen('127.0.0.1', port, (token) => {
  if (!token) throw new Error(`cannot listen on ${port}`);
  announce(port);
});
