/**
 * Many channels with one subscriber each: VU n subscribes to `<CHANNEL>-<n>`;
 * RATE publications per second go to the channels in turn.
 *
 *   k6 run -e SWITCHBOARD_TOKEN_HMAC_SECRET_KEY=... -e SWITCHBOARD_API_KEY=... \
 *     -e VUS=10000 -e RATE=1000 loadtest/k6/dist/channels.js
 */

import exec from 'k6/execution';
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
      startTime: '10s',
      preAllocatedVUs: 20,
    },
  },
  thresholds: {
    switchboard_connect_success: ['rate>0.99'],
    switchboard_delivery_latency: ['p(99)<100'],
    switchboard_errors: ['count==0'],
  },
};

export function subscriber(): void {
  session({ user: `chan-${__VU}`, holdMs, onConnected: (s) => s.subscribe(`${env.channel}-${__VU}`) });
}

export function publisher(): void {
  const i = exec.scenario.iterationInTest;
  apiPublish(`${env.channel}-${(i % env.vus) + 1}`, payload(Math.floor(i / env.vus)));
}
