/**
 * Pusher apps from the app store (SWITCHBOARD_PUSHER_APPS_BUCKET), managed
 * with the server API and switchboard-apps while gateways run: an app put on
 * one gateway of a NATS cluster serves clients on the other at once, with
 * the pusher SDK signing for it; listed without its secret; disabled or
 * removed, its connections close (4003, 4001); what the store refuses.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { type Nats, startNats } from './cluster.js';
import { API_KEY, api, type Gateway, RawClient, startGateway } from './harness.js';
import { gatewaySdk } from './pusher-conformance.js';

const CLI = fileURLToPath(new URL('../src/cli/apps.js', import.meta.url));
const FIXED = { id: 'fixed', key: 'fixed-key', secret: 'fixed-secret' };

let nats: Nats;
let a: Gateway;
let b: Gateway;
const raws: RawClient[] = [];

before(async () => {
  nats = await startNats(['-js']);
  const env = {
    SWITCHBOARD_BROKER: 'nats',
    SWITCHBOARD_NATS_URL: nats.url,
    SWITCHBOARD_PUSHER_APPS_BUCKET: 'true',
    SWITCHBOARD_PUSHER_APPS: JSON.stringify([FIXED]),
  };
  [a, b] = [await startGateway(env), await startGateway(env)];
});

after(async () => {
  for (const raw of raws) raw.ws.terminate();
  await Promise.all([a.stop(), b.stop()]);
  await nats.stop();
});

/** A raw Pusher connection to `gateway` with `key`, after its first frame (connection_established or an error). */
async function connect(gateway: Gateway, key: string): Promise<RawClient> {
  const raw = new RawClient(`ws://${gateway.host}:${gateway.clientPort}/app/${key}?protocol=7`);
  raws.push(raw);
  await raw.expect((f) => f.event === 'pusher:connection_established' || f.event === 'pusher:error');
  return raw;
}

const established = (raw: RawClient) => raw.received.some((f) => f.event === 'pusher:connection_established');

const sdk = gatewaySdk;

describe('Pusher app store', () => {
  test('an app put on one gateway serves clients and signed API calls on the other at once', async () => {
    const shop = { id: 'shop', key: 'shop-key', secret: 'shop-secret', max_client_events_per_second: 3 };
    assert.deepEqual((await api(a, 'pusher_app_put', { app: shop })).body, { result: {} });
    // Gateway b hears of it from the bucket: retry until its watch has applied it.
    let raw = await connect(b, shop.key);
    for (let i = 0; i < 50 && !established(raw); i++) raw = await connect(b, shop.key);
    assert.ok(established(raw), JSON.stringify(raw.received));
    raw.send({ event: 'pusher:subscribe', data: { channel: 'orders' } });
    await raw.expect((f) => f.event === 'pusher_internal:subscription_succeeded');
    await sdk(a, shop).trigger('orders', 'created', { n: 1 });
    const event = await raw.expect((f) => f.event === 'created');
    assert.deepEqual(JSON.parse(event.data), { n: 1 });
  });

  test('listed without secrets, by the API and by switchboard-apps', async () => {
    const listed = (await api(b, 'pusher_apps', {})).body.result.apps;
    const shop = listed.find((app: { id: string }) => app.id === 'shop');
    assert.equal(shop.key, 'shop-key');
    assert.equal(shop.max_client_events_per_second, 3);
    assert.ok(listed.some((app: { id: string }) => app.id === FIXED.id));
    assert.ok(listed.every((app: object) => !('secret' in app)));
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'list'], {
      env: { SWITCHBOARD_API_URL: a.internalUrl, SWITCHBOARD_API_KEY: API_KEY },
    });
    assert.ok(!stdout.includes('shop-secret') && !stdout.includes(FIXED.secret));
    assert.deepEqual(
      JSON.parse(stdout)
        .map((app: { id: string }) => app.id)
        .sort(),
      [FIXED.id, 'shop'],
    );
  });

  test('refused: an app without a secret, a config app, another app\u2019s key, and the rest untouched', async () => {
    const refused = async (app: unknown, pattern: RegExp) => {
      const { body } = await api(a, 'pusher_app_put', { app });
      assert.equal(body.error?.code, 107, JSON.stringify(body));
      assert.match(body.error.message, pattern);
    };
    await refused({ id: 'nosecret', key: 'k' }, /secret/);
    await refused({ ...FIXED, secret: 'changed' }, /configuration/);
    await refused({ id: 'thief', key: 'shop-key', secret: 's' }, /key shop-key/);
    await refused({ id: 'bad id!', key: 'k2', secret: 's' }, /id must be/);
    const { body } = await api(a, 'pusher_app_delete', { id: FIXED.id });
    assert.match(body.error!.message, /configuration/);
    const raw = await connect(a, FIXED.key);
    assert.ok(established(raw), 'the config app still serves');
  });

  test('disabled, its connections close with 4003 on every gateway; removed, new ones get 4001', async () => {
    const temp = { id: 'temp', key: 'temp-key', secret: 'temp-secret' };
    await api(a, 'pusher_app_put', { app: temp });
    let onB = await connect(b, temp.key);
    for (let i = 0; i < 50 && !established(onB); i++) onB = await connect(b, temp.key);
    assert.ok(established(onB));
    await api(a, 'pusher_app_put', { app: { ...temp, enabled: false } });
    assert.deepEqual(await onB.closed(), { code: 4003, reason: 'Application disabled' });
    const { stdout } = await promisify(execFile)(process.execPath, [CLI, 'delete', temp.id], {
      env: { SWITCHBOARD_API_URL: a.internalUrl, SWITCHBOARD_API_KEY: API_KEY },
    });
    assert.equal(stdout, '');
    let gone = await connect(b, temp.key);
    for (let i = 0; i < 50 && gone.received[0]?.data?.code !== 4001; i++) gone = await connect(b, temp.key);
    assert.equal(gone.received[0].data.code, 4001);
    assert.equal((await gone.closed()).code, 4001);
  });
});
