/**
 * Connect storm: new connections at a rising rate (up to RATE per second),
 * each authenticated with its own HS256 token, held for a second.
 *
 *   k6 run -e SWITCHBOARD_TOKEN_HMAC_SECRET_KEY=... -e RATE=3000 loadtest/k6/dist/connect-storm.js
 */

import type { Options } from 'k6/options';
import { env, session } from './lib/centrifugo.ts';

export const options: Options = {
  scenarios: {
    storm: {
      executor: 'ramping-arrival-rate',
      startRate: Math.ceil(env.rate / 10),
      timeUnit: '1s',
      preAllocatedVUs: Math.max(10, env.rate * 2),
      stages: [
        { target: env.rate, duration: '10s' },
        { target: env.rate, duration: env.duration },
      ],
    },
  },
  thresholds: {
    switchboard_connect_success: ['rate>0.99'],
    switchboard_connect_time: ['p(99)<1000'],
    switchboard_errors: ['count<10'],
  },
};

export default function (): void {
  session({ user: `storm-${__VU}-${__ITER}`, holdMs: 1000 });
}
