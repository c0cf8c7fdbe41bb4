/**
 * A backend service: owns one namespace, answers the gateways' subscribe,
 * publish and rpc requests as one replica of a queue group (N replicas share
 * the load), and calls the server API for its namespace's channels (publish,
 * presence, history, subscribe, ...) through the same bus.
 */

import { randomUUID } from 'node:crypto';
import {
  DEFAULT_JSON_MAX_DEPTH,
  ENVELOPE_DEPTH,
  Errors,
  isJsonObject,
  parseJsonBytes,
  type OccupancyEvent,
  type ProtocolError,
  type PublishDecision,
  type RpcAnswer,
  type ServiceEntry,
  type ServiceOperation,
  type ServiceReply,
  type ServiceRequest,
  type SubscribeDecision,
  Subjects,
} from '@switchboard/protocol';
import type { Bus } from './bus.js';
import { patiently } from './patiently.js';

/** Throw it from a handler to answer with a protocol error (e.g. 103 permission denied). */
export class ServiceError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly temporary = false,
  ) {
    super(message);
  }

  static from(error: ProtocolError): ServiceError {
    return new ServiceError(error.code, error.message, error.temporary ?? false);
  }
}

/** A failed server API call made by the service. */
export class ApiCallError extends Error {
  constructor(readonly error: ProtocolError) {
    super(`${error.code}: ${error.message}`);
  }
}

export interface ServiceOptions {
  namespace: string;
  /** Subject prefix of the deployment (`SWITCHBOARD_NATS_PREFIX`). */
  prefix?: string;
  /** How long server API calls may take. */
  timeoutMs?: number;
}

/** Where a service announces itself; the NATS KV registry in a cluster. */
export interface ServiceRegistry {
  announce(entry: ServiceEntry): Promise<void>;
  withdraw(entry: ServiceEntry): Promise<void>;
}

type SubscribeHandler = (
  req: ServiceRequest & { channel: string },
) => SubscribeDecision | Promise<SubscribeDecision>;
type PublishHandler = (
  req: ServiceRequest & { channel: string },
) => PublishDecision | Promise<PublishDecision>;
type RpcHandler = (req: ServiceRequest) => unknown;
type OccupancyHandler = (event: OccupancyEvent) => void | Promise<void>;

const encoder = new TextEncoder();
const encode = (value: unknown) => encoder.encode(JSON.stringify(value));

export class Service {
  readonly namespace: string;
  readonly instance = randomUUID();
  private readonly subjects: Subjects;
  private readonly timeoutMs: number;
  private subscribeHandler: SubscribeHandler = (req) => {
    // Without a handler: authenticated users may subscribe, anonymous ones may not.
    if (req.user === '') throw ServiceError.from(Errors.permissionDenied);
    return {};
  };
  private publishHandler: PublishHandler = () => {
    throw ServiceError.from(Errors.permissionDenied);
  };
  private readonly rpcs = new Map<string, RpcHandler>();
  private occupancyHandler: OccupancyHandler | undefined;
  private stops: (() => void)[] = [];
  private heartbeat: NodeJS.Timeout | undefined;

  constructor(
    private readonly bus: Bus,
    options: ServiceOptions,
    private readonly registry?: ServiceRegistry,
  ) {
    this.namespace = options.namespace;
    this.subjects = new Subjects(options.prefix ?? 'sb');
    this.timeoutMs = options.timeoutMs ?? 5000;
  }

  /** Decides subscribes to the namespace's channels; throw ServiceError to refuse. */
  onSubscribe(handler: SubscribeHandler): this {
    this.subscribeHandler = handler;
    return this;
  }

  /** Checks or rewrites client publications; throw ServiceError to refuse. Without one, clients may not publish. */
  onPublish(handler: PublishHandler): this {
    this.publishHandler = handler;
    return this;
  }

  /** Answers the RPC `namespace:method`. */
  onRpc(method: string, handler: RpcHandler): this {
    this.rpcs.set(method, handler);
    return this;
  }

  /**
   * Takes the namespace's occupancy hooks (its `service_hooks` option):
   * channels occupied and vacated, members added and removed, decided for
   * the whole cluster. At least once: resolving acknowledges an event,
   * throwing has it sent again (to this or another replica) after a backoff.
   */
  onOccupancy(handler: OccupancyHandler): this {
    this.occupancyHandler = handler;
    return this;
  }

