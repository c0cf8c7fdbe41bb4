/**
 * HTTP-based transports for networks that block WebSocket, as the centrifuge
 * client speaks them: SSE (`GET /connection/sse?cf_connect=<connect command>`)
 * and HTTP-streaming (`POST /connection/http_stream`, the connect command as
 * body). The response stays open and carries replies, pushes and pings; the
 * client's later commands arrive as `POST /emulation` (emulation.ts).
 * HTTP-streaming speaks Protobuf too: a connect posted as
 * `application/octet-stream` opens a stream of varint-delimited Replies.
 */

import { randomBytes } from 'node:crypto';
import { decodeUtf8, Disconnects, encodeReply } from '@switchboard/protocol';
import { readBody, replyText } from '../reply.js';
import type { Frame, Sink } from '../hub.js';
import type { Config } from '../config.js';
import type { Traffic, Transport } from '../metrics.js';
import type { Node } from '../node.js';
import { ProtobufSession } from '../protobuf-session.js';
import { Session } from '../session.js';
import type { HttpResponse, TemplatedApp } from '../uws.js';
import type { Admission } from './admission.js';
import { type Emulation, PROTOBUF_CONTENT_TYPE } from './emulation.js';
import { corsHeaders, originAllowed } from './origin.js';

type StreamTransport = 'sse' | 'http_stream';

/**
 * How a stream frames what it writes: a reply or push, and the disconnect
 * push that ends it. Text framings take text frames only (their sessions
 * are JSON ones), the Protobuf one binary frames.
 */
export interface Framing {
  contentType: string;
  encode(frame: Frame): Frame;
  disconnect(code: number, reason: string): Frame;
}

/** SSE events: unnamed, so the client's `onmessage` gets them; the lines of a frame become `data:` lines of one event (EventSource joins them with `\n` again). */
export const sseEvent = (frame: string): string => `data: ${frame.replaceAll('\n', '\ndata: ')}\n\n`;
/** Newline-delimited JSON: a line is processed once its `\n` arrives. */
export const jsonLine = (frame: string): string => `${frame}\n`;

const bidirectionalDisconnect = (code: number, reason: string) =>
  JSON.stringify({ push: { disconnect: { code, reason } } });

/** How each bidirectional transport frames one reply or push. */
const framing: Record<StreamTransport, Framing> = {
  sse: { contentType: 'text/event-stream', encode: sseEvent, disconnect: bidirectionalDisconnect },
  http_stream: { contentType: 'application/json', encode: jsonLine, disconnect: bidirectionalDisconnect },
};

/** HTTP-streaming in Protobuf: Replies are varint-delimited already, written as they are. */
const protobufFraming: Framing = {
  contentType: PROTOBUF_CONTENT_TYPE,
  encode: (frame) => frame,
  disconnect: (code, reason) => encodeReply({ push: { disconnect: { code, reason, reconnect: false } } }),
};

/** What a stream connection was closed with, for its session's accounting. */
type Ended = (code: number, reason?: string) => void;

/**
 * One open HTTP response as a session's sink. When the socket cannot take
 * more, frames wait in our own queue, so the backlog is known exactly: the
 * session's once-a-second check disconnects past max_backpressure, and past
 * four times that the stream is closed at once, as WebSocket's hard bound does.
 */
export class StreamSink implements Sink {
  /** Unguessable: whoever knows it can send commands as this connection (bidirectional streams only). */
  readonly emulationSession: string | undefined;
  private open = true;
  private blocked = false;
  private readonly queue: Frame[] = [];
  private queued = 0;

  constructor(
    readonly transport: Transport,
    private readonly framing: Framing,
    private readonly res: HttpResponse,
    private readonly traffic: Traffic,
    private readonly hardLimit: number,
    private readonly ended: Ended,
    emulation = true,
  ) {
    this.emulationSession = emulation ? randomBytes(18).toString('base64url') : undefined;
  }

