/**
 * Who may open a connection, on any transport: the Origin allow-list, drain
 * and the per-gateway connection limit, which counts every transport.
 */

import type { Metrics, Transport } from '../metrics.js';
import type { Node } from '../node.js';
import { replyText } from '../reply.js';
import type { HttpResponse } from '../uws.js';
import { originAllowed } from './origin.js';

export interface Refusal {
  status: string;
  reason: 'origin_not_allowed' | 'shutdown' | 'gateway_limit';
}

export class Admission {
  private readonly open = new Map<Transport, number>();
  private total = 0;
  private readonly metrics: Metrics;

  constructor(private readonly node: Node) {
    this.metrics = node.metrics;
  }

  /** Why a new connection from `origin` is refused now, or undefined to let it in. */
  refusal(origin: string): Refusal | undefined {
    if (!originAllowed(origin, this.node.config.allowedOrigins))
      return { status: '403 Forbidden', reason: 'origin_not_allowed' };
    if (this.node.draining) return { status: '503 Service Unavailable', reason: 'shutdown' };
    if (this.total >= this.node.config.maxConnections)
      return { status: '503 Service Unavailable', reason: 'gateway_limit' };
    return undefined;
  }

  /** Answers a refused request with its status and counts it. */
  refuse(res: HttpResponse, transport: Transport, refusal: Refusal): void {
    this.metrics.connects.inc({ transport, outcome: 'rejected', reason: refusal.reason });
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
    this.metrics.connections.set({ transport }, n);
    this.metrics.capacity.set(this.total / this.node.config.maxConnections);
  }
}
