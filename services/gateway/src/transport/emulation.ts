/**
 * Bidirectional emulation for the HTTP-based transports: a client's commands
 * arrive as `POST /emulation` {session, node, data} (JSON, or a Protobuf
 * EmulationRequest with `content-type: application/octet-stream`) on
 * whichever gateway HAProxy picked. They go to the stream's session here, or over the bus (NATS
 * in a cluster) to the gateway named by `node`, which holds the stream. The
 * connect reply told the client both, so no lookup and no sticky sessions.
 */

import {
  decodeEmulationRequest,
  decodeUtf8,
  Disconnects,
  type EmulationRequest,
  encodeEmulationRequest,
  parseEmulationRequest,
  type Subjects,
} from '@switchboard/protocol';
import { type Bus, NoResponders } from '@switchboard/sdk';
import { readBody, replyText } from '../reply.js';
import type { Node } from '../node.js';
import { ProtobufSession } from '../protobuf-session.js';
import type { Session } from '../session.js';
import type { HttpResponse, TemplatedApp } from '../uws.js';
import { IpLimit } from './admission.js';
import type { ClientAddress } from './client-address.js';
import { corsHeaders, originAllowed } from './origin.js';

/** Where a request's commands went: `unknown` makes the client reconnect (404). */
export type EmulationOutcome = 'local' | 'routed' | 'unknown' | 'unavailable' | 'failed';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The MIME type of a Protobuf client's bodies (its streams' connect and its emulation requests). */
export const PROTOBUF_CONTENT_TYPE = 'application/octet-stream';

/** An emulation request as one gateway routes it to another: JSON for JSON commands, the Protobuf message for bytes. */
const routed = (req: EmulationRequest): Uint8Array =>
  typeof req.data === 'string'
    ? encoder.encode(JSON.stringify(req))
    : encodeEmulationRequest({ ...req, data: req.data });

/** A routed request: JSON starts with `{`, an EmulationRequest message with a field key. */
const fromRouted = (data: Uint8Array): EmulationRequest | string =>
  data[0] === 0x7b ? parseEmulationRequest(decoder.decode(data)) : decodeEmulationRequest(data);

export class Emulation {
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly node: Node,
    private readonly bus: Bus,
    private readonly subjects: Subjects,
  ) {}

  add(id: string, session: Session): void {
    this.sessions.set(id, session);
  }

  delete(id: string): void {
    this.sessions.delete(id);
  }

  /** Answers commands routed here by other gateways; returns a function that stops it. */
  serve(): () => void {
    const subject = this.subjects.emulation(this.node.config.nodeId);
    return this.bus.serve(subject, subject, async (data) => {
      const req = fromRouted(data);
      const found = typeof req !== 'string' && this.handLocal(req);
      return encoder.encode(found ? 'ok' : 'unknown');
    });
  }

  async deliver(req: EmulationRequest): Promise<EmulationOutcome> {
    if (req.node === this.node.config.nodeId) return this.handLocal(req) ? 'local' : 'unknown';
    try {
      const subject = this.subjects.emulation(req.node);
      const reply = await this.bus.request(subject, routed(req), this.node.config.serviceTimeout);
      return decoder.decode(reply) === 'ok' ? 'routed' : 'unknown';
    } catch (err) {
      // No gateway of that name any more: the stream is gone too, the client reconnects.
      if (err instanceof NoResponders) return 'unknown';
      this.node.log.warn({ err, target: req.node }, 'emulation request not delivered');
      return 'unavailable';
    }
  }

  private handLocal(req: EmulationRequest): boolean {
    const session = this.sessions.get(req.session);
    if (!session) return false;
    const traffic = this.node.metrics.traffic(session.sink.transport);
    traffic.messagesIn.inc();
    traffic.bytesIn.inc(Buffer.byteLength(req.data));
    const { data } = req;
    const protobuf = session instanceof ProtobufSession;
    if (typeof data === 'string' && !protobuf) session.handleFrame(data);
    else if (typeof data !== 'string' && protobuf) session.handleBinary(data);
    // Commands in the other encoding than the stream's: the client is confused, or hostile.
    else session.disconnect(Disconnects.badRequest, 'bad_request');
    return true;
  }
}

const STATUS: Record<EmulationOutcome, string> = {
  local: '204 No Content',
  routed: '204 No Content',
  unknown: '404 Not Found',
  unavailable: '503 Service Unavailable',
  failed: '500 Internal Server Error',
};

export function mountEmulation(
  app: TemplatedApp,
  node: Node,
  emulation: Emulation,
  address: ClientAddress,
): void {
  const { config, metrics } = node;
  const perIp = new IpLimit(address, metrics, 'emulation', config.emulationRequestsPerIpPerSecond);
  // Room for the session and node ids around a full-size command frame.
  const limit = config.maxMessageSize + 1024;
  const answer = (res: HttpResponse, origin: string, status: string, outcome: string, body = '') => {
    metrics.emulationRequests.inc({ outcome });
    replyText(res, status, body, corsHeaders(origin));
  };

  app.post('/emulation', (res, req) => {
    const origin = req.getHeader('origin');
    const protobuf = req.getHeader('content-type') === PROTOBUF_CONTENT_TYPE;
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    if (!originAllowed(origin, config.allowedOrigins))
      return answer(res, origin, '403 Forbidden', 'origin_not_allowed', 'origin_not_allowed');
    if (!perIp.allows(res, req))
      return answer(res, origin, '429 Too Many Requests', 'ip_rate_limit', 'too many requests');
    readBody(res, limit, (body) => {
      if (aborted) return;
      if (!body)
        return answer(res, origin, '413 Payload Too Large', 'too_large', 'emulation request too large');
      const text = protobuf ? undefined : decodeUtf8(body);
      const parsed = protobuf
        ? decodeEmulationRequest(body)
        : text === undefined
          ? 'body is not UTF-8'
          : parseEmulationRequest(text);
      if (typeof parsed === 'string') return answer(res, origin, '400 Bad Request', 'bad_request', parsed);
      if (Buffer.byteLength(parsed.data) > config.maxMessageSize)
        return answer(
          res,
          origin,
          '413 Payload Too Large',
          'too_large',
          'commands exceed the message size limit',
        );
      // Every request ends in an answer, whatever happened to its commands.
      emulation
        .deliver(parsed)
        .catch((err: unknown): EmulationOutcome => {
          metrics.handlerErrors.inc({ where: 'emulation' });
          node.log.error({ err }, 'emulation request failed');
          return 'failed';
        })
        .then((outcome) => {
          if (!aborted) answer(res, origin, STATUS[outcome], outcome);
        });
    });
  });
}
