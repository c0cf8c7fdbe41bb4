import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { type ServiceOperation, type ServiceReply, type ServiceRequest } from '@switchboard/protocol';
import { type Bus, callService, LocalBus, recordPublications } from '@switchboard/sdk';
import { createJobsService, type JobsService, type Progress } from '../src/index.js';

/** Calls the service exactly as a gateway does. */
const call = (bus: Bus, operation: ServiceOperation, req: Partial<ServiceRequest>) =>
  callService<any>(bus, 'jobs', operation, req);

const rpc = (bus: LocalBus, method: string, data?: unknown, user = '42') =>
  call(bus, 'rpc', { method, user, ...(data !== undefined ? { data } : {}) });

/** The job id from a successful `start`. */
async function start(bus: LocalBus, data?: unknown, user = '42'): Promise<string> {
  const reply = await rpc(bus, 'start', data, user);
  assert.ok('result' in reply, JSON.stringify(reply));
  const job: unknown = reply.result.data.job;
  assert.equal(typeof job, 'string');
  return job as string;
}

/** The server API as a gateway answers it on the bus; records publications. */
const fakeApi = (bus: Bus) => recordPublications<Progress>(bus, 'jobs');

/** Polls until `check` returns something truthy, or fails after `timeoutMs`. */
async function until<T>(check: () => T | undefined | false, timeoutMs = 3000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const code = (reply: ServiceReply<unknown>) => ('error' in reply ? reply.error.code : undefined);

describe('jobs service', () => {
  let bus: LocalBus;
  let service: JobsService;
  let published: { channel: string; data: Progress }[];
  const of = (job: string) => published.filter((p) => p.data.job === job);

  beforeEach(async () => {
    bus = new LocalBus();
    published = fakeApi(bus);
    service = createJobsService(bus);
    await service.start();
  });
  afterEach(() => service.stop());

  it('answers at once, then publishes progress to the personal channel until done', async () => {
    const job = await start(bus, { steps: 3, interval_ms: 10 });
    assert.equal(service.running('42'), 1);
    await until(() => of(job).some((p) => p.data.done));
    assert.deepEqual(of(job), [
      { channel: 'jobs:#42', data: { job, progress: 33, done: false } },
      { channel: 'jobs:#42', data: { job, progress: 66, done: false } },
      { channel: 'jobs:#42', data: { job, progress: 100, done: true } },
    ]);
    assert.equal(service.running(), 0);
  });

  it('runs 10 steps by default', async () => {
    const job = await start(bus, { interval_ms: 10 });
    await until(() => of(job).some((p) => p.data.done));
    assert.deepEqual(
      of(job).map((p) => p.data.progress),
      [10, 20, 30, 40, 50, 60, 70, 80, 90, 100],
    );
  });

  it('cancels a job of the same user and stops its publications', async () => {
    const job = await start(bus, { steps: 100, interval_ms: 10 });
    await until(() => of(job).length >= 2);
    assert.deepEqual(await rpc(bus, 'cancel', { job }), { result: { data: { cancelled: true } } });
    assert.equal(service.running(), 0);
    const last = of(job).at(-1)!;
    assert.deepEqual(last.data, { job, progress: last.data.progress, done: true, cancelled: true });
    assert.ok(last.data.progress > 0 && last.data.progress < 100);
    assert.equal(of(job).filter((p) => p.data.done).length, 1);
    assert.deepEqual(await rpc(bus, 'cancel', { job }), { result: { data: { cancelled: false } } });
  });

  it("refuses to cancel another user's job", async () => {
    const job = await start(bus, { steps: 100, interval_ms: 1000 });
    assert.equal(code(await rpc(bus, 'cancel', { job }, '43')), 103);
    assert.equal(service.running('42'), 1);
  });

  it('limits running jobs per user with 106', async () => {
    for (let i = 0; i < 5; i++) await start(bus, { steps: 100, interval_ms: 5000 });
    const sixth = await rpc(bus, 'start', { steps: 100, interval_ms: 5000 });
    assert.equal(code(sixth), 106);
    await start(bus, { steps: 100, interval_ms: 5000 }, '43');
    assert.equal(service.running(), 6);
  });

  it('ends its running jobs when it stops', async () => {
    const job = await start(bus, { steps: 100, interval_ms: 5000 });
    await service.stop();
    assert.equal(service.running(), 0);
    assert.deepEqual(of(job), [
      { channel: 'jobs:#42', data: { job, progress: 0, done: true, cancelled: true } },
    ]);
  });

  it('refuses bad parameters with 107 and anonymous callers with 103', async () => {
    for (const data of [
      { steps: 0 },
      { steps: 101 },
      { steps: 2.5 },
      { steps: '3' },
      { interval_ms: 9 },
      { interval_ms: 5001 },
      'x',
    ]) {
      assert.equal(code(await rpc(bus, 'start', data)), 107, JSON.stringify(data));
    }
    assert.equal(code(await rpc(bus, 'start', {}, '')), 103);
    assert.equal(code(await rpc(bus, 'start', {}, '4,2')), 107);
    assert.equal(code(await rpc(bus, 'cancel', { job: 'nope' })), 107);
    assert.equal(code(await rpc(bus, 'cancel', {})), 107);
    assert.equal(service.running(), 0);
  });

  it('lets users subscribe to their own channel only, and refuses client publications', async () => {
    assert.deepEqual(await call(bus, 'subscribe', { channel: 'jobs:#42' }), { result: {} });
    assert.equal(code(await call(bus, 'subscribe', { channel: 'jobs:#43' })), 103);
    assert.equal(code(await call(bus, 'subscribe', { channel: 'jobs:all' })), 103);
    assert.equal(code(await call(bus, 'subscribe', { channel: 'jobs:#', user: '' })), 103);
    assert.equal(code(await call(bus, 'publish', { channel: 'jobs:#42', data: { progress: 100 } })), 103);
  });

  it('shares requests between two replicas, and cancels a job on the replica that runs it', async () => {
    const other = createJobsService(bus);
    await other.start();
    try {
      const jobs = [];
      for (let i = 0; i < 4; i++) jobs.push(await start(bus, { steps: 100, interval_ms: 5000 }));
      // Requests alternate: each replica took two jobs.
      assert.equal(service.running(), 2);
      assert.equal(other.running(), 2);
      const owners = new Set(jobs.map((j) => j.split('-')[0]));
      assert.deepEqual(owners, new Set([service.replica, other.replica]));
      // Whichever replica receives a cancel, the job's own replica stops it.
      for (const job of jobs) {
        assert.deepEqual(await rpc(bus, 'cancel', { job }), { result: { data: { cancelled: true } } });
      }
      assert.equal(service.running() + other.running(), 0);
      // Another user's job stays refused across replicas too.
      const job = await start(bus, { steps: 100, interval_ms: 5000 });
      assert.equal(code(await rpc(bus, 'cancel', { job }, '43')), 103);
      assert.equal(code(await rpc(bus, 'cancel', { job }, '43')), 103);
    } finally {
      await other.stop();
    }
  });
});
