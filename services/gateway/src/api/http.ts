/**
 * Server API over HTTP: `POST /api/<method>` with a JSON body and the API key
 * (`X-API-Key`, `Authorization: apikey <key>` or `?api_key=`). Errors come in
 * the body with HTTP 200 (`{"error": {code, message}}`), or, with the header
 * `X-Centrifugo-Error-Mode: transport`, as an HTTP status with the bare error
 * object as the body, as Centrifugo does. A `batch` answers with Centrifugo's
 * `{"replies": [...]}`, each reply `{"<method>": result}` or `{"error": ...}`.
 */

import { decodeUtf8, Errors, type ProtocolError, parseJson } from '@switchboard/protocol';
import { readBody } from '../reply.js';
import type { Node } from '../node.js';
import type { HttpResponse, TemplatedApp } from '../uws.js';
import { apiKeyAccepted, apiKeyFrom } from './key.js';
import { type ApiMethod, type ApiResponse, callApi, isApiMethod } from './methods.js';

/** Largest API request body accepted. */
export const API_MAX_BODY = 4 * 1024 * 1024;

const INTERNAL = JSON.stringify({ error: { code: Errors.internal.code, message: Errors.internal.message } });

/**
 * The HTTP status of an API error in transport error mode: Centrifugo's table
 * (100 → 500, 102/104 → 404, 107/108 → 400, 112 → 416, 113 → 409, others 500),
 * with Switchboard's own codes mapped too, and a temporary error (a broker or a
 * service not reachable) as 503 so that a retrying client retries it.
 */
export function httpStatusOf(error: ProtocolError): string {
  switch (error.code) {
    case Errors.internal.code:
      return '500 Internal Server Error';
    case Errors.unauthorized.code:
      return '401 Unauthorized';
    case Errors.permissionDenied.code:
      return '403 Forbidden';
    case Errors.unknownChannel.code:
    case Errors.methodNotFound.code:
      return '404 Not Found';
    case Errors.tooManyRequests.code:
      return '429 Too Many Requests';
    case Errors.unrecoverablePosition.code:
      return '416 Range Not Satisfiable';
    case 113:
      return '409 Conflict';
  }
  if (error.temporary) return '503 Service Unavailable';
  if (error.code === Errors.badRequest.code || error.code === Errors.notAvailable.code)
    return '400 Bad Request';
  return '500 Internal Server Error';
}

type Body = ApiResponse | { error: ProtocolError } | { replies: unknown[] } | ProtocolError;

function respond(
  res: HttpResponse,
  status: string,
  body: Body,
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
    const key =
      apiKeyFrom(req.getHeader('x-api-key'), req.getHeader('authorization')) ||
      (req.getQuery('api_key') ?? '');
    const transportMode = req.getHeader('x-centrifugo-error-mode').trim().toLowerCase() === 'transport';
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
    /** A refusal before or instead of the call: the same status in both modes, the body in the mode's shape. */
    const refuse = (status: string, error: ProtocolError) =>
      respond(res, status, transportMode ? error : { error });
    if (!apiKeyAccepted(node, 'http', key)) {
      count('unauthorized');
      return refuse('401 Unauthorized', { code: Errors.unauthorized.code, message: 'invalid API key' });
    }
    if (!isApiMethod(method)) {
      count('error');
      return refuse('404 Not Found', Errors.methodNotFound);
    }
    readBody(res, API_MAX_BODY, (body) => {
      if (aborted) return;
      if (!body) {
        count('error');
        return refuse('413 Payload Too Large', {
          code: Errors.badRequest.code,
          message: 'request body too large',
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
        return refuse('400 Bad Request', { code: Errors.badRequest.code, message: parsed.reason });
      }
      // Every call ends in an answer: a failure past callApi's own catch is a 500 with code 100.
      callApi(node, method, parsed.value)
        .then((response) => {
          count('error' in response ? 'error' : 'ok');
          if (aborted) return;
          if ('error' in response) {
            if (transportMode) respond(res, httpStatusOf(response.error), response.error, failed);
            else respond(res, '200 OK', response, failed);
          } else respond(res, '200 OK', answer(method, response.result), failed);
        })
        .catch((err: unknown) => {
          failed(err);
          count('error');
          if (!aborted) refuse('500 Internal Server Error', Errors.internal);
        });
    });
  });
}

/** `{result}`, except a batch: Centrifugo answers it with its `{replies}` at the top level. */
function answer(method: ApiMethod, result: unknown): Body {
  return method === 'batch' ? (result as { replies: unknown[] }) : { result };
}
