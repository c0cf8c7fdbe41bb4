/**
 * Namespaces owned by backend services, through a real NATS: the gateway asks
 * the service about subscribes and publishes and routes `ns:method` RPCs to
 * it; replicas share the load; a missing or silent service is a clear,
 * temporary error. Services here are SDK instances in the test process.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Errors } from '@switchboard/protocol';
import { type ApiCallError, NatsBus, Service, ServiceError } from '@switchboard/sdk';
import type { Centrifuge, PublicationContext } from 'centrifuge';
import { DEFAULT_NAMESPACES } from '../src/config.js';
import { type Nats, startNats } from './cluster.js';
import { api, connectedClient, type Gateway, nextEvent, startGateway, waitUntil } from './harness.js';

let nats: Nats;
let gateway: Gateway;
let nc: NatsConnection;
const clients: Centrifuge[] = [];
const services: Service[] = [];

before(async () => {
  nats = await startNats();
  gateway = await startGateway({
    SWITCHBOARD_BROKER: 'nats',
    SWITCHBOARD_NATS_URL: nats.url,
    SWITCHBOARD_SERVICE_TIMEOUT: '500',
    SWITCHBOARD_NAMESPACES: JSON.stringify([
      ...DEFAULT_NAMESPACES,
      { name: 'svc', service: true, history_size: 10, history_ttl: 60, recovery: true },
      { name: 'orphan', service: true },
    ]),
  });
  nc = await connect({ servers: nats.url });
});

after(async () => {
  for (const c of clients) c.disconnect();
  for (const s of services) await s.stop();
  await nc.close();
  await gateway.stop();
  await nats.stop();
});

function replica(): Service {
  const s = new Service(new NatsBus(nc), { namespace: 'svc' });
  services.push(s);
  return s;
}

const connected = (user: string) => connectedClient(gateway, user, clients);

describe('a namespace owned by a backend service', () => {
  const answeredBy: string[] = [];

  before(async () => {
    for (const name of ['one', 'two']) {
      await replica()
        .onSubscribe((req) => {
          if (req.channel === 'svc:secret') throw ServiceError.from(Errors.permissionDenied);
          return { data: { welcome: req.user, have: req.data ?? null }, info: { role: 'member' } };
        })
        .onPublish((req) => {
          const text = (req.data as { text?: unknown }).text;
          if (typeof text !== 'string') throw new ServiceError(107, 'text must be a string');
          return { data: { text: text.toUpperCase(), by: req.user } };
        })
        .onRpc('whoami', (req) => {
          answeredBy.push(name);
          return { user: req.user, replica: name };
        })
        .onRpc('slow', () => new Promise((resolve) => setTimeout(() => resolve('late'), 2000)))
        .start();
    }
  });

  test('subscribe asks the service: initial data reaches the client, refusals keep their code', async () => {
    const c = await connected('sam');
    const sub = c.newSubscription('svc:room', { data: { since: 7 } });
    const subscribed = nextEvent<{ data: unknown }>(sub, 'subscribed');
    sub.subscribe();
    assert.deepEqual((await subscribed).data, { welcome: 'sam', have: { since: 7 } });
    const secret = c.newSubscription('svc:secret');
    const refused = nextEvent<{ code: number }>(secret, 'unsubscribed');
    secret.subscribe();
    assert.equal((await refused).code, 103);
  });

  test('client publications are checked and rewritten by the service', async () => {
    const c = await connected('pia');
    const sub = c.newSubscription('svc:shout');
    sub.subscribe();
    await sub.ready();
    const got = nextEvent<PublicationContext>(sub, 'publication');
    await sub.publish({ text: 'hello' });
    const pub = await got;
    assert.deepEqual(pub.data, { text: 'HELLO', by: 'pia' });
    assert.deepEqual(pub.info?.chanInfo, { role: 'member' });
    await assert.rejects(sub.publish({ nope: 1 }), (err: { code: number; message: string }) => {
      assert.equal(err.code, 107);
      assert.match(err.message, /text must be a string/);
      return true;
    });
  });

  test('ns:method RPCs go to the service and its replicas share them', async () => {
    const c = await connected('rob');
    for (let i = 0; i < 20; i++) {
      const { data } = await c.rpc('svc:whoami', {});
      assert.equal((data as { user: string }).user, 'rob');
    }
    assert.ok(
      answeredBy.includes('one') && answeredBy.includes('two'),
      `both replicas answered: ${answeredBy}`,
    );
    await assert.rejects(c.rpc('svc:missing', {}), (err: { code: number }) => err.code === 104);
    await assert.rejects(c.rpc('nons:whoami', {}), (err: { code: number }) => err.code === 104);
  });

  test('the server API rpc calls the same service methods, as no client and no user', async () => {
    const res = await api(gateway, 'rpc', { method: 'svc:whoami', params: {} });
    assert.equal(res.status, 200);
    assert.deepEqual((res.body.result as { data: { user: string } }).data.user, '');
    assert.equal((await api(gateway, 'rpc', { method: 'svc:missing' })).body.error?.code, 104);
    assert.equal((await api(gateway, 'rpc', {})).body.error?.code, 107);
  });

  test('a service that does not answer in time is error 100, temporary', async () => {
    const c = await connected('tia');
    await assert.rejects(
      c.rpc('svc:slow', {}),
      (err: { code: number; temporary?: boolean; message: string }) => {
        assert.equal(err.code, 100);
        assert.equal(err.temporary, true);
        assert.equal(err.message, 'service timeout');
        return true;
      },
    );
  });

  test('a namespace whose service is not running is error 108, temporary', async () => {
    const c = await connected('uri');
    const sub = c.newSubscription('orphan:x');
    const errors: { error: { code: number; temporary?: boolean } }[] = [];
    sub.on('error', (e) => errors.push(e as never));
    sub.subscribe();
    await waitUntil(
      () => errors.length > 0,
      5000,
      () => 'a subscribe error',
    );
    assert.equal(errors[0]?.error.code, 108);
    assert.equal(sub.state, 'subscribing', 'the client keeps retrying a temporary error');
    sub.unsubscribe();
    await assert.rejects(c.rpc('orphan:any', {}), (err: { code: number }) => err.code === 108);
  });

  test("services publish and read history through the server API on the bus, for their namespace's channels only", async () => {
    const c = await connected('vic');
    const sub = c.newSubscription('svc:news');
    sub.subscribe();
    await sub.ready();
    const got = nextEvent<PublicationContext>(sub, 'publication');
    const position = await services[0]!.publish('svc:news', { headline: 'bus works' });
    assert.equal(position.offset, 1);
    assert.deepEqual((await got).data, { headline: 'bus works' });
    assert.equal((await services[0]!.history('svc:news', 10)).publications.length, 1);
    for (const call of [
      () => services[0]!.publish('chat:elsewhere', 'x'),
      () => services[0]!.presenceStats('chat:nobody'),
    ])
      await assert.rejects(call(), (err: ApiCallError) => err.error.code === Errors.permissionDenied.code);
  });
});
