/**
 * Centrifugo v6's connection and subscription token claims end to end, with
 * the real centrifuge-js: `subs` (server-side subscriptions with their info,
 * data and overrides), `b64info`, `expire_at`; the automatic personal channel
 * (`user_subscribe_to_personal`); and one connection per user across two
 * gateways over nats-server (`user_personal_single_connection`).
 */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Centrifuge, DisconnectedContext, PublicationContext, SubscribedContext } from 'centrifuge';
import { type Cluster, startCluster } from './cluster.js';
import {
  api,
  client,
  type Gateway,
  nextEvent,
  RawClient,
  SECRET,
  startGateway,
  token,
  waitUntil,
} from './harness.js';

const TOKEN_CLI = fileURLToPath(new URL('../src/cli/token.js', import.meta.url));
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64');
const now = () => Math.floor(Date.now() / 1000);
const MAX_CHANNELS = 8;

const clients: Centrifuge[] = [];

after(() => {
  for (const c of clients) c.disconnect();
});

function tracked(gateway: Pick<Gateway, 'wsUrl'>, jwt: string): Centrifuge {
  const c = client(gateway, { token: jwt });
  clients.push(c);
  return c;
}

/** A raw connection's connect reply for `jwt` (no token: anonymous). */
async function rawConnectReply(gateway: Gateway, jwt?: string): Promise<{ raw: RawClient; reply: any }> {
  const raw = new RawClient(gateway.wsUrl);
  await raw.open();
  raw.send({ id: 1, connect: jwt === undefined ? {} : { token: jwt } });
  return { raw, reply: await raw.expect((m) => m.id === 1) };
}

async function presence(gateway: Gateway, channel: string): Promise<any[]> {
  const res = await api(gateway, 'presence', { channel });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return Object.values(res.body.result.presence);
}