  send(frame: Frame): boolean {
    if (!this.open) return true;
    const data = this.framing.encode(frame);
    const size = Buffer.byteLength(data);
    this.traffic.messagesOut.inc();
    this.traffic.bytesOut.inc(size);
    if (!this.blocked) {
      this.write(data);
      return true;
    }
    if (this.queued + size > this.hardLimit) {
      this.finish(3008, 'slow');
      return false;
    }
    this.queue.push(data);
    this.queued += size;
    return true;
  }

  /** Sends what is queued and a disconnect push, then ends the response. */
  close(code: number, reason: string): void {
    if (!this.open) return;
    const push = this.framing.encode(this.framing.disconnect(code, reason));
    this.res.cork(() => {
      for (const data of this.queue) this.res.write(data);
      this.res.write(push);
    });
    this.finish(code);
  }

  bufferedAmount(): number {
    return this.queued;
  }

  /** The client went away (uWS onAborted): the response must not be touched again. */
  aborted(): void {
    if (!this.open) return;
    this.open = false;
    this.ended(1005);
  }

  private finish(code: number, reason?: string): void {
    this.open = false;
    this.queue.length = 0;
    this.queued = 0;
    this.res.cork(() => this.res.end());
    this.ended(code, reason);
  }

  private write(data: Frame): void {
    let ok = true;
    this.res.cork(() => {
      ok = this.res.write(data);
    });
    if (ok) return;
    this.blocked = true;
    this.res.onWritable(() => {
      this.blocked = false;
      while (this.queue.length > 0 && !this.blocked && this.open) {
        const next = this.queue.shift()!;
        this.queued -= Buffer.byteLength(next);
        this.write(next);
      }
      return true;
    });
  }
}

/**
 * Writes a stream's response head, counts it open with `admission` and makes
 * its session over `sessionSink` (the stream itself, or what wraps it); the
 * stream's end callback must close that session.
 */
export function openStream(
  node: Node,
  admission: Admission,
  stream: { sink: StreamSink; res: HttpResponse; contentType: string; origin: string },
  sessionSink: Sink = stream.sink,
  protobuf = false,
): Session {
  const { sink, res } = stream;
  res.onAborted(() => sink.aborted());
  res.cork(() => {
    res
      .writeStatus('200 OK')
      .writeHeader('content-type', stream.contentType)
      .writeHeader('cache-control', 'no-cache, no-store')
      .writeHeader('x-accel-buffering', 'no');
    for (const [name, value] of Object.entries(corsHeaders(stream.origin))) res.writeHeader(name, value);
  });
  admission.opened(sink.transport);
  return protobuf ? new ProtobufSession(sessionSink, node) : new Session(sessionSink, node);
}

/** Hands a stream's connect command to its session (counted as the stream's first message). */
export function streamConnect(node: Node, session: Session, sink: Sink, connect: string | Uint8Array): void {
  const traffic = node.metrics.traffic(sink.transport);
  traffic.messagesIn.inc();
  traffic.bytesIn.inc(Buffer.byteLength(connect));
  try {
    if (typeof connect === 'string') session.handleFrame(connect);
    else if (session instanceof ProtobufSession) session.handleBinary(connect);
    // `start` makes a Protobuf session for every binary connect: this is a bug, not a client's error.
    else throw new Error('a binary connect for a JSON session');
  } catch (err) {
    node.log.error({ err, client: session.client }, 'stream connect failed');
    node.metrics.handlerErrors.inc({ where: 'stream' });
    sink.close(Disconnects.serverError.code, Disconnects.serverError.reason);
  }
}

