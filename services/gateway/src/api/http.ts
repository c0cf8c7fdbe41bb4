/** Server API over HTTP: `POST /api/<method>` with a JSON body and the API key. */

import { Errors } from '@switchboard/protocol';
import { readBody } from '../reply.js';
import type { Node } from '../node.js';
import type { HttpResponse, TemplatedApp } from '../uws.js';
import { apiKeyFrom, apiKeyMatches } from './key.js';
import { type ApiResponse, callApi, isApiMethod } from './methods.js';

/** Largest API request body accepted. */
export const API_MAX_BODY = 4 * 1024 * 1024;

function respond(
  res: HttpResponse,
  status: string,
  body: ApiResponse | { error: { code: number; message: string } },
) {
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify(body));
  });
}

export function mountHttpApi(app: TemplatedApp, node: Node): void {
  app.post('/api/:method', (res, req) => {
    const method = req.getParameter(0) ?? '';
    const key = apiKeyFrom(req.getHeader('x-api-key'), req.getHeader('authorization'));
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const count = (outcome: string) =>
      node.metrics.apiRequests.inc({
        protocol: 'http',
        method: isApiMethod(method) ? method : 'unknown',
        outcome,
      });
    if (!apiKeyMatches(node.config.apiKey, key)) {
      count('unauthorized');
      return respond(res, '401 Unauthorized', {
        error: { code: Errors.unauthorized.code, message: 'invalid API key' },
      });
    }
    if (!isApiMethod(method)) {
      count('error');
      return respond(res, '404 Not Found', { error: Errors.methodNotFound });
    }
    readBody(res, API_MAX_BODY, (body) => {
      if (aborted) return;
      if (!body) {
        count('error');
        return respond(res, '413 Payload Too Large', {
          error: { code: Errors.badRequest.code, message: 'request body too large' },
        });
      }
      let params: unknown;
      try {
        const text = body.toString('utf8');
        params = text.trim() === '' ? {} : JSON.parse(text);
      } catch {
        count('error');
        return respond(res, '400 Bad Request', {
          error: { code: Errors.badRequest.code, message: 'malformed JSON' },
        });
      }
      callApi(node, method, params).then((response) => {
        count('error' in response ? 'error' : 'ok');
        if (!aborted) respond(res, '200 OK', response);
      });
    });
  });
}
