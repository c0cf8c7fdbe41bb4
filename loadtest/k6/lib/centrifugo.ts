/**
 * Centrifugo client protocol v2 (JSON) for k6 scenarios: HS256 connection
 * tokens minted with k6/crypto, the connect command, subscribe, publish and
 * RPC, answers to server pings, publications with their delivery latency.
 */

import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import http from 'k6/http';
import { Counter, Rate, Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import ws, { type Socket } from 'k6/ws';

export const env = {
  url: __ENV.SWITCHBOARD_URL || 'ws://127.0.0.1:8000/connection/websocket',
  apiUrl: __ENV.SWITCHBOARD_API_URL || 'http://127.0.0.1:9000',
  // The gateway's settings may list several keys while one rotates: the first is used.
  apiKey: (__ENV.SWITCHBOARD_API_KEY || '').split(',')[0]!,
  /** HS256 key to mint one token per virtual user; or SWITCHBOARD_TOKEN, one token for all. */
  secret: (__ENV.SWITCHBOARD_TOKEN_HMAC_SECRET_KEY || '').split(',')[0]!,
  token: __ENV.SWITCHBOARD_TOKEN || '',
  channel: __ENV.CHANNEL || 'bench',
  duration: __ENV.DURATION || '1m',
  vus: Number(__ENV.VUS || 100),
  rate: Number(__ENV.RATE || 10),
  payloadBytes: Number(__ENV.PAYLOAD_BYTES || 64),
};

export const metrics = {
  connectSuccess: new Rate('switchboard_connect_success'),
  connectTime: new Trend('switchboard_connect_time', true),
  deliveryLatency: new Trend('switchboard_delivery_latency', true),
  publications: new Counter('switchboard_publications_received'),
  rpcTime: new Trend('switchboard_rpc_time', true),
  errors: new Counter('switchboard_errors'),
  unexpectedClose: new Counter('switchboard_unexpected_close'),
};

const base64url = (text: string) => encoding.b64encode(text, 'rawurl');

/** An HS256 connection token for user `sub`, valid for an hour. */
export function token(sub: string): string {
  if (env.token) return env.token;
  if (!env.secret) throw new Error('set SWITCHBOARD_TOKEN_HMAC_SECRET_KEY or SWITCHBOARD_TOKEN');
  const body = `${base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${base64url(
    JSON.stringify({ sub, exp: Math.floor(Date.now() / 1000) + 3600 }),
  )}`;
  return `${body}.${crypto.hmac('sha256', env.secret, body, 'base64rawurl')}`;
}

/** What the scenarios publish: sequence, publish time (ms since epoch) and padding. */
export function payload(seq: number): { s: number; t: number; p: string } {
  return { s: seq, t: Date.now(), p: 'x'.repeat(env.payloadBytes) };
}

interface Message {
  id?: number;
  error?: { code: number; message: string };
  push?: { channel?: string; pub?: { data?: { t?: number } }; disconnect?: { code: number } };
  connect?: { pong?: boolean };
  [reply: string]: unknown;
}

export interface Session {
  socket: Socket;
  /** Sends a command; `onReply` gets the reply (or error) by id. */
  command(method: string, body: unknown, onReply?: (msg: Message) => void): void;
  subscribe(channel: string, onDone?: () => void): void;
}

export interface SessionOptions {
  user: string;
  /** Milliseconds to hold the connection before closing it. */
  holdMs: number;
  onConnected?(session: Session): void;
  /** Close codes that are expected (e.g. a reconnect code during a gateway kill). */
  onClose?(code: number): void;
}

/**
 * Opens a WebSocket, connects with a token, answers pings and records
 * publication latencies; returns once the socket closed.
 */
export function session(options: SessionOptions): ws.Response {
  const started = Date.now();
  let connected = false;
  let closing = false;
  return ws.connect(env.url, {}, (socket) => {
    let nextId = 1;
    let pong = false;
    const pending = new Map<number, (msg: Message) => void>();
    const s: Session = {
      socket,
      command(method, body, onReply) {
        const id = nextId++;
        if (onReply) pending.set(id, onReply);
        socket.send(JSON.stringify({ id, [method]: body }));
      },
      subscribe(channel, onDone) {
        s.command('subscribe', { channel }, (msg) => {
          if (msg.error) metrics.errors.add(1, { op: 'subscribe', code: String(msg.error.code) });
          else onDone?.();
        });
      },
    };
    socket.on('open', () => {
      s.command('connect', { token: token(options.user) }, (msg) => {
        connected = !msg.error;
        metrics.connectSuccess.add(connected);
        if (!connected) {
          metrics.errors.add(1, { op: 'connect', code: String(msg.error?.code) });
          socket.close();
          return;
        }
        metrics.connectTime.add(Date.now() - started);
        pong = msg.connect?.pong === true;
        options.onConnected?.(s);
      });
      socket.setTimeout(() => {
        closing = true;
        socket.close();
      }, options.holdMs);
    });
    socket.on('message', (frame) => {
      for (const line of frame.split('\n')) {
        if (!line) continue;
        const msg = JSON.parse(line) as Message;
        if (msg.id) {
          const reply = pending.get(msg.id);
          pending.delete(msg.id);
          reply?.(msg);
        } else if (msg.push?.pub) {
          metrics.publications.add(1);
          const t = msg.push.pub.data?.t;
          if (typeof t === 'number') metrics.deliveryLatency.add(Date.now() - t);
        } else if (!msg.push && pong) {
          socket.send('{}');
        }
      }
    });
    socket.on('error', () => metrics.errors.add(1, { op: 'socket' }));
    socket.on('close', (code) => {
      if (!connected) metrics.connectSuccess.add(false);
      else if (!closing) {
        metrics.unexpectedClose.add(1, { code: String(code) });
        options.onClose?.(code);
      }
    });
  });
}

/** Publishes through the server HTTP API (`POST /api/publish`). */
export function apiPublish(channel: string, data: unknown): void {
  const res = http.post(`${env.apiUrl}/api/publish`, JSON.stringify({ channel, data }), {
    headers: { 'X-API-Key': env.apiKey, 'Content-Type': 'application/json' },
    tags: { name: 'api_publish' },
  });
  if (res.status !== 200 || String(res.body).includes('"error"')) metrics.errors.add(1, { op: 'publish' });
}

/** k6 durations ("30s", "2m", "1h") in milliseconds. */
export function millis(duration: string): number {
  const m = /^(\d+)(ms|s|m|h)$/.exec(duration);
  if (!m) throw new Error(`bad duration ${duration}`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return Number(m[1]) * unit;
}

/** How long subscribers of a publishing scenario stay: the publishing time and a margin around it. */
export const subscriberHoldMs = () => millis(env.duration) + 15_000;

/**
 * Options of a publishing scenario: VUS subscribers (exported function
 * `subscriber`, one long iteration each) and an API publisher at RATE per
 * second (`publisher`) that starts once they are in.
 */
export function publishingOptions(publisherVUs: number): Options {
  return {
    scenarios: {
      subscribers: {
        executor: 'per-vu-iterations',
        vus: env.vus,
        iterations: 1,
        exec: 'subscriber',
        maxDuration: `${subscriberHoldMs() / 1000 + 30}s`,
      },
      publisher: {
        executor: 'constant-arrival-rate',
        exec: 'publisher',
        rate: env.rate,
        timeUnit: '1s',
        duration: env.duration,
        startTime: '10s',
        preAllocatedVUs: publisherVUs,
      },
    },
    thresholds: {
      switchboard_connect_success: ['rate>0.99'],
      switchboard_delivery_latency: ['p(99)<100'],
      switchboard_errors: ['count==0'],
    },
  };
}
