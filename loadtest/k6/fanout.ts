/**
 * Chat fan-out: VUS subscribers on one channel, one publisher posting RATE
 * publications per second through the server API; latency is publish time
 * (in the payload) to delivery.
 *
 *   k6 run -e SWITCHBOARD_TOKEN_HMAC_SECRET_KEY=... -e SWITCHBOARD_API_KEY=... \
 *     -e VUS=5000 -e RATE=10 loadtest/k6/dist/fanout.js
 */

import { apiPublish, env, payload, publishingOptions, session, subscriberHoldMs } from './lib/centrifugo.ts';

export const options = publishingOptions(5);

export function subscriber(): void {
  session({ user: `fan-${__VU}`, holdMs: subscriberHoldMs(), onConnected: (s) => s.subscribe(env.channel) });
}

export function publisher(): void {
  apiPublish(env.channel, payload(__ITER));
}
