/**
 * HS256 JWT verification, synchronous. jose verifies HMAC through WebCrypto,
 * re-importing the key and hopping to the thread pool for every token; that
 * was 39 % of a gateway's CPU in the connect benchmark. The HMAC here is
 * hmac-sha256.ts (each secret's pad blocks hashed once). It checks what jose
 * checks for such tokens: the header, the signature in constant time, `exp`,
 * `nbf`, `iat`, `aud` and `iss`.
 */

import type { JWTPayload } from 'jose';
import { HmacSha256, isBase64url, matchesBase64url } from './hmac-sha256.js';

/** `secret`: the position of the secret that verified it. */
export type Hs256Result =
  { ok: true; payload: JWTPayload; secret: number } | { ok: false; expired: boolean; reason: string };

const fail = (reason: string, expired = false): Hs256Result => ({ ok: false, expired, reason });

function decodeJson(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Decoded headers by their base64url text. Nearly every token a gateway sees
 * carries one of a handful of headers (`{"alg":"HS256","typ":"JWT"}`), so each
 * is decoded once; the map is bounded, and a header past the bound (or a long
 * one: only short ones are kept) is decoded every time. Entries are frozen,
 * since every token with that header shares one.
 */
const headers = new Map<string, Readonly<Record<string, unknown>> | undefined>();
const HEADER_CACHE_SIZE = 32;
const HEADER_CACHE_LENGTH = 256;

function decodeHeader(part: string): Readonly<Record<string, unknown>> | undefined {
  const known = headers.get(part);
  if (known !== undefined || headers.has(part)) return known;
  const header = decodeJson(part);
  if (headers.size < HEADER_CACHE_SIZE && part.length <= HEADER_CACHE_LENGTH)
    headers.set(part, header && Object.freeze(header));
  return header;
}

/** The `alg` a compact JWS names in its header, or undefined when it has none or is malformed. */
export function headerAlg(token: string): string | undefined {
  const dot = token.indexOf('.');
  if (dot <= 0) return undefined;
  const alg = decodeHeader(token.slice(0, dot))?.alg;
  return typeof alg === 'string' ? alg : undefined;
}

/** Each secret's HMAC key, made once; a rotated key file brings new buffers, and the old keys go with theirs. */
const hmacKeys = new WeakMap<Buffer, HmacSha256>();

function hmacKey(secret: Buffer): HmacSha256 {
  let key = hmacKeys.get(secret);
  if (!key) hmacKeys.set(secret, (key = new HmacSha256(secret)));
  return key;
}

/**
 * Which of `secrets`, tried in order (the first nearly always), signed
 * `token`: the signature after `signatureAt` is the HMAC of the text before
 * its dot. -1 for none.
 */
function signedWith(token: string, signatureAt: number, secrets: readonly Buffer[]): number {
  return secrets.findIndex((secret) =>
    matchesBase64url(hmacKey(secret).digest(token, signatureAt - 1), token, signatureAt),
  );
}

/** Verifies `token` against any of `secrets` (several while one rotates): the second is tried only when the first fails. */
export function verifyHs256(
  token: string,
  secrets: readonly Buffer[],
  options: { audience?: string; issuer?: string },
  now = Math.floor(Date.now() / 1000),
): Hs256Result {
  const bodyAt = token.indexOf('.') + 1;
  const signatureAt = bodyAt > 0 ? token.indexOf('.', bodyAt) + 1 : 0;
  if (
    signatureAt === 0 ||
    token.indexOf('.', signatureAt) >= 0 ||
    !isBase64url(token, 0, bodyAt - 1) ||
    !isBase64url(token, bodyAt, signatureAt - 1) ||
    !isBase64url(token, signatureAt, token.length)
  )
    return fail('malformed token');
  const header = decodeHeader(token.slice(0, bodyAt - 1));
  if (!header || header.alg !== 'HS256') return fail('alg must be HS256');
  // Extensions we do not understand must not be ignored (RFC 7515 §4.1.11); jose refuses them too.
  if (header.crit !== undefined) return fail('unsupported crit header');
  if (header.b64 === false) return fail('unencoded payloads are not supported');
  const secret = signedWith(token, signatureAt, secrets);
  if (secret < 0) return fail('signature verification failed');
  const payload = decodeJson(token.slice(bodyAt, signatureAt - 1)) as JWTPayload | undefined;
  if (!payload) return fail('payload must be a JSON object');
  for (const claim of ['exp', 'nbf', 'iat'] as const) {
    if (payload[claim] !== undefined && typeof payload[claim] !== 'number')
      return fail(`"${claim}" claim must be a number`);
  }
  if (payload.nbf !== undefined && payload.nbf > now) return fail('"nbf" claim timestamp check failed');
  if (payload.exp !== undefined && payload.exp <= now) return fail('token expired', true);
  if (options.issuer !== undefined && payload.iss !== options.issuer)
    return fail('unexpected "iss" claim value');
  if (options.audience !== undefined) {
    const aud = payload.aud;
    const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [];
    if (!audiences.includes(options.audience)) return fail('unexpected "aud" claim value');
  }
  return { ok: true, payload, secret };
}
