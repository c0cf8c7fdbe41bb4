/**
 * A tiny DNS server for tests: answers A queries for the names it is given
 * (like a Kubernetes headless Service: one record per ready pod) and NOERROR
 * without answers for anything else, over UDP on 127.0.0.1. Enough for
 * HAProxy's resolvers and server-template; nothing more (no TCP, no
 * compression on input, one question per query).
 */

import { createSocket } from 'node:dgram';
import { once } from 'node:events';

export interface TestDns {
  port: number;
  /** Sets the A records of a name (no records: the name has no address). */
  set(name: string, addresses: string[]): void;
  close(): Promise<void>;
}

const TYPE_A = 1;
const CLASS_IN = 1;
const TTL_SECONDS = 1;

/** The question's name (labels) and where the question section ends. */
function readQuestion(query: Buffer): { name: string; type: number; end: number } {
  const labels: string[] = [];
  let at = 12;
  for (let length = query[at]!; length > 0; length = query[at]!) {
    labels.push(query.toString('ascii', at + 1, at + 1 + length));
    at += 1 + length;
  }
  const type = query.readUInt16BE(at + 1);
  return { name: labels.join('.').toLowerCase(), type, end: at + 5 };
}

export async function startDns(): Promise<TestDns> {
  const records = new Map<string, string[]>();
  const socket = createSocket('udp4');
  socket.on('message', (query, peer) => {
    if (query.length < 17) return;
    const { name, type, end } = readQuestion(query);
    const addresses = type === TYPE_A ? (records.get(name) ?? []) : [];
    const header = Buffer.alloc(12);
    header.writeUInt16BE(query.readUInt16BE(0), 0); // id
    header.writeUInt16BE(0x8180 | (query.readUInt16BE(2) & 0x0100), 2); // response, recursion available, RD echoed
    header.writeUInt16BE(1, 4); // one question
    header.writeUInt16BE(addresses.length, 6);
    const answers = addresses.map((address) => {
      const answer = Buffer.alloc(16);
      answer.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
      answer.writeUInt16BE(TYPE_A, 2);
      answer.writeUInt16BE(CLASS_IN, 4);
      answer.writeUInt32BE(TTL_SECONDS, 6);
      answer.writeUInt16BE(4, 10);
      address.split('.').forEach((octet, i) => answer.writeUInt8(Number(octet), 12 + i));
      return answer;
    });
    socket.send(Buffer.concat([header, query.subarray(12, end), ...answers]), peer.port, peer.address);
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  return {
    port: socket.address().port,
    set: (name, addresses) => records.set(name.toLowerCase(), addresses),
    close: async () => {
      socket.close();
      await once(socket, 'close');
    },
  };
}
