/**
 * Server API methods, shared by HTTP (`POST /api/<method>`) and gRPC. Request
 * and response shapes follow Centrifugo's server API: `{result}` or
 * `{error: {code, message}}`.
 */

import {
  type Disconnect,
  Disconnects,
  Errors,
  nestedDeeperThan,
  type ProtocolError,
} from '@switchboard/protocol';
import { IDEMPOTENCY_KEY_MAX_LENGTH } from '../idempotency.js';
import type { Node, PublishOptions, ResolvedChannel } from '../node.js';
import { type AppCatalog, AppRefused } from '../pusher/app-store.js';

export type ApiResponse = { result: unknown } | { error: ProtocolError };
type Params = Record<string, unknown>;

export const API_METHODS = [
  'publish',
  'broadcast',
  'subscribe',
  'unsubscribe',
  'disconnect',
  'presence',
  'presence_stats',
  'history',
  'history_remove',
  'channels',
  'info',
  'refresh',
  'rpc',
  'batch',
  'pusher_apps',
  'pusher_app_put',
  'pusher_app_delete',
] as const;
export type ApiMethod = (typeof API_METHODS)[number];

/**
 * Centrifugo request fields Switchboard cannot honour: set to anything but
 * their zero value, the call is refused with 108 naming the field, rather than
 * carried out differently from what was asked (a `session` filter ignored
 * would reach every connection of the user).
 */
const UNSUPPORTED: Partial<Record<ApiMethod, readonly string[]>> = {
  publish: ['b64data', 'skip_history'],
  broadcast: ['b64data', 'skip_history'],
  subscribe: ['session', 'expire_at', 'data', 'b64data', 'b64info', 'recover_since', 'override'],
  unsubscribe: ['session'],
  disconnect: ['session'],
  refresh: ['session', 'info'],
};

/** Whether `v` is more than the zero value of its type (what proto3 leaves in an unset field). */
const isSet = (v: unknown): boolean =>
  !(
    v === undefined ||
    v === null ||
    v === false ||
    v === 0 ||
    v === '' ||
    (Array.isArray(v) && v.length === 0)
  );

/** One command of a batch, ready to run: a method and its params, or the error it answers with. */
export type BatchItem = { method: ApiMethod; params: unknown } | { error: ProtocolError };

class ApiError extends Error {
  constructor(readonly error: ProtocolError) {
    super(error.message);
  }
}

const bad = (message: string) => new ApiError({ code: Errors.badRequest.code, message });

function str(p: Params, key: string, required = true): string {
  const v = p[key];
  if (v === undefined || v === null || v === '') {
    if (required) throw bad(`${key} is required`);
    return '';
  }
  if (typeof v !== 'string') throw bad(`${key} must be a string`);
  return v;
}

/** The optional `client` filter of user actions. */
function client(p: Params): { client?: string } {
  const id = str(p, 'client', false);
  return id ? { client: id } : {};
}

/** The client ids a `disconnect` of the user spares (Centrifugo's `whitelist`). */
function whitelist(p: Params): { whitelist?: string[] } {
  const ids = p.whitelist;
  if (ids === undefined || ids === null) return {};
  if (!Array.isArray(ids) || ids.some((id) => typeof id !== 'string'))
    throw bad('whitelist must be an array of client ids');
  return ids.length > 0 ? { whitelist: ids } : {};
}

function channelOf(node: Node, channel: string): ResolvedChannel {
  const resolved = node.resolve(channel);
  if ('code' in resolved) throw new ApiError(resolved);
  return resolved;
}

function disconnectOf(p: Params): Disconnect {
  const d = p.disconnect;
  if (d === undefined || d === null) return Disconnects.forceNoReconnect;
  if (
    typeof d !== 'object' ||
    typeof (d as Params).code !== 'number' ||
    typeof (d as Params).reason !== 'string'
  ) {
    throw bad('disconnect must be {code, reason}');
  }
  const { code, reason } = d as { code: number; reason: string };
  if (!Number.isInteger(code) || code < 3000 || code > 4999)
    throw bad('disconnect code must be in 3000..4999');
  if (reason === '') throw bad('disconnect reason must not be empty');
  return { code, reason };
}

