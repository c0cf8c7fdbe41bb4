/**
 * Many idle connections: VUS connections held for DURATION, answering the
 * server's `{}` pings (every 25 s by default) with `{}`; none may be dropped.
 *
 *   k6 run -e SWITCHBOARD_TOKEN_HMAC_SECRET_KEY=... -e VUS=10000 -e DURATION=2m loadtest/k6/dist/idle.js
 */

import type { Options } from 'k6/options';
import { env, millis, session } from './lib/centrifugo.ts';

export const options: Options = {
  scenarios: {
    idle: {
      executor: 'per-vu-iterations',
      vus: env.vus,
      iterations: 1,
      maxDuration: `${millis(env.duration) / 1000 + 60}s`,
    },
  },
  thresholds: {
    switchboard_connect_success: ['rate>0.99'],
    switchboard_unexpected_close: ['count==0'],
  },
};

export default function (): void {
  session({ user: `idle-${__VU}`, holdMs: millis(env.duration) });
}
