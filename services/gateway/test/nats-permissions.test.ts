/**
 * NATS users with least privilege on a real nats-server, configured with the
 * authorization block nats-config writes (one user per role, passwords from
 * nats-server's environment): a real gateway and a real store service (its
 * own process, its credentials from SWITCHBOARD_NATS_USER/_PASSWORD) connect
 * as their users. Each role does its job, and each is refused every other
 * subject family of the NATS map, publish and subscribe, as nats.js reports
 * a refusal (a PermissionViolationError status; a refused subscription is
 * closed with it, a refused request fails with it) and nats-server logs it.
 * A gateway whose user lacks a permission counts the denial in
 * switchboard_nats_permission_errors_total.
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { type NatsConnection, PermissionViolationError } from '@nats-io/transport-node';
import { Subjects } from '@switchboard/protocol';
import { connectNats } from '@switchboard/sdk';
import type { Centrifuge, PublicationContext } from 'centrifuge';
import { DEFAULT_NAMESPACES } from '../src/config.js';
import {
  authorizationConfig,
  defaultUsers,
  type PermittedUser,
  passwordVariable,
  permitted,
} from '../src/nats-users.js';
import { exited, type Nats, type Proc, run, startNats } from './cluster.js';
import { loadCompose, REPO } from './compose.js';
import { api, connectedClient, type Gateway, metric, nextEvent, startGateway, waitUntil } from './harness.js';

const CLI = fileURLToPath(new URL('../src/cli/nats-config.js', import.meta.url));
const STORE = fileURLToPath(new URL('../../../store/dist/src/main.js', import.meta.url));
const NAMESPACES = DEFAULT_NAMESPACES.map((ns) => ns.name!);
const SERVICES = DEFAULT_NAMESPACES.filter((ns) => ns.service).map((ns) => ns.name!);
const s = new Subjects('sb');
const dir = mkdtempSync(join(tmpdir(), 'switchboard-nats-auth-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Passwords start with a letter: nats-server would read `123` from its environment as a number. */
const passwords = new Map<string, string>();
const passwordOf = (user: string) => {
  if (!passwords.has(user)) passwords.set(user, `p${randomBytes(18).toString('base64url')}`);
  return passwords.get(user)!;
};

/** The default users, and a gateway user one permission behind (as if written before the control subject). */
function users(): PermittedUser[] {
  const all = permitted('sb', NAMESPACES, defaultUsers(SERVICES));
  const [gateway] = permitted('sb', NAMESPACES, [{ user: 'gateway-stale', role: 'gateway' }]);
  gateway!.permissions.publish.allow = gateway!.permissions.publish.allow.filter((p) => p !== s.control);
  return [...all, gateway!];
}

let nats: Nats;
let gateway: Gateway;
let store: Proc;
const clients: Centrifuge[] = [];
const connections: NatsConnection[] = [];

/** A NATS connection as `user`, through the SDK's helper, with the permission violations it hears of. */
async function as(user: string): Promise<{ nc: NatsConnection; refusals: PermissionViolationError[] }> {
  const nc = await connectNats({
    servers: [nats.url],
    name: `test ${user}`,
    user,
    password: passwordOf(user),
  });
  connections.push(nc);
  const refusals: PermissionViolationError[] = [];
  void (async () => {
    for await (const status of nc.status())
      if (status.type === 'error' && status.error instanceof PermissionViolationError)
        refusals.push(status.error);
  })();
  return { nc, refusals };
}

const connected = (user: string) => connectedClient(gateway, user, clients);

before(async () => {
  const env = Object.fromEntries(users().map((u) => [passwordVariable(u.user), passwordOf(u.user)]));
  const file = join(dir, 'nats.conf');
  writeFileSync(file, authorizationConfig('sb', NAMESPACES, users()));
  nats = await startNats(['-c', file], 15_000, env);
  gateway = await startGateway({
    SWITCHBOARD_BROKER: 'nats',
    SWITCHBOARD_NATS_URL: nats.url,
    SWITCHBOARD_NATS_USER: 'gateway',
    SWITCHBOARD_NATS_PASSWORD: passwordOf('gateway'),
  });
  store = run(process.execPath, [STORE], {
    SWITCHBOARD_NATS_URL: nats.url,
    SWITCHBOARD_NATS_USER: 'service-store',
    SWITCHBOARD_NATS_PASSWORD: passwordOf('service-store'),
  });
  await waitUntil(
    () => {
      if (exited(store)) throw new Error(`the store service exited:\n${store.output()}`);
      return store.output().includes('"service ready"');
    },
    15_000,
    () => `the store service to be ready:\n${store.output()}`,
  );
});

