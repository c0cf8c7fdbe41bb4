/** A grpc-js client of the gateway's server API, loaded from the same proto as the server. */

import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { API_KEY } from './harness.js';

/** Compiled to `dist/test/grpc-client.js`. */
const PROTO_PATH = fileURLToPath(new URL('../../proto/switchboard/api.proto', import.meta.url));

// Decoded proto messages are untyped here; the assertions check their shape.
export type Reply = { error: { code: number; message: string } | null; result: any };

export function apiClient(port: number) {
  const definition = protoLoader.loadSync(PROTO_PATH, {
    keepCase: true,
    longs: Number,
    defaults: true,
    oneofs: true,
  });
  const Client = grpc.makeGenericClientConstructor(
    definition['switchboard.api.SwitchboardApi'] as grpc.ServiceDefinition,
    'SwitchboardApi',
  );
  const stub = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  const call = (rpc: string, request: object, metadata: Record<string, string> = { 'x-api-key': API_KEY }) =>
    new Promise<Reply>((resolve, reject) => {
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(metadata)) md.set(k, v);
      const method = stub[rpc];
      if (typeof method !== 'function') throw new Error(`no rpc ${rpc}`);
      method.call(
        stub,
        request,
        md,
        { deadline: Date.now() + 5000 },
        (err: grpc.ServiceError | null, reply: Reply) => (err ? reject(err) : resolve(reply)),
      );
    });
  return { call, close: () => stub.close() };
}
