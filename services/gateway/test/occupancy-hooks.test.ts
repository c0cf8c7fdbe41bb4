/**
 * Occupancy hooks of a Centrifugo namespace (`webhook_url`), with real
 * centrifuge-js clients and a real HTTP receiver: occupied and vacated once,
 * a member once per user across connections and removed after its last,
 * signed with the server API key.
 */

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import type { Centrifuge } from 'centrifuge';
import { API_KEY, connectedClient, type Gateway, nextEvent, startGateway, waitUntil } from './harness.js';

interface Hook {
  headers: IncomingHttpHeaders;
  body: string;
  events: { name: string; channel: string; user?: string }[];
}

let gateway: Gateway;
let receiver: Server;
const hooks: Hook[] = [];
const opened: Centrifuge[] = [];
const seen = (name: string, channel: string, user?: string) =>
  hooks
    .flatMap((h) => h.events)
    .filter((e) => e.name === name && e.channel === channel && (user === undefined || e.user === user))
    .length;

before(async () => {
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      hooks.push({ headers: req.headers, body, events: JSON.parse(body).events });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
  gateway = await startGateway({
    SWITCHBOARD_NAMESPACES: JSON.stringify([
      { name: 'lobby', presence: true, allow_subscribe_for_client: true, webhook_url: url },
      { name: 'quiet', presence: true, allow_subscribe_for_client: true },
    ]),
    SWITCHBOARD_OCCUPANCY_DEBOUNCE: '200',
  });
});

after(async () => {
  for (const c of opened) c.disconnect();
  await gateway.stop();
  receiver.close();
});

async function subscribe(c: Centrifuge, channel: string) {
  const sub = c.newSubscription(channel);
  sub.subscribe();
  await nextEvent(sub, 'subscribed');
  return sub;
}

test("a namespace with webhook_url gets its channels' occupancy and members, signed with the API key", async () => {
  const [a, b, a2] = [
    await connectedClient(gateway, 'ann', opened),
    await connectedClient(gateway, 'bob', opened),
    await connectedClient(gateway, 'ann', opened),
  ];
  const subs = [
    await subscribe(a, 'lobby:hall'),
    await subscribe(b, 'lobby:hall'),
    await subscribe(a2, 'lobby:hall'),
  ];
  await subscribe(b, 'quiet:room');
  await waitUntil(
    () => seen('member_added', 'lobby:hall', 'bob') === 1,
    5000,
    () => 'member_added bob',
  );
  assert.equal(seen('channel_occupied', 'lobby:hall'), 1);
  assert.equal(seen('member_added', 'lobby:hall', 'ann'), 1, 'one member for two connections');
  const signed = hooks[0]!;
  assert.equal(
    signed.headers['x-switchboard-signature'],
    createHmac('sha256', API_KEY).update(signed.body).digest('hex'),
  );
  // One of ann's connections leaves, then bob: bob is removed, ann is not.
  subs[2]!.unsubscribe();
  subs[1]!.unsubscribe();
  await waitUntil(
    () => seen('member_removed', 'lobby:hall', 'bob') === 1,
    5000,
    () => 'member_removed bob',
  );
  assert.equal(seen('member_removed', 'lobby:hall', 'ann'), 0);
  subs[0]!.unsubscribe();
  await waitUntil(
    () => seen('channel_vacated', 'lobby:hall') === 1,
    5000,
    () => 'channel_vacated',
  );
  assert.equal(seen('member_removed', 'lobby:hall', 'ann'), 1);
  assert.ok(
    hooks.flatMap((h) => h.events).every((e) => e.channel.startsWith('lobby:')),
    'a namespace without webhook_url sends none',
  );
});
