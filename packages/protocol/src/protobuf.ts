/**
 * Centrifugo's client protocol v2 in Protobuf (proto/client.proto), as
 * centrifuge-js speaks it over a binary WebSocket: a frame holds one or more
 * messages, each preceded by its length as a varint; Commands from the
 * client, Replies (pushes included, as a Reply with `push`) from the server.
 *
 * A hand-written codec of just that schema, no I/O. Commands decode to the
 * same `ParsedLine`s as parseFrame gives for JSON, so that a session treats
 * both alike; the one difference is `data` (and `conn_info`/`chan_info`):
 * any JSON value there, opaque bytes (a Uint8Array) here, in both
 * directions. Proto3 has no absent scalars: a field at its default (0, false,
 * "", no bytes) is left out of a body as an absent JSON key would be, except
 * the fields JSON requires (a `channel` or `token` is then "", the `data` of
 * publish and send empty bytes) and `since`, whose offset and epoch are both
 * always given.
 *
 * Hostile input never throws out of decodeCommands nor allocates beyond the
 * frame: a truncated varint, a length past its end, a wrong wire type, a group,
 * a value out of range or a string that is not UTF-8 is a `bad_request`; a
 * command larger than `maxCommandSize` or past `maxCommands` ends the frame
 * with one; messages nested deeper than `maxDepth` (tags filters) are skipped
 * unread and the command `refused`, as JSON nested too deep is. Unknown fields
 * are skipped, as JSON's unknown keys are ignored; a command with no method
 * field but an unknown one is an unknown method.
 */

import { Errors, type ProtocolError } from './codes.js';
import { type EmulationRequest, emulationIdsRefusal } from './emulation.js';
import { tagsFilterError } from './filter.js';
import { DEFAULT_JSON_MAX_DEPTH, decodeUtf8, parseJsonBytes } from './json.js';
import type { FrameLimits, ParsedLine } from './parse.js';
import {
  type ClientInfo,
  type Command,
  type CommandBodies,
  type ConnectRequest,
  type ConnectResult,
  DELTA_TYPES,
  type FilterNode,
  type HistoryRequest,
  type Method,
  type Publication,
  type Push,
  type Reply,
  type SubscribeRecovery,
  type SubscribeRequest,
  type SubscribeResult,
} from './types.js';

/** What a Protobuf frame may hold, besides the message nesting bound (`maxDepth`, a Command being 1). */
export interface ProtobufFrameLimits extends FrameLimits {
  /** The largest command in bytes, its length prefix excluded: a larger one is refused unread. */
  maxCommandSize: number;
  /** The most commands one frame may carry. */
  maxCommands: number;
}

export const DEFAULT_PROTOBUF_LIMITS: ProtobufFrameLimits = {
  maxDepth: DEFAULT_JSON_MAX_DEPTH,
  maxCommandSize: 65_536,
  maxCommands: 128,
};

// ---- decoding

class DecodeError extends Error {}

function fail(detail: string): never {
  throw new DecodeError(detail);
}

const VARINT = 0;
const FIXED64 = 1;
const LEN = 2;
const FIXED32 = 5;

const key = (field: number, wire: number): number => (field << 3) | wire;

const EMPTY = new Uint8Array(0);

/** A cursor over one message of a frame: `end` is the end of the message being read. */
class Reader {
  pos = 0;
  end = 0;
  /** Nesting of the message at `pos`, a Command being 1. */
  depth = 1;
  /** A message nested deeper than the bound was skipped. */
  tooDeep = false;

  constructor(
    readonly buf: Uint8Array,
    readonly maxDepth: number,
  ) {}

  /** A varint as a number: exact below 2^53, Infinity from there (negative int64s included). */
  varint(): number {
    const { buf, end } = this;
    if (this.pos >= end) fail('truncated varint');
    let b = buf[this.pos++]!;
    if (b < 0x80) return b;
    let value = b & 0x7f;
    let scale = 0x80;
    for (let i = 1; i < 10; i++) {
      if (this.pos >= end) fail('truncated varint');
      b = buf[this.pos++]!;
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value > Number.MAX_SAFE_INTEGER ? Infinity : value;
      scale *= 0x80;
    }
    return fail('varint longer than 10 bytes');
  }

  /** A field's key: its number and wire type. */
  key(): number {
    const k = this.varint();
    if (k > 0xffffffff || k < 8) fail('invalid field key');
    return k;
  }

  length(): number {
    const n = this.varint();
    if (n > this.end - this.pos) fail('length past the end of the message');
    return n;
  }

