/**
 * Unidirectional transports, as Centrifugo defines them: the client connects
 * with a plain browser API (WebSocket, EventSource, fetch), sends one connect
 * request and from then on only receives pushes, without the `{"push": …}`
 * envelope. Its channels come from the token's `channels` claim (server-side
 * subscriptions) or the server API's `subscribe`.
 *
 * - `uni_websocket` (`/connection/uni_websocket`): the ConnectRequest as the
 *   first message, or as the `cf_connect` query parameter; pings are `{}`.
 * - `uni_sse` (`/connection/uni_sse`): the ConnectRequest as `cf_connect`
 *   (GET) or as the body (POST); pings are `event: ping` with empty data.
 * - `uni_http_stream` (`/connection/uni_http_stream`): the ConnectRequest as
 *   the POST body; newline-delimited JSON; pings are `null`.
 *
 * The first frame is the connect push `{"connect": {client, version, subs,
 * ping, …}}`; a refused connect closes with a disconnect code (uni clients
 * cannot retry a command). Any later message on a uni WebSocket is refused
 * (3501): there are no commands to send.
 */

import { type Disconnect, Disconnects, decodeUtf8, isJsonObject, parseJson } from '@switchboard/protocol';
import type { Sink } from '../hub.js';
import type { UniTransport } from '../metrics.js';
import type { Node } from '../node.js';
import { replyText } from '../reply.js';
import { Session } from '../session.js';
import type { HttpResponse, TemplatedApp } from '../uws.js';
import type { Admission } from './admission.js';
import {
  type Framing,
  jsonLine,
  mountPreflight,
  openStream,
  postedConnect,
  queriedConnect,
  sseEvent,
  StreamSink,
  streamConnect,
} from './stream.js';
import { MESSAGE_TOO_BIG, socketOptions, WebSocketSink } from './websocket.js';

/** What a bidirectional frame line becomes on a unidirectional connection. */
export type UniLine = { frame: string } | { ping: true } | { close: Disconnect } | { drop: true };

const PUSH_PREFIX = '{"push":';

/** How the connect error a bidirectional client would get as a reply ends a unidirectional connection. */
function disconnectFor(code: unknown): Disconnect {
  if (code === 109) return { code: 3005, reason: 'token expired' };
  if (code === 101 || code === 103) return Disconnects.invalidToken;
  if (code === 100) return Disconnects.serverError;
  return Disconnects.badRequest;
}

/**
 * One line of what a session writes, as a unidirectional client sees it:
 * pushes lose their envelope, the connect reply becomes the connect push, a
 * connect error a disconnect, the `{}` ping the transport's own ping. Pure.
 */
export function uniLine(line: string): UniLine {
  if (line === '{}') return { ping: true };
  if (line.startsWith(PUSH_PREFIX) && line.endsWith('}'))
    return { frame: line.slice(PUSH_PREFIX.length, -1) };
  // A reply: only the connect command is ever sent on these connections.
  let reply: unknown;
  try {
    reply = JSON.parse(line);
  } catch {
    return { drop: true };
  }
  if (!isJsonObject(reply)) return { drop: true };
  if (isJsonObject(reply.connect)) return { frame: JSON.stringify({ connect: reply.connect }) };
  if (isJsonObject(reply.error)) return { close: disconnectFor(reply.error.code) };
  return { drop: true };
}

/**
 * A unidirectional connection's sink: rewrites what the session writes
 * (uniLine) onto the transport's sink. Not a topic sink, so the hub sends it
 * each push itself (fan-out through uWS topics carries the bidirectional
 * envelope).
 */
export class UniSink implements Sink {
  readonly unidirectional = true;

  constructor(
    readonly transport: UniTransport,
    private readonly inner: Sink,
    /** What a ping is on this transport; undefined: none is sent (gRPC keeps its own keepalive). */
    private readonly ping: string | undefined,
  ) {}

  send(frame: string): boolean {
    let ok = true;
    for (const line of frame.includes('\n') ? frame.split('\n') : [frame]) {
      const uni = uniLine(line);
      if ('frame' in uni) ok = this.inner.send(uni.frame) && ok;
      else if ('ping' in uni) ok = (this.ping === undefined || this.inner.send(this.ping)) && ok;
      else if ('close' in uni) {
        this.inner.close(uni.close.code, uni.close.reason);
        return false;
      }
    }
    return ok;
  }

  close(code: number, reason: string): void {
    this.inner.close(code, reason);
  }

  bufferedAmount(): number {
    return this.inner.bufferedAmount();
  }
}

/**
 * The connect command for a ConnectRequest text a client sent, or undefined
 * when it is not a JSON object within the nesting bound. Re-encoded, never
 * spliced: the text cannot smuggle a second command into the frame.
 */
export function connectCommand(request: string, maxDepth: number): string | undefined {
  const parsed = parseJson(request === '' ? '{}' : request, maxDepth);
  if (!parsed.ok || !isJsonObject(parsed.value)) return undefined;
  return JSON.stringify({ id: 1, connect: parsed.value });
}

const uniDisconnect = (code: number, reason: string) => JSON.stringify({ disconnect: { code, reason } });

