/**
 * The server API on the bus (`<prefix>.api.<method>`, queue `<prefix>.api`),
 * so that backend services call it without knowing any gateway's address:
 * one gateway answers each call. The bus is internal; it carries no API key.
 */

import type { Subjects } from '@switchboard/protocol';
import type { Bus } from '@switchboard/sdk';
import type { Node } from '../node.js';
import { API_METHODS, callApi } from './methods.js';

const decoder = new TextDecoder();
const encoder = new TextEncoder();

export function serveApiOnBus(bus: Bus, subjects: Subjects, node: Node): () => void {
  const stops = API_METHODS.map((method) =>
    bus.serve(subjects.api(method), subjects.apiQueue, async (data) => {
      let params: unknown;
      try {
        params = JSON.parse(decoder.decode(data));
      } catch {
        return encoder.encode(JSON.stringify({ error: { code: 107, message: 'malformed JSON' } }));
      }
      const response = await callApi(node, method, params);
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