  string(name: string): string {
    const n = this.length();
    const { buf } = this;
    const start = this.pos;
    const end = (this.pos += n);
    if (n > 32) return decodeUtf8(buf.subarray(start, end)) ?? fail(`${name} is not UTF-8`);
    // Short names are ASCII as a rule: no decoder call for them.
    let s = '';
    for (let i = start; i < end; i++) {
      const c = buf[i]!;
      if (c >= 0x80) {
        const text = decodeUtf8(buf.subarray(start, end));
        return text ?? fail(`${name} is not UTF-8`);
      }
      s += String.fromCharCode(c);
    }
    return s;
  }

  /**
   * A copy, so that a stored payload holds on to its own bytes only, not the
   * whole frame; a plain Uint8Array even from a Buffer (whose slice is a view).
   */
  bytes(): Uint8Array {
    const n = this.length();
    const out = new Uint8Array(n);
    out.set(this.buf.subarray(this.pos, (this.pos += n)));
    return out;
  }

  bool(): boolean {
    return this.varint() !== 0;
  }

  uint32(name: string): number {
    const v = this.varint();
    return v > 0xffffffff ? fail(`${name} out of range`) : v;
  }

  /** A uint64, or an int64 or int32 that must not be negative, below `max`. */
  nonNegative(name: string, max: number = Number.MAX_SAFE_INTEGER): number {
    const v = this.varint();
    return v > max ? fail(`${name} must be a non-negative integer`) : v;
  }

  skip(wire: number): void {
    switch (wire) {
      case VARINT:
        this.varint();
        return;
      case FIXED64:
        return this.advance(8);
      case LEN:
        return this.advance(this.length());
      case FIXED32:
        return this.advance(4);
      default:
        fail(`unsupported wire type ${wire}`);
    }
  }

  private advance(n: number): void {
    if (n > this.end - this.pos) fail('length past the end of the message');
    this.pos += n;
  }

  /** A field the caller does not read: skipped, unless `known` gives its number another wire type. */
  other(k: number, known: Schema): void {
    const field = known[k >>> 3];
    if (field !== undefined && field[1] !== (k & 7)) fail(`${field[0]} has wire type ${k & 7}`);
    this.skip(k & 7);
  }

  /** A nested message read by `read` within its bounds, or undefined if it nests too deep (then skipped). */
  nested<T>(read: (r: Reader) => T): T | undefined {
    const n = this.length();
    const outer = this.end;
    const end = this.pos + n;
    if (this.depth >= this.maxDepth) {
      this.tooDeep = true;
      this.pos = end;
      return undefined;
    }
    this.end = end;
    this.depth++;
    const value = read(this);
    this.depth--;
    this.end = outer;
    return value;
  }
}

/** A message's fields by number: name and wire type, for the check of `Reader.other`. */
type Schema = readonly (readonly [string, number] | undefined)[];

function schema(byNumber: Record<number, readonly [string, number]>): Schema {
  const out: (readonly [string, number] | undefined)[] = [];
  for (const [n, field] of Object.entries(byNumber)) out[Number(n)] = field;
  return out;
}

/** A key of a decoded map: `__proto__` too becomes an own property, as JSON.parse makes it. */
function put<V>(map: Record<string, V>, k: string, v: V): void {
  if (k === '__proto__')
    Object.defineProperty(map, k, { value: v, enumerable: true, writable: true, configurable: true });
  else map[k] = v;
}

/** A map entry (key 1, value 2) whose value `readValue` reads. */
function mapEntry<V>(
  r: Reader,
  name: string,
  readValue: (r: Reader, k: number) => V | undefined,
): [string, V | undefined] {
  let k = '';
  let v: V | undefined;
  while (r.pos < r.end) {
    const fk = r.key();
    if (fk === key(1, LEN)) k = r.string(`${name} key`);
    else if (fk >>> 3 === 2) v = readValue(r, fk);
    else r.other(fk, MAP_KEY);
  }
  return [k, v];
}

function stringValue(name: string): (r: Reader, k: number) => string {
  return (r, k) => (k === key(2, LEN) ? r.string(name) : fail(`${name} has wire type ${k & 7}`));
}

const HEADER_VALUE = stringValue('headers value');
const MAP_KEY = schema({ 1: ['map key', LEN] });

const CONNECT_FIELDS = schema({
  1: ['token', LEN],
  2: ['data', LEN],
  3: ['subs', LEN],
  4: ['name', LEN],
  5: ['version', LEN],
  6: ['headers', LEN],
  7: ['flag', VARINT],
});

function readConnect(r: Reader): ConnectRequest {
  const body: ConnectRequest = {};
  while (r.pos < r.end) {
    const k = r.key();
    switch (k) {
      case key(1, LEN):
        opt(body, 'token', r.string('token'));
        break;
      case key(2, LEN):
        opt(body, 'data', r.bytes());
        break;
      case key(3, LEN): {
        const entry = r.nested((e) => mapEntry(e, 'subs', readRecoveryValue));
        if (entry !== undefined) put((body.subs ??= {}), entry[0], entry[1] ?? {});
        break;
      }
      case key(4, LEN):
        opt(body, 'name', r.string('name'));
        break;
      case key(5, LEN):
        opt(body, 'version', r.string('version'));
        break;
      case key(6, LEN): {
        const entry = r.nested((e) => mapEntry(e, 'headers', HEADER_VALUE));
        if (entry !== undefined) put((body.headers ??= {}), entry[0], entry[1] ?? '');
        break;
      }
      default:
        r.other(k, CONNECT_FIELDS);
    }
  }
  return body;
}

