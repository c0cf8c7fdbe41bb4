/** Constant-time API key check shared by HTTP and gRPC. */

import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (s: string) => createHash('sha256').update(s).digest();

export function apiKeyMatches(expected: string, given: string | undefined): boolean {
  if (expected === '' || given === undefined || given === '') return false;
  return timingSafeEqual(digest(expected), digest(given));
}

/** The key from `X-API-Key: <key>` or `Authorization: apikey <key>`. */
export function apiKeyFrom(xApiKey: string, authorization: string): string {
  if (xApiKey) return xApiKey;
  const m = /^apikey\s+(.+)$/i.exec(authorization.trim());
  return m?.[1] ?? '';
}
