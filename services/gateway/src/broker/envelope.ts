/**
 * What gateways send each other over NATS, and the checks every such message
 * passes before it is used: anyone who can publish on the bus (until NATS
 * permissions say otherwise) is a hostile peer. Pure, no I/O.
 */

import { type ClientInfo, isJsonObject as isObj, type Publication } from '@switchboard/protocol';
import type { ChannelCounts, ControlMessage, MemberEvent } from './broker.js';

/** What travels on a live subject (and is stored in history for publications). */
export type Envelope =
  /**
   * `delta`: the publisher asked for delta compression; `ver`, `vep`: the
   * application's version and version epoch (server API `version`), stored so
   * that any gateway can drop an outdated one.
   */
  | { t: 'pub'; pub: Publication; skip?: string; ts: number; delta?: true; ver?: number; vep?: string }
  | { t: 'join' | 'leave'; info: ClientInfo }
  | { t: 'member'; member: MemberEvent; skip?: string };

export type PubEnvelope = Extract<Envelope, { t: 'pub' }>;

type Obj = Record<string, unknown>;

const optionalString = (v: unknown) => v === undefined || typeof v === 'string';
const isOffset = (v: unknown) => v === undefined || (Number.isSafeInteger(v) && (v as number) >= 0);

export function isClientInfo(v: unknown): v is ClientInfo {
  return isObj(v) && typeof v.user === 'string' && typeof v.client === 'string';
}

export function isPublication(v: unknown): v is Publication {
  if (!isObj(v) || !('data' in v)) return false;
  if (!isOffset(v.offset) || !optionalString(v.epoch)) return false;
  // What a gateway sends or stores is the full publication: a delta is made for one subscriber's wire only.
  if (v.delta !== undefined) return false;
  if (v.info !== undefined && !isClientInfo(v.info)) return false;
  if (v.tags !== undefined && (!isObj(v.tags) || !Object.values(v.tags).every((t) => typeof t === 'string')))
    return false;
  return true;
}

/** A live-subject or history message, or undefined when it is not one of ours. */
export function readEnvelope(v: unknown): Envelope | undefined {
  if (!isObj(v)) return undefined;
  if (v.t === 'pub') {
    if (!isPublication(v.pub) || !optionalString(v.skip) || typeof v.ts !== 'number') return undefined;
    if (v.delta !== undefined && v.delta !== true) return undefined;
    if (!isOffset(v.ver) || !optionalString(v.vep)) return undefined;
    return v as PubEnvelope;
  }
  if (v.t === 'join' || v.t === 'leave') return isClientInfo(v.info) ? (v as Envelope) : undefined;
  if (v.t === 'member')
    return isMemberEvent(v.member) && optionalString(v.skip) ? (v as Envelope) : undefined;
  return undefined;
}

function isMemberEvent(v: unknown): v is MemberEvent {
  if (!isObj(v)) return false;
  if (v.op === 'added') return isClientInfo(v.info);
  return v.op === 'removed' && typeof v.user === 'string';
}

/** A stored history entry: a publication envelope. */
export function readStored(v: unknown): PubEnvelope | undefined {
  const envelope = readEnvelope(v);
  return envelope?.t === 'pub' ? envelope : undefined;
}

/** A control message (server API action), or undefined when it is malformed. */
export function readControl(v: unknown): ControlMessage | undefined {
  if (!isObj(v) || typeof v.user !== 'string' || !optionalString(v.client)) return undefined;
  if (v.op === 'subscribe' || v.op === 'unsubscribe')
    return typeof v.channel === 'string' ? (v as ControlMessage) : undefined;
  if (v.op === 'disconnect') {
    const code = v.code;
    if (!Number.isInteger(code) || (code as number) < 3000 || (code as number) > 4999) return undefined;
    const spared = v.whitelist;
    if (spared !== undefined && !(Array.isArray(spared) && spared.every((c) => typeof c === 'string')))
      return undefined;
    return typeof v.reason === 'string' ? (v as ControlMessage) : undefined;
  }
  if (v.op === 'refresh') {
    const expireAt = v.expire_at;
    if (!Number.isSafeInteger(expireAt) || (expireAt as number) < 0) return undefined;
    return typeof v.expired === 'boolean' ? (v as ControlMessage) : undefined;
  }
  return undefined;
}

/** A survey request: the optional channel pattern, if it is a string no longer than `maxLength`. */
export function readSurvey(v: unknown, maxLength: number): { pattern: string | undefined } | undefined {
  if (!isObj(v)) return undefined;
  if (v.pattern === undefined || v.pattern === null) return { pattern: undefined };
  if (typeof v.pattern !== 'string' || v.pattern.length > maxLength) return undefined;
  return { pattern: v.pattern };
}

/**
 * Adds one gateway's survey answer into `into` (a Map, so that a channel
 * named `__proto__` is a channel like any other); false when the answer is malformed.
 */
export function addChannelCounts(into: Map<string, number>, v: unknown): boolean {
  if (!isObj(v)) return false;
  const entries = Object.entries(v);
  for (const [, counts] of entries) {
    if (!isObj(counts) || !Number.isSafeInteger(counts.num_clients) || (counts.num_clients as number) < 0)
      return false;
  }
  for (const [channel, counts] of entries)
    into.set(channel, (into.get(channel) ?? 0) + ((counts as Obj).num_clients as number));
  return true;
}

export function channelCounts(counts: Map<string, number>): ChannelCounts {
  return Object.fromEntries([...counts].map(([channel, n]) => [channel, { num_clients: n }]));
}
