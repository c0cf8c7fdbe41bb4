/**
 * Occupancy hooks to a namespace's backend service over NATS
 * (`service_hooks`, the SDK's onOccupancy), with a real nats-server, the SDK
 * and centrifuge-js: the events a webhook_url would get, at least once (a
 * replica that throws gets the event again).
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { OccupancyEvent } from '@switchboard/protocol';
import { NatsBus, Service } from '@switchboard/sdk';
import type { Centrifuge } from 'centrifuge';
import { type Nats, startNats } from './cluster.js';
import { connectedClient, type Gateway, nextEvent, startGateway, waitUntil } from './harness.js';

let nats: Nats;
let gateway: Gateway;
let nc: NatsConnection;
let service: Service;
const opened: Centrifuge[] = [];
const events: OccupancyEvent[] = [];
let calls = 0;

before(async () => {
  nats = await startNats();
  gateway = await startGateway({
    SWITCHBOARD_BROKER: 'nats',
    SWITCHBOARD_NATS_URL: nats.url,
    SWITCHBOARD_OCCUPANCY_DEBOUNCE: '200',
    SWITCHBOARD_NAMESPACES: JSON.stringify([
      { name: 'desk', service: true, presence: true, service_hooks: true },
    ]),
  });
  nc = await connect({ servers: nats.url });
  service = new Service(new NatsBus(nc), { namespace: 'desk' })
    .onSubscribe(() => ({}))
    .onOccupancy((event) => {
      // The first event is refused once: it must come again.
      if (++calls === 1) throw new Error('not now');
      events.push(event);
    });
  await service.start();
});

after(async () => {
  for (const c of opened) c.disconnect();
  await service.stop();
  await nc.close();
  await gateway.stop();
  await nats.stop();
});

const seen = (name: string, user?: string) =>
  events.filter((e) => e.name === name && e.channel === 'desk:a' && e.user === user).length;

test('the service gets occupied, member added and removed, vacated, each once, a refused one again', async () => {
  const [ann, ann2] = [
    await connectedClient(gateway, 'ann', opened),
    await connectedClient(gateway, 'ann', opened),
  ];
  const subs = [ann.newSubscription('desk:a'), ann2.newSubscription('desk:a')];
  for (const sub of subs) {
    sub.subscribe();
    await nextEvent(sub, 'subscribed');
  }
  // channel_occupied was refused once and retried after the first backoff (1 s).
  await waitUntil(
    () => seen('channel_occupied') === 1 && seen('member_added', 'ann') === 1,
    5000,
    () => JSON.stringify(events),
  );
  subs[1]!.unsubscribe();
  subs[0]!.unsubscribe();
  await waitUntil(
    () => seen('channel_vacated') === 1,
    5000,
    () => JSON.stringify(events),
  );
  assert.equal(seen('member_removed', 'ann'), 1);
  assert.equal(seen('member_added', 'ann'), 1, 'two connections, one member');
  assert.equal(seen('channel_occupied'), 1);
  assert.equal(events.length, 4, JSON.stringify(events));
  assert.equal(calls, 5, 'four events, and the refused one twice');
});