/**
 * `idempotency_key` (a retry within the window answers the first result) and
 * `version`/`version_epoch` (an outdated publication is dropped) of a publish.
 */
function deduplication(p: Params): Pick<PublishOptions, 'idempotencyKey' | 'version'> {
  const key = str(p, 'idempotency_key', false);
  if (key.length > IDEMPOTENCY_KEY_MAX_LENGTH)
    throw bad(`idempotency_key longer than ${IDEMPOTENCY_KEY_MAX_LENGTH} characters`);
  const version = p.version ?? 0;
  if (!Number.isSafeInteger(version) || (version as number) < 0)
    throw bad('version must be a non-negative integer');
  const epoch = str(p, 'version_epoch', false);
  return {
    ...(key ? { idempotencyKey: key } : {}),
    ...(version !== 0 ? { version: { version: version as number, epoch } } : {}),
  };
}

async function publishOne(node: Node, channel: string, p: Params) {
  if (!('data' in p)) throw bad('data is required');
  const resolved = channelOf(node, channel);
  const tags = p.tags;
  if (
    tags !== undefined &&
    (typeof tags !== 'object' || tags === null || Object.values(tags).some((v) => typeof v !== 'string'))
  ) {
    throw bad('tags must be an object of strings');
  }
  const delta = p.delta ?? false;
  if (typeof delta !== 'boolean') throw bad('delta must be a boolean');
  const position = await node.publish(resolved, p.data, {
    source: 'api',
    ...(tags ? { tags: tags as Record<string, string> } : {}),
    ...(delta ? { delta } : {}),
    ...deduplication(p),
  });
  if (position && 'code' in position) throw new ApiError(position);
  return position ? { offset: position.offset, epoch: position.epoch } : {};
}