function readRecoveryValue(r: Reader, k: number): SubscribeRecovery | undefined {
  if (k !== key(2, LEN)) fail(`subs value has wire type ${k & 7}`);
  return r.nested(readRecovery);
}

/** A SubscribeRequest of `connect.subs`: only its recovery fields are read, as JSON's are. */
function readRecovery(r: Reader): SubscribeRecovery {
  const sub: SubscribeRecovery = {};
  while (r.pos < r.end) {
    const k = r.key();
    if (k === key(3, VARINT)) opt(sub, 'recover', r.bool());
    else if (k === key(6, LEN)) opt(sub, 'epoch', r.string('epoch'));
    else if (k === key(7, VARINT)) opt(sub, 'offset', r.nonNegative('offset'));
    else r.other(k, SUBSCRIBE_FIELDS);
  }
  return sub;
}

/** Besides recovery and the fields JSON knows, `type`, `phase`, `cursor`, `limit` and `asc` of map and shared poll subscriptions (ignored, as JSON ignores them). */
const SUBSCRIBE_FIELDS = schema({
  1: ['channel', LEN],
  2: ['token', LEN],
  3: ['recover', VARINT],
  6: ['epoch', LEN],
  7: ['offset', VARINT],
  8: ['data', LEN],
  9: ['positioned', VARINT],
  10: ['recoverable', VARINT],
  11: ['join_leave', VARINT],
  12: ['delta', LEN],
  13: ['tf', LEN],
  14: ['flag', VARINT],
  15: ['type', VARINT],
  16: ['phase', VARINT],
  17: ['cursor', LEN],
  18: ['limit', VARINT],
  19: ['asc', VARINT],
});

function readSubscribe(r: Reader): SubscribeRequest {
  const body: SubscribeRequest = { channel: '' };
  while (r.pos < r.end) {
    const k = r.key();
    switch (k) {
      case key(1, LEN):
        body.channel = r.string('channel');
        break;
      case key(2, LEN):
        opt(body, 'token', r.string('token'));
        break;
      case key(3, VARINT):
        opt(body, 'recover', r.bool());
        break;
      case key(6, LEN):
        opt(body, 'epoch', r.string('epoch'));
        break;
      case key(7, VARINT):
        opt(body, 'offset', r.nonNegative('offset'));
        break;
      case key(8, LEN):
        opt(body, 'data', r.bytes());
        break;
      case key(9, VARINT):
        opt(body, 'positioned', r.bool());
        break;
      case key(10, VARINT):
        opt(body, 'recoverable', r.bool());
        break;
      case key(11, VARINT):
        opt(body, 'join_leave', r.bool());
        break;
      case key(12, LEN):
        // Checked with the command.
        opt(body, 'delta', r.string('delta') as SubscribeRequest['delta']);
        break;
      case key(13, LEN): {
        const tf = r.nested(readFilterNode);
        if (tf !== undefined) body.tf = tf;
        break;
      }
      case key(14, VARINT):
        opt(body, 'flag', r.nonNegative('flag'));
        break;
      default:
        r.other(k, SUBSCRIBE_FIELDS);
    }
  }
  return body;
}

/** Sets a field unless it has its default: proto3 cannot tell that from absent, which JSON leaves out. */
function opt<T, K extends keyof T>(body: T, k: K, v: T[K]): void {
  if (v === '' || v === 0 || v === false || (v instanceof Uint8Array && v.length === 0)) return;
  body[k] = v;
}

const FILTER_FIELDS = schema({
  1: ['op', LEN],
  2: ['key', LEN],
  3: ['cmp', LEN],
  4: ['val', LEN],
  5: ['vals', LEN],
  6: ['nodes', LEN],
});

function readFilterNode(r: Reader): FilterNode {
  const node: Record<string, unknown> = {};
  while (r.pos < r.end) {
    const k = r.key();
    switch (k) {
      case key(1, LEN):
        opt(node, 'op', r.string('tf.op'));
        break;
      case key(2, LEN):
        opt(node, 'key', r.string('tf.key'));
        break;
      case key(3, LEN):
        opt(node, 'cmp', r.string('tf.cmp'));
        break;
      case key(4, LEN):
        opt(node, 'val', r.string('tf.val'));
        break;
      case key(5, LEN):
        ((node.vals ??= []) as string[]).push(r.string('tf.vals'));
        break;
      case key(6, LEN): {
        const child = r.nested(readFilterNode);
        if (child !== undefined) ((node.nodes ??= []) as FilterNode[]).push(child);
        break;
      }
      default:
        r.other(k, FILTER_FIELDS);
    }
  }
  // tagsFilterError checks the values (an unknown op or cmp is refused there).
  return node as FilterNode;
}

