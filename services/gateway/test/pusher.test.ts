/**
 * The Pusher edge of one embedded gateway against the conformance suite
 * (real pusher-js, laravel-echo, the pusher SDK, a raw socket), strict: no
 * quirks; then what is Switchboard's own: one channel shared with a
 * centrifuge-js client, apps kept apart.
 */

import { after, before } from 'node:test';
import { type Gateway, startGateway } from './harness.js';
import { type PusherTarget, pusherConformance } from './pusher-conformance.js';

const APP = { appId: 'conformance-app', key: 'conformance-key', secret: 'conformance-secret' };

let gateway: Gateway;
let target: PusherTarget;

before(async () => {
  gateway = await startGateway({
    SWITCHBOARD_PUSHER_APPS: JSON.stringify([{ id: APP.appId, key: APP.key, secret: APP.secret }]),
    SWITCHBOARD_OCCUPANCY_DEBOUNCE: '200',
  });
  target = {
    name: 'switchboard',
    wsHost: gateway.host,
    wsPort: gateway.clientPort,
    httpHost: gateway.host,
    httpPort: gateway.internalPort,
    ...APP,
  };
});

after(async () => {
  await gateway.stop();
});

pusherConformance(() => target);