after(async () => {
  for (const c of clients) c.disconnect();
  for (const nc of connections) await nc.close();
  await store?.stop();
  await gateway?.stop();
  await nats?.stop();
});

describe('nats-config', () => {
  test('writes the users of the gateway configuration, which nats-server accepts', () => {
    const out = execFileSync(process.execPath, [CLI], { env: { PATH: process.env.PATH ?? '' } }).toString();
    const defaults = permitted('sb', NAMESPACES, defaultUsers(SERVICES));
    assert.equal(out, authorizationConfig('sb', NAMESPACES, defaults));
    assert.deepEqual(
      defaults.map((u) => `${u.user}=${u.role}`),
      [
        'gateway=gateway',
        'api=api',
        'service-room=service:room',
        'service-store=service:store',
        'service-jobs=service:jobs',
      ],
    );
    const file = join(dir, 'cli.conf');
    execFileSync(process.execPath, [CLI, '--prefix', 'rt', '--namespaces', 'news', '--out', file]);
    assert.match(readFileSync(file, 'utf8'), /"rt\.live\.>"[\s\S]*"\$JS\.API\.STREAM\.INFO\.RT_HIST_news"/);
    execFileSync('nats-server', ['-c', file, '-t'], {
      env: {
        PATH: process.env.PATH ?? '',
        ...Object.fromEntries(defaults.map((u) => [passwordVariable(u.user), 'checked'])),
      },
      stdio: 'pipe',
    });
  });
  test("compose's nats-auth.conf is what nats-config writes for compose's gateways, and every user gets its password", () => {
    const services = loadCompose({}).services as Record<string, { environment?: Record<string, string> }>;
    const gateway = services.gw1!.environment!;
    const settings = Object.fromEntries(
      ['SWITCHBOARD_NATS_PREFIX', 'SWITCHBOARD_NAMESPACES']
        .filter((key) => gateway[key] !== undefined)
        .map((key) => [key, gateway[key]!]),
    );
    const written = execFileSync(process.execPath, [CLI], {
      env: { PATH: process.env.PATH ?? '', ...settings },
    });
    const checkedIn = readFileSync(join(REPO, 'docker/nats-auth.conf'), 'utf8');
    assert.equal(
      checkedIn,
      written.toString(),
      'docker/nats-auth.conf is stale: write it again with nats-config',
    );
    // Each NATS node has every password; each of our processes connects as its user with that password.
    const users = [...checkedIn.matchAll(/user: "([^"]+)"\n\s+password: \$(\w+)/g)].map(
      ([, user, variable]) => ({
        user: user!,
        variable: variable!,
      }),
    );
    for (const node of ['nats1', 'nats2', 'nats3'])
      for (const { variable } of users)
        assert.ok(services[node]!.environment![variable], `${node}: ${variable}`);
    const nats = services.nats1!.environment!;
    for (const [name, user] of Object.entries({
      gw1: 'gateway',
      chat: 'service-room',
      store: 'service-store',
      jobs: 'service-jobs',
    })) {
      const env = services[name]!.environment!;
      assert.equal(env.SWITCHBOARD_NATS_USER, user, name);
      assert.equal(env.SWITCHBOARD_NATS_PASSWORD, nats[users.find((u) => u.user === user)!.variable], name);
    }
  });
});