const handlers: Record<ApiMethod, (node: Node, p: Params) => Promise<unknown>> = {
  publish: (node, p) => publishOne(node, str(p, 'channel'), p),

  broadcast: async (node, p) => {
    const channels = p.channels;
    if (!Array.isArray(channels) || channels.length === 0 || channels.some((c) => typeof c !== 'string')) {
      throw bad('channels must be a non-empty array of strings');
    }
    const responses = await Promise.all(
      channels.map(async (channel: string) => {
        try {
          return { result: await publishOne(node, channel, p) };
        } catch (err) {
          if (err instanceof ApiError) return { error: err.error };
          throw err;
        }
      }),
    );
    return { responses };
  },

  subscribe: async (node, p) => {
    const channel = str(p, 'channel');
    channelOf(node, channel);
    await node.broker.publishControl({
      op: 'subscribe',
      user: str(p, 'user'),
      channel,
      ...client(p),
      info: p.info,
    });
    return {};
  },

  unsubscribe: async (node, p) => {
    await node.broker.publishControl({
      op: 'unsubscribe',
      user: str(p, 'user'),
      channel: str(p, 'channel'),
      ...client(p),
    });
    return {};
  },

  disconnect: async (node, p) => {
    await node.broker.publishControl({
      op: 'disconnect',
      user: str(p, 'user'),
      ...client(p),
      ...whitelist(p),
      ...disconnectOf(p),
    });
    return {};
  },

  presence: async (node, p) => {
    const resolved = channelOf(node, str(p, 'channel'));
    if (!resolved.ns.presence) throw new ApiError(Errors.notAvailable);
    return { presence: await node.registry.presence(resolved.name.channel) };
  },

  presence_stats: async (node, p) => {
    const resolved = channelOf(node, str(p, 'channel'));
    if (!resolved.ns.presence) throw new ApiError(Errors.notAvailable);
    const s = await node.registry.presenceStats(resolved.name.channel);
    return { num_clients: s.numClients, num_users: s.numUsers };
  },

  history: async (node, p) => {
    const resolved = channelOf(node, str(p, 'channel'));
    if (resolved.ns.history_size === 0) throw new ApiError(Errors.notAvailable);
    const limit = p.limit ?? 0;
    if (!Number.isSafeInteger(limit) || (limit as number) < 0)
      throw bad('limit must be a non-negative integer');
    const since = p.since as { offset?: unknown; epoch?: unknown } | undefined;
    if (
      since !== undefined &&
      (typeof since !== 'object' || since === null || !Number.isSafeInteger(since.offset ?? 0))
    ) {
      throw bad('since must be {offset, epoch}');
    }
    const page = await node.broker.history(resolved.name.channel, {
      limit: Math.min(limit as number, node.config.historyMaxPublications),
      ...(since ? { since: { offset: Number(since.offset ?? 0), epoch: String(since.epoch ?? '') } } : {}),
      ...(p.reverse === true ? { reverse: true } : {}),
    });
    return { publications: page.publications, offset: page.position.offset, epoch: page.position.epoch };
  },

  history_remove: async (node, p) => {
    const resolved = channelOf(node, str(p, 'channel'));
    await node.broker.removeHistory(resolved.name.channel);
    return {};
  },

  channels: async (node, p) => {
    const pattern = str(p, 'pattern', false) || undefined;
    if (pattern && pattern.length > 2 * node.config.channelMaxLength)
      throw bad(`pattern longer than ${2 * node.config.channelMaxLength}`);
    return { channels: await node.clusterChannels(pattern) };
  },

  refresh: async (node, p) => {
    const user = str(p, 'user');
    const expired = p.expired ?? false;
    if (typeof expired !== 'boolean') throw bad('expired must be a boolean');
    const expireAt = p.expire_at ?? 0;
    if (!Number.isSafeInteger(expireAt) || (expireAt as number) < 0)
      throw bad('expire_at must be a non-negative integer (unix seconds)');
    // An expiry already past ends the connection now, as `expired` does (Centrifugo's rule).
    const past = (expireAt as number) > 0 && (expireAt as number) <= Math.floor(Date.now() / 1000);
    await node.broker.publishControl({
      op: 'refresh',
      user,
      ...client(p),
      expired: expired || past,
      expire_at: expireAt as number,
    });
    return {};
  },

  /**
   * An RPC of a backend service (`<namespace>:<method>`, what clients call)
   * from the server side: the service sees no client and no user.
   */
  rpc: async (node, p) => {
    const method = str(p, 'method');
    const outcome = await node.handler.rpc({ client: '', user: '' }, method, p.params);
    if (!outcome.ok) throw new ApiError(outcome.error);
    return outcome.value === undefined ? {} : { data: outcome.value };
  },

  batch: async (node, p) => {
    const commands = p.commands;
    if (!Array.isArray(commands)) throw bad('commands must be an array of {method: params} objects');
    const refused = batchRefusal(node, commands.length);
    if (refused) throw new ApiError(refused);
    const parallel = p.parallel ?? false;
    if (typeof parallel !== 'boolean') throw bad('parallel must be a boolean');
    const items = commands.map(batchItem);
    const responses = await runBatch(node, items, parallel);
    return {
      replies: responses.map((response, i) => {
        const item = items[i];
        if ('error' in response || !item || 'error' in item)
          return { error: 'error' in response ? response.error : Errors.internal };
        return { [item.method]: response.result };
      }),
    };
  },

  info: async (node) => {
    // The registry's copy of this gateway is a heartbeat old: answer with the current one.
    const self = node.describe();
    const others = (await node.registry.gateways()).filter((g) => g.uid !== self.uid);
    return { nodes: [self, ...others], services: await node.registry.services() };
  },

  pusher_apps: async (node) => ({ apps: catalog(node).list() }),

  pusher_app_put: async (node, p) => {
    await refusable(() => catalog(node).put(p.app));
    return {};
  },

  pusher_app_delete: async (node, p) => {
    const id = str(p, 'id');
    await refusable(() => catalog(node).delete(id));
    return {};
  },
};

