/**
 * The Pusher edge in a real cluster: a JetStream cluster of three
 * nats-servers, three gateways over it behind HAProxy, real pusher-js clients
 * on chosen gateways (or HAProxy), the `pusher` SDK at a gateway's HTTP API,
 * centrifuge-js beside them. Events cross gateways, a presence channel is one
 * roster for the whole cluster, a gateway or the occupancy decider dying
 * leaves no ghost member and loses no member_removed, Pusher and Centrifugo
 * clients share channels, and apps stay apart.
 *
 * "Nothing arrives" is checked with a later marker on the same path: an API
 * event where the forbidden one would travel as an event, and a later member
 * announcement of the decider where it would be one (the decider announces in
 * the order it sees presence changes, each removal after the same debounce).
 */

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test, type TestContext } from 'node:test';
import type { Centrifuge } from 'centrifuge';
import type { PresenceChannel } from 'pusher-js';
import { LEASE_TTL_MS } from '../src/registry/nats.js';
import { api, connectedClient, type Gateway, nextEvent, waitUntil } from './harness.js';
import { LEASE_EVERY_MS, type Place, PusherCluster, SLACK_MS, uniqueNames } from './pusher-cluster.js';
import { type Client, type Frame, pusherSdk } from './pusher-conformance.js';
import { subscribe } from './traffic.js';

const APP = { appId: 'cluster-app', key: 'cluster-key', secret: 'cluster-secret' };
const OTHER = { appId: 'other-app', key: 'other-key', secret: 'other-secret' };
type App = typeof APP;

const PRESENCE_TTL_MS = 6000;
const DEBOUNCE_MS = 300;

const ENV = {
  SWITCHBOARD_PUSHER_APPS: JSON.stringify(
    [APP, OTHER].map((app) => ({ id: app.appId, key: app.key, secret: app.secret })),
  ),
  // The first app's namespace configured by hand: its channels open to Centrifugo clients too.
  SWITCHBOARD_NAMESPACES: JSON.stringify([
    {
      name: APP.appId,
      presence: true,
      join_leave: true,
      allow_subscribe_for_client: true,
      allow_publish_for_subscriber: true,
    },
  ]),
  SWITCHBOARD_PRESENCE_TTL: String(PRESENCE_TTL_MS / 1000),
  SWITCHBOARD_OCCUPANCY_DEBOUNCE: String(DEBOUNCE_MS),
};

/** A channel name of this run only. */
const unique = uniqueNames('cluster');

const isMember = (kind: 'added' | 'removed', user: string, channel: string) => (f: Frame) =>
  f.channel === channel && f.event === `pusher_internal:member_${kind}` && f.data?.user_id === user;

const memberIds = (channel: PresenceChannel): string[] => {
  const ids: string[] = [];
  channel.members.each((m: { id: string }) => ids.push(m.id));
  return ids.sort();
};

/** The frames `c` received before `index` that match. */
const framesBefore = (c: Client, index: number, match: (f: Frame) => boolean) =>
  c.frames.slice(0, index).filter(match);

