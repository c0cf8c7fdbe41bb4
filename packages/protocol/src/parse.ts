/**
 * Turns one client frame into commands. A frame holds one or more JSON
 * commands separated by newlines; `{}` alone is a pong.
 */

import { Errors, type ProtocolError } from './codes.js';
import { tagsFilterError } from './filter.js';
import { DEFAULT_JSON_MAX_DEPTH, isJsonObject, nestedDeeperThan } from './json.js';
import { type Command, DELTA_TYPES, METHODS, type Method } from './types.js';

export type ParsedLine =
  | { ok: true; command: Command }
  /** The command had a valid id but a method this server does not know: answer 104, keep the connection. */
  | { ok: false; kind: 'unknown_method'; id: number; detail: string }
  /** A well-formed command the server refuses to take (its data nests too deep, a bad tags filter): answer the error, keep the connection. */
  | { ok: false; kind: 'refused'; id: number; error: ProtocolError }
  /** Not JSON, not an object, missing id or invalid fields: the connection is closed with 3501. */
  | { ok: false; kind: 'bad_request'; detail: string };

type Obj = Record<string, unknown>;
type Validator = (body: Obj) => string | undefined;

const isObj = isJsonObject;
const isNonNegInt = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

type FieldType = 'string' | 'bool' | 'uint' | 'object';
type Want = FieldType | `${FieldType}?`;
interface Field {
  key: string;
  type: FieldType;
  optional: boolean;
}

/**
 * A body's fields checked against a spec compiled once (a command's parse
 * is on the path of every publish: no spec object or string is made per call).
 */
function fields(spec: Record<string, Want>): Field[] {
  return Object.entries(spec).map(([key, want]) => ({
    key,
    type: want.replace('?', '') as FieldType,
    optional: want.endsWith('?'),
  }));
}

function check(body: Obj, spec: readonly Field[]): string | undefined {
  for (const { key, type, optional } of spec) {
    const v = body[key];
    if (v === undefined || v === null) {
      if (!optional) return `${key} is required`;
      continue;
    }
    if (type === 'string' && typeof v !== 'string') return `${key} must be a string`;
    if (type === 'bool' && typeof v !== 'boolean') return `${key} must be a boolean`;
    if (type === 'uint' && !isNonNegInt(v)) return `${key} must be a non-negative integer`;
    if (type === 'object' && !isObj(v)) return `${key} must be an object`;
  }
  return undefined;
}

const CHANNEL = fields({ channel: 'string' });
const channelOnly: Validator = (b) => check(b, CHANNEL);
const recoverySpec = { recover: 'bool?', offset: 'uint?', epoch: 'string?' } as const;
const RECOVERY = fields(recoverySpec);
const CONNECT = fields({
  token: 'string?',
  name: 'string?',
  version: 'string?',
  subs: 'object?',
  headers: 'object?',
});
const SUBSCRIBE = fields({
  channel: 'string',
  token: 'string?',
  ...recoverySpec,
  positioned: 'bool?',
  recoverable: 'bool?',
  join_leave: 'bool?',
  flag: 'uint?',
  delta: 'string?',
});
const HISTORY = fields({ channel: 'string', limit: 'uint?', since: 'object?', reverse: 'bool?' });
const RPC = fields({ method: 'string?' });
const REFRESH = fields({ token: 'string' });
const SUB_REFRESH = fields({ channel: 'string', token: 'string' });

const validators: Record<Method, Validator> = {
  connect: (b) => {
    const err = check(b, CONNECT);
    if (err || !isObj(b.subs)) return err;
    for (const [channel, sub] of Object.entries(b.subs)) {
      if (!isObj(sub)) return `subs.${channel} must be an object`;
      const subErr = check(sub, RECOVERY);
      if (subErr) return `subs.${channel}.${subErr}`;
    }
    return undefined;
  },
  // An unknown delta type is a bad request that closes the connection, as Centrifugo answers it.
  subscribe: (b) =>
    check(b, SUBSCRIBE) ??
    (typeof b.delta === 'string' && b.delta !== '' && !(DELTA_TYPES as readonly string[]).includes(b.delta)
      ? `unknown delta type ${b.delta.slice(0, 32)}`
      : undefined),
  unsubscribe: channelOnly,
  publish: (b) => check(b, CHANNEL) ?? ('data' in b ? undefined : 'data is required'),
  presence: channelOnly,
  presence_stats: channelOnly,
  history: (b) => {
    const err = check(b, HISTORY);
    if (err || !isObj(b.since)) return err;
    const s = b.since;
    if (!isNonNegInt(s.offset ?? 0) || typeof (s.epoch ?? '') !== 'string')
      return 'since must be {offset, epoch}';
    return undefined;
  },
  rpc: (b) => check(b, RPC),
  send: () => undefined,
  refresh: (b) => check(b, REFRESH),
  sub_refresh: (b) => check(b, SUB_REFRESH),
};

