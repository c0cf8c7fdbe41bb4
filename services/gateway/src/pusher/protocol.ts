/**
 * Pusher Channels protocol 7 on the wire, as pusher-js 8 and Pusher's other
 * client libraries speak it: the error and close codes, client frames parsed
 * into a checked union, channel and event name rules, socket ids, and the
 * frames a server sends. Pure: no sockets, no I/O.
 *
 * Server frames follow Pusher's "double encoding": `data` is a JSON string
 * for connection_established, the pusher_internal: events and channel
 * events, and an object for pusher:error, pusher:signin_success and
 * pusher:subscription_error (as the protocol page shows them and as Pusher
 * sends them; pusher-js accepts either).
 */

import { randomBytes } from 'node:crypto';
import { type ClientInfo, isJsonObject, parseJson } from '@switchboard/protocol';

const code = (c: number, message: string) => Object.freeze({ code: c, message });

/**
 * Pusher's codes, from the protocol page's "Error Codes". 4000-4099: do not
 * reconnect unchanged; 4100-4199: reconnect after backing off; 4200-4299:
 * reconnect at once. The 4300s are pusher:error codes only: pusher-js treats
 * a close code of 4300 or above as "refused" and stops reconnecting.
 */
export const PusherErrors = Object.freeze({
  sslOnly: code(4000, 'Application only accepts SSL connections, reconnect using wss://'),
  appNotFound: code(4001, 'Application does not exist'),
  appDisabled: code(4003, 'Application disabled'),
  overConnectionQuota: code(4004, 'Application is over connection quota'),
  pathNotFound: code(4005, 'Path not found'),
  invalidVersion: code(4006, 'Invalid version string format'),
  unsupportedProtocol: code(4007, 'Unsupported protocol version'),
  noProtocol: code(4008, 'No protocol version supplied'),
  unauthorized: code(4009, 'Connection is unauthorized'),
  overCapacity: code(4100, 'Over capacity'),
  reconnect: code(4200, 'Generic reconnect immediately'),
  pongNotReceived: code(4201, 'Pong reply not received'),
  closedAfterInactivity: code(4202, 'Closed after inactivity'),
  clientEventRateLimit: code(4301, 'Client event rejected due to rate limit'),
  watchlistLimit: code(4302, 'Watchlist limit exceeded. Only the first 100 user IDs are accepted.'),
});

/** A client frame, its fields checked. `auth`, `channelData` and `userData` are the strings as sent (they are signed). */
export type ClientFrame =
  | { type: 'ping' }
  | { type: 'pong' }
  | { type: 'subscribe'; channel: string; auth?: string; channelData?: string }
  | { type: 'unsubscribe'; channel: string }
  | { type: 'signin'; auth: string; userData: string }
  | { type: 'client'; event: string; channel: string; data: unknown }
  | { type: 'unknown'; event: string };

export type ParsedClientFrame = { ok: true; value: ClientFrame } | { ok: false; reason: string };

const fail = (reason: string): ParsedClientFrame => ({ ok: false, reason });
const ok = (value: ClientFrame): ParsedClientFrame => ({ ok: true, value });

/** An optional string field: absent (or null) is undefined, a string is itself, anything else is a type error. */
const optionalString = (v: unknown): string | undefined | false =>
  v == null ? undefined : typeof v === 'string' ? v : false;

/**
 * Parses one client frame. `maxDepth` bounds the whole frame, and a `data`
 * given as a JSON string (some clients send subscribe data so) is parsed
 * under the same bound. Names are not checked here: `subscribe` carries any
 * string channel (see checkChannelName and parseServerToUserChannel), and
 * `client` frames are only events that pass checkClientEventName.
 */
export function parseClientFrame(text: string, limits: { maxDepth: number }): ParsedClientFrame {
  const parsed = parseJson(text, limits.maxDepth);
  if (!parsed.ok) return fail(parsed.reason);
  const frame = parsed.value;
  if (!isJsonObject(frame)) return fail('frame must be a JSON object');
  const { event } = frame;
  if (typeof event !== 'string') return fail('event must be a string');
  if (event === 'pusher:ping') return ok({ type: 'ping' });
  if (event === 'pusher:pong') return ok({ type: 'pong' });
  if (event === 'pusher:subscribe' || event === 'pusher:unsubscribe' || event === 'pusher:signin') {
    let data = frame.data;
    if (typeof data === 'string') {
      const inner = parseJson(data, limits.maxDepth);
      if (!inner.ok) return fail(`${event} data: ${inner.reason}`);
      data = inner.value;
    }
    if (!isJsonObject(data)) return fail(`${event} data must be an object`);
    if (event === 'pusher:signin') {
      const { auth, user_data: userData } = data;
      if (typeof auth !== 'string') return fail('pusher:signin auth must be a string');
      if (typeof userData !== 'string') return fail('pusher:signin user_data must be a string');
      return ok({ type: 'signin', auth, userData });
    }
    if (typeof data.channel !== 'string') return fail(`${event} channel must be a string`);
    if (event === 'pusher:unsubscribe') return ok({ type: 'unsubscribe', channel: data.channel });
    const auth = optionalString(data.auth);
    if (auth === false) return fail('pusher:subscribe auth must be a string');
    const channelData = optionalString(data.channel_data);
    if (channelData === false) return fail('pusher:subscribe channel_data must be a string');
    const value: ClientFrame = { type: 'subscribe', channel: data.channel };
    if (auth !== undefined) value.auth = auth;
    if (channelData !== undefined) value.channelData = channelData;
    return ok(value);
  }
  if (event.startsWith('pusher:') || event.startsWith('pusher_internal:'))
    return ok({ type: 'unknown', event });
  const bad = checkClientEventName(event);
  if (bad !== undefined) return fail(bad);
  const { channel } = frame;
  if (typeof channel !== 'string') return fail('a client event needs a string channel');
  return ok({ type: 'client', event, channel, data: frame.data });
}

