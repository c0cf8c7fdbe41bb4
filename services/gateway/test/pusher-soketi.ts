/**
 * The Pusher conformance suite against the reference peer, Soketi 1.6.1
 * (loadtest/peers/soketi, installed by `make soketi`): `make pusher-reference`.
 * Not part of `make test` (not a *.test.js file): Soketi is a bench-only
 * install and runs on Node 20 only.
 *
 * Starts Soketi (soketi.ts: free loopback ports, one known app, waits for
 * /ready), runs the suite, and stops it after.
 */

import { after, before } from 'node:test';
import { type PusherQuirk, type PusherTarget, pusherConformance } from './pusher-conformance.js';
import { type Soketi, SOKETI_VERSION, startSoketi } from './soketi.js';

/**
 * Where Soketi 1.6.1 deviates from Pusher's documentation, as observed by this
 * suite (each test still runs and reports its assertions, as TODO).
 */
const SOKETI_QUIRKS = new Map<PusherQuirk, string>([
  [
    'client-events-public-refused',
    'relays client-* events on public channels (it checks only that the sender is subscribed) and answers no pusher:error',
  ],
  [
    'api-error-status',
    'answers HTTP API errors (401 for a wrong signature, 400 for a bad request) with status 200 and the status only as "code" in the JSON body: its CORS middleware writes headers before writeStatus, so uWebSockets.js has already sent 200 OK',
  ],
  [
    'channels-info-user-count',
    'GET /channels ignores info=user_count: every channel gets subscription_count and occupied instead',
  ],
  [
    'channels-info-user-count-needs-presence-prefix',
    'GET /channels with info=user_count and no presence- filter_by_prefix answers 200 instead of 400',
  ],
]);

let soketi: Soketi | undefined;
let target: PusherTarget | undefined;

before(async () => {
  const app = { appId: 'conformance-app', key: 'conformance-key', secret: 'conformance-secret' };
  soketi = await startSoketi(app, {
    SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
    // pusher:signin is answered only where user authentication is on; connections that do not
    // sign in are then closed after SOKETI_USER_AUTHENTICATION_TIMEOUT ms, longer than any run.
    SOKETI_DEFAULT_APP_USER_AUTHENTICATION: 'true',
    SOKETI_USER_AUTHENTICATION_TIMEOUT: String(30 * 60 * 1000),
  });
  target = {
    name: `Soketi ${SOKETI_VERSION}`,
    wsHost: soketi.host,
    wsPort: soketi.port,
    httpHost: soketi.host,
    httpPort: soketi.port,
    ...app,
    quirks: SOKETI_QUIRKS,
  };
});

after(async () => {
  await soketi?.stop();
});

pusherConformance(() => {
  if (!target) throw new Error('Soketi did not start');
  return target;
});