describe('token claims and the personal channel (one gateway)', () => {
  let gateway: Gateway;

  before(async () => {
    gateway = await startGateway({
      SWITCHBOARD_ALLOW_ANONYMOUS: 'true',
      SWITCHBOARD_MAX_CHANNELS_PER_CONNECTION: String(MAX_CHANNELS),
      SWITCHBOARD_USER_SUBSCRIBE_TO_PERSONAL: 'true',
      SWITCHBOARD_USER_PERSONAL_CHANNEL_NAMESPACE: 'personal',
      SWITCHBOARD_NAMESPACES: JSON.stringify([
        { name: '', allow_subscribe_for_client: true },
        {
          name: 'chat',
          history_size: 10,
          history_ttl: 60,
          recovery: true,
          presence: true,
          join_leave: true,
          allow_subscribe_for_client: true,
        },
        { name: 'personal', presence: true },
        { name: 'feed', history_size: 10, history_ttl: 60 },
      ]),
    });
  });

  after(async () => {
    await gateway.stop();
  });

  test('subs: server-side subscriptions with data and info, an override, `channels` ignored beside it; the personal channel added', async () => {
    const c = tracked(
      gateway,
      await token({
        sub: 'ann',
        b64info: b64({ name: 'Ann' }),
        channels: ['chat:ignored'],
        subs: {
          'chat:a': { data: { welcome: 'a' }, info: { role: 'reader' } },
          'chat:b': { b64data: b64({ welcome: 'b' }), override: { presence: { value: false } } },
        },
      }),
    );
    const subscribed = new Map<string, SubscribedContext>();
    c.on('subscribed', (ctx) => subscribed.set(ctx.channel, ctx));
    c.connect();
    await nextEvent(c, 'connected');
    await waitUntil(
      () => subscribed.size === 3,
      5000,
      () => `subscribed to ${[...subscribed.keys()]}`,
    );
    assert.deepEqual([...subscribed.keys()].sort(), ['chat:a', 'chat:b', 'personal:#ann']);
    assert.deepEqual(subscribed.get('chat:a')?.data, { welcome: 'a' });
    assert.deepEqual(subscribed.get('chat:b')?.data, { welcome: 'b' });
    // Recovery and positioning of the namespace hold for token subscriptions.
    assert.equal(subscribed.get('chat:a')?.recoverable, true);

    const [inA, ...othersA] = await presence(gateway, 'chat:a');
    assert.equal(othersA.length, 0);
    assert.deepEqual(
      { user: inA.user, conn_info: inA.conn_info, chan_info: inA.chan_info },
      { user: 'ann', conn_info: { name: 'Ann' }, chan_info: { role: 'reader' } },
    );
    assert.deepEqual(await presence(gateway, 'chat:b'), [], 'override presence false');
    assert.deepEqual(
      (await presence(gateway, 'personal:#ann')).map((p) => p.user),
      ['ann'],
    );

    const published = nextEvent<PublicationContext>(c, 'publication');
    const res = await api(gateway, 'publish', { channel: 'personal:#ann', data: { note: 'just you' } });
    assert.equal(res.status, 200);
    const pub = await published;
    assert.equal(pub.channel, 'personal:#ann');
    assert.deepEqual(pub.data, { note: 'just you' });
  });

  test('`make token` mints these claims (subs, b64info, expire_at) and refuses ones the gateway would', async () => {
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, [TOKEN_CLI, '--user', 'cli', ...args], {
        env: { PATH: process.env.PATH ?? '', SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: SECRET },
        encoding: 'utf8',
      });
    const minted = cli(
      '--subs',
      JSON.stringify({ 'chat:cli': { info: { role: 'minted' } } }),
      '--b64info',
      b64({ name: 'Cli' }),
      '--expire-at',
      String(now() + 600),
    );
    assert.equal(minted.status, 0, minted.stderr);
    const { reply } = await rawConnectReply(gateway, minted.stdout.trim());
    assert.ok(reply.connect.subs?.['chat:cli'], JSON.stringify(reply));
    assert.equal(reply.connect.expires, true);
    assert.ok(reply.connect.ttl > 590 && reply.connect.ttl <= 600, `ttl ${reply.connect.ttl}`);
    const [inCli] = await presence(gateway, 'chat:cli');
    assert.deepEqual(
      { conn_info: inCli.conn_info, chan_info: inCli.chan_info },
      { conn_info: { name: 'Cli' }, chan_info: { role: 'minted' } },
    );
    for (const [args, reason] of [
      [['--subs', '[1]'], /subs must be an object of channels/],
      [['--b64info', 'aGk='], /b64info does not decode to JSON/],
      [['--info', '{'], /--info must be JSON/],
    ] as const) {
      const refused = cli(...args);
      assert.equal(refused.status, 2);
      assert.match(refused.stderr, reason);
      assert.equal(refused.stdout, '');
    }
  });

  test("override: join_leave off hides this connection's join, force_recovery turns recovery on where there is history", async () => {
    const watcher = tracked(gateway, await token({ sub: 'wes' }));
    watcher.connect();
    const watched = watcher.newSubscription('chat:j', { joinLeave: true });
    const joins: string[] = [];
    watched.on('join', (ctx) => joins.push(ctx.info.user));
    watched.subscribe();
    await nextEvent(watched, 'subscribed');
    const quiet = tracked(
      gateway,
      await token({
        sub: 'quinn',
        subs: {
          'chat:j': { override: { join_leave: { value: false } } },
          'feed:x': { override: { force_recovery: { value: true } } },
          y: { override: { force_recovery: { value: true } } },
        },
      }),
    );
    const subscribed = new Map<string, SubscribedContext>();
    quiet.on('subscribed', (ctx) => subscribed.set(ctx.channel, ctx));
    quiet.connect();
    await waitUntil(
      () => subscribed.size === 4,
      5000,
      () => `subscribed to ${[...subscribed.keys()]}`,
    );
    assert.equal(subscribed.get('feed:x')?.recoverable, true, 'history without recovery, forced on');
    assert.equal(subscribed.get('y')?.recoverable, false, 'no history: nothing to recover');
    // Joins of one channel arrive in order: a loud subscriber's after quinn's, had quinn's been sent.
    const loud = tracked(gateway, await token({ sub: 'lou' }));
    loud.connect();
    loud.newSubscription('chat:j').subscribe();
    await waitUntil(
      () => joins.includes('lou'),
      5000,
      () => `lou's join, joins ${joins}`,
    );
    // (wes may see its own join, depending on when its subscription went live.)
    assert.deepEqual(
      joins.filter((user) => user !== 'wes'),
      ['lou'],
    );
    assert.deepEqual(
      (await presence(gateway, 'chat:j')).map((p) => p.user).sort(),
      ['lou', 'quinn', 'wes'],
      'still in presence',
    );
  });

  test('a personal channel named in the token is subscribed once', async () => {
    const { raw, reply } = await rawConnectReply(
      gateway,
      await token({ sub: 'ben', channels: ['personal:#ben', 'chat:x'] }),
    );
    assert.deepEqual(Object.keys(reply.connect.subs).sort(), ['chat:x', 'personal:#ben']);
    raw.ws.close();
  });

  test('no personal channel for anonymous users, nor for a user id naming several users', async () => {
    const anonymous = await rawConnectReply(gateway);
    assert.ok(anonymous.reply.connect, JSON.stringify(anonymous.reply));
    assert.equal(anonymous.reply.connect.subs, undefined);
    const several = await rawConnectReply(gateway, await token({ sub: 'ann,ben' }));
    assert.ok(several.reply.connect, JSON.stringify(several.reply));
    assert.equal(several.reply.connect.subs, undefined);
    anonymous.raw.ws.close();
    several.raw.ws.close();
  });

  test('hostile claims refuse the connect with 3500 invalid token', async () => {
    const tooMany = Object.fromEntries(
      Array.from({ length: MAX_CHANNELS + 1 }, (_, i) => [`chat:c${i}`, {}]),
    );
    const hostile: Record<string, unknown>[] = [
      { sub: 'eve', b64info: 'not base64!' },
      { sub: 'eve', b64info: Buffer.from('<xml/>').toString('base64') },
      { sub: 'eve', b64info: 42 },
      { sub: 'eve', subs: tooMany },
      { sub: 'eve', subs: ['chat:a'] },
      { sub: 'eve', subs: { 'chat:a': 'x' } },
      { sub: 'eve', subs: { 'chat:a': { b64data: 'abc' } } },
      { sub: 'eve', subs: { 'chat:a': { override: { presence: true } } } },
      { sub: 'eve', expire_at: 'tomorrow' },
    ];
    const codes = await Promise.all(
      hostile.map(async (claims) => {
        const c = tracked(gateway, await token(claims));
        const disconnected = nextEvent<DisconnectedContext>(c, 'disconnected');
        c.connect();
        return (await disconnected).code;
      }),
    );
    assert.deepEqual(
      codes,
      hostile.map(() => 3500),
    );
  });

  test('expire_at: the connection expiry apart from exp; 0 never expires; past is error 110', async () => {
    const later = await rawConnectReply(
      gateway,
      await token({ sub: 'ann', expire_at: now() + 3600 }, { expiresIn: 60 }),
    );
    assert.equal(later.reply.connect.expires, true);
    assert.ok(later.reply.connect.ttl > 3000, `ttl ${later.reply.connect.ttl}`);
    const never = await rawConnectReply(
      gateway,
      await token({ sub: 'ann', expire_at: 0 }, { expiresIn: 60 }),
    );
    assert.ok(never.reply.connect, JSON.stringify(never.reply));
    assert.equal(never.reply.connect.expires, undefined);
    const past = await rawConnectReply(gateway, await token({ sub: 'ann', expire_at: now() - 10 }));
    assert.equal(past.reply.error?.code, 110, JSON.stringify(past.reply));
    // exp is still checked: expire_at 0 does not revive an expired token.
    const expired = await rawConnectReply(
      gateway,
      await token({ sub: 'ann', expire_at: 0 }, { expiresIn: -10 }),
    );
    assert.equal(expired.reply.error?.code, 109, JSON.stringify(expired.reply));
    // A refresh: expire_at moves the expiry too, and one already past is refused the same way.
    later.raw.send({ id: 2, refresh: { token: await token({ sub: 'ann', expire_at: now() + 7200 }) } });
    const refreshed = await later.raw.expect((m) => m.id === 2);
    assert.ok(refreshed.refresh?.ttl > 7000, JSON.stringify(refreshed));
    later.raw.send({ id: 3, refresh: { token: await token({ sub: 'ann', expire_at: now() - 1 }) } });
    assert.equal((await later.raw.expect((m) => m.id === 3)).error?.code, 110);
    for (const r of [later, never, past, expired]) r.raw.ws.close();
  });

  test('subscription tokens: b64info becomes chan_info, expire_at overrides exp, data and override as in subs', async () => {
    const { raw, reply } = await rawConnectReply(gateway, await token({ sub: 'cat' }));
    assert.ok(reply.connect);
    const subToken = await token(
      { sub: 'cat', channel: 'chat:tok', b64info: b64({ seat: 3 }), expire_at: 0 },
      { expiresIn: 60 },
    );
    raw.send({ id: 2, subscribe: { channel: 'chat:tok', token: subToken } });
    const subscribed = await raw.expect((m) => m.id === 2);
    assert.ok(subscribed.subscribe, JSON.stringify(subscribed));
    assert.equal(subscribed.subscribe.expires, undefined);
    const stale = await token({ sub: 'cat', channel: 'chat:tok', expire_at: now() - 1 });
    raw.send({ id: 6, sub_refresh: { channel: 'chat:tok', token: stale } });
    assert.equal((await raw.expect((m) => m.id === 6)).error?.code, 110);
    assert.deepEqual(
      (await presence(gateway, 'chat:tok')).map((p) => p.chan_info),
      [{ seat: 3 }],
    );
    const quietToken = await token({
      sub: 'cat',
      channel: 'chat:quiet',
      data: { hello: 'cat' },
      override: { presence: { value: false } },
    });
    raw.send({ id: 5, subscribe: { channel: 'chat:quiet', token: quietToken } });
    const quiet = await raw.expect((m) => m.id === 5);
    assert.deepEqual(quiet.subscribe?.data, { hello: 'cat' }, JSON.stringify(quiet));
    assert.deepEqual(await presence(gateway, 'chat:quiet'), []);
    const pastToken = await token({ sub: 'cat', channel: 'chat:old', expire_at: now() - 5 });
    raw.send({ id: 3, subscribe: { channel: 'chat:old', token: pastToken } });
    assert.equal((await raw.expect((m) => m.id === 3)).error?.code, 110);
    const badToken = await token({ sub: 'cat', channel: 'chat:bad', b64info: '###' });
    raw.send({ id: 4, subscribe: { channel: 'chat:bad', token: badToken } });
    assert.equal((await raw.expect((m) => m.id === 4)).error?.code, 103);
    raw.ws.close();
  });
});

