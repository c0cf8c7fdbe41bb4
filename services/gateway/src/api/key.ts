/** The API key check shared by HTTP and gRPC: any of the keys in use, compared in constant time. */

import type { KeyRing } from '../keys.js';
import type { ApiRefusal } from '../metrics.js';
import type { Node } from '../node.js';

function refusal(keys: KeyRing, given: string): ApiRefusal | undefined {
  if (keys.size === 0) return 'no_key_configured';
  if (given === '') return 'missing_key';
  return keys.indexOf(given) >= 0 ? undefined : 'wrong_key';
}

/** Whether `given` is one of the API keys in use; a refusal is counted by reason. */
export function apiKeyAccepted(node: Node, protocol: 'http' | 'grpc', given: string): boolean {
  const reason = refusal(node.apiKeys, given);
  if (reason) node.metrics.apiRefused.inc({ protocol, reason });
  return reason === undefined;
}

/** The key from `X-API-Key: <key>` or `Authorization: apikey <key>`. */
export function apiKeyFrom(xApiKey: string, authorization: string): string {
  if (xApiKey) return xApiKey;
  const m = /^apikey\s+(.+)$/i.exec(authorization.trim());
  return m?.[1] ?? '';
}
