/**
 * JWT claims of connection and subscription tokens, checked after the
 * signature is verified. Pure: `now` is passed in, seconds since the epoch.
 */

export interface ConnectionClaims {
  user: string;
  /** Expiry in seconds since the epoch; 0 when the token never expires. */
  expiresAt: number;
  info?: unknown;
  /** Server-side subscriptions the client gets on connect. */
  channels: string[];
  meta?: Record<string, unknown>;
}

export interface SubscriptionClaims {
  user: string;
  channel: string;
  expiresAt: number;
  info?: unknown;
}

export type ClaimsCheck<T> = { ok: true; value: T } | { ok: false; expired: boolean; reason: string };

type Payload = Record<string, unknown>;

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

export function connectionClaims(payload: Payload, now: number): ClaimsCheck<ConnectionClaims> {
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
  if (meta !== undefined && (typeof meta !== 'object' || meta === null || Array.isArray(meta))) {
    return { ok: false, expired: false, reason: 'meta must be an object' };
  }
  const claims: ConnectionClaims = { user: sub.value, expiresAt: exp.value, channels: channels as string[] };
  if (payload.info !== undefined) claims.info = payload.info;
  if (meta !== undefined) claims.meta = meta as Record<string, unknown>;
  return { ok: true, value: claims };
}

export function subscriptionClaims(payload: Payload, now: number): ClaimsCheck<SubscriptionClaims> {
  const sub = subject(payload);
  if (!sub.ok) return sub;
  const exp = expiry(payload, now);
  if (!exp.ok) return exp;
  if (typeof payload.channel !== 'string' || payload.channel === '') {
    return { ok: false, expired: false, reason: 'channel claim is required' };
  }
  const claims: SubscriptionClaims = { user: sub.value, channel: payload.channel, expiresAt: exp.value };
  if (payload.info !== undefined) claims.info = payload.info;
  return { ok: true, value: claims };
}
