/**
 * Loads uWebSockets.js and insists on its native addon. The package we install
 * (an npm alias, see package.json) falls back to a pure JavaScript server when
 * its binary does not load; that would be silently much slower, so we refuse.
 */

import type * as UWS from 'uWebSockets.js';
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { createRequire } from 'node:module';

export type { HttpRequest, HttpResponse, TemplatedApp, us_listen_socket, WebSocket } from 'uWebSockets.js';

const require = createRequire(import.meta.url);

export class NativeAddonError extends Error {}

function load(): typeof UWS {
  if (process.env.UWS_USE_FALLBACK) {
    throw new NativeAddonError(
      'UWS_USE_FALLBACK is set: unset it, Switchboard only runs on the native uWebSockets.js addon',
    );
  }
  const uws = require('uWebSockets.js') as typeof UWS;
  const native = Object.values(require.cache).some((m) => m?.filename.endsWith('.node') && m.exports === uws);
  if (!native) {
    throw new NativeAddonError(
      `uWebSockets.js did not load its native addon for ${process.platform}-${process.arch} ` +
        `(Node ABI ${process.versions.modules}); it fell back to a JavaScript implementation. ` +
        'Use a Node.js version the installed build supports (Node 20 for 20.30.0-unofficial.0).',
    );
  }
  return uws;
}

export const uws = load();

/** uWS takes host, port and options together at run time, which its type declarations omit. */
type ListenWithOptions = (
  host: string,
  port: number,
  options: number,
  cb: (socket: us_listen_socket | false) => void,
) => void;

/**
 * Listens on host:port, failing when the port is taken: by default uWS sets
 * SO_REUSEPORT and would silently share the port with another process.
 */
export function listenExclusive(app: TemplatedApp, host: string, port: number): Promise<us_listen_socket> {
  const exclusive = (uws as unknown as { LIBUS_LISTEN_EXCLUSIVE_PORT: number }).LIBUS_LISTEN_EXCLUSIVE_PORT;
  const listen = app.listen.bind(app) as unknown as ListenWithOptions;
  return new Promise((resolve, reject) => {
    listen(host, port, exclusive, (socket) =>
      socket ? resolve(socket) : reject(new Error(`cannot listen on ${host}:${port} (in use?)`)),
    );
  });
}

/**
 * Listens on host:port with SO_REUSEPORT, so that a second app can listen
 * beside this one (a certificate reload); the caller checks the port was free.
 */
export function listenShared(app: TemplatedApp, host: string, port: number): Promise<us_listen_socket> {
  const listen = app.listen.bind(app) as unknown as ListenWithOptions;
  return new Promise((resolve, reject) => {
    listen(host, port, 0, (socket) =>
      socket ? resolve(socket) : reject(new Error(`cannot listen on ${host}:${port}`)),
    );
  });
}
