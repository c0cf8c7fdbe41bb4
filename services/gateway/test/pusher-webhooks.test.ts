/**
 * Pusher webhooks of an embedded gateway, received by a real HTTP server and
 * checked with the `pusher` SDK's own webhook validation: exactly the
 * expected events after the debounce (occupied/vacated, a member per user
 * however many tabs, client events, cache misses), only the event types a
 * webhook asks for, and a refused delivery tried again until it is taken.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import PusherServer from 'pusher';
import type * as PusherJsModule from 'pusher-js';
import { type Gateway, metric, startGateway, waitUntil } from './harness.js';
import { gatewaySdk, PusherJsClass } from './pusher-conformance.js';
import { WebhookReceiver } from './webhook-receiver.js';

type PusherJs = InstanceType<typeof PusherJsModule.default.default>;

const APP = { id: 'hooks-app', key: 'hooks-key', secret: 'hooks-secret' };
const DEBOUNCE_MS = 300;

let gateway: Gateway;
const receiver = new WebhookReceiver();
const clients: PusherJs[] = [];
let sdk: PusherServer;

const events = (path: string) => receiver.events(path);
const seen = (path: string, name: string, channel: string, user?: string) =>
  receiver.seen(path, name, channel, user);

before(async () => {
  await receiver.start();
  gateway = await startGateway({
    SWITCHBOARD_PUSHER_APPS: JSON.stringify([
      {
        ...APP,
        webhooks: [
          { url: receiver.url('/all') },
          { url: receiver.url('/occupied'), event_types: ['channel_occupied'] },
        ],
      },
    ]),
    SWITCHBOARD_OCCUPANCY_DEBOUNCE: String(DEBOUNCE_MS),
  });
  sdk = gatewaySdk(gateway, APP);
});

after(async () => {
  for (const c of clients) c.disconnect();
  await gateway.stop();
  await receiver.close();
});

/** A connected pusher-js client; presence channels are signed for `user`. */
async function connect(user = 'nobody'): Promise<PusherJs> {
  const client = new PusherJsClass(APP.key, {
    cluster: 'mt1',
    wsHost: gateway.host,
    wsPort: gateway.clientPort,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      endpoint: '',
      transport: 'ajax',
      customHandler: ({ socketId, channelName }: { socketId: string; channelName: string }, callback) =>
        callback(
          null,
          sdk.authorizeChannel(
            socketId,
            channelName,
            channelName.startsWith('presence-') ? { user_id: user, user_info: { name: user } } : undefined,
          ),
        ),
    },
  });
  clients.push(client);
  await new Promise<void>((resolve) => client.connection.bind('connected', resolve));
  return client;
}

async function subscribe(client: PusherJs, channel: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const ch = client.subscribe(channel);
    ch.bind('pusher:subscription_succeeded', () => resolve());
    ch.bind('pusher:subscription_error', (e: unknown) => reject(new Error(JSON.stringify(e))));
  });
}