const CHANNEL_FIELDS = schema({ 1: ['channel', LEN] });

function readChannel(r: Reader): { channel: string } {
  let channel = '';
  while (r.pos < r.end) {
    const k = r.key();
    if (k === key(1, LEN)) channel = r.string('channel');
    else r.other(k, CHANNEL_FIELDS);
  }
  return { channel };
}

/** `type`, `key` and `removed` are map publications' (ignored, as JSON ignores them). */
const PUBLISH_FIELDS = schema({
  1: ['channel', LEN],
  2: ['data', LEN],
  3: ['type', VARINT],
  4: ['key', LEN],
  5: ['removed', VARINT],
});

function readPublish(r: Reader): CommandBodies['publish'] {
  const body = { channel: '', data: EMPTY as Uint8Array };
  while (r.pos < r.end) {
    const k = r.key();
    switch (k) {
      case key(1, LEN):
        body.channel = r.string('channel');
        break;
      case key(2, LEN):
        body.data = r.bytes();
        break;
      default:
        r.other(k, PUBLISH_FIELDS);
    }
  }
  return body;
}

const HISTORY_FIELDS = schema({
  1: ['channel', LEN],
  7: ['limit', VARINT],
  8: ['since', LEN],
  9: ['reverse', VARINT],
});
const POSITION_FIELDS = schema({ 1: ['offset', VARINT], 2: ['epoch', LEN] });

function readHistory(r: Reader): HistoryRequest {
  const body: HistoryRequest = { channel: '' };
  while (r.pos < r.end) {
    const k = r.key();
    switch (k) {
      case key(1, LEN):
        body.channel = r.string('channel');
        break;
      case key(7, VARINT):
        opt(body, 'limit', r.nonNegative('limit', 0x7fffffff));
        break;
      case key(8, LEN): {
        const since = r.nested(readPosition);
        if (since !== undefined) body.since = since;
        break;
      }
      case key(9, VARINT):
        opt(body, 'reverse', r.bool());
        break;
      default:
        r.other(k, HISTORY_FIELDS);
    }
  }
  return body;
}

function readPosition(r: Reader): { offset: number; epoch: string } {
  const since = { offset: 0, epoch: '' };
  while (r.pos < r.end) {
    const k = r.key();
    if (k === key(1, VARINT)) since.offset = r.nonNegative('since.offset');
    else if (k === key(2, LEN)) since.epoch = r.string('since.epoch');
    else r.other(k, POSITION_FIELDS);
  }
  return since;
}

const RPC_FIELDS = schema({ 1: ['data', LEN], 2: ['method', LEN] });

function readRpc(r: Reader): CommandBodies['rpc'] {
  const body: CommandBodies['rpc'] = {};
  while (r.pos < r.end) {
    const k = r.key();
    if (k === key(1, LEN)) opt(body, 'data', r.bytes());
    else if (k === key(2, LEN)) opt(body, 'method', r.string('method'));
    else r.other(k, RPC_FIELDS);
  }
  return body;
}

const DATA_FIELDS = schema({ 1: ['data', LEN] });

function readSend(r: Reader): CommandBodies['send'] {
  let data: Uint8Array = EMPTY;
  while (r.pos < r.end) {
    const k = r.key();
    if (k === key(1, LEN)) data = r.bytes();
    else r.other(k, DATA_FIELDS);
  }
  return { data };
}

const TOKEN_FIELDS = schema({ 1: ['token', LEN] });

function readRefresh(r: Reader): CommandBodies['refresh'] {
  let token = '';
  while (r.pos < r.end) {
    const k = r.key();
    if (k === key(1, LEN)) token = r.string('token');
    else r.other(k, TOKEN_FIELDS);
  }
  return { token };
}

/** `type`, `track` and `untrack` are shared poll key tracking (ignored, as JSON ignores them). */
const SUB_REFRESH_FIELDS = schema({
  1: ['channel', LEN],
  2: ['token', LEN],
  3: ['type', VARINT],
  4: ['track', LEN],
  5: ['untrack', LEN],
});

function readSubRefresh(r: Reader): CommandBodies['sub_refresh'] {
  const body = { channel: '', token: '' };
  while (r.pos < r.end) {
    const k = r.key();
    if (k === key(1, LEN)) body.channel = r.string('channel');
    else if (k === key(2, LEN)) opt(body, 'token', r.string('token'));
    else r.other(k, SUB_REFRESH_FIELDS);
  }
  return body;
}

