/**
 * Chat fan-out: VUS subscribers on one channel, one publisher posting RATE
 * publications per second through the server API; latency is publish time
 * (in the payload) to delivery.
 *
 *   k6 run -e SWITCHBOARD_TOKEN_HMAC_SECRET_KEY=... -e SWITCHBOARD_API_KEY=... \
 *     -e VUS=5000 -e RATE=10 loadtest/k6/dist/fanout.js
 */

import type { Options } from 'k6/options';
import { apiPublish, env, millis, payload, session } from './lib/centrifugo.ts';

const holdMs = millis(env.duration) + 15_000;

export const options: Options = {
  scenarios: {
    subscribers: {
      executor: 'per-vu-iterations',
      vus: env.vus,
      iterations: 1,
      exec: 'subscriber',
      maxDuration: `${holdMs / 1000 + 30}s`,
    },
    publisher: {
      executor: 'constant-arrival-rate',
      exec: 'publisher',
      rate: env.rate,
      timeUnit: '1s',
      duration: env.duration,
      startTime: '10s', // after the subscribers are in
      preAllocatedVUs: 5,
    },
  },
  thresholds: {
    switchboard_connect_success: ['rate>0.99'],
    switchboard_delivery_latency: ['p(99)<100'],
    switchboard_errors: ['count==0'],
  },
};

export function subscriber(): void {
  session({ user: `fan-${__VU}`, holdMs, onConnected: (s) => s.subscribe(env.channel) });
}

export function publisher(): void {
  apiPublish(env.channel, payload(__ITER));
}
