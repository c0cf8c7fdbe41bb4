/**
 * The Centrifugo client protocol in Protobuf, as centrifuge-js's protobuf
 * build speaks it (WebSocket subprotocol `centrifuge-protobuf`, binary
 * frames): the same session as JSON's, its frames decoded and encoded by the
 * protocol package's Protobuf codec. Payloads stay JSON inside the gateway
 * (what JSON clients on the same channel get): a Protobuf client's `data`
 * bytes must hold UTF-8 JSON, and it gets every payload as JSON text in bytes.
 */

import { decodeCommands, encodeReply, jsonCommand, type Reply } from '@switchboard/protocol';
import type { Edge, Frame } from './hub.js';
import { Session } from './session.js';

/** The WebSocket subprotocol centrifuge-js asks for with `protocol: 'protobuf'`. */
export const PROTOBUF_SUBPROTOCOL = 'centrifuge-protobuf';

/** A Protobuf client's ping: one empty Reply (a zero length). */
const PING = encodeReply({});

/** Protobuf connections are in topics of their own: a binary frame per push, concatenated when coalesced. */
export const protobufEdge: Edge = {
  topicPrefix: ' protobuf ',
  coalesces: true,
  binary: true,
  transport: 'websocket',
  encode(channel, push) {
    if ('pub' in push) return encodeReply({ push: { channel, pub: push.pub } });
    if ('join' in push) return encodeReply({ push: { channel, join: { info: push.join } } });
    if ('leave' in push) return encodeReply({ push: { channel, leave: { info: push.leave } } });
    // Members (users across connections) are Pusher's.
    return undefined;
  },
};

export class ProtobufSession extends Session {
  override get edge(): Edge {
    return protobufEdge;
  }

  /** A binary frame of varint-delimited Commands. */
  handleBinary(frame: Uint8Array): void {
    const { protobufLimits } = this.node;
    this.handleLines(
      decodeCommands(frame, protobufLimits).map((line) => jsonCommand(line, protobufLimits.maxDepth)),
    );
  }

  protected override get pingFrame(): Frame {
    return PING;
  }

  protected override encodeReply(reply: Reply): Frame {
    return encodeReply(reply);
  }

  protected override emptyReply(id: number, method: string): Frame {
    return encodeReply({ id, [method]: {} } as Reply);
  }
}
