/**
 * The example services through the gateway, as a user sees them: in-process
 * in embedded mode, and as processes of their own (two store replicas, one
 * killed mid-traffic) in a cluster.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { Centrifuge, PublicationContext } from 'centrifuge';
import { type Nats, startNats } from './cluster.js';
import { client, type Gateway, nextEvent, startGateway, token, waitUntil } from './harness.js';

const clients: Centrifuge[] = [];

after(() => {
  for (const c of clients) c.disconnect();
});

async function connected(gateway: Gateway, user: string): Promise<Centrifuge> {
  const c = client(gateway, { token: await token({ sub: user }) });
  clients.push(c);
  c.connect();
  await nextEvent(c, 'connected');
  return c;
}

function collect(c: Centrifuge, channel: string, options: { data?: unknown } = {}) {
  const sub = c.newSubscription(channel, options);
  const got: PublicationContext[] = [];
  sub.on('publication', (ctx) => got.push(ctx));
  const subscribed = nextEvent<{ data?: unknown }>(sub, 'subscribed');
  // Refused subscriptions never say subscribed: only tests that await it care.
  subscribed.catch(() => undefined);
  sub.subscribe();
  return { sub, got, subscribed };
}

/** The scenarios every deployment must pass, whoever runs the services. */
function scenarios(gateway: () => Gateway) {
  test('store: set publishes to the key and its parents; subscribe catches up on what changed', async () => {
    const ada = await connected(gateway(), 'ada');
    const key = `Product/${Date.now()}/price`;
    const [type, id] = key.split('/') as [string, string];
    const field = collect(ada, `store:${key}`);
    const product = collect(ada, `store:${type}/${id}`);
    await field.subscribed;
    await product.subscribed;
    const { data } = await ada.rpc('store:set', { key, value: 42 });
    const mtime = (data as { mtime: number }).mtime;
    await waitUntil(
      () => field.got.length === 1 && product.got.length === 1,
      5000,
      () => 'the set',
    );
    assert.deepEqual(field.got[0]!.data, { key, value: 42, mtime });
    assert.deepEqual((await ada.rpc('store:get', { key })).data, { key, value: 42, mtime });
    await ada.rpc('store:set', { key: `${type}/${id}/name`, value: 'Lamp' });
    // A client that has the price already gets only the name.
    const late = collect(await connected(gateway(), 'bea'), `store:${type}/${id}`, {
      data: { [key]: mtime },
    });
    const entries = ((await late.subscribed).data as { entries: { key: string }[] }).entries;
    assert.deepEqual(
      entries.map((e) => e.key),
      [`${type}/${id}/name`],
    );
  });

  test('jobs: progress reaches the caller until done', async () => {
    const cy = await connected(gateway(), 'cy');
    const progress = collect(cy, 'jobs:#cy');
    await progress.subscribed;
    const { data } = await cy.rpc('jobs:start', { steps: 5, interval_ms: 20 });
    const job = (data as { job: string }).job;
    await waitUntil(
      () => progress.got.some((p) => (p.data as { done: boolean }).done),
      5000,
      () => 'job done',
    );
    const last = progress.got.at(-1)!.data as { job: string; progress: number; done: boolean };
    assert.deepEqual(last, { job, progress: 100, done: true });
    const other = collect(await connected(gateway(), 'dee'), 'jobs:#cy');
    const refused = nextEvent<{ code: number }>(other.sub, 'unsubscribed');
    assert.equal((await refused).code, 103);
  });

  test('chat: rooms broadcast to all but the sender; bad messages are refused', async () => {
    const eli = await connected(gateway(), 'eli');
    const fay = await connected(gateway(), 'fay');
    const room = `room:lobby-${Date.now()}`;
    const e = collect(eli, room);
    const f = collect(fay, room);
    await e.subscribed;
    await f.subscribed;
    await e.sub.publish({ text: '  hello  ' });
    await waitUntil(
      () => f.got.length === 1,
      5000,
      () => 'fay to get it',
    );
    assert.equal((f.got[0]!.data as { text: string; user: string }).text, 'hello');
    assert.equal((f.got[0]!.data as { user: string }).user, 'eli');
    assert.equal(e.got.length, 0);
    await assert.rejects(e.sub.publish({ text: '' }), (err: { code: number }) => err.code === 107);
  });
}

describe('example services in embedded mode', () => {
  let gateway: Gateway;
  before(async () => {
    gateway = await startGateway();
  });
  after(async () => {
    await gateway.stop();
  });
  scenarios(() => gateway);
});

describe('example services as processes of a cluster', () => {
  let nats: Nats;
  let gateway: Gateway;
  const processes: ChildProcess[] = [];

  async function service(name: string): Promise<ChildProcess> {
    const main = fileURLToPath(new URL(`../../../${name}/dist/src/main.js`, import.meta.url));
    const child = spawn(process.execPath, [main], {
      env: { PATH: process.env.PATH ?? '', SWITCHBOARD_NATS_URL: nats.url },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    processes.push(child);
    let out = '';
    child.stdout?.on('data', (d) => {
      out += d;
    });
    await waitUntil(
      () => out.includes('service ready'),
      10_000,
      () => `${name} to start`,
    );
    return child;
  }

  before(async () => {
    nats = await startNats();
    gateway = await startGateway({
      SWITCHBOARD_BROKER: 'nats',
      SWITCHBOARD_NATS_URL: nats.url,
      SWITCHBOARD_SERVICE_TIMEOUT: '1000',
    });
    await Promise.all([service('chat'), service('store'), service('store'), service('jobs')]);
  });

  after(async () => {
    const running = processes.filter((p) => p.exitCode === null && p.signalCode === null);
    for (const p of running) p.kill('SIGTERM');
    await Promise.all(running.map((p) => once(p, 'exit')));
    await gateway.stop();
    await nats.stop();
  });

  scenarios(() => gateway);

  test('the info API lists the live service replicas', async () => {
    const res = await fetch(`${gateway.internalUrl}/api/info`, {
      method: 'POST',
      headers: { 'X-API-Key': 'test-api-key' },
      body: '{}',
    });
    const services = ((await res.json()) as { result: { services: { namespace: string }[] } }).result
      .services;
    assert.deepEqual(services.map((s) => s.namespace).sort(), ['jobs', 'room', 'store', 'store']);
  });

  test('killing one store replica under load: only requests in flight fail, with a clear temporary error', async () => {
    const gus = await connected(gateway, 'gus');
    const replicas = processes.filter((_, i) => i === 1 || i === 2);
    const results: ('ok' | number)[] = [];
    let running = true;
    const load = (async () => {
      let n = 0;
      while (running) {
        const outcome = await gus.rpc('store:set', { key: `Load/${n % 10}/v`, value: n++ }).then(
          () => 'ok' as const,
          (err: { code: number; temporary?: boolean }) => {
            assert.equal(err.temporary, true, 'a failed request is a temporary error');
            return err.code;
          },
        );
        results.push(outcome);
        // About 50 requests a second: the load's rate, under the per-connection command limit.
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    await waitUntil(
      () => results.length >= 50,
      10_000,
      () => 'load before the kill',
    );
    replicas[0]!.kill('SIGKILL');
    const atKill = results.length;
    await waitUntil(
      () => results.length >= atKill + 100,
      30_000,
      () => 'load after the kill',
    );
    running = false;
    await load;
    const failures = results.filter((r) => r !== 'ok');
    assert.ok(failures.length <= 2, `only the requests in flight fail: ${JSON.stringify(failures)}`);
    assert.ok(
      results.slice(-50).every((r) => r === 'ok'),
      'the surviving replica takes everything after',
    );
  });
});
