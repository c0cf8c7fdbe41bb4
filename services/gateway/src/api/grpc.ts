/**
 * Server API over gRPC (`proto/switchboard/api.proto`, service
 * `switchboard.api.SwitchboardApi`). Each rpc maps to one method of
 * `methods.ts`: the request becomes the HTTP API's JSON params (`bytes` fields
 * hold JSON text), and the `{result}` / `{error}` answer comes back with JSON
 * values turned into `bytes`. A missing or wrong API key (metadata
 * `x-api-key` or `authorization: apikey <key>`) fails with UNAUTHENTICATED.
 */

import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import {
  type ClientInfo,
  Errors,
  type HistoryResult,
  type PresenceResult,
  type Publication,
  parseJsonBytes,
} from '@switchboard/protocol';
import type { Node } from '../node.js';
import { API_MAX_BODY } from './http.js';
import { apiKeyAccepted, apiKeyFrom } from './key.js';
import { API_METHODS, type ApiMethod, type ApiResponse, callApi } from './methods.js';

/** Compiled to `dist/src/api/grpc.js`; the proto stays in the package's `proto/` directory. */
const PROTO_PATH = fileURLToPath(new URL('../../../proto/switchboard/api.proto', import.meta.url));
const SERVICE = 'switchboard.api.SwitchboardApi';
/** How long `close()` lets running calls finish before cancelling them. */
const SHUTDOWN_GRACE_MS = 2000;

type Msg = Record<string, unknown>;

/** A `bytes` field whose content is not JSON: answered as a bad request. */
class BadJson extends Error {}

/** `{[field]: value}` for a `bytes` field holding JSON text (nested at most `depth`); `{}` when it is empty. */
function json(req: Msg, field: string, depth: number): Msg {
  const bytes = req[field];
  if (!(bytes instanceof Uint8Array) || bytes.byteLength === 0) return {};
  const parsed = parseJsonBytes(bytes, depth);
  if (!parsed.ok) throw new BadJson(`${field} must hold valid UTF-8 JSON text (${parsed.reason})`);
  return { [field]: parsed.value };
}

const jsonBytes = (value: unknown): Buffer =>
  value === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(value));

/** Proto3 cannot tell an empty map from an absent one: send tags only when there are some. */
const tags = (req: Msg): Msg =>
  req.tags && Object.keys(req.tags as object).length > 0 ? { tags: req.tags } : {};

/** Proto3 leaves an unset message field `null`: drop it so the API applies its default. */
const present = (req: Msg, field: string): Msg => (req[field] != null ? { [field]: req[field] } : {});

/** Requests whose decoded message is not already the JSON params shape. */
const toParams: Partial<Record<ApiMethod, (req: Msg, depth: number) => Msg>> = {
  publish: (r, d) => ({ channel: r.channel, ...json(r, 'data', d), ...tags(r) }),
  broadcast: (r, d) => ({ channels: r.channels, ...json(r, 'data', d), ...tags(r) }),
  subscribe: (r, d) => ({ user: r.user, channel: r.channel, client: r.client, ...json(r, 'info', d) }),
  disconnect: (r) => ({ user: r.user, client: r.client, ...present(r, 'disconnect') }),
  history: (r) => ({ channel: r.channel, limit: r.limit, reverse: r.reverse, ...present(r, 'since') }),
  pusher_app_put: (r, d) => json(r, 'app', d),
};

const clientInfo = (info: ClientInfo) => ({
  user: info.user,
  client: info.client,
  conn_info: jsonBytes(info.conn_info),
  chan_info: jsonBytes(info.chan_info),
});

const publication = (p: Publication) => ({
  ...p,
  data: jsonBytes(p.data),
  ...(p.info ? { info: clientInfo(p.info) } : {}),
});

/** Results carrying JSON values; the others already match their proto messages. */
const fromResult: Partial<Record<ApiMethod, (result: never) => unknown>> = {
  presence: (r: PresenceResult) => ({
    presence: Object.fromEntries(Object.entries(r.presence).map(([id, info]) => [id, clientInfo(info)])),
  }),
  history: (r: HistoryResult) => ({ ...r, publications: r.publications.map(publication) }),
  pusher_apps: (r: { apps: unknown[] }) => ({ apps: jsonBytes(r.apps) }),
};

/** `presence_stats` → `PresenceStats`. */
const rpcName = (method: ApiMethod) =>
  method.replace(/(^|_)([a-z])/g, (_m, _sep: string, c: string) => c.toUpperCase());

function metadataString(metadata: grpc.Metadata, key: string): string {
  const value = metadata.get(key)[0];
  return value === undefined ? '' : value.toString();
}

function handler(node: Node, method: ApiMethod): grpc.handleUnaryCall<Msg, unknown> {
  const count = (outcome: 'ok' | 'error' | 'unauthorized') =>
    node.metrics.apiRequests.inc({ protocol: 'grpc', method, outcome });
  return async (call, callback) => {
    const key = apiKeyFrom(
      metadataString(call.metadata, 'x-api-key'),
      metadataString(call.metadata, 'authorization'),
    );
    if (!apiKeyAccepted(node, 'grpc', key)) {
      count('unauthorized');
      callback({ code: grpc.status.UNAUTHENTICATED, details: 'invalid API key' });
      return;
    }
    let response: ApiResponse;
    try {
      const depth = node.config.jsonMaxDepth;
      response = await callApi(node, method, toParams[method]?.(call.request, depth) ?? call.request);
      const convert = fromResult[method];
      if ('result' in response && convert) response = { result: convert(response.result as never) };
    } catch (err) {
      if (!(err instanceof BadJson)) {
        node.log.error({ err, method }, 'grpc api call failed');
        node.metrics.handlerErrors.inc({ where: 'grpc' });
        count('error');
        callback({ code: grpc.status.INTERNAL, details: Errors.internal.message });
        return;
      }
      response = { error: { code: Errors.badRequest.code, message: err.message } };
    }
    count('error' in response ? 'error' : 'ok');
    callback(null, response);
  };
}

export async function startGrpcServer(
  node: Node,
  host: string,
  port: number,
): Promise<{ close(): Promise<void> }> {
  const definition = await protoLoader.load(PROTO_PATH, {
    keepCase: true,
    longs: Number,
    defaults: true,
    oneofs: true,
  });
  const service = definition[SERVICE] as grpc.ServiceDefinition | undefined;
  if (!service) throw new Error(`${PROTO_PATH} defines no ${SERVICE}`);
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const method of API_METHODS) {
    const name = rpcName(method);
    if (!(name in service)) throw new Error(`${SERVICE} has no rpc ${name}`);
    implementation[name] = handler(node, method);
  }
  const server = new grpc.Server({ 'grpc.max_receive_message_length': API_MAX_BODY });
  server.addService(service, implementation);
  const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  await new Promise<number>((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) =>
      err ? reject(err) : resolve(bound),
    );
  });
  return {
    close: () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, SHUTDOWN_GRACE_MS);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }),
  };
}
