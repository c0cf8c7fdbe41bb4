#!/usr/bin/env node
/**
 * The Protobuf codec of the client protocol (packages/protocol/src/protobuf.ts)
 * beside JSON on the two hot shapes: encoding a publication push with a
 * 64-byte payload (what every subscriber gets) and decoding a publish
 * command. JSON is JSON.stringify/parse of the same shapes, and parseFrame
 * (the gateway's JSON path, with its checks) for the command. Bytes on the
 * wire and µs per operation, best of 5 rounds. Not part of `make bench`;
 * after the build, `node loadtest/dist/src/bench/protobuf.js`.
 */

import { performance } from 'node:perf_hooks';
import {
  decodeCommands,
  encodeReply,
  parseFrame,
  type ProtobufReply,
  type Reply,
} from '@switchboard/protocol';

const utf8 = new TextEncoder();

/** A 64-byte JSON payload, as a JSON client publishes it and as the bytes a Protobuf one does. */
const payloadText = JSON.stringify({ ticker: 'AAPL', price: 123.45, bid: 123.44, ts: 1796119200000 });
const payloadJson: unknown = JSON.parse(payloadText);
const payloadBytes = utf8.encode(payloadText);
if (payloadBytes.length !== 64) throw new Error(`payload is ${payloadBytes.length} bytes, not 64`);

const CHANNEL = 'prices:AAPL';
const pub = { offset: 1_048_576, epoch: 'kXt1' };
const protobufPush: ProtobufReply = { push: { channel: CHANNEL, pub: { ...pub, data: payloadBytes } } };
const jsonPush: Reply = { push: { channel: CHANNEL, pub: { ...pub, data: payloadJson } } };

/** The publish command as centrifuge-js's Protobuf codec writes it: Command{id, publish{channel, data}}, delimited. */
function protobufPublish(): Uint8Array {
  const channel = utf8.encode(CHANNEL);
  const body = [0x0a, channel.length, ...channel, 0x12, payloadBytes.length, ...payloadBytes];
  const command = [0x08, 7, 0x3a, body.length, ...body];
  return Uint8Array.from([command.length, ...command]);
}
const publishFrame = protobufPublish();
const publishText = JSON.stringify({ publish: { channel: CHANNEL, data: payloadJson }, id: 7 });

function check(): void {
  const [pb] = decodeCommands(publishFrame);
  const [json] = parseFrame(publishText);
  if (!pb?.ok || pb.command.method !== 'publish' || !json?.ok || json.command.method !== 'publish')
    throw new Error('the publish commands do not decode');
}

/** Microseconds per call: rounds of at least `ms`, the best of five. */
function time(op: () => unknown, ms: number): number {
  let best = Infinity;
  let sink = 0;
  for (let round = 0; round < 5; round++) {
    let ops = 0;
    const start = performance.now();
    let elapsed = 0;
    while (elapsed < ms) {
      for (let i = 0; i < 1_000; i++) if (op() !== undefined) sink++;
      ops += 1_000;
      elapsed = performance.now() - start;
    }
    best = Math.min(best, (elapsed * 1000) / ops);
  }
  if (sink === 0) throw new Error('nothing was computed');
  return best;
}

interface Case {
  name: string;
  bytes: number;
  op: () => unknown;
}

function run(): void {
  check();
  const cases: Case[] = [
    {
      name: 'encode pub push  Protobuf encodeReply',
      bytes: encodeReply(protobufPush).length,
      op: () => encodeReply(protobufPush),
    },
    {
      name: 'encode pub push  JSON.stringify',
      bytes: utf8.encode(JSON.stringify(jsonPush)).length,
      op: () => JSON.stringify(jsonPush),
    },
    {
      name: 'decode publish   Protobuf decodeCommands',
      bytes: publishFrame.length,
      op: () => decodeCommands(publishFrame),
    },
    {
      name: 'decode publish   JSON.parse',
      bytes: utf8.encode(publishText).length,
      op: () => JSON.parse(publishText),
    },
    {
      name: 'decode publish   JSON parseFrame',
      bytes: utf8.encode(publishText).length,
      op: () => parseFrame(publishText),
    },
  ];
  console.log(
    `Client protocol codecs, Node ${process.version}, 64-byte payload: bytes on the wire, µs per call (best of 5)`,
  );
  console.log(`${'case'.padEnd(42)}${'bytes'.padStart(7)}${'µs'.padStart(9)}`);
  for (const { name, bytes, op } of cases) {
    time(op, 50); // warm-up
    console.log(`${name.padEnd(42)}${String(bytes).padStart(7)}${time(op, 200).toFixed(3).padStart(9)}`);
  }
}

run();
