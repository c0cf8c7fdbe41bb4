/** Request bodies on uWS: collected up to a limit, copied out of uWS's reused buffers. */

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