describe('each role does its job', () => {
  test('gateway: a client receives a publication with history, presence, and a service RPC answered through the gateway', async () => {
    const reader = await connected('reader');
    const got: unknown[] = [];
    for (const channel of ['chat:perm', 'store:Thing']) {
      const sub = reader.newSubscription(channel);
      sub.on('publication', (ctx: PublicationContext) => got.push(ctx.data));
      sub.subscribe();
      await sub.ready(5000);
    }
    const writer = await connected('writer');
    const chat = writer.newSubscription('chat:perm');
    chat.subscribe();
    await chat.ready(5000);
    await chat.publish({ text: 'hello' });
    await waitUntil(
      () => got.length === 1,
      5000,
      () => 'the chat publication',
    );
    assert.equal((await chat.history({ limit: 10 })).publications.length, 1);
    assert.deepEqual(Object.keys((await chat.presence()).clients).length, 2);

    // The store service answers the RPC, stores in its bucket and publishes through its API subject.
    await writer.rpc('store:set', { key: 'Thing/1/price', value: 3 });
    assert.equal(
      ((await writer.rpc('store:get', { key: 'Thing/1/price' })).data as { value: number }).value,
      3,
    );
    await waitUntil(
      () => got.length === 2,
      5000,
      () => 'the store publication',
    );
    assert.deepEqual((got[1] as { key: string; value: number }).value, 3);
    // The registry (the services bucket) lists it, and the gateway never hit a missing permission.
    const info = await api(gateway, 'info', {});
    assert.deepEqual(
      info.body.result.services.map((e: { namespace: string }) => e.namespace),
      ['store'],
    );
    assert.equal(await metric(gateway, 'switchboard_nats_permission_errors_total'), 0);
  });

  test('api: the whole server API on the bus', async () => {
    const { nc, refusals } = await as('api');
    const reader = await connected('api-reader');
    const sub = reader.newSubscription('chat:api');
    const publication = nextEvent<PublicationContext>(sub, 'publication');
    sub.subscribe();
    await sub.ready(5000);
    const reply = await nc.request(
      s.api('publish'),
      JSON.stringify({ channel: 'chat:api', data: 'via bus' }),
      {
        timeout: 5000,
      },
    );
    assert.equal(reply.json<{ result: { offset: number } }>().result.offset, 1);
    assert.equal((await publication).data, 'via bus');
    assert.deepEqual(refusals, []);
  });

  test("service: the server API for its own namespace's channels, refused for another's by the gateway", async () => {
    const { nc, refusals } = await as('service-store');
    const call = async (channel: string) =>
      (
        await nc.request(s.serviceApi('store', 'publish'), JSON.stringify({ channel, data: 1 }), {
          timeout: 5000,
        })
      ).json<{ result?: unknown; error?: { code: number } }>();
    assert.deepEqual(await call('store:own'), { result: {} });
    assert.equal((await call('chat:other')).error?.code, 103);
    assert.deepEqual(refusals, []);
  });
});

/** Subjects of every family of the map, and the users allowed each (publish, subscribe); others are refused. */
const FAMILIES: { subject: string; publish: string[]; subscribe: string[] }[] = [
  { subject: s.live('chat', 'chat:x'), publish: ['gateway'], subscribe: ['gateway'] },
  { subject: s.live('store', 'store:x'), publish: ['gateway'], subscribe: ['gateway'] },
  { subject: s.history('chat', 'chat:x'), publish: ['gateway'], subscribe: [] },
  { subject: s.control, publish: ['gateway'], subscribe: ['gateway'] },
  { subject: s.survey, publish: ['gateway'], subscribe: ['gateway'] },
  { subject: s.service('chat', 'rpc'), publish: ['gateway'], subscribe: [] },
  { subject: s.service('store', 'rpc'), publish: ['gateway'], subscribe: ['service-store'] },
  { subject: `${s.serviceQueue('jobs')}.replica.x`, publish: [], subscribe: [] },
  { subject: s.api('publish'), publish: ['api'], subscribe: ['gateway'] },
  { subject: s.serviceApi('chat', 'publish'), publish: [], subscribe: ['gateway'] },
  { subject: s.emulation('gw1'), publish: ['gateway'], subscribe: ['gateway'] },
  { subject: '$KV.sb_presence.x', publish: ['gateway'], subscribe: [] },
  { subject: '$KV.sb_gateways.x', publish: ['gateway'], subscribe: [] },
  { subject: '$KV.sb_services.chat.x', publish: [], subscribe: [] },
  { subject: '$KV.sb_store.x', publish: ['service-store'], subscribe: [] },
  { subject: '$JS.API.STREAM.DELETE.SB_HIST_chat', publish: [], subscribe: [] },
  { subject: '$JS.API.STREAM.DELETE.KV_sb_store', publish: [], subscribe: [] },
  { subject: '$JS.API.STREAM.PURGE.KV_sb_presence', publish: [], subscribe: [] },
  { subject: '$JS.API.STREAM.LIST', publish: [], subscribe: [] },
  { subject: '$JS.API.META.LEADER.STEPDOWN', publish: [], subscribe: [] },
  { subject: '$JS.API.>', publish: [], subscribe: [] },
  { subject: s.leaderElected, publish: [], subscribe: ['gateway'] },
  { subject: '$SYS.REQ.SERVER.PING', publish: [], subscribe: [] },
  { subject: '_INBOX.>', publish: [], subscribe: [] },
  { subject: '_INBOX.gateway.x', publish: [], subscribe: ['gateway'] },
  { subject: '>', publish: [], subscribe: [] },
];