describe('Pusher webhooks', () => {
  test('every delivery is signed with the app secret, as the pusher SDK validates it', async () => {
    const a = await connect();
    await subscribe(a, 'signed');
    await waitUntil(
      () => seen('/all', 'channel_occupied', 'signed') === 1,
      5000,
      () => 'channel_occupied of signed',
    );
    const delivery = receiver.received.find((r) => r.events.some((e) => e.channel === 'signed'))!;
    assert.equal(delivery.headers['x-pusher-key'], APP.key);
    assert.ok(sdk.webhook({ headers: delivery.headers, rawBody: delivery.body }).isValid());
    const forged = new PusherServer({ appId: APP.id, key: APP.key, secret: 'other', host: 'x' });
    assert.equal(forged.webhook({ headers: delivery.headers, rawBody: delivery.body }).isValid(), false);
    assert.equal(typeof JSON.parse(delivery.body).time_ms, 'number');
    a.disconnect();
  });

  test('occupied and vacated once per channel, a member once per user however many tabs, only after the debounce', async () => {
    const [u1, u2, u1b] = [await connect('u1'), await connect('u2'), await connect('u1')];
    await subscribe(u1, 'room');
    for (const c of [u1, u2, u1b]) await subscribe(c, 'presence-lobby');
    await waitUntil(
      () => seen('/all', 'member_added', 'presence-lobby', 'u2') === 1,
      5000,
      () => 'member_added u2',
    );
    // u1's second tab leaves, then u2 leaves: u2's removal comes, u1's never (u1 still has a tab).
    u1b.disconnect();
    u2.unsubscribe('presence-lobby');
    await waitUntil(
      () => seen('/all', 'member_removed', 'presence-lobby', 'u2') === 1,
      5000,
      () => 'member_removed u2',
    );
    assert.equal(seen('/all', 'member_removed', 'presence-lobby', 'u1'), 0, 'u1 still has a tab');
    assert.equal(seen('/all', 'channel_vacated', 'presence-lobby'), 0);
    u1.disconnect();
    await waitUntil(
      () => seen('/all', 'channel_vacated', 'room') === 1,
      5000,
      () => 'channel_vacated room',
    );
    await waitUntil(
      () => seen('/all', 'channel_vacated', 'presence-lobby') === 1,
      5000,
      () => 'channel_vacated lobby',
    );
    assert.equal(seen('/all', 'member_removed', 'presence-lobby', 'u1'), 1);
    assert.equal(seen('/all', 'member_added', 'presence-lobby', 'u1'), 1, 'one member_added for two tabs');
    assert.equal(seen('/all', 'channel_occupied', 'presence-lobby'), 1);
    assert.equal(seen('/all', 'channel_occupied', 'room'), 1);
    // The second webhook asked for channel_occupied only.
    assert.deepEqual(new Set(events('/occupied').map((e) => e.name)), new Set(['channel_occupied']));
    assert.equal(seen('/occupied', 'channel_occupied', 'presence-lobby'), 1);
    u2.disconnect();
  });

  test('a reconnect within the debounce announces nothing', async () => {
    const first = await connect('flap');
    await subscribe(first, 'presence-flap');
    await waitUntil(
      () => seen('/all', 'member_added', 'presence-flap', 'flap') === 1,
      5000,
      () => 'member_added flap',
    );
    first.disconnect();
    const again = await connect('flap');
    await subscribe(again, 'presence-flap');
    // The marker: a channel left after the reconnect is vacated one debounce later, so flap's
    // removal, had it been announced, would have come first.
    await subscribe(again, 'marker');
    again.unsubscribe('marker');
    await waitUntil(
      () => seen('/all', 'channel_vacated', 'marker') === 1,
      5000,
      () => 'the marker',
    );
    assert.equal(seen('/all', 'member_removed', 'presence-flap', 'flap'), 0);
    assert.equal(seen('/all', 'channel_vacated', 'presence-flap'), 0);
    assert.equal(seen('/all', 'member_added', 'presence-flap', 'flap'), 1);
    again.disconnect();
  });

  test('client events and cache misses are webhooks too', async () => {
    const [sender, other] = [await connect('s'), await connect('o')];
    await subscribe(sender, 'private-chat');
    await subscribe(other, 'private-chat');
    sender.channel('private-chat')!.trigger('client-typing', { who: 's' });
    await waitUntil(
      () => seen('/all', 'client_event', 'private-chat') === 1,
      5000,
      () => 'client_event',
    );
    const hook = events('/all').find((e) => e.name === 'client_event')!;
    assert.equal(hook.event, 'client-typing');
    assert.deepEqual(JSON.parse(hook.data!), { who: 's' });
    assert.equal(hook.socket_id, sender.connection.socket_id);
    await subscribe(other, 'cache-empty');
    await waitUntil(
      () => seen('/all', 'cache_miss', 'cache-empty') === 1,
      5000,
      () => 'cache_miss',
    );
    sender.disconnect();
    other.disconnect();
  });

  test('a refused delivery is tried again, with backoff, until the endpoint takes it', async () => {
    receiver.refuse('/all', 2);
    const before = await metric(gateway, 'switchboard_pusher_webhooks_total', [
      `app="${APP.id}"`,
      'outcome="retried"',
    ]);
    const c = await connect();
    await subscribe(c, 'retried');
    await waitUntil(
      () => seen('/all', 'channel_occupied', 'retried') === 1,
      15_000,
      () => 'the third attempt',
    );
    assert.equal(receiver.refusalsLeft('/all'), 0);
    const retried = await metric(gateway, 'switchboard_pusher_webhooks_total', [
      `app="${APP.id}"`,
      'outcome="retried"',
    ]);
    assert.equal(retried - before, 2);
    c.disconnect();
  });
});
