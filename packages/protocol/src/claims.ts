/**
 * JWT claims of connection and subscription tokens, checked after the
 * signature is verified. Pure: `now` is passed in, seconds since the epoch.
 * Claims are hostile input: every field is type-checked, `subs` is bounded,
 * and base64 fields must decode to JSON within the nesting bound.
 */

import { isJsonObject, parseJsonBytes } from './json.js';

/** Centrifugo's SubscribeOptions: of a connection token's `subs` entry, and of a subscription token itself. */
export interface SubscribeOptions {
  /** Channel info (`info`, or `b64info` decoded), shown as `chan_info`. */
  info?: unknown;
  /** Data for the client in the subscribe result (`data`, or `b64data` decoded). */
  data?: unknown;
  /** Per-connection overrides of the namespace's options (`override`). */
  presence?: boolean;
  join_leave?: boolean;
  recovery?: boolean;
}

export interface ConnectionClaims {
  user: string;
  /**
   * Connection expiry in seconds since the epoch; 0 never. `expire_at` when
   * the token has it (0 or less: never, while `exp` still bounds the token),
   * else `exp`.
   */
  expiresAt: number;
  /** `info`, or `b64info` decoded. */
  info?: unknown;
  /**
   * Server-side subscriptions the client gets on connect: the keys of `subs`
   * when it has any (`channels` is then ignored, as in Centrifugo), else `channels`.
   */
  channels: string[];
  /** Options of the channels that came from `subs`. */
  subs?: Map<string, SubscribeOptions>;
  meta?: Record<string, unknown>;
}

export interface SubscriptionClaims extends SubscribeOptions {
  user: string;
  channel: string;
  /** Subscription expiry: `expire_at` when present (0 or less: never), else `exp`. */
  expiresAt: number;
}

/** Bounds of what a token may ask for. */
export interface ClaimLimits {
  /** Most entries of `subs` (the gateway ties it to max_channels_per_connection). */
  maxSubs: number;
  /** Nesting bound of JSON decoded from base64 claims. */
  maxDepth: number;
}

export type ClaimsCheck<T> = { ok: true; value: T } | { ok: false; expired: boolean; reason: string };

type Payload = Record<string, unknown>;

const refuse = (reason: string) => ({ ok: false, expired: false, reason }) as const;

/** Standard base64 with padding, as Go's StdEncoding reads it (no URL alphabet, no missing `=`). */
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/**
 * A base64 claim decoded: the JSON protocol carries info and data as JSON, so
 * the bytes must be UTF-8 JSON within the nesting bound.
 */
function base64Json(field: string, text: unknown, maxDepth: number): ClaimsCheck<unknown> {
  if (typeof text !== 'string') return refuse(`${field} must be a string`);
  if (text.length % 4 !== 0 || !BASE64.test(text)) return refuse(`${field} is not valid base64`);
  const parsed = parseJsonBytes(
    Uint8Array.from(atob(text), (c) => c.charCodeAt(0)),
    maxDepth,
  );
  return parsed.ok ? parsed : refuse(`${field} does not decode to JSON: ${parsed.reason}`);
}

/** `plain` or its base64 twin (which wins when non-empty, as in Centrifugo); undefined when neither is set. */
function jsonOrBase64(payload: Payload, plain: string, maxDepth: number, where = ''): ClaimsCheck<unknown> {
  const encoded = payload[`b64${plain}`];
  if (encoded !== undefined && encoded !== null && encoded !== '')
    return base64Json(`${where}b64${plain}`, encoded, maxDepth);
  return { ok: true, value: payload[plain] };
}

/** `expire_at` (integer seconds; 0 or less: never) when present, else the token's own expiry. */
function expireAt(payload: Payload, tokenExpiry: number): ClaimsCheck<number> {
  const at = payload.expire_at;
  if (at === undefined || at === null) return { ok: true, value: tokenExpiry };
  if (!Number.isSafeInteger(at)) return refuse('expire_at must be an integer');
  return { ok: true, value: Math.max(0, at as number) };
}

const OVERRIDES = ['presence', 'join_leave', 'force_recovery', 'force_positioning', 'force_push_join_leave'];

/** One `subs` entry. */
function serverSub(channel: string, entry: unknown, maxDepth: number): ClaimsCheck<SubscribeOptions> {
  const where = `subs[${JSON.stringify(channel.slice(0, 64))}].`;
  if (entry === null) return { ok: true, value: {} };
  if (!isJsonObject(entry)) return refuse(`${where.slice(0, -1)} must be an object`);
  return subscribeOptions(entry, maxDepth, where);
}