describe('each role is refused everything else', () => {
  for (const user of ['gateway', 'service-store', 'api']) {
    test(`${user}: every other family of the map, publish and subscribe`, async () => {
      const { nc, refusals } = await as(user);
      const heard = (operation: 'publish' | 'subscription', subject: string) =>
        waitUntil(
          () => refusals.some((r) => r.operation === operation && r.subject === subject),
          2000,
          () => `${user}: ${operation} ${subject} refused`,
        );
      let checked = 0;
      for (const family of FAMILIES) {
        if (!family.subscribe.includes(user)) {
          const sub = nc.subscribe(family.subject);
          await heard('subscription', family.subject);
          assert.ok((await sub.closed) instanceof PermissionViolationError, family.subject);
          checked++;
        }
        // A wildcard is no subject to publish to.
        if (!family.publish.includes(user) && !/(^|\.)[*>]($|\.)/.test(family.subject)) {
          nc.publish(family.subject, 'x');
          await heard('publish', family.subject);
          checked++;
        }
      }
      // Refused what it tried, once each, and nothing else.
      assert.equal(refusals.length, checked);
      // A refused request fails at once rather than waiting for its timeout.
      await assert.rejects(
        nc.request(user === 'api' ? s.serviceApi('store', 'publish') : s.api('info'), '{}', {
          timeout: 5000,
        }),
        /Permissions Violation for Publish/,
      );
      // nats-server logs each refusal with the user.
      await waitUntil(
        () => nats.output().includes(`Subscription Violation - User "${user}", Subject ">"`),
        2000,
        () => `nats-server logging the refusal:\n${nats.output().slice(-2000)}`,
      );
    });
  }

  test('a service may not forge the gateways’ requests to its own namespace, nor touch another namespace', async () => {
    const { nc, refusals } = await as('service-store');
    for (const subject of [
      s.service('store', 'rpc'),
      s.service('store', 'subscribe'),
      s.serviceApi('jobs', 'publish'),
    ]) {
      nc.publish(subject, '{}');
      await waitUntil(
        () => refusals.some((r) => r.subject === subject),
        2000,
        () => `${subject} refused`,
      );
    }
    // Its replicas talk on its own subjects.
    const sub = nc.subscribe(`${s.serviceQueue('store')}.replica.a`, { max: 1 });
    nc.publish(`${s.serviceQueue('store')}.replica.a`, 'hi');
    for await (const msg of sub) assert.equal(msg.string(), 'hi');
    assert.equal(refusals.length, 3);
  });

  test('the gateway counts a permission its user lacks (switchboard_nats_permission_errors_total)', async () => {
    const stale = await startGateway({
      SWITCHBOARD_BROKER: 'nats',
      SWITCHBOARD_NATS_URL: nats.url,
      SWITCHBOARD_NATS_USER: 'gateway-stale',
      SWITCHBOARD_NATS_PASSWORD: passwordOf('gateway-stale'),
    });
    try {
      assert.equal(await metric(stale, 'switchboard_nats_permission_errors_total'), 0);
      // A server API action on connections goes out on the control subject, which this user may not publish to.
      assert.deepEqual((await api(stale, 'unsubscribe', { user: '42', channel: 'chat:x' })).body, {
        result: {},
      });
      await waitUntil(
        async () =>
          (await metric(stale, 'switchboard_nats_permission_errors_total', ['operation="publish"'])) === 1,
        5000,
        () => `the denial counted:\n${stale.output()}`,
      );
      assert.match(stale.output(), /permission violation/);
      assert.match(nats.output(), /Publish Violation - User "gateway-stale", Subject "sb\.ctl"/);
    } finally {
      await stale.stop();
    }
  });
});
