/**
 * Plain HTTP exchanges on uWS: request bodies collected up to a limit (copied
 * out of uWS's reused buffers) and short text answers.
 */

import type { HttpResponse } from './uws.js';

/**
 * Collects the request body and calls `done` once: with the body, or with
 * undefined as soon as it grows past `limit` bytes (the rest is ignored).
 * Must be called synchronously inside the request handler.
 */
export function readBody(res: HttpResponse, limit: number, done: (body: Buffer | undefined) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  res.onData((chunk, last) => {
    if (size < 0) return;
    size += chunk.byteLength;
    if (size > limit) {
      size = -1;
      done(undefined);
      return;
    }
    chunks.push(Buffer.from(chunk.slice(0)));
    if (last) done(Buffer.concat(chunks));
  });
}

/** Answers with a status, extra headers and a plain-text body (may be empty); corked, so safe after an await. */
export function replyText(
  res: HttpResponse,
  status: string,
  text: string,
  headers: Record<string, string> = {},
): void {
  res.cork(() => {
    res.writeStatus(status);
    for (const [name, value] of Object.entries(headers)) res.writeHeader(name, value);
    if (text !== '') res.writeHeader('content-type', 'text/plain');
    res.end(text);
  });
}

/** The socket peer's address as text (IPv4, or IPv6 without brackets). Call it before any await. */
export function remoteAddress(res: HttpResponse): string {
  return Buffer.from(res.getRemoteAddressAsText()).toString();
}