const BODY_READERS: { [M in Method]: (r: Reader) => CommandBodies[M] } = {
  connect: readConnect,
  subscribe: readSubscribe,
  unsubscribe: readChannel,
  publish: readPublish,
  presence: readChannel,
  presence_stats: readChannel,
  history: readHistory,
  rpc: readRpc,
  send: readSend,
  refresh: readRefresh,
  sub_refresh: readSubRefresh,
};

/** Command fields by number: the methods, and `ping`, which no Centrifugo client sends and is unknown here as in JSON. */
const COMMAND_FIELDS: readonly (Method | 'ping' | undefined)[] = [
  // 1 is the id, 2 and 3 are reserved.
  undefined,
  undefined,
  undefined,
  undefined,
  'connect',
  'subscribe',
  'unsubscribe',
  'publish',
  'presence',
  'presence_stats',
  'history',
  'ping',
  'send',
  'rpc',
  'refresh',
  'sub_refresh',
];

const bad = (detail: string): ParsedLine => ({ ok: false, kind: 'bad_request', detail });

function refused(id: number, message: string): ParsedLine {
  const error: ProtocolError = { ...Errors.badRequest, message };
  return { ok: false, kind: 'refused', id, error };
}

/** One Command, from `r.pos` to `r.end`. */
function readCommand(r: Reader): ParsedLine {
  let id = 0;
  let method: Method | 'ping' | undefined;
  let body: unknown;
  let methods = 0;
  let unknownField = 0;
  while (r.pos < r.end) {
    const k = r.key();
    const field = k >>> 3;
    if (k === key(1, VARINT)) {
      id = r.nonNegative('id', 0xffffffff);
      continue;
    }
    if (field === 1) return bad(`id has wire type ${k & 7}`);
    const m = COMMAND_FIELDS[field];
    if (m === undefined) {
      r.skip(k & 7);
      unknownField ||= field;
      continue;
    }
    if ((k & 7) !== LEN) return bad(`${m} has wire type ${k & 7}`);
    methods++;
    method = m;
    if (method === 'ping') {
      r.skip(LEN);
      continue;
    }
    const read = BODY_READERS[method] as (r: Reader) => unknown;
    try {
      body = r.nested(read) ?? {};
    } catch (e) {
      if (e instanceof DecodeError) return bad(`${method}: ${e.message}`);
      throw e;
    }
  }
  if (method === undefined) {
    if (unknownField !== 0) {
      const detail = `field ${unknownField}`;
      return id === 0 ? bad(`unknown method ${detail}`) : { ok: false, kind: 'unknown_method', id, detail };
    }
    return id !== 0 ? bad('empty command') : { ok: true, command: { id: 0, method: 'pong' } };
  }
  if (methods > 1) return bad('command must name exactly one method');
  if (method === 'ping')
    return id === 0 ? bad('unknown method ping') : { ok: false, kind: 'unknown_method', id, detail: 'ping' };
  if (method !== 'send' && id === 0) return bad(`${method} requires an id`);
  if (method === 'subscribe') {
    const sub = body as SubscribeRequest;
    if (sub.delta !== undefined && !(DELTA_TYPES as readonly string[]).includes(sub.delta))
      return bad(`subscribe: unknown delta type ${sub.delta.slice(0, 32)}`);
  }
  if (r.tooDeep) return refused(id, `command nested deeper than ${r.maxDepth}`);
  if (method === 'subscribe') {
    const sub = body as SubscribeRequest;
    if (sub.tf !== undefined) {
      if (sub.delta !== undefined) return refused(id, 'delta and tags filter cannot be combined');
      const reason = tagsFilterError(sub.tf);
      if (reason) return refused(id, `invalid tags filter: ${reason}`);
    }
  }
  return { ok: true, command: { id, method, body } as Command };
}

/**
 * A client frame (varint-delimited Commands) as parsed commands, in order. An
 * empty frame holds none; a zero-length Command is a pong.
 */
export function decodeCommands(
  frame: Uint8Array,
  limits: ProtobufFrameLimits = DEFAULT_PROTOBUF_LIMITS,
): ParsedLine[] {
  const out: ParsedLine[] = [];
  const r = new Reader(frame, limits.maxDepth);
  while (r.pos < frame.length) {
    if (out.length === limits.maxCommands) {
      out.push(bad(`more than ${limits.maxCommands} commands in a frame`));
      break;
    }
    r.end = frame.length;
    let length: number;
    try {
      length = r.varint();
    } catch (e) {
      if (e instanceof DecodeError) out.push(bad(`command length: ${e.message}`));
      else throw e;
      break;
    }
    if (length > limits.maxCommandSize) {
      out.push(bad(`command of ${length} bytes exceeds ${limits.maxCommandSize}`));
      break;
    }
    if (length > frame.length - r.pos) {
      out.push(bad('command length past the end of the frame'));
      break;
    }
    const end = r.pos + length;
    r.end = end;
    r.depth = 1;
    r.tooDeep = false;
    try {
      out.push(readCommand(r));
    } catch (e) {
      if (e instanceof DecodeError) out.push(bad(e.message));
      else throw e;
    }
    r.pos = end;
  }
  return out;
}

