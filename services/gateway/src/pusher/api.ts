/**
 * Pusher's HTTP API on the internal port, so that the `pusher` server SDKs
 * and Laravel broadcasting work unmodified: trigger events (one or a batch,
 * excluding a socket_id), query channels and presence users for the whole
 * cluster, terminate a user's connections. Every request is signed with the
 * app's secret (auth_key, auth_timestamp within 600 s, auth_version,
 * body_md5, auth_signature); errors are Pusher's status codes with a text body.
 */

import { compilePattern, matchesPattern, parseJson } from '@switchboard/protocol';
import type { PusherRejection } from '../metrics.js';
import type { Node } from '../node.js';
import { readBody, replyText } from '../reply.js';
import type { HttpRequest, HttpResponse, TemplatedApp } from '../uws.js';
import { type Apps, channelOf, type PusherApp, pusherName } from './apps.js';
import { publicationData } from './edge.js';
import * as wire from './protocol.js';
import { publishEvent } from './session.js';
import { verifyRequest } from './signature.js';

/** Largest request body: a batch of 10 events of the largest data, with room for names. */
const MAX_BODY = 1024 * 1024;
/** Pusher's limits: channels of one event, events of one batch. */
export const MAX_EVENT_CHANNELS = 100;
export const MAX_BATCH = 10;
const SOCKET_ID = /^\d+\.\d+$/;

/** A refusal: Pusher's status and a text body. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason: PusherRejection = 'api_bad_request',
  ) {
    super(message);
  }
}

const STATUS: Record<number, string> = {
  200: '200 OK',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  413: '413 Payload Too Large',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
};

interface Call {
  app: PusherApp;
  /** The route's path parameters after the app id, percent-decoded. */
  params: string[];
  query: URLSearchParams;
  body: Buffer;
}

