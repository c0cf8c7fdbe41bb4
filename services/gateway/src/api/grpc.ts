/**
 * Server API over gRPC, two services on one port:
 * - `switchboard.api.SwitchboardApi` (`proto/switchboard/api.proto`): every
 *   method of `methods.ts` but `batch`;
 * - `centrifugal.centrifugo.api.CentrifugoApi`
 *   (`proto/centrifugal/centrifugo/api/api.proto`): Centrifugo v6's schema,
 *   for code generated from it, with the methods Switchboard has (`batch`
 *   among them); Centrifugo's others are UNIMPLEMENTED.
 * Each rpc maps to one method of `methods.ts`: the request becomes the HTTP
 * API's JSON params (`bytes` fields hold JSON text), and the `{result}` /
 * `{error}` answer comes back with JSON values turned into `bytes`. A missing
 * or wrong API key (metadata `x-api-key` or `authorization: apikey <key>`)
 * fails with UNAUTHENTICATED; with metadata `x-centrifugo-error-mode:
 * transport` an API error fails the call with a gRPC status (grpcStatusOf)
 * instead of coming in the response.
 */

import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import {
  type ClientInfo,
  Errors,
  type HistoryResult,
  type PresenceResult,
  type ProtocolError,
  type Publication,
  parseJsonBytes,
} from '@switchboard/protocol';
import type { Node } from '../node.js';
import { API_MAX_BODY } from './http.js';
import { apiKeyAccepted, apiKeyFrom } from './key.js';
import {
  API_METHODS,
  type ApiMethod,
  type ApiResponse,
  type BatchItem,
  batchRefusal,
  callApi,
  runBatch,
} from './methods.js';

/** Compiled to `dist/src/api/grpc.js`; the protos stay in the package's `proto/` directory. */
const protoPath = (file: string) => fileURLToPath(new URL(`../../../proto/${file}`, import.meta.url));
/** How long `close()` lets running calls finish before cancelling them. */
const SHUTDOWN_GRACE_MS = 2000;

type Msg = Record<string, unknown>;

/** A `bytes` field whose content is not JSON: answered as a bad request. */
class BadJson extends Error {}

/** A call refused as a whole with a gRPC status (a batch over the limit: BatchResponse has no `error`). */
class Refused extends Error {
  constructor(
    readonly code: grpc.status,
    message: string,
  ) {
    super(message);
  }
}

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

/** Centrifugo fields Switchboard refuses when set (methods.ts names them): passed on as they are. */
const pass = (req: Msg, ...fields: string[]): Msg => Object.fromEntries(fields.map((f) => [f, req[f]]));

/** A `bytes` field passed on only as "set" (non-empty), for the unsupported-field check. */
const flag = (req: Msg, field: string): Msg =>
  req[field] instanceof Uint8Array && (req[field] as Uint8Array).byteLength > 0 ? { [field]: true } : {};

/** An override message counts as set when one of its values is. */
const override = (req: Msg): Msg =>
  req.override != null && Object.values(req.override as Msg).some((v) => v != null) ? { override: true } : {};

type ToParams = Partial<Record<ApiMethod, (req: Msg, depth: number) => Msg>>;

/** Requests of SwitchboardApi whose decoded message is not already the JSON params shape. */
const switchboardParams: ToParams = {
  publish: (r, d) => ({ channel: r.channel, ...json(r, 'data', d), ...tags(r), delta: r.delta }),
  broadcast: (r, d) => ({ channels: r.channels, ...json(r, 'data', d), ...tags(r), delta: r.delta }),
  subscribe: (r, d) => ({ user: r.user, channel: r.channel, client: r.client, ...json(r, 'info', d) }),
  disconnect: (r) => ({ user: r.user, client: r.client, ...present(r, 'disconnect') }),
  history: (r) => ({ channel: r.channel, limit: r.limit, reverse: r.reverse, ...present(r, 'since') }),
  pusher_app_put: (r, d) => json(r, 'app', d),
  rpc: (r, d) => ({ method: r.method, ...json(r, 'params', d) }),
};

/** Publish fields passed on as they are: the API answers 108 for the unsupported ones when set. */
const PUBLISH_FIELDS = ['b64data', 'skip_history', 'idempotency_key', 'version', 'version_epoch'];