// ---- encoding

const utf8 = new TextEncoder();

const varintSize = (v: number): number => {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
};

/** Writes `v` (a non-negative integer below 2^53) at `at`, room given; gives the position after it. */
function writeVarint(buf: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    buf[at++] = (v & 0x7f) | 0x80;
    v = v >= 0x80000000 ? Math.floor(v / 0x80) : v >>> 7;
  }
  buf[at++] = v;
  return at;
}

/** A growing buffer; a nested message's length is written in front of it once it is known. */
class Writer {
  buf = new Uint8Array(1024);
  pos = 0;

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(this.buf.length * 2, this.pos + n));
    grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
  }

  /** A non-negative integer below 2^53. */
  varint(v: number): void {
    this.ensure(10);
    this.pos = writeVarint(this.buf, this.pos, v);
  }

  /** Reserves one byte for a length and gives where the content starts. */
  open(field: number): number {
    this.varint(key(field, LEN));
    this.ensure(1);
    return ++this.pos;
  }

  /** Writes the length of the content from `start`, moving it on if the length takes more than a byte. */
  close(start: number): void {
    const length = this.pos - start;
    if (length < 0x80) {
      this.buf[start - 1] = length;
      return;
    }
    const extra = varintSize(length) - 1;
    this.ensure(extra);
    this.buf.copyWithin(start + extra, start, this.pos);
    writeVarint(this.buf, start - 1, length);
    this.pos += extra;
  }

  uint(field: number, v: number | undefined): void {
    if (v === undefined || !(v > 0)) return;
    this.varint(key(field, VARINT));
    this.varint(v);
  }

  bool(field: number, v: boolean | undefined): void {
    if (v !== true) return;
    this.varint(key(field, VARINT));
    this.varint(1);
  }

  string(field: number, s: string | undefined): void {
    if (s === undefined || s === '') return;
    const start = this.open(field);
    this.ensure(s.length * 3);
    const { buf } = this;
    let p = this.pos;
    let i = 0;
    for (; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c >= 0x80) break;
      buf[p++] = c;
    }
    if (i < s.length) p += utf8.encodeInto(s.slice(i), buf.subarray(p)).written;
    this.pos = p;
    this.close(start);
  }

  /** A payload: bytes as they are; any other value (the JSON protocol's) as its JSON text. */
  bytes(field: number, b: unknown): void {
    if (b === undefined) return;
    if (!(b instanceof Uint8Array)) {
      const text = JSON.stringify(b);
      if (text === undefined) throw new TypeError(`field ${field}: data is not JSON`);
      this.string(field, text);
      return;
    }
    if (b.length === 0) return;
    this.varint(key(field, LEN));
    this.varint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  stringMap(field: number, map: Record<string, string> | undefined): void {
    if (map === undefined) return;
    for (const k in map) {
      const start = this.open(field);
      this.string(1, k);
      this.string(2, map[k]);
      this.close(start);
    }
  }
}

function writeError(w: Writer, field: number, e: ProtocolError): void {
  const start = w.open(field);
  w.uint(1, e.code);
  w.string(2, e.message);
  w.bool(3, e.temporary);
  w.close(start);
}

function writeClientInfo(w: Writer, field: number, info: ClientInfo | undefined): void {
  if (info === undefined) return;
  const start = w.open(field);
  w.string(1, info.user);
  w.string(2, info.client);
  w.bytes(3, info.conn_info);
  w.bytes(4, info.chan_info);
  w.close(start);
}

function writePublication(w: Writer, field: number, pub: Publication): void {
  const start = w.open(field);
  w.bytes(4, pub.data);
  writeClientInfo(w, 5, pub.info);
  w.uint(6, pub.offset);
  w.stringMap(7, pub.tags);
  w.bool(8, pub.delta);
  w.string(14, pub.epoch);
  w.close(start);
}

function writePublications(w: Writer, field: number, pubs: readonly Publication[] | undefined): void {
  if (pubs !== undefined) for (const pub of pubs) writePublication(w, field, pub);
}

function writeSubscribeResult(w: Writer, field: number, res: SubscribeResult): void {
  const start = w.open(field);
  w.bool(1, res.expires);
  w.uint(2, res.ttl);
  w.bool(3, res.recoverable);
  w.string(6, res.epoch);
  writePublications(w, 7, res.publications);
  w.bool(8, res.recovered);
  w.uint(9, res.offset);
  w.bool(10, res.positioned);
  w.bytes(11, res.data);
  w.bool(12, res.was_recovering);
  w.bool(13, res.delta);
  w.close(start);
}