export type ChannelKind = 'public' | 'private' | 'presence' | 'encrypted';

/** The kind of a channel by its prefix, and whether it is a cache channel (`cache-`, `private-cache-`, ...). */
export function channelKind(name: string): { kind: ChannelKind; cache: boolean } {
  if (name.startsWith('private-encrypted-'))
    return { kind: 'encrypted', cache: name.startsWith('cache-', 18) };
  if (name.startsWith('private-')) return { kind: 'private', cache: name.startsWith('cache-', 8) };
  if (name.startsWith('presence-')) return { kind: 'presence', cache: name.startsWith('cache-', 9) };
  return { kind: 'public', cache: name.startsWith('cache-') };
}

/** Pusher's limit on channel names, prefixes included. */
export const MAX_CHANNEL_NAME_LENGTH = 164;
/** Pusher's limit on event names, from clients and the HTTP API. */
export const MAX_EVENT_NAME_LENGTH = 200;

const CHANNEL_NAME = /^[A-Za-z0-9_\-=@,.;]+$/;

/** Why `name` is not a channel name an application may use, or undefined when it is. `#` is reserved to Pusher. */
export function checkChannelName(name: string, maxLength = MAX_CHANNEL_NAME_LENGTH): string | undefined {
  if (name.length === 0) return 'channel name is empty';
  if (name.length > maxLength) return `channel name longer than ${maxLength} characters`;
  if (!CHANNEL_NAME.test(name)) return 'channel name may only hold A-Z a-z 0-9 _ - = @ , . ;';
  return undefined;
}

const SERVER_TO_USER = '#server-to-user-';

/** The channel that carries events the HTTP API sends to one signed-in user. */
export const serverToUserChannel = (userId: string): string => SERVER_TO_USER + userId;

/** The user id of a `#server-to-user-<id>` channel, or undefined when `name` is no such channel. */
export function parseServerToUserChannel(name: string): string | undefined {
  return name.length > SERVER_TO_USER.length && name.startsWith(SERVER_TO_USER)
    ? name.slice(SERVER_TO_USER.length)
    : undefined;
}

/** Why `name` is not a client event name (`client-` prefix, at most 200 characters), or undefined. */
export function checkClientEventName(name: string): string | undefined {
  if (!name.startsWith('client-')) return 'client event names must start with client-';
  if (name.length > MAX_EVENT_NAME_LENGTH)
    return `event name longer than ${MAX_EVENT_NAME_LENGTH} characters`;
  return undefined;
}

/**
 * Why `name` is not an event name the HTTP API may trigger, or undefined.
 * The `pusher:` and `pusher_internal:` prefixes are refused: clients act on
 * them (pusher_internal:member_added, ...), so a published one would forge
 * protocol events.
 */
export function checkEventName(name: string): string | undefined {
  if (name.length === 0) return 'event name is empty';
  if (name.length > MAX_EVENT_NAME_LENGTH)
    return `event name longer than ${MAX_EVENT_NAME_LENGTH} characters`;
  if (name.startsWith('pusher:') || name.startsWith('pusher_internal:'))
    return 'event names starting with pusher: or pusher_internal: are reserved';
  return undefined;
}

/**
 * A socket id in Pusher's `<digits>.<digits>` form: two random 32-bit
 * numbers, 64 random bits, so gateways need not coordinate (a million live
 * connections collide with odds of about 3 in 100 million).
 */
export function newSocketId(): string {
  const bytes = randomBytes(8);
  return `${bytes.readUInt32BE(0)}.${bytes.readUInt32BE(4)}`;
}

/** A presence channel's members as pusher_internal:subscription_succeeded lists them. */
export interface PresenceRoster {
  ids: string[];
  hash: Record<string, unknown>;
  count: number;
}

/** The roster of a presence channel's subscribers: one entry per user (a user's first connection gives the info). */
export function presenceMembers(members: readonly ClientInfo[]): PresenceRoster {
  // No prototype: a user id `__proto__` is a member like any other.
  const hash: Record<string, unknown> = Object.create(null);
  const ids: string[] = [];
  for (const m of members) {
    if (m.user in hash) continue;
    // null, not absent: pusher-js finds a member by an own key of `hash`.
    hash[m.user] = m.chan_info ?? null;
    ids.push(m.user);
  }
  return { ids, hash, count: ids.length };
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; reason: string };

