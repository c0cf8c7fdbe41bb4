/**
 * Who may open a connection, on any transport: the Origin allow-list, drain
 * and the per-gateway connection limit, which counts every transport.
 */

import type { IpLimitName, Metrics, Transport } from '../metrics.js';
import type { Node } from '../node.js';
import { RateLimiter } from '../ratelimit.js';
import { remoteAddress, replyText } from '../reply.js';
import type { HttpRequest, HttpResponse } from '../uws.js';
import { type ClientAddress, limitKey } from './client-address.js';
import { originAllowed } from './origin.js';

export interface Refusal {
  status: string;
  reason: 'origin_not_allowed' | 'shutdown' | 'gateway_limit' | 'ip_rate_limit';
}

/** A per-client-IP rate limit of one kind of request (a reconnect storm or a flood from one address is shed). */
export class IpLimit {
  private readonly limiter: RateLimiter;

  constructor(
    private readonly address: ClientAddress,
    private readonly metrics: Metrics,
    private readonly name: IpLimitName,
    private readonly perSecond: number,
    burst = perSecond,
  ) {
    this.limiter = new RateLimiter(perSecond, burst);
  }

  /** Whether this request's client may go on; a refusal is counted. Call before any await. */
  allows(res: HttpResponse, req: HttpRequest): boolean {
    return this.perSecond === 0 || this.allowsClient(this.address.of(remoteAddress(res), forwardedFor(req)));
  }

  /** As allows, for a client known by its address alone (a gRPC peer: no proxy headers). */
  allowsPeer(address: string): boolean {
    return this.perSecond === 0 || this.allowsClient(this.address.of(address, ''));
  }

  private allowsClient(client: string): boolean {
    if (this.limiter.take(limitKey(client))) return true;
    this.metrics.rateLimited.inc({ limit: this.name });
    return false;
  }
}

/**
 * Every `X-Forwarded-For` line of a request as one list, in order: a client
 * may send a line of its own before the one its proxy adds, and getHeader
 * would read only that first line.
 */
export function forwardedFor(req: HttpRequest): string {
  let joined = '';
  req.forEach((key, value) => {
    if (key === 'x-forwarded-for') joined = joined ? `${joined},${value}` : value;
  });
  return joined;
}

export class Admission {
  private readonly open = new Map<Transport, number>();
  private total = 0;
  private readonly metrics: Metrics;
  private readonly connects: IpLimit;

  constructor(
    private readonly node: Node,
    address: ClientAddress,
  ) {
    this.metrics = node.metrics;
    this.connects = new IpLimit(address, node.metrics, 'connect', node.config.connectsPerIpPerSecond);
    node.metrics.openConnections = () => ({
      byTransport: this.open,
      capacity: this.total / node.config.maxConnections,
    });
  }

  /**
   * Why a new connection is refused now, or undefined to let it in. Call
   * before any await. `origins`: an allow-list of its own (a Pusher app's).
   */
  refusal(
    res: HttpResponse,
    req: HttpRequest,
    origins = this.node.config.allowedOrigins,
  ): Refusal | undefined {
    if (!originAllowed(req.getHeader('origin'), origins))
      return { status: '403 Forbidden', reason: 'origin_not_allowed' };
    return (
      this.capacityRefusal() ??
      (this.connects.allows(res, req)
        ? undefined
        : { status: '429 Too Many Requests', reason: 'ip_rate_limit' })
    );
  }

  /** As refusal, for a connection without Origin or HTTP request (a uni_grpc stream from `peer`, an IP address). */
  peerRefusal(peer: string): Refusal | undefined {
    return (
      this.capacityRefusal() ??
      (this.connects.allowsPeer(peer)
        ? undefined
        : { status: '429 Too Many Requests', reason: 'ip_rate_limit' })
    );
  }

  /** Counts a refusal that was answered elsewhere (by the transport's own means). */
  refused(transport: Transport, refusal: Refusal): void {
    this.metrics.connects.inc({ transport, outcome: 'rejected', reason: refusal.reason });
  }

  private capacityRefusal(): Refusal | undefined {
    if (this.node.draining) return { status: '503 Service Unavailable', reason: 'shutdown' };
    if (this.total >= this.node.config.maxConnections)
      return { status: '503 Service Unavailable', reason: 'gateway_limit' };
    return undefined;
  }

  /** Answers a refused request with its status and counts it. */
  refuse(res: HttpResponse, transport: Transport, refusal: Refusal): void {
    this.refused(transport, refusal);
    replyText(res, refusal.status, refusal.reason);
  }

  opened(transport: Transport): void {
    this.count(transport, 1);
  }

  closed(transport: Transport): void {
    this.count(transport, -1);
  }

  private count(transport: Transport, delta: number): void {
    const n = (this.open.get(transport) ?? 0) + delta;
    this.open.set(transport, n);
    this.total += delta;
  }
}
