/**
 * RPC round trips: VUS connections each call METHOD (default `echo`, built
 * into an embedded gateway; `room:...`/`store:...` reach the example services)
 * RATE times per second.
 *
 *   k6 run -e SWITCHBOARD_TOKEN_HMAC_SECRET_KEY=... -e VUS=200 -e RATE=5 loadtest/k6/dist/rpc.js
 */

import type { Options } from 'k6/options';
import { env, metrics, millis, session } from './lib/centrifugo.ts';

const method = __ENV.METHOD || 'echo';

export const options: Options = {
  scenarios: {
    rpc: {
      executor: 'per-vu-iterations',
      vus: env.vus,
      iterations: 1,
      maxDuration: `${millis(env.duration) / 1000 + 30}s`,
    },
  },
  thresholds: {
    switchboard_connect_success: ['rate>0.99'],
    switchboard_rpc_time: ['p(99)<50'],
    switchboard_errors: ['count==0'],
  },
};

export default function (): void {
  session({
    user: `rpc-${__VU}`,
    holdMs: millis(env.duration),
    onConnected: (s) => {
      s.socket.setInterval(() => {
        const sent = Date.now();
        s.command('rpc', { method, data: { t: sent } }, (msg) => {
          if (msg.error) metrics.errors.add(1, { op: 'rpc', code: String(msg.error.code) });
          else metrics.rpcTime.add(Date.now() - sent);
        });
      }, 1000 / env.rate);
    },
  });
}
