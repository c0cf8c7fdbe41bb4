/**
 * The demo pages on the client port (the Centrifugo demo at `/`, the Pusher
 * one at `/pusher.html`): a fixed allow-list of files, read once at
 * start-up and served from memory. No path from the URL ever reaches the file
 * system, so there is nothing to traverse.
 */

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TemplatedApp } from './uws.js';

/** services/gateway/public (this file runs from services/gateway/dist/src). */
const PUBLIC_DIR = fileURLToPath(new URL('../../public/', import.meta.url));

const require = createRequire(import.meta.url);

/** A browser build of the `centrifuge` client (its package exports only the Node builds): JSON, or `protobuf`. */
function centrifugeBrowserBuild(name = 'centrifuge.js'): string {
  return join(dirname(require.resolve('centrifuge')), '..', 'dist', name);
}

/** The browser build of `pusher-js` (its main is the Node build, dist/node/pusher.js), for the Pusher page. */
function pusherBrowserBuild(): string {
  return join(dirname(require.resolve('pusher-js')), '..', 'web', 'pusher.min.js');
}

/**
 * The page may load only its own files and talk only to its own origin
 * ('self' covers ws:// and wss:// to the same host in CSP level 3 browsers).
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

interface StaticFile {
  body: Buffer;
  contentType: string;
  cacheControl: string;
  etag: string;
}

/** Page files change with each release under the same names: revalidate every time (cheap with the ETag). */
const REVALIDATE = 'no-cache';
/** The client libraries change only with the pinned `centrifuge` and `pusher-js` versions. */
const VENDOR = 'public, max-age=86400';

function load(path: string, contentType: string, cacheControl: string): StaticFile {
  const body = readFileSync(path);
  const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
  return { body, contentType, cacheControl, etag };
}

/** URL path → file; anything else falls through to the app's 404. */
function files(): Map<string, StaticFile> {
  const html = 'text/html; charset=utf-8';
  const js = 'text/javascript; charset=utf-8';
  const page = load(join(PUBLIC_DIR, 'index.html'), html, REVALIDATE);
  return new Map([
    ['/', page],
    ['/index.html', page],
    ['/app.js', load(join(PUBLIC_DIR, 'app.js'), js, REVALIDATE)],
    ['/style.css', load(join(PUBLIC_DIR, 'style.css'), 'text/css; charset=utf-8', REVALIDATE)],
    ['/vendor/centrifuge.js', load(centrifugeBrowserBuild(), js, VENDOR)],
    // For apps of the gateway's origin that speak Protobuf (the demo page does not).
    ['/vendor/centrifuge.protobuf.js', load(centrifugeBrowserBuild('centrifuge.protobuf.js'), js, VENDOR)],
    // The Pusher edge's page: pusher-js on a public channel of the app named by ?key= (no secret, no auth).
    ['/pusher.html', load(join(PUBLIC_DIR, 'pusher.html'), html, REVALIDATE)],
    ['/pusher.js', load(join(PUBLIC_DIR, 'pusher.js'), js, REVALIDATE)],
    ['/vendor/pusher.min.js', load(pusherBrowserBuild(), js, VENDOR)],
  ]);
}

export function mountStatic(app: TemplatedApp): void {
  for (const [path, file] of files()) {
    app.get(path, (res, req) => {
      // uWS sends the status line with the first header: it has to come first.
      const unchanged = req.getHeader('if-none-match') === file.etag;
      if (unchanged) res.writeStatus('304 Not Modified');
      res
        .writeHeader('cache-control', file.cacheControl)
        .writeHeader('etag', file.etag)
        .writeHeader('content-security-policy', CONTENT_SECURITY_POLICY)
        .writeHeader('x-content-type-options', 'nosniff')
        .writeHeader('referrer-policy', 'no-referrer');
      if (unchanged) res.endWithoutBody();
      else res.writeHeader('content-type', file.contentType).end(file.body);
    });
  }
}