  /** Starts answering, and announces the replica every `heartbeatMs` while it runs. */
  async start(heartbeatMs = 5000): Promise<void> {
    const queue = this.subjects.serviceQueue(this.namespace);
    const serve = (operation: ServiceOperation, answer: (req: ServiceRequest) => Promise<unknown>) =>
      this.stops.push(
        this.bus.serve(this.subjects.service(this.namespace, operation), queue, async (data) =>
          encode(await reply(() => answer(request(data)))),
        ),
      );
    serve('subscribe', async (req) => this.subscribeHandler(withChannel(req)));
    serve('publish', async (req) => this.publishHandler(withChannel(req)));
    serve('rpc', async (req): Promise<RpcAnswer> => {
      const handler = this.rpcs.get(req.method ?? '');
      if (!handler) throw ServiceError.from(Errors.methodNotFound);
      const data = await handler(req);
      return data === undefined ? {} : { data };
    });
    const occupancy = this.occupancyHandler;
    if (occupancy)
      serve('occupancy', async (req) => {
        if (!isOccupancyEvent(req.data)) throw ServiceError.from(Errors.badRequest);
        await occupancy(req.data);
        return {};
      });
    // Only announce once gateways' requests can reach this replica.
    await this.bus.flush();
    if (this.registry) {
      const entry = this.entry();
      // A bucket just made in a JetStream cluster has no leader for a moment.
      await patiently(() => this.registry!.announce(entry));
      this.heartbeat = setInterval(
        () => void this.registry?.announce(entry).catch(() => undefined),
        heartbeatMs,
      );
      this.heartbeat.unref();
    }
  }

  async stop(): Promise<void> {
    for (const stop of this.stops) stop();
    this.stops = [];
    clearInterval(this.heartbeat);
    await this.registry?.withdraw(this.entry()).catch(() => undefined);
  }

  private started = Date.now();

  private entry(): ServiceEntry {
    return { namespace: this.namespace, instance: this.instance, started: this.started };
  }

  // ---- the server API for the namespace's channels, answered by any gateway

  publish(
    channel: string,
    data: unknown,
    tags?: Record<string, string>,
  ): Promise<{ offset?: number; epoch?: string }> {
    return this.api('publish', { channel, data, ...(tags ? { tags } : {}) });
  }

  presence(channel: string): Promise<{ presence: Record<string, { user: string; client: string }> }> {
    return this.api('presence', { channel });
  }

  presenceStats(channel: string): Promise<{ num_clients: number; num_users: number }> {
    return this.api('presence_stats', { channel });
  }

  history(channel: string, limit: number): Promise<{ publications: { data: unknown; offset?: number }[] }> {
    return this.api('history', { channel, limit });
  }

  subscribe(user: string, channel: string, client?: string): Promise<unknown> {
    return this.api('subscribe', { user, channel, ...(client ? { client } : {}) });
  }

  unsubscribe(user: string, channel: string, client?: string): Promise<unknown> {
    return this.api('unsubscribe', { user, channel, ...(client ? { client } : {}) });
  }

  /** The server API for this namespace's channels: a channel of another namespace is refused with 103. */
  private async api<T>(method: string, params: unknown): Promise<T> {
    const raw = await this.bus.request(
      this.subjects.serviceApi(this.namespace, method),
      encode(params),
      this.timeoutMs,
    );
    const parsed = parseJsonBytes(raw, BUS_DEPTH);
    if (!parsed.ok)
      throw new ApiCallError({ ...Errors.internal, message: `invalid API reply: ${parsed.reason}` });
    const answer = parsed.value as ServiceReply<T>;
    if ('error' in answer) throw new ApiCallError(answer.error);
    return answer.result;
  }
}

/**
 * Nesting bound of what arrives on the bus: the gateways' default client data
 * bound plus envelopes (a gateway with a higher SWITCHBOARD_JSON_MAX_DEPTH
 * forwards deeper data; its services then refuse it with 107).
 */
const BUS_DEPTH = DEFAULT_JSON_MAX_DEPTH + ENVELOPE_DEPTH;

/** A gateway's request, checked: bounded JSON, an object naming client and user. */
function request(data: Uint8Array): ServiceRequest {
  const parsed = parseJsonBytes(data, BUS_DEPTH);
  const value = parsed.ok ? parsed.value : undefined;
  if (!isJsonObject(value))
    throw new ServiceError(Errors.badRequest.code, parsed.ok ? 'request must be an object' : parsed.reason);
  const { client, user } = value;
  if (typeof client !== 'string' || typeof user !== 'string')
    throw new ServiceError(Errors.badRequest.code, 'request must name client and user');
  return value as unknown as ServiceRequest;
}

const OCCUPANCY = new Set(['channel_occupied', 'channel_vacated', 'member_added', 'member_removed']);

function isOccupancyEvent(v: unknown): v is OccupancyEvent {
  return (
    isJsonObject(v) &&
    typeof v.name === 'string' &&
    OCCUPANCY.has(v.name) &&
    typeof v.channel === 'string' &&
    (v.user === undefined || typeof v.user === 'string')
  );
}

function withChannel(req: ServiceRequest): ServiceRequest & { channel: string } {
  if (typeof req.channel !== 'string') throw ServiceError.from(Errors.badRequest);
  return req as ServiceRequest & { channel: string };
}

/** Runs a handler and turns its outcome into a reply; unexpected errors become 100 (temporary). */
async function reply<T>(run: () => Promise<T>): Promise<ServiceReply<T>> {
  try {
    return { result: await run() };
  } catch (err) {
    if (err instanceof ServiceError) {
      return {
        error: { code: err.code, message: err.message, ...(err.temporary ? { temporary: true } : {}) },
      };
    }
    return { error: Errors.internal };
  }
}
