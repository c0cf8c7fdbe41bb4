/** Server API over HTTP: `POST /api/<method>` with a JSON body and the API key. */

import { decodeUtf8, Errors, parseJson } from '@switchboard/protocol';
import { readBody } from '../reply.js';
import type { Node } from '../node.js';
import type { HttpResponse, TemplatedApp } from '../uws.js';
import { apiKeyAccepted, apiKeyFrom } from './key.js';
import { type ApiResponse, callApi, isApiMethod } from './methods.js';

/** Largest API request body accepted. */
export const API_MAX_BODY = 4 * 1024 * 1024;

const INTERNAL = JSON.stringify({ error: { code: Errors.internal.code, message: Errors.internal.message } });

function respond(
  res: HttpResponse,
  status: string,
  body: ApiResponse | { error: { code: number; message: string } },
  onEncodeError: (err: unknown) => void = () => undefined,
) {
  let text: string;
  try {
    text = JSON.stringify(body);
  } catch (err) {
    onEncodeError(err);
    status = '500 Internal Server Error';
    text = INTERNAL;
  }
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', 'application/json').end(text);
  });
}

export function mountHttpApi(app: TemplatedApp, node: Node): void {
  const depth = node.config.jsonMaxDepth;
  const failed = (err: unknown) => {
    node.metrics.handlerErrors.inc({ where: 'http_api' });
    node.log.error({ err }, 'http api call failed');
  };
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
    if (!apiKeyAccepted(node, 'http', key)) {
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
      const text = decodeUtf8(body);
      const parsed =
        text === undefined
          ? { ok: false as const, reason: 'request body is not UTF-8' }
          : text.trim() === ''
            ? { ok: true as const, value: {} }
            : parseJson(text, depth);
      if (!parsed.ok) {
        count('error');
        return respond(res, '400 Bad Request', {
          error: { code: Errors.badRequest.code, message: parsed.reason },
        });
      }
      // Every call ends in an answer: a failure past callApi's own catch is a 500 with code 100.
      callApi(node, method, parsed.value)
        .then((response) => {
          count('error' in response ? 'error' : 'ok');
          if (!aborted) respond(res, '200 OK', response, failed);
        })
        .catch((err: unknown) => {
          failed(err);
          count('error');
          if (!aborted) respond(res, '500 Internal Server Error', { error: Errors.internal });
        });
    });
  });
}
