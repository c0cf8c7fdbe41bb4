/**
 * Client requests that a backend decides. A namespace marked `service` is
 * owned by a backend service: its subscribes, client publications and RPCs
 * named `namespace:method` go to the service over the bus (NATS in a cluster,
 * in-process in embedded mode); one replica of its queue group answers. Other
 * RPCs and async `send` messages go to in-process handlers.
 */

import {
  Errors,
  isJsonObject as isObject,
  parseJsonBytes,
  type ProtocolError,
  type PublishDecision,
  type ServiceOperation,
  type ServiceReply,
  type ServiceRequest,
  type SubscribeDecision,
  type Subjects,
} from '@switchboard/protocol';
import { type Bus, NoResponders, RequestTimeout } from '@switchboard/sdk';
import type { NamespaceOptions } from './config.js';
import type { Metrics } from './metrics.js';

export interface CallContext {
  client: string;
  user: string;
  info?: unknown;
  meta?: Record<string, unknown>;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: ProtocolError };

export type { PublishDecision, SubscribeDecision };

export interface BackendHandler {
  /** Subscribe to a channel of a service namespace: allowed (with initial data) or refused. */
  subscribe(
    ctx: CallContext,
    namespace: string,
    channel: string,
    data: unknown,
  ): Promise<Outcome<SubscribeDecision>>;
  /** Client publication to a channel of a service namespace: checked, maybe rewritten, or refused. */
  publish(
    ctx: CallContext,
    namespace: string,
    channel: string,
    data: unknown,
  ): Promise<Outcome<PublishDecision>>;
  rpc(ctx: CallContext, method: string, data: unknown): Promise<Outcome<unknown>>;
  message(ctx: CallContext, data: unknown): void;
  /** An occupancy hook to the namespace's service (`service_hooks`); true once a replica acknowledged it. */
  occupancy(namespace: string, event: unknown): Promise<boolean>;
}

export type RpcFunction = (ctx: CallContext, data: unknown) => unknown | Promise<unknown>;
export type MessageFunction = (ctx: CallContext, data: unknown) => void;

/** In-process RPC methods and `send` handling (embedded conveniences). */
export class LocalHandler {
  private readonly rpcs = new Map<string, RpcFunction>();
  private messageHook: MessageFunction | undefined;

  onRpc(method: string, fn: RpcFunction): this {
    this.rpcs.set(method, fn);
    return this;
  }

  onMessage(fn: MessageFunction): this {
    this.messageHook = fn;
    return this;
  }

  async rpc(ctx: CallContext, method: string, data: unknown): Promise<Outcome<unknown>> {
    const fn = this.rpcs.get(method);
    if (!fn) return { ok: false, error: Errors.methodNotFound };
    return { ok: true, value: await fn(ctx, data) };
  }

  message(ctx: CallContext, data: unknown): void {
    this.messageHook?.(ctx, data);
  }
}

export const SERVICE_UNAVAILABLE: ProtocolError = {
  code: 108,
  message: 'service unavailable',
  temporary: true,
};
export const SERVICE_TIMEOUT: ProtocolError = { code: 100, message: 'service timeout', temporary: true };

/** A service answered with something that is not a reply: the client gets 100, the service's owners a metric. */
export const INVALID_REPLY: ProtocolError = { code: 100, message: 'invalid service reply', temporary: true };

const encoder = new TextEncoder();

/**
 * A service's reply, checked as hostile input: bounded JSON, and an error
 * (if any) with a numeric code in the client error range and a string message.
 */
function serviceReply<T>(raw: Uint8Array, maxDepth: number): ServiceReply<T> | undefined {
  const parsed = parseJsonBytes(raw, maxDepth);
  if (!parsed.ok || !isObject(parsed.value)) return undefined;
  const reply = parsed.value;
  if (!('error' in reply)) {
    return reply.result === undefined || isObject(reply.result) ? (reply as ServiceReply<T>) : undefined;
  }
  const error = reply.error;
  if (!isObject(error) || !Number.isInteger(error.code) || typeof error.message !== 'string')
    return undefined;
  const code = error.code as number;
  if (code < 0 || code > 4999) return undefined;
  const checked: ProtocolError = { code, message: error.message.slice(0, 256) };
  if (error.temporary === true) checked.temporary = true;
  return { error: checked };
}

export class Backend implements BackendHandler {
  constructor(
    private readonly bus: Bus,
    private readonly subjects: Subjects,
    private readonly namespaces: Map<string, NamespaceOptions>,
    private readonly local: LocalHandler,
    private readonly timeoutMs: number,
    private readonly metrics: Metrics,
    /** Nesting bound of service replies: what a client may send plus envelopes. */
    private readonly maxDepth: number,
  ) {}

  subscribe(ctx: CallContext, namespace: string, channel: string, data: unknown) {
    return this.call<SubscribeDecision>(namespace, 'subscribe', { ...request(ctx), channel, data });
  }

  publish(ctx: CallContext, namespace: string, channel: string, data: unknown) {
    return this.call<PublishDecision>(namespace, 'publish', { ...request(ctx), channel, data });
  }

  async rpc(ctx: CallContext, method: string, data: unknown): Promise<Outcome<unknown>> {
    const colon = method.indexOf(':');
    if (colon === -1) return this.local.rpc(ctx, method, data);
    const namespace = method.slice(0, colon);
    if (!this.namespaces.get(namespace)?.service) return { ok: false, error: Errors.methodNotFound };
    const answer = await this.call<{ data?: unknown }>(namespace, 'rpc', {
      ...request(ctx),
      method: method.slice(colon + 1),
      data,
    });
    return answer.ok ? { ok: true, value: answer.value.data } : answer;
  }

  message(ctx: CallContext, data: unknown): void {
    this.local.message(ctx, data);
  }

  async occupancy(namespace: string, event: unknown): Promise<boolean> {
    const channel = (event as { channel?: unknown }).channel;
    const req: ServiceRequest = { client: '', user: '', data: event };
    if (typeof channel === 'string') req.channel = channel;
    return (await this.call(namespace, 'occupancy', req)).ok;
  }

  private async call<T>(
    namespace: string,
    operation: ServiceOperation,
    req: ServiceRequest,
  ): Promise<Outcome<T>> {
    const labels = { namespace, operation };
    const timer = this.metrics.serviceDuration.startTimer(labels);
    const fail = (error: ProtocolError): Outcome<T> => {
      this.metrics.serviceErrors.inc({ ...labels, code: String(error.code) });
      return { ok: false, error };
    };
    try {
      const raw = await this.bus.request(
        this.subjects.service(namespace, operation),
        encoder.encode(JSON.stringify(req)),
        this.timeoutMs,
      );
      const reply = serviceReply<T>(raw, this.maxDepth);
      if (!reply) {
        this.metrics.invalidMessages.inc({ source: 'service' });
        return fail(INVALID_REPLY);
      }
      return 'error' in reply ? fail(reply.error) : { ok: true, value: reply.result ?? ({} as T) };
    } catch (err) {
      if (err instanceof NoResponders) return fail(SERVICE_UNAVAILABLE);
      if (err instanceof RequestTimeout) return fail(SERVICE_TIMEOUT);
      throw err;
    } finally {
      timer();
    }
  }
}

function request(ctx: CallContext): ServiceRequest {
  return {
    client: ctx.client,
    user: ctx.user,
    ...(ctx.info !== undefined ? { info: ctx.info } : {}),
    ...(ctx.meta !== undefined ? { meta: ctx.meta } : {}),
  };
}