/** Requests of CentrifugoApi (and its batch commands): Centrifugo's fields, unsupported ones included. */
const centrifugoParams: ToParams = {
  publish: (r, d) => ({
    channel: r.channel,
    ...json(r, 'data', d),
    ...tags(r),
    delta: r.delta,
    ...pass(r, ...PUBLISH_FIELDS),
  }),
  broadcast: (r, d) => ({
    channels: r.channels,
    ...json(r, 'data', d),
    ...tags(r),
    delta: r.delta,
    ...pass(r, ...PUBLISH_FIELDS),
  }),
  subscribe: (r, d) => ({
    user: r.user,
    channel: r.channel,
    client: r.client,
    ...json(r, 'info', d),
    ...pass(r, 'session', 'expire_at', 'b64info', 'b64data', 'recover_since'),
    ...flag(r, 'data'),
    ...override(r),
  }),
  unsubscribe: (r) => ({ user: r.user, channel: r.channel, client: r.client, ...pass(r, 'session') }),
  disconnect: (r) => ({
    user: r.user,
    client: r.client,
    ...present(r, 'disconnect'),
    ...pass(r, 'session', 'whitelist'),
  }),
  history: (r) => ({ channel: r.channel, limit: r.limit, reverse: r.reverse, ...present(r, 'since') }),
  refresh: (r) => ({
    user: r.user,
    client: r.client,
    expired: r.expired,
    expire_at: r.expire_at,
    ...pass(r, 'session'),
    ...flag(r, 'info'),
  }),
  rpc: (r, d) => ({ method: r.method, ...json(r, 'params', d) }),
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

type FromResult = Partial<Record<ApiMethod, (result: never) => unknown>>;

/** Results carrying JSON values; the others already match their proto messages (unknown keys are dropped). */
const fromResult: FromResult = {
  presence: (r: PresenceResult) => ({
    presence: Object.fromEntries(Object.entries(r.presence).map(([id, info]) => [id, clientInfo(info)])),
  }),
  history: (r: HistoryResult) => ({ ...r, publications: r.publications.map(publication) }),
  pusher_apps: (r: { apps: unknown[] }) => ({ apps: jsonBytes(r.apps) }),
  rpc: (r: { data?: unknown }) => ({ data: jsonBytes(r.data) }),
};

const convert = (method: ApiMethod, result: unknown): unknown => {
  const to = fromResult[method];
  return to ? to(result as never) : result;
};

/** `presence_stats` → `PresenceStats`; `rpc` → `RPC`, as Centrifugo names it. */
const rpcName = (method: ApiMethod) =>
  method === 'rpc'
    ? 'RPC'
    : method.replace(/(^|_)([a-z])/g, (_m, _sep: string, c: string) => c.toUpperCase());

/**
 * The gRPC status of an API error in transport error mode: Centrifugo's table
 * (100 → INTERNAL, 102/104 → NOT_FOUND, 107/108 → INVALID_ARGUMENT, 112 →
 * OUT_OF_RANGE, 113 → ALREADY_EXISTS, others INTERNAL), with Switchboard's own
 * codes mapped too, and a temporary error as UNAVAILABLE so that it is retried.
 */
export function grpcStatusOf(error: ProtocolError): grpc.status {
  switch (error.code) {
    case Errors.internal.code:
      return grpc.status.INTERNAL;
    case Errors.unauthorized.code:
      return grpc.status.UNAUTHENTICATED;
    case Errors.permissionDenied.code:
      return grpc.status.PERMISSION_DENIED;
    case Errors.unknownChannel.code:
    case Errors.methodNotFound.code:
      return grpc.status.NOT_FOUND;
    case Errors.tooManyRequests.code:
      return grpc.status.RESOURCE_EXHAUSTED;
    case Errors.unrecoverablePosition.code:
      return grpc.status.OUT_OF_RANGE;
    case 113:
      return grpc.status.ALREADY_EXISTS;
  }
  if (error.temporary) return grpc.status.UNAVAILABLE;
  if (error.code === Errors.badRequest.code || error.code === Errors.notAvailable.code)
    return grpc.status.INVALID_ARGUMENT;
  return grpc.status.INTERNAL;
}

/** The fields of a Centrifugo `Command` Switchboard runs: each named as its method. */
const COMMAND_FIELDS = [
  'publish',
  'broadcast',
  'subscribe',
  'unsubscribe',
  'disconnect',
  'presence',
  'presence_stats',
  'history',
  'history_remove',
  'info',
  'rpc',
  'refresh',
  'channels',
] as const satisfies readonly ApiMethod[];

/** One Centrifugo `Command` as a batch item: exactly one field set, its bytes valid JSON. */
function commandItem(command: Msg, depth: number): BatchItem {
  const set = COMMAND_FIELDS.filter((field) => command[field] != null);
  const [method] = set;
  if (method === undefined)
    return { error: { ...Errors.methodNotFound, message: 'method not found: no command Switchboard has' } };
  if (set.length > 1)
    return { error: { code: Errors.badRequest.code, message: 'a command must name exactly one method' } };
  const request = command[method] as Msg;
  try {
    return { method, params: centrifugoParams[method]?.(request, depth) ?? request };
  } catch (err) {
    if (err instanceof BadJson) return { error: { code: Errors.badRequest.code, message: err.message } };
    throw err;
  }
}

/** CentrifugoApi/Batch: the batch of methods.ts, replies in Centrifugo's `Reply` shape. */
async function centrifugoBatch(node: Node, req: Msg): Promise<{ result: unknown }> {
  const commands = (req.commands ?? []) as Msg[];
  const refused = batchRefusal(node, commands.length);
  if (refused) throw new Refused(grpc.status.INVALID_ARGUMENT, refused.message);
  const items = commands.map((command) => commandItem(command, node.config.jsonMaxDepth));
  const responses = await runBatch(node, items, req.parallel === true);
  const replies = responses.map((response, i) => {
    const item = items[i];
    if ('error' in response || !item || 'error' in item)
      return { error: 'error' in response ? response.error : Errors.internal };
    return { [item.method]: convert(item.method, response.result) };
  });
  // The Batch rpc answers BatchResponse itself, not a {result} wrapper.
  return { result: { replies } };
}

function metadataString(metadata: grpc.Metadata, key: string): string {
  const value = metadata.get(key)[0];
  return value === undefined ? '' : value.toString();
}

interface Service {
  name: string;
  file: string;
  methods: readonly ApiMethod[];
  toParams: ToParams;
}

const SERVICES: Service[] = [
  {
    name: 'switchboard.api.SwitchboardApi',
    file: 'switchboard/api.proto',
    methods: API_METHODS.filter((m) => m !== 'batch'),
    toParams: switchboardParams,
  },
  {
    name: 'centrifugal.centrifugo.api.CentrifugoApi',
    file: 'centrifugal/centrifugo/api/api.proto',
    methods: [...COMMAND_FIELDS, 'batch'],
    toParams: centrifugoParams,
  },
];

function handler(node: Node, service: Service, method: ApiMethod): grpc.handleUnaryCall<Msg, unknown> {
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
    const transportMode = metadataString(call.metadata, 'x-centrifugo-error-mode').trim() === 'transport';
    let response: ApiResponse;
    try {
      if (method === 'batch') response = await centrifugoBatch(node, call.request);
      else {
        const depth = node.config.jsonMaxDepth;
        const params = service.toParams[method]?.(call.request, depth) ?? call.request;
        response = await callApi(node, method, params);
        if ('result' in response) response = { result: convert(method, response.result) };
      }
    } catch (err) {
      if (err instanceof Refused) {
        count('error');
        callback({ code: err.code, details: err.message });
        return;
      }
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
    if ('error' in response && transportMode) {
      callback({ code: grpcStatusOf(response.error), details: response.error.message });
      return;
    }
    callback(null, method === 'batch' && 'result' in response ? response.result : response);
  };
}

export async function startGrpcServer(
  node: Node,
  host: string,
  port: number,
): Promise<{ close(): Promise<void> }> {
  const server = new grpc.Server({ 'grpc.max_receive_message_length': API_MAX_BODY });
  for (const spec of SERVICES) {
    const path = protoPath(spec.file);
    const definition = await protoLoader.load(path, {
      keepCase: true,
      longs: Number,
      defaults: true,
      oneofs: true,
    });
    const service = definition[spec.name] as grpc.ServiceDefinition | undefined;
    if (!service) throw new Error(`${path} defines no ${spec.name}`);
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const method of spec.methods) {
      const name = rpcName(method);
      if (!(name in service)) throw new Error(`${spec.name} has no rpc ${name}`);
      implementation[name] = handler(node, spec, method);
    }
    server.addService(service, implementation);
  }
  return listenGrpc(server, host, port);
}

/** Binds `server` to `host:port` (plaintext: TLS ends in front of it); `close()` lets calls end for a moment, then cancels them. */
export async function listenGrpc(
  server: grpc.Server,
  host: string,
  port: number,
): Promise<{ close(): Promise<void> }> {
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