describe('the Pusher edge on three gateways over a JetStream cluster', () => {
  let pc: PusherCluster;

  before(async () => {
    pc = await PusherCluster.start(APP, ENV);
  });

  after(async () => {
    await pc?.stop();
  });

  const gateway = (i: number) => pc.gateway(i);
  const live = () => pc.live();
  const clientsOf = (g: Gateway) => pc.clientsOf(g);
  const target = (app: App, ws: Place, http: Gateway) => pc.target(app, ws, http);
  const sdk = (via: Gateway, app: App = APP) => pc.sdk(via, app);
  const pusherClients = (t: TestContext) => pc.clients(t);
  const presenceClients = (channel: string, via: Gateway) => pc.presenceClients(channel, via);
  const decider = () => pc.decider();

  /** Triggers a marker event on `channel` through `via`; returns a matcher for it. */
  async function marker(channel: string, via: Gateway, app: App = APP): Promise<(f: Frame) => boolean> {
    const id = randomBytes(4).toString('hex');
    await sdk(via, app).trigger(channel, 'marker', { id });
    return (f) => f.channel === channel && f.event === 'marker' && f.data?.id === id;
  }

  /** GET /channels/<name>/users through `via`: the ids, sorted. */
  async function users(channel: string, via: Gateway): Promise<string[]> {
    const res = await sdk(via).get({ path: `/channels/${channel}/users` });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { users: { id: string }[] };
    return body.users.map((u) => u.id).sort();
  }

  test('an event triggered through one gateway reaches pusher-js clients on the others and through HAProxy; socket_id excludes across gateways', async (t) => {
    const open = pusherClients(t);
    const name = unique('');
    const onB = await open('client on B', gateway(1));
    const onC = await open('client on C', gateway(2));
    const viaProxy = await open('client through HAProxy', {
      host: '127.0.0.1',
      port: pc.cluster.haproxy.port,
    });
    for (const c of [onB, onC, viaProxy]) await c.subscribe(name);

    const data = { text: 'across', nested: { list: [1, 'two'] } };
    await sdk(gateway(0)).trigger(name, 'greeting', data);
    for (const c of [onB, onC, viaProxy]) assert.deepEqual((await c.next(name, 'greeting')).data, data);

    // Triggered at A with the socket_id of B's client: every other client gets it, B's does not.
    await sdk(gateway(0)).trigger(name, 'not-for-b', { x: 2 }, { socket_id: onB.socketId });
    assert.deepEqual((await onC.next(name, 'not-for-b')).data, { x: 2 });
    assert.deepEqual((await viaProxy.next(name, 'not-for-b')).data, { x: 2 });
    const mark = await marker(name, gateway(0));
    await onB.noneBefore(
      (f) => f.event === 'not-for-b',
      mark,
      'an event triggered at another gateway with its socket_id',
    );
    await onC.frame(mark, 'the marker');
  });

  test('presence across gateways: one roster, member_added once per user, member_removed only after the last tab', async (t) => {
    const open = pusherClients(t);
    const [a, b, c] = [gateway(0), gateway(1), gateway(2)];
    const name = unique('presence-');
    const u1 = { presence: { user_id: 'u1', user_info: { name: 'One' } } };
    const u2 = await open('u2 on B', b, { presence: { user_id: 'u2', user_info: { name: 'Two' } } });
    const u2Channel = await u2.subscribe<PresenceChannel>(name);
    const u1a = await open('u1 tab 1 on A', a, u1);
    const u1aChannel = await u1a.subscribe<PresenceChannel>(name);
    const [added] = await u2.frame(isMember('added', 'u1', name), 'member_added u1 on B');
    assert.deepEqual(added.data, { user_id: 'u1', user_info: { name: 'One' } });
    const u1c = await open('u1 tab 2 on C', c, u1);
    const u1cChannel = await u1c.subscribe<PresenceChannel>(name);

    // Every roster: two members, however many tabs and gateways.
    assert.deepEqual(memberIds(u1aChannel), ['u1', 'u2']);
    assert.deepEqual(memberIds(u1cChannel), ['u1', 'u2']);
    assert.deepEqual(memberIds(u2Channel), ['u1', 'u2']);
    assert.equal(u1cChannel.members.get('u2')?.info?.name, 'Two');
    assert.deepEqual(await users(name, c), ['u1', 'u2']);

    // u3 joins after u1's second tab: the decider saw that tab's entry first, so anything it
    // announced for it comes before member_added u3.
    const u3 = await open('u3 on A', a, { presence: { user_id: 'u3' } });
    await u3.subscribe(name);
    const [, u3AddedOnB] = await u2.frame(isMember('added', 'u3', name), 'member_added u3 on B');
    assert.equal(
      framesBefore(u2, u3AddedOnB, isMember('added', 'u1', name)).length,
      1,
      'member_added u1 on B',
    );
    const [, u3AddedOnA] = await u1a.frame(isMember('added', 'u3', name), 'member_added u3 on A');
    assert.deepEqual(
      framesBefore(u1a, u3AddedOnA, (f) => f.event === 'pusher_internal:member_added'),
      [],
      'member_added on tab 1 before u3 (u2 was in its roster, the second tab is the same member)',
    );

    // Closing one of u1's tabs: no member_removed. u3 leaves after that close is in NATS KV, so a
    // member_removed u1 would be announced before u3's.
    const tab2 = u1c.socketId;
    u1c.disconnect();
    await waitUntil(
      async () => !(await presenceClients(name, a)).includes(tab2),
      5000,
      () => 'the closed tab out of presence',
    );
    u3.disconnect();
    for (const watcher of [u2, u1a]) {
      const [, at] = await watcher.frame(
        isMember('removed', 'u3', name),
        `member_removed u3 on ${watcher.label}`,
      );
      assert.deepEqual(
        framesBefore(watcher, at, isMember('removed', 'u1', name)),
        [],
        `${watcher.label}: member_removed u1 while its tab 1 is subscribed`,
      );
    }
    assert.deepEqual(memberIds(u2Channel), ['u1', 'u2']);

    // u1's last tab (on A) closes: u2 on B hears it once.
    u1a.disconnect();
    const [removed] = await u2.frame(isMember('removed', 'u1', name), 'member_removed u1 on B');
    assert.equal(removed.data.user_id, 'u1');
    assert.deepEqual(memberIds(u2Channel), ['u2']);
    assert.deepEqual(await users(name, b), ['u2']);
  });

  test('a centrifuge-js client and a pusher-js client on other gateways see each other’s publications; private- and presence- need a subscription token', async (t) => {
    const open = pusherClients(t);
    const centrifuges: Centrifuge[] = [];
    t.after(() => {
      for (const c of centrifuges) c.disconnect();
    });
    const room = unique('');
    const channel = `${APP.appId}:${room}`;
    const cf = await connectedClient(gateway(0), 'cf-user', centrifuges);
    const cfSub = await subscribe(cf, channel);
    const p = await open('pusher-js on B', gateway(1));
    await p.subscribe(room);

    // The Pusher API (at C) → the Centrifugo client (at A): the data object, the event in the tag.
    await sdk(gateway(2)).trigger(room, 'OrderShipped', { id: 42 });
    assert.deepEqual((await p.next(room, 'OrderShipped')).data, { id: 42 });
    await waitUntil(
      () => cfSub.got.length >= 1,
      5000,
      () => 'the Pusher event on the Centrifugo client',
    );
    assert.deepEqual(cfSub.got[0]!.data, { id: 42 });
    assert.deepEqual(cfSub.got[0]!.tags, { event: 'OrderShipped' });

    // The Centrifugo server API (at C) with an event tag → pusher-js (at B): that event.
    const published = await api(gateway(2), 'publish', { channel, data: { n: 1 }, tags: { event: 'x' } });
    assert.ok(published.body.result, JSON.stringify(published.body));
    assert.deepEqual((await p.next(room, 'x')).data, { n: 1 });
    // The Centrifugo client's own publication, untagged: Pusher's default event name.
    await cfSub.sub.publish({ n: 2 });
    assert.deepEqual((await p.next(room, 'message')).data, { n: 2 });

    // The namespace allows subscribing, yet the app's guarded channels need a subscription token.
    for (const guarded of [unique('private-'), unique('private-encrypted-'), unique('presence-')]) {
      const sub = cf.newSubscription(`${APP.appId}:${guarded}`);
      const unsubscribed = nextEvent<{ code: number }>(sub, 'unsubscribed');
      sub.subscribe();
      assert.equal((await unsubscribed).code, 103, guarded);
      cf.removeSubscription(sub);
    }
  });

  test('two apps: the same channel name never meets, and one app’s secret cannot sign the other’s API calls', async (t) => {
    const open = pusherClients(t);
    const room = unique('');
    const one = await open('app one on C', gateway(2), {}, APP);
    const two = await open('app two on B', gateway(1), {}, OTHER);
    await one.subscribe(room);
    await two.subscribe(room);

    await sdk(gateway(0), APP).trigger(room, 'for-app-one', { app: 1 });
    assert.deepEqual((await one.next(room, 'for-app-one')).data, { app: 1 });
    await two.noneBefore(
      (f) => f.event === 'for-app-one',
      await marker(room, gateway(0), OTHER),
      'an event of the other app',
    );
    // The cluster's channel survey counts each app's own subscribers only.
    const info = await sdk(gateway(0), OTHER).get({
      path: `/channels/${room}`,
      params: { info: 'subscription_count' },
    });
    assert.deepEqual(await info.json(), { occupied: true, subscription_count: 1 });

    const status = (err: unknown) => (err as { status?: number }).status;
    // App two's key and id, signed with app one's secret.
    const forged = pusherSdk(target(OTHER, clientsOf(gateway(0)), gateway(0)), APP.secret);
    await assert.rejects(forged.trigger(room, 'forged', {}), (err) => status(err) === 401);
    await assert.rejects(forged.get({ path: '/channels' }), (err) => status(err) === 401);
    // App one's key and secret on app two's paths.
    const foreign = pusherSdk({ ...target(APP, clientsOf(gateway(0)), gateway(0)), appId: OTHER.appId });
    await assert.rejects(foreign.trigger(room, 'forged', {}), (err) => status(err) === 401);
    await two.noneBefore(
      (f) => f.event === 'forged',
      await marker(room, gateway(0), OTHER),
      'an event of a forged API call',
    );
  });

  // The last two kill gateways: SIGKILL, no goodbye, entries left in NATS KV until their TTL.

  test('a SIGKILLed gateway: channel queries answer at once from the live gateways, its only-there member is removed after the TTL, a member with a tab elsewhere stays, other clients stay connected', async (t) => {
    const open = pusherClients(t);
    const holder = await decider();
    // Not the decider: its own death is the next test.
    const victim = live().find((g) => g !== holder)!;
    const [w, elsewhere] = live().filter((g) => g !== victim) as [Gateway, Gateway];
    const name = unique('presence-');
    const watcher = await open('watcher', w, { presence: { user_id: 'watcher' } });
    await watcher.subscribe(name);
    // u4's tab on the victim subscribes before u3: its entry is never refreshed later than u3's,
    // so were u4 removed, that member_removed would come no later than u3's.
    const u4dead = await open('u4 on the victim', victim, { presence: { user_id: 'u4' } });
    await u4dead.subscribe(name);
    const u4live = await open('u4 on a live gateway', elsewhere, { presence: { user_id: 'u4' } });
    await u4live.subscribe(name);
    const u3 = await open('u3 on the victim', victim, { presence: { user_id: 'u3' } });
    await u3.subscribe(name);
    await watcher.frame(isMember('added', 'u3', name), 'member_added u3');
    assert.deepEqual(await users(name, elsewhere), ['u3', 'u4', 'watcher']);
    const states = [watcher, u4live].map((c) => c.states.length);

    const killedAt = Date.now();
    await victim.stop('SIGKILL');
    // The registry lists the victim until its entry expires: channel queries answer meanwhile
    // from the live gateways, within the survey's bound (1 s), never waiting for the dead one.
    const asked = Date.now();
    const res = await sdk(w).get({ path: `/channels/${name}`, params: { info: 'subscription_count' } });
    const answeredIn = Date.now() - asked;
    assert.equal(res.status, 200);
    assert.deepEqual(
      await res.json(),
      { occupied: true, subscription_count: 2 },
      'the live gateways’ subscribers',
    );
    assert.ok(answeredIn < 2500, `GET /channels/<name> took ${answeredIn} ms with a gateway dead`);
    t.diagnostic(`channel query answered in ${answeredIn} ms right after the SIGKILL`);
    const bound = PRESENCE_TTL_MS + DEBOUNCE_MS + SLACK_MS;
    const [, at] = await watcher.frame(isMember('removed', 'u3', name), 'member_removed u3', bound);
    t.diagnostic(`member_removed u3 ${Date.now() - killedAt} ms after the SIGKILL (bound ${bound} ms)`);
    await u4live.frame(isMember('removed', 'u3', name), 'member_removed u3 on the other live gateway', 2000);
    assert.deepEqual(await users(name, w), ['u4', 'watcher'], 'users after member_removed u3');

    assert.deepEqual(framesBefore(watcher, at, isMember('removed', 'u4', name)), [], 'member_removed u4');
    await watcher.noneBefore(
      isMember('removed', 'u4', name),
      await marker(name, w),
      'member_removed u4 while its tab on a live gateway is subscribed',
    );
    [watcher, u4live].forEach((c, i) => {
      assert.deepEqual(c.states.slice(states[i]), [], `${c.label} left connected`);
      assert.equal(c.pusher.connection.state, 'connected');
    });
  });

  test('the occupancy decider SIGKILLed: another takes the lease, a member leaving meanwhile is removed, the dead one’s member too, nothing announced twice', async (t) => {
    // Three live gateways again: a fourth joins (not behind HAProxy) for the one killed before.
    await pc.replenish(3);
    const open = pusherClients(t);
    const holder = await decider();
    const [s1, s2] = live().filter((g) => g !== holder) as [Gateway, Gateway];
    const name = unique('presence-');
    const ghost = await open('ghost on the decider', holder, { presence: { user_id: 'ghost' } });
    await ghost.subscribe(name);
    const leaver = await open('leaver', s2, { presence: { user_id: 'leaver' } });
    await leaver.subscribe(name);
    const watcher = await open('watcher', s1, { presence: { user_id: 'watcher' } });
    const watcherChannel = await watcher.subscribe<PresenceChannel>(name);
    assert.deepEqual(memberIds(watcherChannel), ['ghost', 'leaver', 'watcher']);
    // The decider records what it announced after publishing it, one batch after another: once
    // the watcher's member_added is out, ghost and leaver are recorded for a successor to find.
    await leaver.frame(isMember('added', 'watcher', name), 'member_added watcher');
    const from = watcher.frames.length;

    const killedAt = Date.now();
    await holder.stop('SIGKILL');
    // Leaves while no gateway announces: the next decider finds it gone.
    leaver.disconnect();
    const takeover = LEASE_TTL_MS + LEASE_EVERY_MS + SLACK_MS;
    const successor = await pc.successor(holder, takeover);
    t.diagnostic(
      `${pc.nodeIds.get(successor)} holds the lease ${Date.now() - killedAt} ms after the SIGKILL of ${pc.nodeIds.get(holder)}`,
    );
    assert.ok([s1, s2].includes(successor), `${pc.nodeIds.get(successor)} is a live gateway`);

    await watcher.frame(isMember('removed', 'leaver', name), 'member_removed leaver', takeover + DEBOUNCE_MS);
    await watcher.frame(
      isMember('removed', 'ghost', name),
      'member_removed ghost',
      Math.max(takeover, PRESENCE_TTL_MS + SLACK_MS) + DEBOUNCE_MS,
    );
    t.diagnostic(`both removed ${Date.now() - killedAt} ms after the SIGKILL`);
    assert.deepEqual(await users(name, s2), ['watcher'], 'no ghost');

    // The successor announced the difference only: each removal once, no member added again.
    const mark = await marker(name, s2);
    const [, at] = await watcher.frame(mark, 'the marker');
    const since = watcher.frames.slice(from, at).filter((f) => f.event.startsWith('pusher_internal:member_'));
    assert.deepEqual(since.map((f) => `${f.event} ${f.data?.user_id}`).sort(), [
      'pusher_internal:member_removed ghost',
      'pusher_internal:member_removed leaver',
    ]);
    assert.equal(watcher.pusher.connection.state, 'connected');
  });
});