export function mountStreams(
  app: TemplatedApp,
  node: Node,
  admission: Admission,
  emulation: Emulation,
): void {
  const { config } = node;

  /** Opens the stream and hands the connect command (Protobuf when bytes) to a new session. */
  const start = (
    transport: StreamTransport,
    res: HttpResponse,
    origin: string,
    connect: string | Uint8Array,
  ) => {
    const protobuf = typeof connect !== 'string';
    const streamFraming = protobuf ? protobufFraming : framing[transport];
    const sink = new StreamSink(
      transport,
      streamFraming,
      res,
      node.metrics.traffic(transport),
      config.maxBackpressure * 4,
      (code, reason) => {
        admission.closed(transport);
        emulation.delete(sink.emulationSession!);
        session.closed(code, reason);
      },
    );
    // Made after the sink, which only calls back once the stream has ended.
    const session = openStream(
      node,
      admission,
      { sink, res, contentType: streamFraming.contentType, origin },
      sink,
      protobuf,
    );
    emulation.add(sink.emulationSession!, session);
    streamConnect(node, session, sink, connect);
  };

  postedConnect(
    app,
    '/connection/http_stream',
    node,
    admission,
    'http_stream',
    'connect command',
    (res, origin, text) => start('http_stream', res, origin, text),
    (res, origin, bytes) => start('http_stream', res, origin, bytes),
  );
  queriedConnect(
    app,
    '/connection/sse',
    node,
    admission,
    'sse',
    'connect command',
    true,
    (res, origin, text) => start('sse', res, origin, text),
  );
  // Preflight of cross-origin POSTs with a JSON body (stream and emulation).
  mountPreflight(app, config, ['/connection/http_stream', '/connection/sse', '/emulation']);
}

type ConnectStart = (res: HttpResponse, origin: string, text: string) => void;

/**
 * `POST path` carrying a stream's connect (`what`, for the refusals) as its
 * body: admitted, read within SWITCHBOARD_MAX_MESSAGE_SIZE (413) and decoded as
 * UTF-8 (400), then handed to `start` as text; with `startProtobuf`, a body
 * posted as application/octet-stream goes to it as bytes instead.
 */
export function postedConnect(
  app: TemplatedApp,
  path: string,
  node: Node,
  admission: Admission,
  transport: Transport,
  what: string,
  start: ConnectStart,
  startProtobuf?: (res: HttpResponse, origin: string, bytes: Uint8Array) => void,
): void {
  app.post(path, (res, req) => {
    const origin = req.getHeader('origin');
    const protobuf = startProtobuf !== undefined && req.getHeader('content-type') === PROTOBUF_CONTENT_TYPE;
    const refusal = admission.refusal(res, req);
    if (refusal) return admission.refuse(res, transport, refusal);
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    readBody(res, node.config.maxMessageSize, (body) => {
      if (aborted) return;
      if (!body) return replyText(res, '413 Payload Too Large', `${what} too large`);
      if (protobuf) return startProtobuf(res, origin, body);
      const text = decodeUtf8(body);
      if (text === undefined) return replyText(res, '400 Bad Request', `${what} is not UTF-8`);
      start(res, origin, text);
    });
  });
}

/** `GET path?cf_connect=…`: as postedConnect, the connect in the query (EventSource cannot POST); `required`: an empty one is 400. */
export function queriedConnect(
  app: TemplatedApp,
  path: string,
  node: Node,
  admission: Admission,
  transport: Transport,
  what: string,
  required: boolean,
  start: ConnectStart,
): void {
  app.get(path, (res, req) => {
    const origin = req.getHeader('origin');
    const refusal = admission.refusal(res, req);
    if (refusal) return admission.refuse(res, transport, refusal);
    const text = req.getQuery('cf_connect') ?? '';
    if (required && text === '')
      return replyText(res, '400 Bad Request', 'cf_connect query parameter required');
    if (Buffer.byteLength(text) > node.config.maxMessageSize)
      return replyText(res, '413 Payload Too Large', `${what} too large`);
    start(res, origin, text);
  });
}

/** CORS preflight for `paths`: allowed Origins get the methods and the JSON content type, others 403. */
export function mountPreflight(app: TemplatedApp, config: Config, paths: readonly string[]): void {
  for (const path of paths) {
    app.options(path, (res, req) => {
      const origin = req.getHeader('origin');
      if (!originAllowed(origin, config.allowedOrigins))
        return replyText(res, '403 Forbidden', 'origin_not_allowed');
      replyText(res, '204 No Content', '', {
        'access-control-allow-methods': 'GET, POST, OPTIONS',
        'access-control-allow-headers': 'content-type',
        'access-control-max-age': '600',
        ...corsHeaders(origin),
      });
    });
  }
}