const methodSet = new Set<string>(METHODS);

/** What a frame may hold: `maxDepth` bounds the nesting of a whole command, data included. */
export interface FrameLimits {
  maxDepth: number;
}

const DEFAULT_LIMITS: FrameLimits = { maxDepth: DEFAULT_JSON_MAX_DEPTH };

export function parseLine(line: string, limits: FrameLimits = DEFAULT_LIMITS): ParsedLine {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { ok: false, kind: 'bad_request', detail: 'malformed JSON' };
  }
  if (!isObj(value)) return { ok: false, kind: 'bad_request', detail: 'command must be a JSON object' };
  // The one key besides `id` names the method (counted without building a key list).
  let method: string | undefined;
  let others = 0;
  for (const key in value) {
    if (key === 'id') continue;
    method ??= key;
    others++;
  }
  const rawId = value.id;
  if (method === undefined) {
    if (rawId !== undefined && rawId !== 0)
      return { ok: false, kind: 'bad_request', detail: 'empty command' };
    return { ok: true, command: { id: 0, method: 'pong' } };
  }
  if (others > 1) return { ok: false, kind: 'bad_request', detail: 'command must name exactly one method' };
  const id = rawId === undefined ? 0 : (rawId as number);
  if (!isNonNegInt(id))
    return { ok: false, kind: 'bad_request', detail: 'id must be a non-negative integer' };
  if (!methodSet.has(method)) {
    if (id === 0) return { ok: false, kind: 'bad_request', detail: `unknown method ${method.slice(0, 32)}` };
    return { ok: false, kind: 'unknown_method', id, detail: method.slice(0, 32) };
  }
  const m = method as Method;
  if (m !== 'send' && id === 0) return { ok: false, kind: 'bad_request', detail: `${m} requires an id` };
  const body = value[m] ?? {};
  if (!isObj(body)) return { ok: false, kind: 'bad_request', detail: `${m} must be an object` };
  const err = validators[m](body);
  if (err) return { ok: false, kind: 'bad_request', detail: `${m}: ${err}` };
  // Checked once here, so that whatever stores or re-encodes the data later can rely on the bound.
  if (nestedDeeperThan(value, limits.maxDepth)) {
    const error = { ...Errors.badRequest, message: `data nested deeper than ${limits.maxDepth}` };
    return { ok: false, kind: 'refused', id, error };
  }
  // A bad tags filter refuses the subscribe with 107, as Centrifugo does, and keeps the connection; null is none
  // (and for delta, '' too).
  if (m === 'subscribe' && body.tf === null) delete body.tf;
  if (m === 'subscribe' && (body.delta === null || body.delta === '')) delete body.delta;
  if (m === 'subscribe' && body.tf !== undefined) {
    // Delta compression needs every publication of the channel as its base: a filter would hold some back.
    if (body.delta !== undefined) {
      const error = { ...Errors.badRequest, message: 'delta and tags filter cannot be combined' };
      return { ok: false, kind: 'refused', id, error };
    }
    const reason = tagsFilterError(body.tf);
    if (reason) {
      const error = { ...Errors.badRequest, message: `invalid tags filter: ${reason}` };
      return { ok: false, kind: 'refused', id, error };
    }
  }
  return { ok: true, command: { id, method: m, body } as unknown as Command };
}

/** Splits a frame into lines and parses each; blank lines are skipped. */
export function parseFrame(frame: string, limits: FrameLimits = DEFAULT_LIMITS): ParsedLine[] {
  const out: ParsedLine[] = [];
  let start = 0;
  while (start <= frame.length) {
    let end = frame.indexOf('\n', start);
    if (end === -1) end = frame.length;
    const line = frame.slice(start, end).trim();
    if (line.length > 0) out.push(parseLine(line, limits));
    start = end + 1;
  }
  return out;
}
