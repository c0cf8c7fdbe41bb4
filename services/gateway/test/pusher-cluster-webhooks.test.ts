/**
 * Pusher webhooks in a real cluster: a JetStream cluster of three
 * nats-servers, three gateways over it (a short presence TTL and debounce),
 * one app with a webhook to a real HTTP receiver here, pusher-js clients on
 * chosen gateways. Occupancy and members are decided once for the cluster,
 * a SIGKILLed gateway's channels and members are let go after the TTL, no
 * webhook is lost while the receiver refuses and a gateway holding jobs dies
 * (they are queued in JetStream; the dead one's come back after the
 * consumer's ack_wait), and a decider's death neither loses nor invents a
 * transition.
 *
 * "Not announced" is checked with a later marker: a channel subscribed once
 * the change is in NATS KV, then left, whose channel_vacated must arrive.
 * The decider sees presence changes in the order of the bucket and every
 * removal waits the same debounce, so a forbidden channel_vacated or
 * member_removed would have been queued before the marker's.
 */

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { after, before, beforeEach, describe, test, type TestContext } from 'node:test';
import { LEASE_TTL_MS } from '../src/registry/nats.js';
import { type Gateway, waitUntil } from './harness.js';
import { LEASE_EVERY_MS, PusherCluster, SLACK_MS, uniqueNames } from './pusher-cluster.js';
import { type Attempt, eventKey, WebhookReceiver } from './webhook-receiver.js';

const APP = { appId: 'hooks-cluster-app', key: 'hooks-cluster-key', secret: 'hooks-cluster-secret' };
const PATH = '/hooks';
const PRESENCE_TTL_MS = 6000;
const DEBOUNCE_MS = 300;
/** The webhook consumer's ack_wait: a job in a dead gateway's hands is delivered again after it (hooks/webhooks.ts). */
const ACK_WAIT_MS = 30_000;

const unique = uniqueNames('hooks');
const receiver = new WebhookReceiver();

/** How many times the receiver took `name` of `channel` (for `user`). */
const seen = (name: string, channel: string, user?: string) => receiver.seen(PATH, name, channel, user);

/** Every event taken for `channels`, by eventKey, with how many times. */
function tally(...channels: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const e of receiver.events(PATH))
    if (channels.includes(e.channel)) counts[eventKey(e)] = (counts[eventKey(e)] ?? 0) + 1;
  return counts;
}

/** Each event once: `room` occupied and vacated, `lobby` too, with `user` added and removed. */
const lifetime = (room: string, lobby: string, user: string): Record<string, number> => ({
  [`channel_occupied ${room}`]: 1,
  [`channel_vacated ${room}`]: 1,
  [`channel_occupied ${lobby}`]: 1,
  [`member_added ${lobby} ${user}`]: 1,
  [`member_removed ${lobby} ${user}`]: 1,
  [`channel_vacated ${lobby}`]: 1,
});

/** Waits until the receiver took `name` of `channel` (for `user`). */
async function arrives(name: string, channel: string, user?: string, timeoutMs = 5000): Promise<void> {
  await waitUntil(
    () => seen(name, channel, user) > 0,
    timeoutMs,
    () =>
      `${[name, channel, user].filter(Boolean).join(' ')} at the receiver; taken for that channel: ` +
      JSON.stringify(tally(channel)),
  );
}

/**
 * The gateway whose process holds the TCP connection from `port` to the
 * receiver: the connection's inode in /proc/net/tcp, then the process with
 * that socket among its file descriptors (Linux).
 */