function writeSubs(w: Writer, field: number, subs: Record<string, SubscribeResult> | undefined): void {
  if (subs === undefined) return;
  for (const channel in subs) {
    const start = w.open(field);
    w.string(1, channel);
    writeSubscribeResult(w, 2, subs[channel]!);
    w.close(start);
  }
}

/** ConnectResult, or with `push` the Connect push of unidirectional transports (the same fields, other numbers). */
function writeConnect(w: Writer, field: number, res: ConnectResult, push: boolean): void {
  const start = w.open(field);
  w.string(1, res.client);
  w.string(2, res.version);
  w.bool(push ? 5 : 3, res.expires);
  w.uint(push ? 6 : 4, res.ttl);
  w.bytes(push ? 3 : 5, res.data);
  writeSubs(w, push ? 4 : 6, res.subs);
  w.uint(7, res.ping);
  w.bool(8, res.pong);
  w.string(9, res.session);
  w.string(10, res.node);
  w.close(start);
}

/** A Push as the gateway builds it, or the connect push of unidirectional transports. */
export type ProtobufPush = Push | { connect: ConnectResult };

/** A Reply whose `data` fields are bytes; `push` may also be the connect push. */
export type ProtobufReply = Omit<Reply, 'push'> & { push?: ProtobufPush };

/** Every push kind's field, for writePush to look each up without narrowing the union. */
type PushFields = Partial<
  { channel: string; connect: ConnectResult } & Extract<Push, { pub: unknown }> &
    Extract<Push, { join: unknown }> &
    Extract<Push, { leave: unknown }> &
    Extract<Push, { unsubscribe: unknown }> &
    Extract<Push, { subscribe: unknown }> &
    Extract<Push, { message: unknown }> &
    Extract<Push, { disconnect: unknown }>
>;

function writePush(w: Writer, field: number, p: PushFields): void {
  const start = w.open(field);
  w.string(2, p.channel);
  if (p.pub !== undefined) writePublication(w, 4, p.pub);
  if (p.join !== undefined) {
    const s = w.open(5);
    writeClientInfo(w, 1, p.join.info);
    w.close(s);
  }
  if (p.leave !== undefined) {
    const s = w.open(6);
    writeClientInfo(w, 1, p.leave.info);
    w.close(s);
  }
  if (p.unsubscribe !== undefined) {
    const s = w.open(7);
    w.uint(2, p.unsubscribe.code);
    w.string(3, p.unsubscribe.reason);
    w.close(s);
  }
  if (p.message !== undefined) {
    const s = w.open(8);
    w.bytes(1, p.message.data);
    w.close(s);
  }
  if (p.subscribe !== undefined) {
    const s = w.open(9);
    w.bool(1, p.subscribe.recoverable);
    w.string(4, p.subscribe.epoch);
    w.uint(5, p.subscribe.offset);
    w.bool(6, p.subscribe.positioned);
    w.bytes(7, p.subscribe.data);
    w.close(s);
  }
  if (p.connect !== undefined) writeConnect(w, 10, p.connect, true);
  if (p.disconnect !== undefined) {
    const s = w.open(11);
    w.uint(1, p.disconnect.code);
    w.string(2, p.disconnect.reason);
    w.bool(3, p.disconnect.reconnect);
    w.close(s);
  }
  w.close(start);
}

function writeEmpty(w: Writer, field: number, present: object | undefined): void {
  if (present !== undefined) w.close(w.open(field));
}

/** One Reply, its varint length in front. Every result given is written, even empty (the client needs it). */
function writeReply(w: Writer, reply: ProtobufReply): void {
  w.ensure(1);
  const start = ++w.pos;
  w.uint(1, reply.id);
  if (reply.error !== undefined) writeError(w, 2, reply.error);
  if (reply.push !== undefined) writePush(w, 4, reply.push as PushFields);
  if (reply.connect !== undefined) writeConnect(w, 5, reply.connect, false);
  if (reply.subscribe !== undefined) writeSubscribeResult(w, 6, reply.subscribe);
  writeEmpty(w, 7, reply.unsubscribe);
  writeEmpty(w, 8, reply.publish);
  if (reply.presence !== undefined) {
    const s = w.open(9);
    const { presence } = reply.presence;
    for (const client in presence) {
      const e = w.open(1);
      w.string(1, client);
      writeClientInfo(w, 2, presence[client]);
      w.close(e);
    }
    w.close(s);
  }
  if (reply.presence_stats !== undefined) {
    const s = w.open(10);
    w.uint(1, reply.presence_stats.num_clients);
    w.uint(2, reply.presence_stats.num_users);
    w.close(s);
  }
  if (reply.history !== undefined) {
    const s = w.open(11);
    writePublications(w, 1, reply.history.publications);
    w.string(2, reply.history.epoch);
    w.uint(3, reply.history.offset);
    w.close(s);
  }
  if (reply.rpc !== undefined) {
    const s = w.open(13);
    w.bytes(1, reply.rpc.data);
    w.close(s);
  }
  if (reply.refresh !== undefined) {
    const s = w.open(14);
    w.string(1, reply.refresh.client);
    w.string(2, reply.refresh.version);
    w.bool(3, reply.refresh.expires);
    w.uint(4, reply.refresh.ttl);
    w.close(s);
  }
  if (reply.sub_refresh !== undefined) {
    const s = w.open(15);
    w.bool(1, reply.sub_refresh.expires);
    w.uint(2, reply.sub_refresh.ttl);
    w.close(s);
  }
  w.close(start);
}

