import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { type ServiceOperation, type ServiceRequest, Subjects } from '@switchboard/protocol';
import { type Bus, callService, LocalBus, recordPublications, type Service } from '@switchboard/sdk';
import { createChatService } from '../src/index.js';

/** Calls the service exactly as a gateway does. */
const call = (bus: Bus, operation: ServiceOperation, req: Partial<ServiceRequest>) =>
  callService<any>(bus, 'room', operation, req);

/** The server API as a gateway answers it on the bus; records publications. */
const fakeApi = (bus: Bus) => recordPublications<any>(bus, 'room');

describe('chat service', () => {
  let bus: LocalBus;
  let service: Service;
  let published: { channel: string; data: any }[];

  beforeEach(async () => {
    bus = new LocalBus();
    published = fakeApi(bus);
    service = createChatService(bus, { now: () => 1700000000000 });
    await service.start();
  });
  afterEach(() => service.stop());

  it('lets authenticated users into rooms and keeps anonymous ones out', async () => {
    assert.deepEqual(await call(bus, 'subscribe', { channel: 'room:lobby' }), {
      result: { data: { room: 'lobby' } },
    });
    const anon = await call(bus, 'subscribe', { channel: 'room:lobby', user: '' });
    assert.ok('error' in anon);
    assert.equal(anon.error.code, 103);
  });

  it('admits only the owner to a personal channel', async () => {
    assert.ok('result' in (await call(bus, 'subscribe', { channel: 'room:#42' })));
    const other = await call(bus, 'subscribe', { channel: 'room:#42', user: '43' });
    assert.ok('error' in other);
    assert.equal(other.error.code, 103);
  });

  it('rewrites publications to {text, user, at} and skips the sender', async () => {
    const reply = await call(bus, 'publish', { channel: 'room:lobby', data: { text: '  hello  ', x: 1 } });
    assert.deepEqual(reply, {
      result: { data: { text: 'hello', user: '42', at: 1700000000000 }, skip_sender: true },
    });
  });

  it('refuses empty, too long and malformed messages with 107', async () => {
    for (const data of [{ text: '   ' }, { text: 'x'.repeat(2001) }, { text: 5 }, 'hello', null, undefined]) {
      const reply = await call(bus, 'publish', { channel: 'room:lobby', data });
      assert.ok('error' in reply, JSON.stringify(data));
      assert.equal(reply.error.code, 107);
      assert.match(reply.error.message, /text/);
    }
    const max = await call(bus, 'publish', { channel: 'room:lobby', data: { text: 'é'.repeat(2000) } });
    assert.ok('result' in max);
  });

  it('refuses anonymous publishers and publications to personal channels', async () => {
    const anon = await call(bus, 'publish', { channel: 'room:lobby', user: '', data: { text: 'hi' } });
    assert.ok('error' in anon);
    assert.equal(anon.error.code, 103);
    const personal = await call(bus, 'publish', { channel: 'room:#42', data: { text: 'hi' } });
    assert.ok('error' in personal);
    assert.equal(personal.error.code, 103);
  });

  it('delivers direct messages to the personal channel through the server API', async () => {
    const reply = await call(bus, 'rpc', { method: 'dm', data: { to: '7', text: ' psst ' } });
    assert.deepEqual(reply, { result: { data: { delivered: true } } });
    assert.deepEqual(published, [
      { channel: 'room:#7', data: { from: '42', text: 'psst', at: 1700000000000 } },
    ]);
  });

  it('refuses direct messages to ids that would reach several users', async () => {
    for (const to of ['7,8', '#7', '', 42, 'a b']) {
      const reply = await call(bus, 'rpc', { method: 'dm', data: { to, text: 'hi' } });
      assert.ok('error' in reply, JSON.stringify(to));
      assert.equal(reply.error.code, 107);
    }
    assert.equal(published.length, 0);
  });

  it('passes on a failing server API call', async () => {
    const lonely = new LocalBus();
    const subjects = new Subjects('sb');
    lonely.serve(subjects.serviceApi('room', 'publish'), subjects.serviceApiQueue, async () =>
      new TextEncoder().encode(JSON.stringify({ error: { code: 108, message: 'not available' } })),
    );
    const s = createChatService(lonely);
    await s.start();
    try {
      const reply = await callService(lonely, 'room', 'rpc', {
        user: '1',
        method: 'dm',
        data: { to: '2', text: 'x' },
      });
      assert.deepEqual(reply, { error: { code: 108, message: 'not available' } });
    } finally {
      await s.stop();
    }
  });

  it('lists the public rooms that received messages', async () => {
    await call(bus, 'publish', { channel: 'room:lobby', data: { text: 'a' } });
    await call(bus, 'publish', { channel: 'room:dev', data: { text: 'b' } });
    await call(bus, 'publish', { channel: 'room:team#42,43', data: { text: 'c' } });
    await call(bus, 'publish', { channel: 'room:empty', data: { text: '' } });
    assert.deepEqual(await call(bus, 'rpc', { method: 'rooms' }), {
      result: { data: { rooms: ['dev', 'lobby'] } },
    });
  });

  it('answers unknown methods with 104', async () => {
    const reply = await call(bus, 'rpc', { method: 'nope' });
    assert.ok('error' in reply);
    assert.equal(reply.error.code, 104);
  });

  it('shares requests between two replicas on one bus', async () => {
    const other = createChatService(bus);
    await other.start();
    try {
      for (let i = 0; i < 6; i++) await call(bus, 'publish', { channel: `room:r${i}`, data: { text: 'x' } });
      // Each replica remembers the rooms it saw: both answered some publications.
      const first = await call(bus, 'rpc', { method: 'rooms' });
      const second = await call(bus, 'rpc', { method: 'rooms' });
      assert.ok('result' in first && 'result' in second);
      const a: string[] = first.result.data.rooms;
      const b: string[] = second.result.data.rooms;
      assert.ok(a.length > 0 && b.length > 0, `${a} / ${b}`);
      assert.deepEqual([...a, ...b].sort(), ['r0', 'r1', 'r2', 'r3', 'r4', 'r5']);
    } finally {
      await other.stop();
    }
  });
});