function senderOf(port: number, gateways: Gateway[]): Gateway | undefined {
  const hex = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const [, local, remote, , , , , , , inode] = line.trim().split(/\s+/);
      if (local?.endsWith(`:${hex(port)}`) && remote?.endsWith(`:${hex(receiver.port)}`)) inodes.add(inode!);
    }
  }
  const holds = (pid: number) => {
    for (const fd of readdirSync(`/proc/${pid}/fd`)) {
      const link = (() => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`);
        } catch {
          return ''; // closed meanwhile
        }
      })();
      const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
      if (inode !== undefined && inodes.has(inode)) return true;
    }
    return false;
  };
  return gateways.find((g) => g.process.pid !== undefined && holds(g.process.pid));
}

describe('Pusher webhooks on three gateways over a JetStream cluster', () => {
  let pc: PusherCluster;

  before(async () => {
    await receiver.start();
    pc = await PusherCluster.start(APP, {
      SWITCHBOARD_PUSHER_APPS: JSON.stringify([
        { id: APP.appId, key: APP.key, secret: APP.secret, webhooks: [{ url: receiver.url(PATH) }] },
      ]),
      SWITCHBOARD_PRESENCE_TTL: String(PRESENCE_TTL_MS / 1000),
      SWITCHBOARD_OCCUPANCY_DEBOUNCE: String(DEBOUNCE_MS),
    });
  });

  after(async () => {
    await receiver.close();
    await pc?.stop();
  });

  // Three live gateways for every test: a replacement (not behind HAProxy) for each one killed before.
  beforeEach(() => pc.replenish(3), { timeout: 60_000 });

  /** A channel subscribed through `via` and left: waits for its channel_occupied and channel_vacated. */
  async function marker(t: TestContext, via: Gateway): Promise<void> {
    const name = unique('marker-');
    const c = await pc.clients(t)('marker', via);
    await c.subscribe(name);
    await arrives('channel_occupied', name);
    c.pusher.unsubscribe(name);
    await arrives('channel_vacated', name);
  }

  /** Waits until none of `sockets` has a presence entry in `channel` (the gateway's delete is in NATS KV). */
  async function outOfPresence(channel: string, sockets: string[], via: Gateway): Promise<void> {
    await waitUntil(
      async () => !(await pc.presenceClients(channel, via)).some((s) => sockets.includes(s)),
      5000,
      () => `${sockets.join(', ')} out of the presence of ${channel}`,
    );
  }

  test('decided for the cluster: a channel vacated only when its last subscriber anywhere leaves, a member removed only after its last tab, each once', async (t) => {
    const open = pc.clients(t);
    const [a, b, c] = [pc.gateway(0), pc.gateway(1), pc.gateway(2)];
    const room = unique('');
    const lobby = unique('presence-');
    const onA = await open('subscriber on A', a);
    const onB = await open('subscriber on B', b);
    await onA.subscribe(room);
    await onB.subscribe(room);
    const u1 = { presence: { user_id: 'u1', user_info: { name: 'One' } } };
    const tabA = await open('u1 tab on A', a, u1);
    const tabC = await open('u1 tab on C', c, u1);
    await tabA.subscribe(lobby);
    await tabC.subscribe(lobby);
    await arrives('channel_occupied', room);
    await arrives('member_added', lobby, 'u1');

    // A's subscriber and u1's tab on A leave: B still has a subscriber, C a tab of u1.
    const [subscriberA, tabOnA] = [onA.socketId, tabA.socketId];
    onA.pusher.unsubscribe(room);
    tabA.disconnect();
    await outOfPresence(room, [subscriberA], b);
    await outOfPresence(lobby, [tabOnA], b);
    await marker(t, c);
    assert.deepEqual(
      tally(room, lobby),
      { [`channel_occupied ${room}`]: 1, [`channel_occupied ${lobby}`]: 1, [`member_added ${lobby} u1`]: 1 },
      'nothing vacated or removed while B has a subscriber and C a tab',
    );

    // The last ones leave.
    onB.pusher.unsubscribe(room);
    tabC.disconnect();
    await arrives('channel_vacated', room);
    await arrives('member_removed', lobby, 'u1');
    await arrives('channel_vacated', lobby);
    await marker(t, a);
    assert.deepEqual(tally(room, lobby), lifetime(room, lobby, 'u1'));
  });

  test('a SIGKILLed gateway: the channel it had the only subscriber of is vacated, its member removed, after the presence TTL and the debounce, once', async (t) => {
    const open = pc.clients(t);
    const holder = await pc.decider();
    // Not the decider: its death is the last test.
    const victim = pc.live().find((g) => g !== holder)!;
    const witness = pc.live().find((g) => g !== victim)!;
    const room = unique('');
    const lobby = unique('presence-');
    const doomed = await open('the only subscriber, on the victim', victim, {
      presence: { user_id: 'doomed' },
    });
    await doomed.subscribe(room);
    await doomed.subscribe(lobby);
    await arrives('channel_occupied', room);
    await arrives('member_added', lobby, 'doomed');

    const killedAt = Date.now();
    await victim.stop('SIGKILL');
    const bound = PRESENCE_TTL_MS + DEBOUNCE_MS + SLACK_MS;
    await arrives('channel_vacated', room, undefined, bound);
    const vacatedAfter = Date.now() - killedAt;
    await arrives('member_removed', lobby, 'doomed', bound);
    await arrives('channel_vacated', lobby, undefined, bound);
    t.diagnostic(
      `channel_vacated ${vacatedAfter} ms, all three ${Date.now() - killedAt} ms after the SIGKILL (bound ${bound} ms)`,
    );
    // Its entries were refreshed a third of the TTL before the death at the most: they outlived it by the rest.
    assert.ok(
      vacatedAfter >= PRESENCE_TTL_MS / 2,
      `channel_vacated ${vacatedAfter} ms after the SIGKILL, before the presence TTL could pass`,
    );

    await marker(t, witness);
    assert.deepEqual(tally(room, lobby), lifetime(room, lobby, 'doomed'));
  });

  test(
    'no webhook lost: refused (500, then the socket closed), then held by a gateway that is SIGKILLed, every event arrives once the receiver takes them, signed',
    { timeout: 45_000 },
    async (t) => {
      const open = pc.clients(t);
      const channels = [unique('lost-'), unique('lost-'), unique('presence-lost-')];
      const lobby = channels[2]!;
      const expected = [
        ...channels.flatMap((c) => [`channel_occupied ${c}`, `channel_vacated ${c}`]),
        `member_added ${lobby} lost`,
        `member_removed ${lobby} lost`,
      ].sort();
      const mine = (a: Pick<Attempt, 'events'>) => a.events.some((e) => channels.includes(e.channel));
      // Each of these jobs: refused with 500, then its connection closed unanswered, then held
      // (in the sender's hands); from then on taken.
      const plan = ['refuse', 'destroy', 'hold'] as const;
      receiver.answer = (a) => (mine(a) ? (plan[a.n - 1] ?? 'accept') : 'accept');
      t.after(() => {
        receiver.answer = () => 'accept';
        receiver.release('accept');
      });

      const startedAt = Date.now();
      const subscriber = await open('subscriber', pc.live()[0]!, { presence: { user_id: 'lost' } });
      for (const c of channels) await subscriber.subscribe(c);
      for (const c of channels) subscriber.pusher.unsubscribe(c);
      const heldKeys = () => [...new Set(receiver.holding().map((a) => a.key))].sort();
      await waitUntil(
        () => JSON.stringify(heldKeys()) === JSON.stringify(expected),
        15_000,
        () => `every job held at its third attempt; held: ${JSON.stringify(heldKeys())}`,
      );
      assert.ok(
        receiver.attempts
          .filter(mine)
          .every(
            (a) => (a.n === 1 && a.answer === 'refuse') || (a.n === 2 && a.answer === 'destroy') || a.n === 3,
          ),
        'each job refused, then dropped, then held',
      );
      assert.deepEqual(receiver.received.filter(mine), [], 'nothing taken yet');

      // Who holds what: the gateway with the most jobs in hand dies with them.
      const held = receiver.holding();
      const byGateway = new Map<Gateway, Attempt[]>();
      for (const a of held) {
        const sender = senderOf(a.remotePort, pc.live());
        assert.ok(sender, `the gateway sending from port ${a.remotePort}`);
        byGateway.set(sender, [...(byGateway.get(sender) ?? []), a]);
      }
      const [victim, inHand] = [...byGateway].sort(([, x], [, y]) => y.length - x.length)[0]!;
      const victimId = pc.nodeIds.get(victim);
      t.diagnostic(
        `held by ${[...byGateway].map(([g, as]) => `${pc.nodeIds.get(g)}: ${as.length}`).join(', ')}; ` +
          `SIGKILL ${victimId}${victim === (await pc.decider()) ? ' (the decider)' : ''}`,
      );
      const killedAt = Date.now();
      await victim.stop('SIGKILL');
      await waitUntil(
        () => inHand.every((a) => a.dropped),
        5000,
        () => `the connections of ${victimId}'s deliveries closed by its death`,
      );
      // The others' deliveries in hand are taken now; the dead one's come back after ack_wait.
      receiver.release('accept');

      const taken = () =>
        [...new Set(receiver.received.filter(mine).flatMap((d) => d.events.map(eventKey)))].sort();
      await waitUntil(
        () => JSON.stringify(taken()) === JSON.stringify(expected),
        ACK_WAIT_MS + 10_000,
        () => `every event taken; taken: ${JSON.stringify(taken())}`,
      );
      const lastAt = Math.max(
        ...receiver.attempts.filter((a) => mine(a) && a.answer === 'accept').map((a) => a.at),
      );
      const lost = new Set(inHand.map((a) => a.key));
      const counts = tally(...channels);
      const duplicates = Object.values(counts).reduce((sum, n) => sum + n - 1, 0);
      t.diagnostic(
        `${expected.length} events, ${lost.size} in ${victimId}'s hands: all taken ${lastAt - killedAt} ms after the SIGKILL ` +
          `(${lastAt - startedAt} ms after the first subscribe); ${duplicates} duplicates; ` +
          `${receiver.attempts.filter(mine).length} requests in all`,
      );
      assert.deepEqual(Object.keys(counts).sort(), expected, 'every event, nothing else');
      // The dead gateway's jobs were delivered again, by another: a fourth attempt each.
      for (const key of lost)
        assert.ok(
          receiver.attempts.some((a) => a.key === key && a.n > 3 && a.answer === 'accept'),
          `${key} taken after ${victimId}'s death`,
        );

      const sdk = pc.sdk(pc.live()[0]!);
      for (const a of receiver.attempts.filter(mine)) {
        assert.equal(a.headers['x-pusher-key'], APP.key);
        assert.ok(
          sdk.webhook({ headers: a.headers, rawBody: a.body }).isValid(),
          `signature of ${a.key} #${a.n}`,
        );
      }
    },
  );

  test('the decider SIGKILLed: a successor takes the lease, a channel vacated after it once, nothing announced again for channels that did not change', async (t) => {
    const open = pc.clients(t);
    const holder = await pc.decider();
    const [s1, s2] = pc.live().filter((g) => g !== holder) as [Gateway, Gateway];
    const leaving = unique('');
    const staying = unique('');
    const lobby = unique('presence-');
    const leaver = await open('leaves after the takeover', s1);
    await leaver.subscribe(leaving);
    const stayer = await open('stays', s2, { presence: { user_id: 'stayer' } });
    await stayer.subscribe(staying);
    await stayer.subscribe(lobby);
    // Each transition is recorded in KV before its webhook is queued: a successor finds these.
    await arrives('channel_occupied', leaving);
    await arrives('channel_occupied', staying);
    await arrives('member_added', lobby, 'stayer');
    await arrives('channel_occupied', lobby);

    const earlier = new Set(receiver.received.flatMap((d) => d.events.map(eventKey)));
    const from = receiver.received.length;
    const killedAt = Date.now();
    await holder.stop('SIGKILL');
    const successor = await pc.successor(holder, LEASE_TTL_MS + LEASE_EVERY_MS + SLACK_MS);
    t.diagnostic(
      `${pc.nodeIds.get(successor)} holds the lease ${Date.now() - killedAt} ms after the SIGKILL of ${pc.nodeIds.get(holder)}`,
    );
    assert.ok([s1, s2].includes(successor), `${pc.nodeIds.get(successor)} is a live gateway`);

    leaver.pusher.unsubscribe(leaving);
    await arrives('channel_vacated', leaving, undefined, LEASE_EVERY_MS + DEBOUNCE_MS + SLACK_MS);
    t.diagnostic(`channel_vacated ${Date.now() - killedAt} ms after the SIGKILL`);
    await marker(t, s2);
    assert.deepEqual(tally(leaving, staying, lobby), {
      [`channel_occupied ${leaving}`]: 1,
      [`channel_vacated ${leaving}`]: 1,
      [`channel_occupied ${staying}`]: 1,
      [`channel_occupied ${lobby}`]: 1,
      [`member_added ${lobby} stayer`]: 1,
    });
    // Nor for any channel of the tests before: the successor started from what was announced.
    const again = receiver.received
      .slice(from)
      .flatMap((d) => d.events.map(eventKey))
      .filter((k) => earlier.has(k));
    assert.deepEqual(again, [], 'events announced before the SIGKILL, announced again');
  });
});
