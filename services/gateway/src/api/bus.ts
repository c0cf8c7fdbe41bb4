/**
 * The server API on the bus, so that backend services call it without
 * knowing any gateway's address: one gateway answers each call. The bus
 * carries no API key; NATS permissions say who may call what:
 * - `<prefix>.api.<method>` (queue `<prefix>.api`): every method, for
 *   callers with the NATS `api` role;
 * - `<prefix>.svcapi.<ns>.<method>` (queue `<prefix>.svcapi`): what a
 *   namespace's service may do with that namespace's channels, the subject
 *   its NATS user may publish to; a channel of another namespace is refused.
 */

import { Errors, isJsonObject, namespaceOf, parseJsonBytes, type Subjects } from '@switchboard/protocol';
import type { Bus } from '@switchboard/sdk';
import type { Node } from '../node.js';
import { API_METHODS, type ApiMethod, type ApiResponse, callApi } from './methods.js';

const encoder = new TextEncoder();

/** Methods about channels only: a namespace's service may call them for its own channels. */
const SERVICE_API_METHODS = [
  'publish',
  'broadcast',
  'subscribe',
  'unsubscribe',
  'presence',
  'presence_stats',
  'history',
  'history_remove',
] as const satisfies readonly ApiMethod[];

/** A channel the call names outside `namespace`, if any (malformed params are callApi's to refuse). */
function foreignChannel(namespace: string, method: ApiMethod, params: unknown): string | undefined {
  if (!isJsonObject(params)) return undefined;
  const named = method === 'broadcast' ? params.channels : [params.channel];
  return (Array.isArray(named) ? named : []).find(
    (channel): channel is string => typeof channel === 'string' && namespaceOf(channel) !== namespace,
  );
}

export function serveApiOnBus(bus: Bus, subjects: Subjects, node: Node): () => void {
  const answer = (method: ApiMethod, namespace?: string) => async (data: Uint8Array) => {
    const parsed = parseJsonBytes(data, node.config.jsonMaxDepth);
    if (!parsed.ok) {
      node.metrics.invalidMessages.inc({ source: 'api_bus' });
      return encoder.encode(JSON.stringify({ error: { code: 107, message: parsed.reason } }));
    }
    const foreign = namespace === undefined ? undefined : foreignChannel(namespace, method, parsed.value);
    const response: ApiResponse =
      foreign === undefined
        ? await callApi(node, method, parsed.value)
        : {
            error: {
              code: Errors.permissionDenied.code,
              message: `permission denied: ${foreign} is not a channel of namespace ${JSON.stringify(namespace)}`,
            },
          };
    node.metrics.apiRequests.inc({
      protocol: 'bus',
      method,
      outcome: 'error' in response ? 'error' : 'ok',
    });
    return encoder.encode(JSON.stringify(response));
  };
  const stops = [
    ...API_METHODS.map((method) => bus.serve(subjects.api(method), subjects.apiQueue, answer(method))),
    ...[...node.config.namespaces.keys()].flatMap((namespace) =>
      SERVICE_API_METHODS.map((method) =>
        bus.serve(
          subjects.serviceApi(namespace, method),
          subjects.serviceApiQueue,
          answer(method, namespace),
        ),
      ),
    ),
  ];
  return () => {
    for (const stop of stops) stop();
  };
}
