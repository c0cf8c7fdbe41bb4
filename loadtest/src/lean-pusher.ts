/**
 * A lean Pusher protocol 7 client on LeanSocket (lean-client.ts), for the
 * benchmark's Pusher pass: as many subscribers as a server holds from one
 * process, where pusher-js would spend an object graph and a JSON.parse per
 * event. What it does of the protocol is what a pusher-js subscriber of a
 * public channel does: connect to /app/<key>?protocol=7, wait for
 * pusher:connection_established, pusher:subscribe and wait for
 * pusher_internal:subscription_succeeded, answer pusher:ping with
 * pusher:pong, and send pusher:ping itself after the server's
 * activity_timeout without a message (pusher-js's keep-alive: Soketi closes
 * a connection it sent nothing to for 120 s). Benchmark events are read in
 * place (PUSHER_MARKS); anything else is parsed.
 */

import {
  type LeanFleetOptions,
  LeanSocket,
  type LeanSocketOptions,
  type LeanStats,
  openLean,
  tally,
} from './lean-client.js';
import { PUSHER_MARKS } from './lean-wire.js';
import { now } from './tracker.js';

/** A refusal by the server: pusher:error or pusher:subscription_error, with its code or status. */
export class PusherError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(`${code} ${message}`);
  }
}

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

interface Frame {
  event?: string;
  channel?: string;
  data?: unknown;
}

/** The event name of probes: not numbered, counted apart (LeanPusher.probes). */
export const PROBE = 'bench-probe';

/** The connections whose keep-alive is due, swept once a second (one timer for all). */
const live = new Set<LeanPusher>();
let sweeper: NodeJS.Timeout | undefined;

function sweep(): void {
  const at = now();
  for (const c of live) c.keepAlive(at);
  if (live.size === 0) {
    clearInterval(sweeper);
    sweeper = undefined;
  }
}

/** `ws://host:port/app/<key>?protocol=7&...` of a server's WebSocket origin. */
export const pusherUrl = (origin: string, key: string) =>
  `${origin}/app/${encodeURIComponent(key)}?protocol=7&client=lean&version=1.0.0`;

export class LeanPusher extends LeanSocket {
  socketId = '';
  /** Seconds the server said it waits for activity (pusher:connection_established). */
  activityTimeout = 120;
  /** Events named PROBE seen: what tells a subscriber that events reach it (before they are numbered). */
  probes = 0;
  /** Called for a pusher:error after connecting, with its code. */
  onError: (code: number) => void = () => {};
  private established: Waiter | undefined;
  private readonly subscribing = new Map<string, Waiter>();
  private pingedAt = 0;

  private constructor(stats: LeanStats, timeoutMs: number, phase: number) {
    super(stats, timeoutMs, phase, PUSHER_MARKS);
  }

  /** Connects; resolves once pusher:connection_established came. */
  static async connect(options: LeanSocketOptions): Promise<LeanPusher> {
    const c = new LeanPusher(options.stats, options.timeoutMs, options.phase ?? 0);
    // Waited for from before the upgrade: the event may come in the upgrade response's read.
    const established = new Promise<void>((resolve, reject) => {
      c.established = c.waiter('connection_established', resolve, reject);
    });
    established.catch(() => {}); // awaited below, unless the upgrade failed first
    try {
      await c.open(options);
      await established;
    } catch (err) {
      if (c.established) clearTimeout(c.established.timer);
      c.established = undefined;
      c.socket.destroy();
      throw err;
    }
    live.add(c);
    sweeper ??= setInterval(sweep, 1000).unref();
    return c;
  }

  /** pusher:subscribe to a public channel; resolves on pusher_internal:subscription_succeeded. */
  subscribe(channel: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.subscribing.set(channel, this.waiter(`subscribe ${channel}`, resolve, reject));
      this.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel } }));
    });
  }

  other(line: string): void {
    const frame = JSON.parse(line) as Frame;
    switch (frame.event) {
      case 'pusher:connection_established': {
        const data = JSON.parse(String(frame.data)) as { socket_id: string; activity_timeout?: number };
        this.socketId = data.socket_id;
        if (typeof data.activity_timeout === 'number') this.activityTimeout = data.activity_timeout;
        settle(this.established);
        this.established = undefined;
        return;
      }
      case 'pusher_internal:subscription_succeeded':
        settle(this.take(frame.channel));
        return;
      case 'pusher:subscription_error': {
        const data = (typeof frame.data === 'string' ? JSON.parse(frame.data) : frame.data) as {
          status?: number;
          error?: string;
        };
        settle(
          this.take(frame.channel),
          new PusherError(data?.status ?? 0, data?.error ?? 'subscription_error'),
        );
        return;
      }
      case 'pusher:error': {
        const data = (typeof frame.data === 'string' ? JSON.parse(frame.data) : frame.data) as {
          code?: number | null;
          message?: string;
        };
        const err = new PusherError(data?.code ?? 0, data?.message ?? 'pusher:error');
        if (this.established) {
          settle(this.established, err);
          this.established = undefined;
        } else this.onError(err.code);
        return;
      }
      case 'pusher:ping':
        this.send('{"event":"pusher:pong","data":{}}');
        return;
      case PROBE:
        this.probes++;
        return;
      default:
    }
  }

  /** pusher-js's keep-alive: a pusher:ping after `activityTimeout` s without a message (sweep()). */
  keepAlive(at: number): void {
    const quiet = at - Math.max(this.readAt, this.pingedAt);
    if (this.closed || quiet < this.activityTimeout * 1000) return;
    this.pingedAt = at;
    this.send('{"event":"pusher:ping","data":{}}');
  }

  protected override ended(code: number): void {
    live.delete(this);
    const err = new Error(`closed ${code}`);
    if (this.established) settle(this.established, err);
    this.established = undefined;
    for (const w of this.subscribing.values()) settle(w, err);
    this.subscribing.clear();
  }

  private waiter(what: string, resolve: () => void, reject: (err: Error) => void): Waiter {
    const timer = setTimeout(() => reject(new Error(`${what} timed out`)), this.timeoutMs);
    return { resolve, reject, timer };
  }

  private take(channel: string | undefined): Waiter | undefined {
    const w = channel === undefined ? undefined : this.subscribing.get(channel);
    if (w) this.subscribing.delete(channel!);
    return w;
  }
}

function settle(w: Waiter | undefined, err?: Error): void {
  if (!w) return;
  clearTimeout(w.timer);
  if (err) w.reject(err);
  else w.resolve();
}

/**
 * `count` lean Pusher subscribers of `channel` at `url` (pusherUrl), opened
 * as openLean opens them; pusher:error after connecting is counted as
 * `pusher:error <code>`.
 */
export function pusherFleet(
  count: number,
  channel: string,
  options: Omit<LeanSocketOptions, 'localAddress' | 'phase'> & LeanFleetOptions,
): Promise<{ subscribers: LeanPusher[]; errors: Map<string, number> }> {
  const errors = options.errors ?? new Map<string, number>();
  return openLean(
    count,
    { ...options, errors },
    async (i, localAddress) => {
      const c = await LeanPusher.connect({
        ...options,
        phase: i,
        ...(localAddress === undefined ? {} : { localAddress }),
      });
      c.onError = (code) => tally(errors, `pusher:error ${code}`);
      return c;
    },
    (c) => c.subscribe(channel),
  );
}
