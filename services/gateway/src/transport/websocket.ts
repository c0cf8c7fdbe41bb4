/**
 * WebSocket transport on uWebSockets.js: Origin and capacity checks on
 * upgrade, frames in, replies out, topic publish for fan-out. A client asking
 * for the `centrifuge-protobuf` subprotocol gets a Protobuf session (binary
 * frames), any other a JSON one. Compression is off: it costs CPU and memory
 * per connection for small frames.
 */

import { decodeUtf8, Disconnects } from '@switchboard/protocol';
import type { Frame, TopicSink } from '../hub.js';
import type { Traffic, Transport } from '../metrics.js';
import type { Config } from '../config.js';
import type { Node } from '../node.js';
import { PROTOBUF_SUBPROTOCOL, ProtobufSession } from '../protobuf-session.js';
import { Session } from '../session.js';
import { type TemplatedApp, uws, type WebSocket } from '../uws.js';
import type { Admission } from './admission.js';

interface SocketData {
  session?: Session;
  /** Set at upgrade for a client that asked for Protobuf. */
  protobuf?: true;
}

const isJsonPong = (bytes: Uint8Array): boolean =>
  bytes.length === 2 && bytes[0] === 0x7b && bytes[1] === 0x7d;

/** Whether a Sec-WebSocket-Protocol header (a comma-separated list) names `wanted`. */
export const asksFor = (header: string, wanted: string): boolean =>
  header.split(',').some((p) => p.trim() === wanted);

/** A uWS WebSocket as the hub and a session see it. */
export class WebSocketSink implements TopicSink {
  open = true;

  /** On the prototype, not in each connection's object. */
  get transport(): Transport {
    return 'websocket';
  }

  constructor(
    private readonly ws: WebSocket<unknown>,
    private readonly traffic: Traffic,
  ) {}

  send(frame: Frame): boolean {
    if (!this.open) return true;
    const status = this.ws.send(frame, typeof frame !== 'string', false);
    if (status === 2) this.overLimit = true;
    this.traffic.messagesOut.inc();
    this.traffic.bytesOut.inc(Buffer.byteLength(frame));
    return status !== 2;
  }

  close(code: number, reason: string): void {
    if (this.open) this.ws.end(code, reason);
  }

  /** Bytes queued at the last look; an abrupt close after a backlog was a slow consumer. */
  lastBuffered = 0;
  /** A direct send hit the hard backpressure bound: uWS closes the socket next. */
  overLimit = false;

  bufferedAmount(): number {
    this.lastBuffered = this.open ? this.ws.getBufferedAmount() : 0;
    return this.lastBuffered;
  }

  joinTopic(topic: string): void {
    if (this.open) this.ws.subscribe(topic);
  }

  leaveTopic(topic: string): void {
    if (this.open) this.ws.unsubscribe(topic);
  }

  publishExceptSelf(topic: string, frame: Frame): void {
    if (this.open) this.ws.publish(topic, frame, typeof frame !== 'string', false);
  }
}

/**
 * The largest frame uWS reads to its end. Up to it, an oversized message gets
 * our 1009 close (the client stops reconnecting); a frame declaring more is
 * cut at its header by uWS without a close frame (1006), since reading it
 * would hold that much memory. Memory held for a connection's partial frame
 * is what the peer has actually sent, and the pong deadline bounds how long.
 */
export const WEBSOCKET_READ_CEILING = 16 * 1024 * 1024;

/** WebSocket's own code for an oversized message: the client does not reconnect. */
export const MESSAGE_TOO_BIG = { code: 1009, reason: 'message size limit exceeded' };

/** The socket settings both WebSocket edges use. */
export function socketOptions(config: Config) {
  return {
    // uWS drops oversized frames without a close frame; it gets headroom so that
    // our own check answers with 1009 and a reason instead.
    maxPayloadLength: Math.max(config.maxMessageSize * 4, WEBSOCKET_READ_CEILING),
    // A session disconnects clients past max_backpressure at its once-a-second
    // check; this hard bound (4x) closes at once when a burst outruns that
    // check, so nothing is ever buffered without limit.
    maxBackpressure: config.maxBackpressure * 4,
    closeOnBackpressureLimit: 1,
    idleTimeout: 0,
    sendPingsAutomatically: false,
    compression: uws.DISABLED,
  } as const;
}

export function mountWebSocket(app: TemplatedApp, node: Node, admission: Admission): void {
  const { config, metrics, log } = node;
  const traffic = metrics.traffic('websocket');

  app.ws<SocketData>('/connection/websocket', {
    ...socketOptions(config),

    upgrade: (res, req, context) => {
      const refusal = admission.refusal(res, req);
      if (refusal) return admission.refuse(res, 'websocket', refusal);
      const protocols = req.getHeader('sec-websocket-protocol');
      // Most clients name no subprotocol: nothing to split then.
      const protobuf = protocols !== '' && asksFor(protocols, PROTOBUF_SUBPROTOCOL);
      res.upgrade<SocketData>(
        protobuf ? { protobuf } : {},
        req.getHeader('sec-websocket-key'),
        protobuf ? PROTOBUF_SUBPROTOCOL : protocols,
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },

    open: (ws) => {
      admission.opened('websocket');
      const data = ws.getUserData();
      const sink = new WebSocketSink(ws, traffic);
      data.session = data.protobuf ? new ProtobufSession(sink, node) : new Session(sink, node);
    },

    message: (ws, message) => {
      traffic.messagesIn.inc();
      traffic.bytesIn.inc(message.byteLength);
      const session = ws.getUserData().session;
      if (!session) return;
      const bytes = new Uint8Array(message);
      const protobuf = session instanceof ProtobufSession;
      // The pong every client sends per ping interval, not decoded: `{}`, or in Protobuf an empty Command.
      if (protobuf ? bytes.length === 1 && bytes[0] === 0 : isJsonPong(bytes)) return session.pong();
      if (bytes.length > config.maxMessageSize) return session.disconnect(MESSAGE_TOO_BIG, 'message_size');
      try {
        if (protobuf) return session.handleBinary(bytes);
        // Text frames are checked by uWS; binary frames must be UTF-8 JSON too.
        const frame = decodeUtf8(bytes);
        if (frame === undefined) return session.disconnect(Disconnects.badRequest, 'bad_request');
        session.handleFrame(frame);
      } catch (err) {
        log.error({ err, client: session.client }, 'frame handling failed');
        metrics.handlerErrors.inc({ where: 'websocket' });
        ws.end(3004, 'internal server error');
      }
    },

    close: (ws, code) => {
      admission.closed('websocket');
      const session = ws.getUserData().session;
      if (!session) return;
      const sink = session.sink as WebSocketSink;
      sink.open = false;
      const slow = code === 1006 && (sink.overLimit || sink.lastBuffered > 0);
      session.closed(code, slow ? 'slow' : undefined);
    },
  });
}