/** The Pusher app store, or error 108 when it is off. */
function catalog(node: Node): AppCatalog {
  if (!node.pusherApps)
    throw new ApiError({
      ...Errors.notAvailable,
      message: 'the app store is off (SWITCHBOARD_PUSHER_APPS_BUCKET)',
    });
  return node.pusherApps;
}

/** An app the store refuses is a bad request with the reason. */
async function refusable(call: () => Promise<void>): Promise<void> {
  try {
    await call();
  } catch (err) {
    if (err instanceof AppRefused) throw bad(err.message);
    throw err;
  }
}

/** The error refusing a whole batch of `count` commands, if it is over `SWITCHBOARD_API_BATCH_MAX_COMMANDS`. */
export function batchRefusal(node: Node, count: number): ProtocolError | undefined {
  const max = node.config.apiBatchMaxCommands;
  if (count <= max) return undefined;
  return {
    code: Errors.badRequest.code,
    message: `batch of ${count} commands is over the limit of ${max} (SWITCHBOARD_API_BATCH_MAX_COMMANDS)`,
  };
}

/** A command of an HTTP batch, `{"<method>": params}` as Centrifugo's `Command` in JSON. */
function batchItem(command: unknown): BatchItem {
  if (typeof command !== 'object' || command === null || Array.isArray(command))
    return {
      error: { code: Errors.badRequest.code, message: 'a command must be an object {method: params}' },
    };
  const keys = Object.keys(command);
  if (keys.length !== 1)
    return {
      error: { code: Errors.badRequest.code, message: 'a command must name exactly one method' },
    };
  const method = keys[0]!;
  if (!isApiMethod(method) || method === 'batch')
    return {
      error: {
        code: Errors.methodNotFound.code,
        message:
          method === 'batch' ? 'a batch cannot contain a batch' : `method not found: ${method.slice(0, 64)}`,
      },
    };
  const params = (command as Params)[method];
  return { method, params: params === null || params === undefined ? {} : params };
}

/**
 * Runs a batch's commands, one after the other or all at once (`parallel`),
 * each as its own call of callApi: one failing leaves the others alone. The
 * size bound (batchRefusal) is the caller's to check first.
 */
export async function runBatch(node: Node, items: BatchItem[], parallel: boolean): Promise<ApiResponse[]> {
  const run = (item: BatchItem): Promise<ApiResponse> =>
    'error' in item ? Promise.resolve({ error: item.error }) : callApi(node, item.method, item.params);
  if (parallel) return Promise.all(items.map(run));
  const responses: ApiResponse[] = [];
  for (const item of items) responses.push(await run(item));
  return responses;
}

export function isApiMethod(method: string): method is ApiMethod {
  return (API_METHODS as readonly string[]).includes(method);
}

/** Runs one API call; never throws for bad input, only for bugs (reported as 100). */
export async function callApi(node: Node, method: ApiMethod, params: unknown): Promise<ApiResponse> {
  if (typeof params !== 'object' || params === null || Array.isArray(params)) {
    return { error: { code: Errors.badRequest.code, message: 'request body must be a JSON object' } };
  }
  // The same bound as client data, checked before anything is stored or sent on.
  if (nestedDeeperThan(params, node.config.jsonMaxDepth)) {
    const message = `request nested deeper than ${node.config.jsonMaxDepth}`;
    return { error: { code: Errors.badRequest.code, message } };
  }
  const unsupported = UNSUPPORTED[method]?.find((field) => isSet((params as Params)[field]));
  if (unsupported !== undefined)
    return { error: { code: Errors.notAvailable.code, message: `${unsupported} is not supported` } };
  try {
    return { result: await handlers[method](node, params as Params) };
  } catch (err) {
    if (err instanceof ApiError) return { error: err.error };
    node.log.error({ err, method }, 'api call failed');
    return { error: { code: Errors.internal.code, message: Errors.internal.message } };
  }
}