interface TriggerEvent {
  name: string;
  data: string;
  channels: string[];
  socketId: string | undefined;
  info: string[];
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export function mountPusherApi(http: TemplatedApp, node: Node, apps: Apps): void {
  const { metrics, log } = node;

  /** Registers a signed route; `handle` answers with a JSON body or throws ApiError. */
  const route = (
    method: 'get' | 'post',
    pattern: string,
    params: number,
    handle: (call: Call) => Promise<unknown>,
  ): void => {
    http[method](pattern, (res: HttpResponse, req: HttpRequest) => {
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      const path = req.getUrl();
      const query = new URLSearchParams(req.getQuery() ?? '');
      const id = req.getParameter(0) ?? '';
      const raw = Array.from({ length: params }, (_, i) => req.getParameter(i + 1) ?? '');
      const answer = (status: number, body: unknown, app?: PusherApp, reason?: PusherRejection) => {
        if (app && reason) metrics.pusherRejections.inc({ app: app.id, reason });
        if (aborted) return;
        if (typeof body === 'string')
          replyText(res, STATUS[status] ?? '500 Internal Server Error', `${body}\n`);
        else
          res.cork(() => {
            res
              .writeStatus(STATUS[status]!)
              .writeHeader('content-type', 'application/json')
              .end(JSON.stringify(body));
          });
      };
      const run = (body: Buffer) => {
        const check = verifyRequest({
          method: method.toUpperCase(),
          path,
          query,
          body,
          nowSeconds: Math.floor(Date.now() / 1000),
          lookup: (key) => apps.byKey(key),
        });
        if (!check.ok) return answer(check.status, check.message, apps.byId(id), 'api_unauthorized');
        const app = check.app;
        // Signed with another app's key: this app's resources are not that key's.
        if (app.id !== id)
          return answer(401, 'auth_key does not belong to this app', app, 'api_unauthorized');
        if (!app.enabled) return answer(403, 'Application disabled', app, 'api_unauthorized');
        let decoded: string[];
        try {
          decoded = raw.map((p) => decodeURIComponent(p));
        } catch {
          return answer(400, 'malformed path', app, 'api_bad_request');
        }
        handle({ app, params: decoded, query, body }).then(
          (result) => answer(200, result),
          (err: unknown) => {
            if (err instanceof ApiError) return answer(err.status, err.message, app, err.reason);
            log.error({ err, app: app.id, path }, 'pusher api call failed');
            metrics.handlerErrors.inc({ where: 'pusher_api' });
            answer(500, 'internal error');
          },
        );
      };
      if (method === 'get') return run(Buffer.alloc(0));
      readBody(res, MAX_BODY, (body) => {
        if (body === undefined)
          answer(413, `request body larger than ${MAX_BODY} bytes`, apps.byId(id), 'too_large');
        else run(body);
      });
    });
  };

  route('post', '/apps/:id/events', 0, async ({ app, body }) => {
    const event = parseEvent(app, parseBody(node, body));
    const info = await publish(node, app, event);
    return event.info.length > 0 ? { channels: info } : {};
  });

  route('post', '/apps/:id/batch_events', 0, async ({ app, body }) => {
    const parsed = parseBody(node, body);
    const batch = parsed.batch;
    if (!Array.isArray(batch)) throw new ApiError(400, 'batch must be an array of events');
    if (batch.length > MAX_BATCH) throw new ApiError(400, `Batch too large (${batch.length} > ${MAX_BATCH})`);
    // Every event checked before any is published: a bad batch publishes nothing.
    const events = batch.map((entry) => parseEvent(app, entry, true));
    const infos = [];
    for (const event of events) infos.push(await publish(node, app, event));
    if (!events.some((e) => e.info.length > 0)) return {};
    return {
      batch: infos.map((info, i) => (events[i]!.info.length > 0 ? info[events[i]!.channels[0]!] : {})),
    };
  });

  route('get', '/apps/:id/channels', 0, async ({ app, query }) => {
    const prefix = query.get('filter_by_prefix') ?? '';
    const info = infoOf(query);
    if (prefix !== '' && wire.checkChannelName(prefix) !== undefined)
      throw new ApiError(400, 'invalid filter_by_prefix');
    if (info.includes('user_count') && !prefix.startsWith('presence-'))
      throw new ApiError(400, 'info=user_count needs filter_by_prefix=presence-');
    if (info.some((i) => i !== 'user_count'))
      throw new ApiError(400, 'only info=user_count is available here');
    const counts = await node.clusterChannels(`${app.namespace}:*`);
    const channels: Record<string, { user_count?: number }> = Object.create(null);
    const compiled = compilePattern(`${channelOf(app, prefix)}*`);
    for (const channel of Object.keys(counts)) {
      if (!matchesPattern(compiled, channel)) continue;
      const name = pusherName(channel);
      channels[name] = info.includes('user_count')
        ? { user_count: (await node.registry.presenceStats(channel)).numUsers }
        : {};
    }
    return { channels };
  });

  route('get', '/apps/:id/channels/:name', 1, async ({ app, params, query }) => {
    const name = channelName(params[0]!);
    const info = infoOf(query);
    const presence = name.startsWith('presence-');
    if (info.includes('user_count') && !presence)
      throw new ApiError(400, 'user_count is only for presence channels');
    if (info.some((i) => i !== 'user_count' && i !== 'subscription_count'))
      throw new ApiError(400, 'info may hold user_count and subscription_count');
    const channel = channelOf(app, name);
    const subscriptions = (await node.clusterChannels(channel))[channel]?.num_clients ?? 0;
    const result: { occupied: boolean; subscription_count?: number; user_count?: number } = {
      occupied: subscriptions > 0,
    };
    if (info.includes('subscription_count')) result.subscription_count = subscriptions;
    if (info.includes('user_count'))
      result.user_count = (await node.registry.presenceStats(channel)).numUsers;
    return result;
  });

  route('get', '/apps/:id/channels/:name/users', 1, async ({ app, params }) => {
    const name = channelName(params[0]!);
    if (!name.startsWith('presence-')) throw new ApiError(400, 'users are only listed for presence channels');
    const present = await node.registry.presence(channelOf(app, name));
    return { users: wire.presenceMembers(Object.values(present)).ids.map((id) => ({ id })) };
  });

  route('post', '/apps/:id/users/:user/terminate_connections', 1, async ({ app, params }) => {
    const user = params[0]!;
    if (user === '' || user.length > 128) throw new ApiError(400, 'invalid user id');
    await node.broker.publishControl({
      op: 'disconnect',
      user: `${app.id}:${user}`,
      code: wire.PusherErrors.unauthorized.code,
      reason: 'connection terminated by the app',
    });
    return {};
  });
}

function parseBody(node: Node, body: Buffer): Record<string, unknown> {
  const parsed = parseJson(body.toString('utf8'), node.config.jsonMaxDepth);
  if (!parsed.ok) throw new ApiError(400, `body: ${parsed.reason}`);
  if (!isObject(parsed.value)) throw new ApiError(400, 'body must be a JSON object');
  return parsed.value;
}

/** A channel name of a request: an app's channel, or a user's `#server-to-user-<id>` (sendToUser). */
function channelName(name: string): string {
  const bad = wire.parseServerToUserChannel(name) === undefined ? wire.checkChannelName(name) : undefined;
  if (bad) throw new ApiError(400, bad);
  return name;
}

/** `info=a,b` as a list (duplicates dropped). */
function infoOf(query: URLSearchParams): string[] {
  const info = query.get('info');
  return info
    ? [
        ...new Set(
          info
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
        ),
      ]
    : [];
}

/** A trigger request's fields, every one checked. */
function parseEvent(app: PusherApp, raw: unknown, single = false): TriggerEvent {
  if (!isObject(raw)) throw new ApiError(400, 'an event must be a JSON object');
  const { name, data, socket_id: socketId, info } = raw;
  if (typeof name !== 'string') throw new ApiError(400, 'name must be a string');
  const badName = wire.checkEventName(name);
  if (badName) throw new ApiError(400, badName);
  if (typeof data !== 'string') throw new ApiError(400, 'data must be a string');
  if (Buffer.byteLength(data) > app.max_message_size)
    throw new ApiError(
      413,
      `Payload too large: data is limited to ${app.max_message_size} bytes`,
      'too_large',
    );
  let channels: unknown = raw.channels;
  if (raw.channel !== undefined) {
    if (channels !== undefined) throw new ApiError(400, 'give channel or channels, not both');
    channels = [raw.channel];
  }
  if (!Array.isArray(channels) || channels.length === 0 || channels.some((c) => typeof c !== 'string'))
    throw new ApiError(400, 'channels must be a non-empty array of channel names');
  if (single && channels.length > 1) throw new ApiError(400, 'a batch event has one channel');
  if (channels.length > MAX_EVENT_CHANNELS)
    throw new ApiError(400, `at most ${MAX_EVENT_CHANNELS} channels per event`);
  for (const channel of channels as string[]) channelName(channel);
  if (socketId !== undefined && (typeof socketId !== 'string' || !SOCKET_ID.test(socketId)))
    throw new ApiError(400, 'invalid socket_id');
  if (info !== undefined && typeof info !== 'string') throw new ApiError(400, 'info must be a string');
  const wanted = info ? info.split(',').map((s) => s.trim()) : [];
  for (const i of wanted) {
    if (i !== 'user_count' && i !== 'subscription_count')
      throw new ApiError(400, `unknown info attribute ${i}`);
  }
  return { name, data, channels: channels as string[], socketId, info: wanted };
}

/** Publishes to each channel; the requested attributes per channel afterwards. */
async function publish(
  node: Node,
  app: PusherApp,
  event: TriggerEvent,
): Promise<Record<string, { subscription_count?: number; user_count?: number }>> {
  const data = publicationData(event.data);
  const info: Record<string, { subscription_count?: number; user_count?: number }> = Object.create(null);
  for (const name of event.channels) {
    const channel = channelOf(app, name);
    const resolved = node.resolve(channel);
    if ('code' in resolved) throw new ApiError(400, resolved.message);
    const refused = await publishEvent(node, app, resolved, event.name, data, {
      skipClient: event.socketId,
      source: 'api',
    });
    if (refused) throw new ApiError(503, refused.message);
    if (event.info.length === 0) continue;
    const attributes: { subscription_count?: number; user_count?: number } = {};
    if (event.info.includes('subscription_count'))
      attributes.subscription_count = (await node.clusterChannels(channel))[channel]?.num_clients ?? 0;
    if (event.info.includes('user_count') && name.startsWith('presence-'))
      attributes.user_count = (await node.registry.presenceStats(channel)).numUsers;
    info[name] = attributes;
  }
  return info;
}
