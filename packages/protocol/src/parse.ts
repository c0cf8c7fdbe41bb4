/**
 * Turns one client frame into commands. A frame holds one or more JSON
 * commands separated by newlines; `{}` alone is a pong.
 */

import { Errors, type ProtocolError } from './codes.js';
import { DEFAULT_JSON_MAX_DEPTH, isJsonObject, nestedDeeperThan } from './json.js';
import { type Command, METHODS, type Method } from './types.js';

export type ParsedLine =
  | { ok: true; command: Command }
  /** The command had a valid id but a method this server does not know: answer 104, keep the connection. */
  | { ok: false; kind: 'unknown_method'; id: number; detail: string }
  /** A well-formed command the server refuses to take (its data nests too deep): answer the error, keep the connection. */
  | { ok: false; kind: 'refused'; id: number; error: ProtocolError }
  /** Not JSON, not an object, missing id or invalid fields: the connection is closed with 3501. */
  | { ok: false; kind: 'bad_request'; detail: string };

type Obj = Record<string, unknown>;
type Validator = (body: Obj) => string | undefined;

const isObj = isJsonObject;
const isNonNegInt = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

function check(
  body: Obj,
  spec: Record<string, 'string' | 'string?' | 'bool?' | 'uint?' | 'object?' | 'any'>,
) {
  for (const [key, want] of Object.entries(spec)) {
    const v = body[key];
    const optional = want.endsWith('?');
    if (v === undefined || v === null) {
      if (!optional && want !== 'any') return `${key} is required`;
      continue;
    }
    const type = want.replace('?', '');
    if (type === 'string' && typeof v !== 'string') return `${key} must be a string`;
    if (type === 'bool' && typeof v !== 'boolean') return `${key} must be a boolean`;
    if (type === 'uint' && !isNonNegInt(v)) return `${key} must be a non-negative integer`;
    if (type === 'object' && !isObj(v)) return `${key} must be an object`;
  }
  return undefined;
}

const channelOnly: Validator = (b) => check(b, { channel: 'string' });
const recoverySpec = { recover: 'bool?', offset: 'uint?', epoch: 'string?' } as const;

const validators: Record<Method, Validator> = {
  connect: (b) => {
    const err = check(b, {
      token: 'string?',
      name: 'string?',
      version: 'string?',
      subs: 'object?',
      headers: 'object?',
    });
    if (err || !isObj(b.subs)) return err;
    for (const [channel, sub] of Object.entries(b.subs)) {
      if (!isObj(sub)) return `subs.${channel} must be an object`;
      const subErr = check(sub, recoverySpec);
      if (subErr) return `subs.${channel}.${subErr}`;
    }
    return undefined;
  },
  subscribe: (b) =>
    check(b, {
      channel: 'string',
      token: 'string?',
      ...recoverySpec,
      positioned: 'bool?',
      recoverable: 'bool?',
      join_leave: 'bool?',
      flag: 'uint?',
    }),
  unsubscribe: channelOnly,
  publish: (b) => check(b, { channel: 'string' }) ?? ('data' in b ? undefined : 'data is required'),
  presence: channelOnly,
  presence_stats: channelOnly,
  history: (b) => {
    const err = check(b, { channel: 'string', limit: 'uint?', since: 'object?', reverse: 'bool?' });
    if (err || !isObj(b.since)) return err;
    const s = b.since;
    if (!isNonNegInt(s.offset ?? 0) || typeof (s.epoch ?? '') !== 'string')
      return 'since must be {offset, epoch}';
    return undefined;
  },
  rpc: (b) => check(b, { method: 'string?' }),
  send: () => undefined,
  refresh: (b) => check(b, { token: 'string' }),
  sub_refresh: (b) => check(b, { channel: 'string', token: 'string' }),
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
  const keys = Object.keys(value).filter((k) => k !== 'id');
  const rawId = value.id;
  if (keys.length === 0) {
    if (rawId !== undefined && rawId !== 0)
      return { ok: false, kind: 'bad_request', detail: 'empty command' };
    return { ok: true, command: { id: 0, method: 'pong' } };
  }
  if (keys.length > 1)
    return { ok: false, kind: 'bad_request', detail: 'command must name exactly one method' };
  const method = keys[0]!;
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
