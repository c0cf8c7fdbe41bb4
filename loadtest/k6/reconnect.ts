/**
 * Reconnect storm: VUS connections through HAProxy; kill or drain a gateway
 * while it runs (e.g. `kill <gw2 pid>` under `make cluster`). Dropped clients
 * reconnect after a random 0-1 s (as centrifuge-js does) and must all get back.
 *
 *   k6 run -e SWITCHBOARD_TOKEN_HMAC_SECRET_KEY=... -e VUS=3000 -e DURATION=2m loadtest/k6/dist/reconnect.js
 */

import { sleep } from 'k6';
import { Counter, Trend } from 'k6/metrics';
import type { Options } from 'k6/options';
import { env, millis, session } from './lib/centrifugo.ts';

const reconnectTime = new Trend('switchboard_reconnect_time', true);
const reconnects = new Counter('switchboard_reconnects');
const end = Date.now() + millis(env.duration);

export const options: Options = {
  scenarios: {
    clients: { executor: 'constant-vus', vus: env.vus, duration: env.duration, gracefulStop: '5s' },
  },
  thresholds: {
    // A kill drops a third of the connections: their reconnects must succeed, and soon.
    switchboard_connect_success: ['rate>0.99'],
    switchboard_reconnect_time: ['p(99)<5000'],
  },
};

/** When this VU's last connection dropped (0: not dropped). */
let droppedAt = 0;

export default function (): void {
  const remaining = end - Date.now();
  if (remaining <= 0) {
    sleep(1); // the run is ending: no busy loop until k6 stops the VU
    return;
  }
  session({
    user: `re-${__VU}`,
    holdMs: remaining,
    onConnected: () => {
      if (droppedAt > 0) {
        reconnectTime.add(Date.now() - droppedAt);
        reconnects.add(1);
        droppedAt = 0;
      }
    },
    onClose: () => {
      droppedAt = Date.now();
    },
  });
  if (droppedAt > 0) sleep(Math.random());
}
