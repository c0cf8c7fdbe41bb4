/**
 * The body of `POST /emulation` (client → server commands of the HTTP-based
 * transports): `{"session": ..., "node": ..., "data": "<newline-joined commands>"}`,
 * or for a Protobuf client the EmulationRequest message (protobuf.ts) with
 * the commands as bytes.
 */

import { parseJson } from './json.js';

export interface EmulationRequest {
  /** The stream's emulation session id, from its connect reply. */
  session: string;
  /** The gateway holding the stream, from the connect reply. */
  node: string;
  /** Commands as a WebSocket frame would carry them: JSON text, or Protobuf bytes. */
  data: string | Uint8Array;
}

/** Ids and node names are short; anything longer is not ours. */
const MAX_ID_LENGTH = 256;

/** Parses and checks an emulation body (a flat object: nothing nests deeper than 2); a string is the reason it was refused. */
export function parseEmulationRequest(text: string): EmulationRequest | string {
  const parsed = parseJson(text, 2);
  if (!parsed.ok) return parsed.reason;
  const value = parsed.value;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'body must be an object';
  const { session, node, data } = value as Record<string, unknown>;
  const refusal = emulationIdsRefusal(session, node);
  if (refusal) return refusal;
  if (typeof data !== 'string') return 'data must be a string';
  return { session: session as string, node: node as string, data };
}

/** Why an emulation request's session and node cannot be ours, if they cannot. */
export function emulationIdsRefusal(session: unknown, node: unknown): string | undefined {
  if (typeof session !== 'string' || session === '' || session.length > MAX_ID_LENGTH)
    return 'session must be a non-empty string';
  if (typeof node !== 'string' || node === '' || node.length > MAX_ID_LENGTH)
    return 'node must be a non-empty string';
  return undefined;
}
