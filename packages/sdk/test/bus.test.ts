import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Errors, Subjects } from '@switchboard/protocol';
import { LocalBus, NoResponders, RequestTimeout, Service, ServiceError } from '../src/index.js';

const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const dec = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b));

test('LocalBus: a queue group takes turns; no member is NoResponders; a slow one times out', async () => {
  const bus = new LocalBus();
  await assert.rejects(bus.request('s', enc(1), 100), NoResponders);
  const seen: string[] = [];
  const stopA = bus.serve('s', 'q', async () => (seen.push('a'), enc('a')));
  bus.serve('s', 'q', async () => (seen.push('b'), enc('b')));
  for (let i = 0; i < 4; i++) await bus.request('s', enc(i), 100);
  assert.deepEqual(seen.sort(), ['a', 'a', 'b', 'b']);
  stopA();
  assert.equal(dec(await bus.request('s', enc(0), 100)), 'b');
  bus.serve('slow', 'q', () => new Promise(() => undefined));
  await assert.rejects(bus.request('slow', enc(0), 20), RequestTimeout);
});

test('Service: handlers answer with results or protocol errors; defaults refuse what they should', async () => {
  const bus = new LocalBus();
  const subjects = new Subjects('sb');
  const service = new Service(bus, { namespace: 'ns' })
    .onRpc('add', (req) => (req.data as number[]).reduce((a, b) => a + b, 0))
    .onRpc('deny', () => {
      throw ServiceError.from(Errors.permissionDenied);
    })
    .onRpc('boom', () => {
      throw new Error('bug');
    });
  await service.start();
  const call = async (op: 'rpc' | 'subscribe' | 'publish', req: object) =>
    dec(await bus.request(subjects.service('ns', op), enc({ client: 'c', user: 'u', ...req }), 100));
  assert.deepEqual(await call('rpc', { method: 'add', data: [1, 2] }), { result: { data: 3 } });
  assert.deepEqual(await call('rpc', { method: 'deny' }), { error: Errors.permissionDenied });
  assert.deepEqual(await call('rpc', { method: 'boom' }), { error: Errors.internal });
  assert.deepEqual(await call('rpc', { method: 'nope' }), { error: Errors.methodNotFound });
  assert.deepEqual(await call('subscribe', { channel: 'ns:x' }), { result: {} });
  assert.deepEqual(await call('subscribe', { channel: 'ns:x', user: '' }), {
    error: Errors.permissionDenied,
  });
  assert.deepEqual(await call('publish', { channel: 'ns:x', data: 1 }), { error: Errors.permissionDenied });
  await service.stop();
  await assert.rejects(bus.request(subjects.service('ns', 'rpc'), enc({}), 100), NoResponders);
});
