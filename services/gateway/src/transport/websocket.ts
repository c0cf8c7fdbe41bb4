/**
 * WebSocket transport on uWebSockets.js: Origin and capacity checks on
 * upgrade, frames in, replies out, topic publish for fan-out. Compression is
 * off: it costs CPU and memory per connection for small JSON frames.
 */

import type { Sink } from '../hub.js';
import type { Node } from '../node.js';
import { Session } from '../session.js';
import { type HttpResponse, type TemplatedApp, uws, type WebSocket } from '../uws.js';
import { originAllowed } from './origin.js';

interface SocketData {
  session?: Session;
  sink?: WebSocketSink;
}

class WebSocketSink implements Sink {
  readonly transport = 'websocket';
  open = true;

  constructor(
    private readonly ws: WebSocket<SocketData>,
    private readonly node: Node,
  ) {}

  send(frame: string): boolean {
    if (!this.open) return true;
    const status = this.ws.send(frame, false, false);
    this.node.metrics.messages.inc({ transport: 'websocket', direction: 'out' });
    this.node.metrics.bytes.inc({ transport: 'websocket', direction: 'out' }, Buffer.byteLength(frame));
    return status !== 2;
  }

  close(code: number, reason: string): void {
    if (this.open) this.ws.end(code, reason);
  }

  bufferedAmount(): number {
    return this.open ? this.ws.getBufferedAmount() : 0;
  }

  joinTopic(channel: string): void {
    if (this.open) this.ws.subscribe(channel);
  }

  leaveTopic(channel: string): void {
    if (this.open) this.ws.unsubscribe(channel);
  }

  publishExceptSelf(channel: string, frame: string): void {
    if (this.open) this.ws.publish(channel, frame, false, false);
  }
}

const decoder = new TextDecoder();

export function mountWebSocket(app: TemplatedApp, node: Node): void {
  const { config, metrics, log } = node;
  let open = 0;
  const refuse = (res: HttpResponse, status: string, reason: string) => {
    metrics.connects.inc({ transport: 'websocket', outcome: 'rejected', reason });
    res.writeStatus(status).end(reason);
  };

  app.ws<SocketData>('/connection/websocket', {
    maxPayloadLength: config.maxMessageSize,
    maxBackpressure: config.maxBackpressure,
    // A hard bound behind the session's own slow check: never buffer without limit.
    closeOnBackpressureLimit: 1,
    idleTimeout: 0,
    sendPingsAutomatically: false,
    compression: uws.DISABLED,

    upgrade: (res, req, context) => {
      const origin = req.getHeader('origin');
      if (!originAllowed(origin, config.allowedOrigins))
        return refuse(res, '403 Forbidden', 'origin_not_allowed');
      if (node.draining) return refuse(res, '503 Service Unavailable', 'shutdown');
      if (open >= config.maxConnections) return refuse(res, '503 Service Unavailable', 'gateway_limit');
      res.upgrade<SocketData>(
        {},
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },

    open: (ws) => {
      open++;
      metrics.connections.set({ transport: 'websocket' }, open);
      const data = ws.getUserData();
      data.sink = new WebSocketSink(ws, node);
      data.session = new Session(data.sink, node);
    },

    message: (ws, message) => {
      metrics.messages.inc({ transport: 'websocket', direction: 'in' });
      metrics.bytes.inc({ transport: 'websocket', direction: 'in' }, message.byteLength);
      const session = ws.getUserData().session;
      try {
        session?.handleFrame(decoder.decode(message));
      } catch (err) {
        log.error({ err, client: session?.client }, 'frame handling failed');
        ws.end(3004, 'internal server error');
      }
    },

    close: (ws, code) => {
      open--;
      metrics.connections.set({ transport: 'websocket' }, open);
      const data = ws.getUserData();
      if (data.sink) data.sink.open = false;
      data.session?.closed(code);
    },
  });
}
