/**
 * Unidirectional gRPC (`uni_grpc`), as Centrifugo serves it: the service
 * `centrifugal.centrifugo.unistream.CentrifugoUniStream`
 * (`proto/centrifugal/centrifugo/unistream/unistream.proto`), one
 * server-streaming rpc `Consume(ConnectRequest) returns (stream Push)` on a
 * port of its own (`SWITCHBOARD_UNI_GRPC_PORT`: it faces clients, unlike the
 * server API's). The pushes are the unidirectional ones of uni.ts with their
 * JSON values (`data`, `conn_info`, `chan_info`) as `bytes` of JSON text; no
 * application pings (gRPC keepalive and HTTP/2 pings do that).
 */

import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { Disconnects, isJsonObject, parseJsonBytes } from '@switchboard/protocol';
import type { Sink } from '../hub.js';
import { listenGrpc } from '../api/grpc.js';
import type { Traffic } from '../metrics.js';
import type { Node } from '../node.js';
import { Session } from '../session.js';
import type { Admission } from './admission.js';
import { streamConnect } from './stream.js';
import { connectCommand, UniSink } from './uni.js';

const PROTO = fileURLToPath(
  new URL('../../../proto/centrifugal/centrifugo/unistream/unistream.proto', import.meta.url),
);
const SERVICE = 'centrifugal.centrifugo.unistream.CentrifugoUniStream';
/** The JSON values of the unidirectional pushes that the protobuf schema carries as `bytes`. */
const BYTES_FIELDS = new Set(['data', 'conn_info', 'chan_info']);

/** A unidirectional push (JSON, as uni.ts writes it) as the protobuf Push message's object: JSON values become bytes. Pure. */
export function protoPush(value: unknown, key = ''): unknown {
  if (BYTES_FIELDS.has(key)) return Buffer.from(JSON.stringify(value));
  if (Array.isArray(value)) return value.map((v) => protoPush(v));
  if (!isJsonObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = protoPush(v, k);
  return out;
}

/** The ConnectRequest message as the JSON ConnectRequest uni.ts takes, or undefined when its `data` is not JSON. */
export function connectRequestJson(request: Record<string, unknown>, maxDepth: number): string | undefined {
  const json: Record<string, unknown> = {};
  for (const key of ['token', 'name', 'version'] as const)
    if (typeof request[key] === 'string' && request[key] !== '') json[key] = request[key];
  const data = request.data;
  if (data instanceof Uint8Array && data.length > 0) {
    const parsed = parseJsonBytes(data, maxDepth);
    if (!parsed.ok) return undefined;
    json.data = parsed.value;
  }
  if (isJsonObject(request.subs) && Object.keys(request.subs).length > 0) json.subs = request.subs;
  return JSON.stringify(json);
}

/** One Consume call as a session's sink: each push a message, a bounded write buffer, the disconnect push last. */
class GrpcStreamSink implements Sink {
  readonly transport = 'uni_grpc';
  private open = true;
  /** The disconnect code the gateway ended the stream with, for the session's accounting. */
  closedWith: number | undefined;

  constructor(
    private readonly call: grpc.ServerWritableStream<unknown, unknown>,
    private readonly hardLimit: number,
    private readonly traffic: Traffic,
  ) {}

  send(frame: string): boolean {
    if (!this.open) return true;
    this.traffic.messagesOut.inc();
    this.traffic.bytesOut.inc(Buffer.byteLength(frame));
    this.call.write(protoPush(JSON.parse(frame)));
    if (this.call.writableLength <= this.hardLimit) return true;
    this.close(Disconnects.slow.code, Disconnects.slow.reason);
    return false;
  }

  close(code: number, reason: string): void {
    if (!this.open) return;
    this.open = false;
    this.closedWith = code;
    this.call.write({ disconnect: { code, reason } });
    this.call.end();
  }

  bufferedAmount(): number {
    return this.open ? this.call.writableLength : 0;
  }

  /** The stream ended from the client's side (cancelled, or the connection went). */
  gone(): void {
    this.open = false;
  }
}

/** The address of a grpc-js peer (`1.2.3.4:5678`, `[::1]:5678`, `ipv4:…`), for the per-IP limit. */
function peerAddress(peer: string): string {
  const bare = peer.replace(/^ipv[46]:/, '');
  const bracket = /^\[([^\]]+)\]/.exec(bare);
  if (bracket) return bracket[1]!;
  const colon = bare.lastIndexOf(':');
  return colon > 0 ? bare.slice(0, colon) : bare;
}

/** Starts the uni_grpc server on `host:port`; resolves once it listens. */
export async function startUniGrpc(
  node: Node,
  admission: Admission,
  host: string,
  port: number,
): Promise<{ close(): Promise<void> }> {
  const { config } = node;
  const definition = await protoLoader.load(PROTO, { keepCase: true, longs: Number, defaults: true });
  const service = definition[SERVICE] as grpc.ServiceDefinition | undefined;
  if (!service) throw new Error(`${PROTO} defines no ${SERVICE}`);
  const server = new grpc.Server({ 'grpc.max_receive_message_length': config.maxMessageSize });
  server.addService(service, {
    Consume: (call: grpc.ServerWritableStream<Record<string, unknown>, unknown>) => {
      const refusal = admission.peerRefusal(peerAddress(call.getPeer()));
      if (refusal) {
        admission.refused('uni_grpc', refusal);
        call.emit('error', {
          code: refusal.reason === 'ip_rate_limit' ? grpc.status.RESOURCE_EXHAUSTED : grpc.status.UNAVAILABLE,
          details: refusal.reason,
        });
        return;
      }
      const stream = new GrpcStreamSink(call, config.maxBackpressure * 4, node.metrics.traffic('uni_grpc'));
      const sink = new UniSink('uni_grpc', stream, undefined);
      admission.opened('uni_grpc');
      const session = new Session(sink, node);
      let ended = false;
      // Cancelled by the client, or finished after the gateway's disconnect push (1005: no code of the client's).
      const end = () => {
        if (ended) return;
        ended = true;
        stream.gone();
        admission.closed('uni_grpc');
        session.closed(stream.closedWith ?? 1005);
      };
      call.on('cancelled', end);
      call.on('close', end);
      call.on('finish', end);
      const request = connectRequestJson(call.request, node.frameLimits.maxDepth);
      const command = request === undefined ? undefined : connectCommand(request, node.frameLimits.maxDepth);
      if (command === undefined) return session.disconnect(Disconnects.badRequest, 'bad_request');
      streamConnect(node, session, sink, command);
    },
  });
  return listenGrpc(server, host, port);
}