/** Info, data and overrides of `claims` (`where` names them in a refusal); unknown fields are ignored, as Centrifugo's decoder does. */
function subscribeOptions(claims: Payload, maxDepth: number, where: string): ClaimsCheck<SubscribeOptions> {
  const options: SubscribeOptions = {};
  const info = jsonOrBase64(claims, 'info', maxDepth, where);
  if (!info.ok) return info;
  if (info.value !== undefined) options.info = info.value;
  const data = jsonOrBase64(claims, 'data', maxDepth, where);
  if (!data.ok) return data;
  if (data.value !== undefined) options.data = data.value;
  const override = claims.override;
  if (override === undefined || override === null) return { ok: true, value: options };
  if (!isJsonObject(override)) return refuse(`${where}override must be an object`);
  for (const key of OVERRIDES) {
    const bool = override[key];
    if (bool === undefined || bool === null) continue;
    // BoolValue: {"value": true}; an absent value is false.
    if (!isJsonObject(bool) || (bool.value !== undefined && typeof bool.value !== 'boolean'))
      return refuse(`${where}override.${key} must be {"value": boolean}`);
    const value = bool.value === true;
    if (key === 'presence') options.presence = value;
    else if (key === 'join_leave') options.join_leave = value;
    else if (key === 'force_recovery') options.recovery = value;
    // force_positioning and force_push_join_leave: Switchboard always positions
    // channels with history and pushes join/leave to every subscriber.
  }
  return { ok: true, value: options };
}

function serverSubs(subs: unknown, limits: ClaimLimits): ClaimsCheck<Map<string, SubscribeOptions>> {
  const out = new Map<string, SubscribeOptions>();
  if (subs === undefined || subs === null) return { ok: true, value: out };
  if (!isJsonObject(subs)) return refuse('subs must be an object of channels');
  const channels = Object.keys(subs);
  if (channels.length > limits.maxSubs) return refuse(`subs has more than ${limits.maxSubs} channels`);
  for (const channel of channels) {
    const options = serverSub(channel, subs[channel], limits.maxDepth);
    if (!options.ok) return options;
    out.set(channel, options.value);
  }
  return { ok: true, value: out };
}

function expiry(payload: Payload, now: number): ClaimsCheck<number> {
  const exp = payload.exp;
  if (exp === undefined) return { ok: true, value: 0 };
  if (typeof exp !== 'number' || !Number.isFinite(exp))
    return { ok: false, expired: false, reason: 'exp must be a number' };
  if (exp <= now) return { ok: false, expired: true, reason: 'token expired' };
  return { ok: true, value: exp };
}

function subject(payload: Payload): ClaimsCheck<string> {
  const sub = payload.sub ?? '';
  if (typeof sub !== 'string') return { ok: false, expired: false, reason: 'sub must be a string' };
  return { ok: true, value: sub };
}

export function connectionClaims(
  payload: Payload,
  now: number,
  limits: ClaimLimits,
): ClaimsCheck<ConnectionClaims> {
  // A subscription token (it names its channel) never opens a connection, as in Centrifugo.
  if (payload.channel !== undefined)
    return { ok: false, expired: false, reason: 'a subscription token is not a connection token' };
  const sub = subject(payload);
  if (!sub.ok) return sub;
  const exp = expiry(payload, now);
  if (!exp.ok) return exp;
  const channels = payload.channels ?? [];
  if (!Array.isArray(channels) || channels.some((c) => typeof c !== 'string')) {
    return { ok: false, expired: false, reason: 'channels must be an array of strings' };
  }
  const meta = payload.meta;
  if (meta !== undefined && !isJsonObject(meta)) return refuse('meta must be an object');
  const expires = expireAt(payload, exp.value);
  if (!expires.ok) return expires;
  const info = jsonOrBase64(payload, 'info', limits.maxDepth);
  if (!info.ok) return info;
  const subs = serverSubs(payload.subs, limits);
  if (!subs.ok) return subs;
  const claims: ConnectionClaims = {
    user: sub.value,
    expiresAt: expires.value,
    channels: channels as string[],
  };
  if (subs.value.size > 0) {
    claims.channels = [...subs.value.keys()];
    claims.subs = subs.value;
  }
  if (info.value !== undefined) claims.info = info.value;
  if (meta !== undefined) claims.meta = meta;
  return { ok: true, value: claims };
}

export function subscriptionClaims(
  payload: Payload,
  now: number,
  limits: ClaimLimits,
): ClaimsCheck<SubscriptionClaims> {
  const sub = subject(payload);
  if (!sub.ok) return sub;
  const exp = expiry(payload, now);
  if (!exp.ok) return exp;
  if (typeof payload.channel !== 'string' || payload.channel === '') {
    return { ok: false, expired: false, reason: 'channel claim is required' };
  }
  const expires = expireAt(payload, exp.value);
  if (!expires.ok) return expires;
  const options = subscribeOptions(payload, limits.maxDepth, '');
  if (!options.ok) return options;
  return {
    ok: true,
    value: { user: sub.value, channel: payload.channel, expiresAt: expires.value, ...options.value },
  };
}