/** One writer for every call (encoding is synchronous); a buffer grown past this is let go after use. */
const KEEP_BYTES = 65_536;
let shared = new Writer();

/**
 * Replies and pushes as one server frame (a Buffer): each varint-delimited.
 * `data`, `conn_info` and `chan_info` go as they are when Uint8Arrays, and
 * as their JSON text otherwise (so a reply built for the JSON protocol
 * encodes as it is; a value JSON cannot hold is a TypeError); `{}` is a ping.
 */
export function encodeReplies(replies: readonly ProtobufReply[]): Uint8Array {
  const w = shared;
  w.pos = 0;
  try {
    for (const reply of replies) writeReply(w, reply);
    // From Node's pool: a frame is sent and dropped, and a small Uint8Array of its own costs more than the encoding.
    const frame = Buffer.allocUnsafe(w.pos);
    frame.set(w.buf.subarray(0, w.pos));
    return frame;
  } finally {
    if (w.buf.length > KEEP_BYTES) shared = new Writer();
  }
}

export function encodeReply(reply: ProtobufReply): Uint8Array {
  return encodeReplies([reply]);
}

/** Commands whose `data` a Protobuf client sends as bytes, and whether the command needs some. */
const DATA_REQUIRED: Partial<Record<Method, boolean>> = {
  connect: false,
  subscribe: false,
  rpc: false,
  publish: true,
  send: true,
};

/**
 * A decoded command with its `data` bytes as the JSON value they hold, the
 * gateway's one model of a payload (JSON and Protobuf clients share
 * channels, as in Centrifugo when both kinds of client are connected). No
 * bytes is no data, refused where the command needs some (publish, as
 * Centrifugo refuses it); bytes that are not UTF-8 JSON, or nest deeper
 * than `maxDepth`, refuse the command with 107 and keep the connection.
 */
export function jsonCommand(line: ParsedLine, maxDepth: number): ParsedLine {
  if (!line.ok) return line;
  const { command } = line;
  if (command.method === 'pong') return line;
  const required = DATA_REQUIRED[command.method];
  if (required === undefined) return line;
  const body = command.body as { data?: unknown };
  const bytes = body.data;
  if (!(bytes instanceof Uint8Array)) return line;
  const refuse = (message: string): ParsedLine => ({
    ok: false,
    kind: 'refused',
    id: command.id,
    error: { ...Errors.badRequest, message },
  });
  if (bytes.length === 0) {
    if (required) return refuse('data is required');
    delete body.data;
    return line;
  }
  const parsed = parseJsonBytes(bytes, maxDepth);
  if (!parsed.ok) return refuse(`data is not JSON: ${parsed.reason}`);
  body.data = parsed.value;
  return line;
}

const EMULATION_FIELDS = schema({ 1: ['node', LEN], 2: ['session', LEN], 3: ['data', LEN] });

/**
 * A Protobuf client's `POST /emulation` body (EmulationRequest), checked as
 * the JSON one is; a string is the reason it was refused.
 */
export function decodeEmulationRequest(body: Uint8Array): EmulationRequest | string {
  const r = new Reader(body, 1);
  r.end = body.length;
  let node = '';
  let session = '';
  let data: Uint8Array = EMPTY;
  try {
    while (r.pos < r.end) {
      const k = r.key();
      if (k === key(1, LEN)) node = r.string('node');
      else if (k === key(2, LEN)) session = r.string('session');
      else if (k === key(3, LEN)) data = r.bytes();
      else r.other(k, EMULATION_FIELDS);
    }
  } catch (e) {
    if (e instanceof DecodeError) return e.message;
    throw e;
  }
  return emulationIdsRefusal(session, node) ?? { node, session, data };
}

/** An EmulationRequest with Protobuf commands as its message (what a gateway routes to another). */
export function encodeEmulationRequest(req: EmulationRequest & { data: Uint8Array }): Uint8Array {
  const w = new Writer();
  w.string(1, req.node);
  w.string(2, req.session);
  w.bytes(3, req.data);
  return w.buf.subarray(0, w.pos);
}
