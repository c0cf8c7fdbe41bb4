/**
 * The server API on the bus (`<prefix>.api.<method>`, queue `<prefix>.api`),
 * so that backend services call it without knowing any gateway's address:
 * one gateway answers each call. The bus is internal; it carries no API key.
 */

import { parseJsonBytes, type Subjects } from '@switchboard/protocol';
import type { Bus } from '@switchboard/sdk';
import type { Node } from '../node.js';
import { API_METHODS, callApi } from './methods.js';

const encoder = new TextEncoder();

export function serveApiOnBus(bus: Bus, subjects: Subjects, node: Node): () => void {
  const stops = API_METHODS.map((method) =>
    bus.serve(subjects.api(method), subjects.apiQueue, async (data) => {
      const parsed = parseJsonBytes(data, node.config.jsonMaxDepth);
      if (!parsed.ok) {
        node.metrics.invalidMessages.inc({ source: 'api_bus' });
        return encoder.encode(JSON.stringify({ error: { code: 107, message: parsed.reason } }));
      }
      const response = await callApi(node, method, parsed.value);
      node.metrics.apiRequests.inc({
        protocol: 'bus',
        method,
        outcome: 'error' in response ? 'error' : 'ok',
      });
      return encoder.encode(JSON.stringify(response));
    }),
  );
  return () => {
    for (const stop of stops) stop();
  };
}
