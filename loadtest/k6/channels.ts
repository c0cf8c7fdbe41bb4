/**
 * Many channels with one subscriber each: VU n subscribes to `<CHANNEL>-<n>`;
 * RATE publications per second go to the channels in turn.
 *
 *   k6 run -e SWITCHBOARD_TOKEN_HMAC_SECRET_KEY=... -e SWITCHBOARD_API_KEY=... \
 *     -e VUS=10000 -e RATE=1000 loadtest/k6/dist/channels.js
 */

import exec from 'k6/execution';
import { apiPublish, env, payload, publishingOptions, session, subscriberHoldMs } from './lib/centrifugo.ts';

export const options = publishingOptions(20);

export function subscriber(): void {
  session({
    user: `chan-${__VU}`,
    holdMs: subscriberHoldMs(),
    onConnected: (s) => s.subscribe(`${env.channel}-${__VU}`),
  });
}

export function publisher(): void {
  const i = exec.scenario.iterationInTest;
  apiPublish(`${env.channel}-${(i % env.vus) + 1}`, payload(Math.floor(i / env.vus)));
}
