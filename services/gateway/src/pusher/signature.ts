/**
 * Pusher's HMAC-SHA256 signatures on node:crypto: channel authorization
 * (`<socket_id>:<channel>[:<channel_data>]`), user authentication for
 * pusher:signin (`<socket_id>::user::<user_data>`), HTTP API requests
 * (auth_key, auth_timestamp, auth_version, body_md5, auth_signature) and
 * webhook bodies. Every comparison of a signature or digest is constant
 * time. Pure: no I/O.
 */

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

const hmac = (secret: string, data: string | Uint8Array): string =>
  createHmac('sha256', secret).update(data).digest('hex');

/** Constant-time string equality (the length of what is compared is no secret). */
function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * The hex signature of a channel subscription. `channelData` is signed
 * whenever it was sent, even empty: Pusher signs `<socket_id>:<channel>:`
 * for an empty channel_data.
 */
export const channelSignature = (
  secret: string,
  socketId: string,
  channel: string,
  channelData?: string,
): string =>
  hmac(
    secret,
    channelData === undefined ? `${socketId}:${channel}` : `${socketId}:${channel}:${channelData}`,
  );

/** Whether `auth` is `<key>:<signature>` for this subscription. */
export const verifyChannelAuth = (
  key: string,
  secret: string,
  socketId: string,
  channel: string,
  auth: string,
  channelData?: string,
): boolean => safeEqual(auth, `${key}:${channelSignature(secret, socketId, channel, channelData)}`);

/** The hex signature of a pusher:signin's `user_data` (the JSON string exactly as sent). */
export const userSignature = (secret: string, socketId: string, userData: string): string =>
  hmac(secret, `${socketId}::user::${userData}`);

/** Whether `auth` is `<key>:<signature>` for this pusher:signin's `userData`. */
export const verifyUserAuth = (
  key: string,
  secret: string,
  socketId: string,
  userData: string,
  auth: string,
): boolean => safeEqual(auth, `${key}:${userSignature(secret, socketId, userData)}`);

/** The `X-Pusher-Signature` of a webhook: hex HMAC-SHA256 of the raw body (sent with `X-Pusher-Key`). */
export const webhookSignature = (secret: string, body: string | Uint8Array): string => hmac(secret, body);

const md5 = (body: string | Uint8Array): string => createHash('md5').update(body).digest('hex');

/**
 * Pusher's string to sign: the upper-case method, the path, and every
 * parameter but auth_signature with its key lower-cased, sorted by key and
 * joined as `k=v&k=v`, nothing URL-escaped; the three joined by newlines.
 */
function stringToSign(method: string, path: string, params: Map<string, string>): string {
  const keys = [...params.keys()].sort();
  return `${method.toUpperCase()}\n${path}\n${keys.map((k) => `${k}=${params.get(k)}`).join('&')}`;
}

export interface SignedRequest<A extends { secret: string }> {
  method: string;
  /** The path as it came on the wire, not percent-decoded: it is what the client signed. */
  path: string;
  query: URLSearchParams;
  body: Uint8Array;
  nowSeconds: number;
  /** How far auth_timestamp may be from now either way; Pusher's 600 s. */
  maxSkewSeconds?: number;
  /** The app whose key is `authKey`, or undefined when there is none. */
  lookup: (authKey: string) => A | undefined;
}

export type RequestCheck<A> =
  { ok: true; authKey: string; app: A } | { ok: false; status: 400 | 401; message: string };

const refuse = (status: 400 | 401, message: string) => ({ ok: false as const, status, message });
const iso = (seconds: number) =>
  Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString().replace('.000Z', 'Z') : String(seconds);
const clip = (s: string) => (s.length > 80 ? `${s.slice(0, 80)}...` : s);