const UNI_FRAMING: Record<'uni_sse' | 'uni_http_stream', Framing & { ping: string }> = {
  uni_sse: {
    contentType: 'text/event-stream',
    // The ping (the one empty frame): a named `ping` event with empty data, as Centrifugo's; `onmessage` does not see it.
    encode: (frame: string) => (frame === '' ? 'event: ping\ndata:\n\n' : sseEvent(frame)),
    disconnect: uniDisconnect,
    ping: '',
  },
  uni_http_stream: {
    contentType: 'application/json',
    encode: jsonLine,
    disconnect: uniDisconnect,
    ping: 'null',
  },
};

interface UniSocketData {
  session?: Session;
  socket?: WebSocketSink;
  sink?: UniSink;
  /** The `cf_connect` query parameter, when the client passed its ConnectRequest in the URL. */
  connect?: string;
  /** Whether the connect request came (in the URL or as the first message): anything after it is refused. */
  requested?: boolean;
}

/** Mounts the unidirectional transports named in `uni_transports`. */
export function mountUni(app: TemplatedApp, node: Node, admission: Admission): void {
  const { config } = node;
  const enabled = new Set(config.uniTransports);
  const { maxDepth } = node.frameLimits;

  /** Connects `session` with a client's ConnectRequest text; anything but a JSON object is refused (3501). */
  const connectWith = (session: Session, sink: Sink, request: string): void => {
    const command = connectCommand(request, maxDepth);
    if (command === undefined) session.disconnect(Disconnects.badRequest, 'bad_request');
    else streamConnect(node, session, sink, command);
  };

  if (enabled.has('websocket')) {
    const traffic = node.metrics.traffic('uni_websocket');
    app.ws<UniSocketData>('/connection/uni_websocket', {
      ...socketOptions(config),
      upgrade: (res, req, context) => {
        const refusal = admission.refusal(res, req);
        if (refusal) return admission.refuse(res, 'uni_websocket', refusal);
        const connect = req.getQuery('cf_connect');
        res.upgrade<UniSocketData>(
          connect ? { connect } : {},
          req.getHeader('sec-websocket-key'),
          req.getHeader('sec-websocket-protocol'),
          req.getHeader('sec-websocket-extensions'),
          context,
        );
      },
      open: (ws) => {
        admission.opened('uni_websocket');
        const data = ws.getUserData();
        data.socket = new WebSocketSink(ws, traffic);
        data.sink = new UniSink('uni_websocket', data.socket, '{}');
        data.session = new Session(data.sink, node);
        if (data.connect !== undefined) {
          data.requested = true;
          connectWith(data.session, data.sink, data.connect);
          delete data.connect;
        }
      },
      message: (ws, message) => {
        const data = ws.getUserData();
        const { session, sink } = data;
        if (!session || !sink) return;
        // The connect request, once; a unidirectional client has nothing else to say.
        if (data.requested || message.byteLength > config.maxMessageSize) {
          traffic.messagesIn.inc();
          traffic.bytesIn.inc(message.byteLength);
          return data.requested
            ? session.disconnect(Disconnects.badRequest, 'bad_request')
            : session.disconnect(MESSAGE_TOO_BIG, 'message_size');
        }
        data.requested = true;
        connectWith(session, sink, decodeUtf8(new Uint8Array(message)) ?? '\u0000');
      },
      close: (ws, code) => {
        admission.closed('uni_websocket');
        const data = ws.getUserData();
        // The socket is gone: nothing may be written to it any more.
        if (data.socket) data.socket.open = false;
        data.session?.closed(code);
      },
    });
  }

  const start = (
    transport: 'uni_sse' | 'uni_http_stream',
    res: HttpResponse,
    origin: string,
    request: string,
  ) => {
    const command = connectCommand(request, maxDepth);
    if (command === undefined)
      return replyText(res, '400 Bad Request', 'connect request must be a JSON object');
    const framing = UNI_FRAMING[transport];
    const stream = new StreamSink(
      transport,
      framing,
      res,
      node.metrics.traffic(transport),
      config.maxBackpressure * 4,
      (code, reason) => {
        admission.closed(transport);
        session.closed(code, reason);
      },
      false,
    );
    // Made after the stream, which only calls back once it has ended.
    const session = openStream(
      node,
      admission,
      { sink: stream, res, contentType: framing.contentType, origin },
      new UniSink(transport, stream, framing.ping),
    );
    streamConnect(node, session, stream, command);
  };

  const streamEndpoint = (transport: 'uni_sse' | 'uni_http_stream', path: string) => {
    const begin = (res: HttpResponse, origin: string, text: string) => start(transport, res, origin, text);
    postedConnect(app, path, node, admission, transport, 'connect request', begin);
    if (transport === 'uni_sse')
      queriedConnect(app, path, node, admission, transport, 'connect request', false, begin);
    mountPreflight(app, config, [path]);
  };
  if (enabled.has('sse')) streamEndpoint('uni_sse', '/connection/uni_sse');
  if (enabled.has('http_stream')) streamEndpoint('uni_http_stream', '/connection/uni_http_stream');
}