describe('one connection per user across two gateways over NATS', () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster({
      gateways: 2,
      env: { SWITCHBOARD_USER_PERSONAL_SINGLE_CONNECTION: 'true' },
    });
  });

  after(async () => {
    await cluster.stop();
  });

  async function connect(gateway: Gateway, user: string): Promise<Centrifuge> {
    const c = tracked(gateway, await token({ sub: user }));
    c.connect();
    await nextEvent(c, 'connected', 10_000);
    return c;
  }

  test("a new connection ends the user's others on every gateway with 3504, and is spared itself", async () => {
    const [g1, g2] = cluster.gateways as [Gateway, Gateway];
    const other = await connect(g1, 'dan');
    const first = await connect(g1, 'ann');
    const firstGone = nextEvent<DisconnectedContext>(first, 'disconnected', 10_000);
    const second = await connect(g2, 'ann');
    assert.deepEqual((({ code, reason }) => ({ code, reason }))(await firstGone), {
      code: 3504,
      reason: 'connection limit',
    });
    // And back the other way.
    const secondGone = nextEvent<DisconnectedContext>(second, 'disconnected', 10_000);
    const third = await connect(g1, 'ann');
    assert.equal((await secondGone).code, 3504);
    // A later control message from g1 (the server API's disconnect of another
    // user) comes after third's: once it is applied, third's was too.
    const marker = await connect(g1, 'zed');
    const markerGone = nextEvent<DisconnectedContext>(marker, 'disconnected', 10_000);
    assert.equal((await api(g1, 'disconnect', { user: 'zed' })).status, 200);
    await markerGone;
    assert.deepEqual((await third.rpc('echo', { still: 'here' })).data, { still: 'here' });
    assert.equal(third.state, 'connected');
    // Another user is untouched, and the replaced connections stay down (no reconnect).
    assert.equal(other.state, 'connected');
    assert.equal(first.state, 'disconnected');
    assert.equal(second.state, 'disconnected');
  });
});