/**
 * A presence subscription's channel_data: `user_id` a non-empty string or
 * an integer (Laravel sends its numeric ids; they become strings), and
 * `user_info` any JSON, optional. `maxBytes` bounds the text.
 */
export function parseChannelData(
  text: string | undefined,
  maxBytes: number,
  maxDepth: number,
): Parsed<{ userId: string; userInfo?: unknown }> {
  if (text === undefined) return { ok: false, reason: 'presence channels need channel_data' };
  if (Buffer.byteLength(text) > maxBytes)
    return { ok: false, reason: `channel_data larger than ${maxBytes} bytes` };
  const parsed = parseJson(text, maxDepth);
  if (!parsed.ok) return { ok: false, reason: `channel_data: ${parsed.reason}` };
  const data = parsed.value;
  if (!isJsonObject(data)) return { ok: false, reason: 'channel_data must be a JSON object' };
  const id = data.user_id;
  const userId = typeof id === 'string' ? id : Number.isSafeInteger(id) ? String(id) : '';
  if (userId === '')
    return { ok: false, reason: 'channel_data user_id must be a non-empty string or an integer' };
  return {
    ok: true,
    value: data.user_info === undefined ? { userId } : { userId, userInfo: data.user_info },
  };
}

/** A pusher:signin's user_data: `id` a non-empty string (pusher-js drops a sign-in without one), `user_info` optional. */
export function parseUserData(text: string, maxDepth: number): Parsed<{ id: string; userInfo?: unknown }> {
  const parsed = parseJson(text, maxDepth);
  if (!parsed.ok) return { ok: false, reason: `user_data: ${parsed.reason}` };
  const data = parsed.value;
  if (!isJsonObject(data)) return { ok: false, reason: 'user_data must be a JSON object' };
  const { id } = data;
  if (typeof id !== 'string' || id === '')
    return { ok: false, reason: 'user_data id must be a non-empty string' };
  return { ok: true, value: data.user_info === undefined ? { id } : { id, userInfo: data.user_info } };
}

// ---- the frames a server sends, each the text of one WebSocket message

export const connectionEstablished = (socketId: string, activityTimeoutSeconds: number): string =>
  JSON.stringify({
    event: 'pusher:connection_established',
    data: JSON.stringify({ socket_id: socketId, activity_timeout: activityTimeoutSeconds }),
  });

/** `code` null for errors that have none (Pusher sends a refused subscription so). */
export const error = (errorCode: number | null, message: string): string =>
  JSON.stringify({ event: 'pusher:error', data: { code: errorCode, message } });

/** Sent to a client that was silent for the activity timeout; it answers pusher:pong. */
export const ping = (): string => '{"event":"pusher:ping","data":"{}"}';

export const pong = (): string => '{"event":"pusher:pong","data":"{}"}';

export const subscriptionSucceeded = (channel: string, presence?: PresenceRoster): string =>
  JSON.stringify({
    event: 'pusher_internal:subscription_succeeded',
    channel,
    data: presence === undefined ? '{}' : JSON.stringify({ presence }),
  });

/**
 * pusher-js emits pusher:subscription_error itself when its authorizer
 * fails, with `{type, error, status}`; sent by the server with a channel,
 * it reaches that channel's bindings (Laravel Echo's `.error()`) the same way.
 */
export const subscriptionError = (
  channel: string,
  status: number,
  message: string,
  type = 'AuthError',
): string =>
  JSON.stringify({ event: 'pusher:subscription_error', channel, data: { type, error: message, status } });

/** `userInfo` absent is sent as null. */
export const memberAdded = (channel: string, userId: string, userInfo: unknown): string =>
  JSON.stringify({
    event: 'pusher_internal:member_added',
    channel,
    data: JSON.stringify({ user_id: userId, user_info: userInfo ?? null }),
  });

export const memberRemoved = (channel: string, userId: string): string =>
  JSON.stringify({
    event: 'pusher_internal:member_removed',
    channel,
    data: JSON.stringify({ user_id: userId }),
  });

export const cacheMiss = (channel: string): string =>
  JSON.stringify({ event: 'pusher:cache_miss', channel, data: '{}' });

/** `userData`: the user_data string of the accepted pusher:signin. */
export const signinSuccess = (userData: string): string =>
  JSON.stringify({ event: 'pusher:signin_success', data: { user_data: userData } });

/** An event's `data` as Pusher sends it: a string as it is, anything else as JSON. */
export const eventData = (data: unknown): string => (typeof data === 'string' ? data : JSON.stringify(data));

/**
 * A channel event: `data` as it is when a string (what the HTTP API
 * carries), JSON-encoded otherwise (a client event's data as the client
 * sent it; undefined leaves `data` out). `userId`: who sent a client event
 * on a presence channel.
 */
export function event(name: string, channel: string, data: unknown, userId?: string): string {
  const text = eventData(data);
  return userId === undefined
    ? JSON.stringify({ event: name, channel, data: text })
    : JSON.stringify({ event: name, channel, data: text, user_id: userId });
}
