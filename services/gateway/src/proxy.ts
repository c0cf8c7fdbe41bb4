/**
 * Client requests that a backend decides: RPC, publish validation and async
 * messages. Embedded mode answers them in-process; the cluster routes the
 * same interface to backend services over NATS.
 */

import { Errors, type ProtocolError } from '@switchboard/protocol';

export interface CallContext {
  client: string;
  user: string;
  info?: unknown;
  meta?: Record<string, unknown>;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: ProtocolError };

export interface PublishDecision {
  /** The data to broadcast (the client's own, or a replacement). */
  data: unknown;
}

export interface BackendHandler {
  rpc(ctx: CallContext, method: string, data: unknown): Promise<Outcome<unknown>>;
  publish(ctx: CallContext, channel: string, data: unknown): Promise<Outcome<PublishDecision>>;
  message(ctx: CallContext, data: unknown): void;
}

export type RpcFunction = (ctx: CallContext, data: unknown) => unknown | Promise<unknown>;
export type PublishFunction = (
  ctx: CallContext,
  channel: string,
  data: unknown,
) => Outcome<PublishDecision> | Promise<Outcome<PublishDecision>>;
export type MessageFunction = (ctx: CallContext, data: unknown) => void;

/** In-process handlers: RPC methods by name; publishes pass unchanged unless a hook says otherwise. */
export class LocalHandler implements BackendHandler {
  private readonly rpcs = new Map<string, RpcFunction>();
  private publishHook: PublishFunction | undefined;
  private messageHook: MessageFunction | undefined;

  onRpc(method: string, fn: RpcFunction): this {
    this.rpcs.set(method, fn);
    return this;
  }

  onPublish(fn: PublishFunction): this {
    this.publishHook = fn;
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

  async publish(ctx: CallContext, channel: string, data: unknown): Promise<Outcome<PublishDecision>> {
    return this.publishHook ? this.publishHook(ctx, channel, data) : { ok: true, value: { data } };
  }

  message(ctx: CallContext, data: unknown): void {
    this.messageHook?.(ctx, data);
  }
}
