/**
 * Bounded JSON: every JSON text that arrives from outside (client frames,
 * server API bodies, service replies, NATS messages) is parsed here, so that
 * everything later (JSON.stringify for history, recovery, the API, gRPC)
 * can rely on a nesting bound. JSON.parse itself is not recursive in V8, but
 * JSON.stringify and most code walking a value are: an array nested 6,000
 * deep overflows the stack when it is encoded again.
 */

/** Default nesting bound of client and API data (`SWITCHBOARD_JSON_MAX_DEPTH`). */
export const DEFAULT_JSON_MAX_DEPTH = 64;

/**
 * Levels our own envelopes add around data (a NATS publication envelope, a
 * history or service reply): messages between parts of Switchboard are
 * checked against the data bound plus this.
 */
export const ENVELOPE_DEPTH = 8;

/** The largest nesting bound that may be configured: the check recurses at most this deep. */
export const MAX_JSON_DEPTH_BOUND = 1000;

/**
 * Whether `value` nests objects and arrays deeper than `maxDepth` (a bare
 * scalar is depth 0, `[]` and `{}` are 1). It recurses no deeper than
 * `maxDepth + 1` levels whatever the value holds, so it cannot overflow the
 * stack, and it allocates nothing on the way (it runs on every command).
 */
export function nestedDeeperThan(value: unknown, maxDepth: number): boolean {
  return typeof value === 'object' && value !== null && deeper(value, maxDepth - 1);
}

/** `node` is an object or array at a level with `left` more levels allowed below it. */
function deeper(node: object, left: number): boolean {
  if (left < 0) return true;
  if (Array.isArray(node)) {
    for (const child of node)
      if (typeof child === 'object' && child !== null && deeper(child, left - 1)) return true;
    return false;
  }
  for (const key in node) {
    const child = (node as Record<string, unknown>)[key];
    if (typeof child === 'object' && child !== null && deeper(child, left - 1)) return true;
  }
  return false;
}

export type JsonParse = { ok: true; value: unknown } | { ok: false; reason: string };

/** JSON.parse that refuses malformed text and values nested deeper than `maxDepth`. */
export function parseJson(text: string, maxDepth: number): JsonParse {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'malformed JSON' };
  }
  if (nestedDeeperThan(value, maxDepth)) return { ok: false, reason: `JSON nested deeper than ${maxDepth}` };
  return { ok: true, value };
}

/** A parsed JSON value that is an object (not null, not an array), its fields still unchecked. */
export const isJsonObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bytes as text, or undefined when they are not valid UTF-8 (refused: nothing downstream gets mangled text). */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** parseJson of bytes that must be valid UTF-8 (NATS payloads, gRPC `bytes` fields, request bodies). */
export function parseJsonBytes(bytes: Uint8Array, maxDepth: number): JsonParse {
  const text = decodeUtf8(bytes);
  return text === undefined ? { ok: false, reason: 'not UTF-8' } : parseJson(text, maxDepth);
}
