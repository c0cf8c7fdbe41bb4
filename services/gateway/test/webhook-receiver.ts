/**
 * A webhook endpoint for tests: a real node:http server on 127.0.0.1 that
 * records every POST and answers each as told: 200 (taken), 500 (refused),
 * its socket destroyed without an answer, or no answer until the test
 * releases it (a delivery in the sender's hands). Taken deliveries are what
 * counts as received.
 */

import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One event of a webhook payload, as Pusher sends them. */
export interface HookEvent {
  name: string;
  channel: string;
  user_id?: string;
  event?: string;
  data?: string;
  socket_id?: string;
}

/** A request as it came: its path, headers, raw body and the payload's events. */
export interface Delivery {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  events: HookEvent[];
}

/** How the receiver answers one request: 200, 500, the socket destroyed, or not yet. */
export type Answer = 'accept' | 'refuse' | 'destroy' | 'hold';

/** One request, however it was answered. */
export interface Attempt extends Delivery {
  /** eventKey of its first event. */
  key: string;
  /** Which request for that key (and path) this is: 1, 2, ... */
  n: number;
  /** The sender's TCP port. */
  remotePort: number;
  /** When it came (Date.now()). */
  at: number;
  answer: Answer;
  /** A held request whose connection closed before it was answered (its sender died). */
  dropped: boolean;
}

/** An event's identity: name, channel and user. */
export const eventKey = (e: HookEvent): string =>
  [e.name, e.channel, ...(e.user_id === undefined ? [] : [e.user_id])].join(' ');

export class WebhookReceiver {
  /** The requests answered 200, in order. */
  readonly received: Delivery[] = [];
  /** Every request, in order. */
  readonly attempts: Attempt[] = [];
  /** Answers each request that no refuse() count claims; 200 unless a test sets it. */
  answer: (attempt: Attempt) => Answer = () => 'accept';
  /** Paths whose next requests are refused with 500, and how many. */
  private readonly refusals = new Map<string, number>();
  private readonly held = new Map<Attempt, ServerResponse>();
  private server: Server | undefined;
  private base = '';

  /** Listens on a free port of 127.0.0.1. */
  async start(): Promise<void> {
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk) => (body += chunk));
      req.on('end', () => {
        const path = req.url ?? '';
        let events: HookEvent[] = [];
        try {
          events = (JSON.parse(body) as { events: HookEvent[] }).events;
        } catch {
          // Recorded with no events: a test looking for one fails with what came.
        }
        const key = events[0] ? eventKey(events[0]) : '';
        const n = this.attempts.filter((a) => a.path === path && a.key === key).length + 1;
        const attempt: Attempt = {
          path,
          headers: req.headers,
          body,
          events,
          key,
          n,
          remotePort: req.socket.remotePort ?? 0,
          at: Date.now(),
          answer: 'accept',
          dropped: false,
        };
        this.attempts.push(attempt);
        const left = this.refusals.get(path) ?? 0;
        if (left > 0) this.refusals.set(path, left - 1);
        attempt.answer = left > 0 ? 'refuse' : this.answer(attempt);
        if (attempt.answer === 'hold') {
          this.held.set(attempt, res);
          res.once('close', () => {
            if (!res.writableFinished) attempt.dropped = true;
            this.held.delete(attempt);
          });
        } else this.reply(attempt, res, attempt.answer);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    this.server = server;
    this.base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  get port(): number {
    return (this.server!.address() as AddressInfo).port;
  }

  /** The URL of `path` here. */
  url(path: string): string {
    return `${this.base}${path}`;
  }

  /** Refuses the next `count` requests to `path` with 500, whatever `answer` says. */
  refuse(path: string, count: number): void {
    this.refusals.set(path, count);
  }

  /** How many of refuse()'s refusals are left. */
  refusalsLeft(path: string): number {
    return this.refusals.get(path) ?? 0;
  }

  /** The held requests still waiting for an answer. */
  holding(): Attempt[] {
    return [...this.held.keys()];
  }

  /** Answers every held request. */
  release(answer: Exclude<Answer, 'hold'>): void {
    for (const [attempt, res] of this.held) {
      this.held.delete(attempt);
      attempt.answer = answer;
      this.reply(attempt, res, answer);
    }
  }

  /** The events taken at `path`, in order. */
  events(path: string): HookEvent[] {
    return this.received.filter((r) => r.path === path).flatMap((r) => r.events);
  }

  /** How many times `name` of `channel` (for `user`) was taken at `path`. */
  seen(path: string, name: string, channel: string, user?: string): number {
    return this.events(path).filter(
      (e) => e.name === name && e.channel === channel && (user === undefined || e.user_id === user),
    ).length;
  }

  async close(): Promise<void> {
    this.release('refuse');
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private reply(attempt: Attempt, res: ServerResponse, answer: Exclude<Answer, 'hold'>): void {
    if (answer === 'destroy') {
      res.socket?.destroy();
      return;
    }
    if (answer === 'refuse') {
      res.writeHead(500).end();
      return;
    }
    const { path, headers, body, events } = attempt;
    this.received.push({ path, headers, body, events });
    res.writeHead(200).end('ok');
  }
}