/**
 * Checks an HTTP API request signed as Pusher's HTTP API reference defines
 * it, with Pusher's status codes (401 for an authentication failure, 400 for
 * a malformed query) and, where Pusher's servers are known to send them,
 * its messages. Refused besides: a parameter given twice (keys compare
 * lower-cased, as they are signed), and a `&` in a value or a `&` or `=` in
 * a key, which would make two different queries sign the same string.
 */
export function verifyRequest<A extends { secret: string }>(request: SignedRequest<A>): RequestCheck<A> {
  const params = new Map<string, string>();
  let signature: string | undefined;
  for (const [rawKey, value] of request.query) {
    const key = rawKey.toLowerCase();
    if (params.has(key) || (key === 'auth_signature' && signature !== undefined))
      return refuse(400, `Duplicate query parameter ${clip(key)}`);
    if (key.includes('&') || key.includes('=') || value.includes('&'))
      return refuse(400, `Query parameter ${clip(key)} holds & or =`);
    if (key === 'auth_signature') signature = value;
    else params.set(key, value);
  }
  const authKey = params.get('auth_key');
  const timestamp = params.get('auth_timestamp');
  const version = params.get('auth_version');
  if (authKey === undefined) return refuse(401, 'Missing auth_key');
  if (timestamp === undefined) return refuse(401, 'Missing auth_timestamp');
  if (version === undefined) return refuse(401, 'Missing auth_version');
  if (signature === undefined) return refuse(401, 'Missing auth_signature');
  if (version !== '1.0') return refuse(401, `Unsupported auth_version ${clip(version)}: only 1.0 is`);
  const bodyMd5 = params.get('body_md5');
  if (request.body.length > 0 && bodyMd5 === undefined) return refuse(401, 'Missing body_md5');
  const app = request.lookup(authKey);
  if (app === undefined) return refuse(401, `Unknown auth_key ${clip(authKey)}`);

  if (!/^\d{1,12}$/.test(timestamp)) return refuse(401, 'auth_timestamp must be whole seconds since 1970');
  const skew = request.maxSkewSeconds ?? 600;
  const given = Number(timestamp);
  // Written so that a NaN `nowSeconds` refuses too.
  if (!(Math.abs(request.nowSeconds - given) <= skew))
    return refuse(
      401,
      `Timestamp expired: Given timestamp (${iso(given)}) not within ${skew}s of server time (${iso(request.nowSeconds)})`,
    );

  const signed = stringToSign(request.method, request.path, params);
  if (!safeEqual(signature, hmac(app.secret, signed)))
    return refuse(
      401,
      `Invalid signature: you should have sent HmacSHA256Hex(${JSON.stringify(signed)}, your_secret_key), but you sent ${JSON.stringify(clip(signature))}`,
    );
  // Checked even for an empty body: a signed body_md5 with the body gone means the body was stripped.
  if (bodyMd5 !== undefined && !safeEqual(bodyMd5, md5(request.body)))
    return refuse(401, 'body_md5 does not match the body');
  return { ok: true, authKey, app };
}

/**
 * Signs a request as Pusher's server libraries do, for calling an HTTP API
 * (tests, tools): the returned query string holds `params` (keys
 * lower-cased), the auth parameters, body_md5 for a non-empty body, and
 * auth_signature last.
 */
export function signRequest(request: {
  method: string;
  path: string;
  key: string;
  secret: string;
  timestampSeconds: number;
  params?: Record<string, string>;
  body?: string | Uint8Array;
}): string {
  const params = new Map<string, string>();
  for (const [k, v] of Object.entries(request.params ?? {})) params.set(k.toLowerCase(), v);
  params.set('auth_key', request.key);
  params.set('auth_timestamp', String(request.timestampSeconds));
  params.set('auth_version', '1.0');
  if (request.body !== undefined && request.body.length > 0) params.set('body_md5', md5(request.body));
  const query = new URLSearchParams([...params]);
  query.append('auth_signature', hmac(request.secret, stringToSign(request.method, request.path, params)));
  return query.toString();
}
