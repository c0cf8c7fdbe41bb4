/** Internal port: health, readiness, Prometheus metrics and the HTTP server APIs. */

import { mountHttpApi } from './api/http.js';
import type { Node } from './node.js';
import { replyText } from './reply.js';
import { type TemplatedApp, uws } from './uws.js';

/** `mount` adds routes of its own (the Pusher HTTP API) before the 404 fallback. */
export function createInternalApp(
  node: Node,
  mount: (app: TemplatedApp) => void = () => undefined,
): TemplatedApp {
  const app = uws.App();
  app.get('/healthz', (res) => {
    res.writeHeader('content-type', 'text/plain').end('ok\n');
  });
  app.get('/readyz', (res) => {
    const reason = node.draining
      ? 'draining'
      : !node.started
        ? 'starting'
        : node.broker.ready
          ? ''
          : 'broker unavailable';
    if (reason)
      res.writeStatus('503 Service Unavailable').writeHeader('content-type', 'text/plain').end(`${reason}\n`);
    else res.writeHeader('content-type', 'text/plain').end('ready\n');
  });
  app.get('/metrics', (res) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    node.metrics.registry.metrics().then(
      (text) => {
        if (aborted) return;
        res.cork(() => {
          res.writeHeader('content-type', node.metrics.registry.contentType).end(text);
        });
      },
      (err: unknown) => {
        node.log.error({ err }, 'metrics collection failed');
        if (!aborted) replyText(res, '500 Internal Server Error', 'metrics collection failed\n');
      },
    );
  });
  mountHttpApi(app, node);
  mount(app);
  app.any('/*', (res) => {
    res.writeStatus('404 Not Found').end('not found\n');
  });
  return app;
}
