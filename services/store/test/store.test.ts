import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { type ServiceOperation, type ServiceReply, type ServiceRequest } from '@switchboard/protocol';
import { type Bus, callService, LocalBus, NatsBus, recordPublications, type Service } from '@switchboard/sdk';
import {
  catchUp,
  createStoreService,
  isFullKey,
  isKey,
  KvBackend,
  levels,
  MemoryBackend,
  type StoreBackend,
} from '../src/index.js';

/** Calls the service exactly as a gateway does. */
const call = (bus: Bus, operation: ServiceOperation, req: Partial<ServiceRequest>) =>
  callService<any>(bus, 'store', operation, req);

const rpc = (bus: Bus, method: string, data: unknown, user = '42') =>
  call(bus, 'rpc', { method, data, user });

/** The server API as a gateway answers it on the bus; records publications. */
const fakeApi = (bus: Bus) => recordPublications<any>(bus, 'store');

function code(reply: ServiceReply<unknown>): number | undefined {
  return 'error' in reply ? reply.error.code : undefined;
}

describe('keys', () => {
  it('accepts 1 to 3 segments of [A-Za-z0-9_-]', () => {
    for (const k of ['Product', 'Product/123', 'Product/123/price', 'a-b/c_d/E9']) assert.ok(isKey(k), k);
    for (const k of ['', '/', 'a/', '/a', 'a//b', 'a/b/c/d', 'a.b', 'a b', 'a*', 'a>', 'ü', 5, null])
      assert.ok(!isKey(k), String(k));
    assert.ok(isFullKey('a/b/c'));
    assert.ok(!isFullKey('a/b'));
  });

  it('lists a key and its parent levels', () => {
    assert.deepEqual(levels('Product/123/price'), ['Product/123/price', 'Product/123', 'Product']);
  });
});

describe('memory backend', () => {
  it('gets, sets, deletes and lists under a prefix, with tombstones', async () => {
    const b = new MemoryBackend();
    assert.equal(await b.get('P/1/price'), undefined);
    assert.deepEqual(await b.set('P/1/price', 10, 1000), { key: 'P/1/price', value: 10, mtime: 1000 });
    await b.set('P/1/name', 'pen', 1000);
    await b.set('P/2/price', 20, 1000);
    await b.set('P/10/price', 30, 1000);
    assert.deepEqual(
      (await b.list('P/1')).map((r) => r.key),
      ['P/1/name', 'P/1/price'],
    );
    assert.equal((await b.list('P')).length, 4);
    assert.deepEqual(await b.delete('P/1/name', 1000), { key: 'P/1/name', deleted: true, mtime: 1001 });
    assert.equal(await b.delete('P/1/name', 1000), undefined);
    assert.equal(await b.delete('P/9/none', 1000), undefined);
    assert.deepEqual(await b.get('P/1/name'), { key: 'P/1/name', deleted: true, mtime: 1001 });
    assert.deepEqual(await b.list('P/1'), [
      { key: 'P/1/name', deleted: true, mtime: 1001 },
      { key: 'P/1/price', value: 10, mtime: 1000 },
    ]);
  });

  it('keeps mtimes strictly increasing per key, across deletes and a clock going back', async () => {
    const b = new MemoryBackend();
    const mtimes = [
      (await b.set('a/b/c', 1, 5000)).mtime,
      (await b.set('a/b/c', 2, 5000)).mtime,
      (await b.set('a/b/c', 3, 4000)).mtime,
      (await b.delete('a/b/c', 4000))!.mtime,
      (await b.set('a/b/c', 4, 4000)).mtime,
      (await b.set('a/b/c', 5, 9000)).mtime,
    ];
    assert.deepEqual(mtimes, [5000, 5001, 5002, 5003, 5004, 9000]);
  });
});

describe('catch-up', () => {
  const records = [
    { key: 'P/1/name', value: 'pen', mtime: 100 },
    { key: 'P/1/price', value: 12, mtime: 200 },
    { key: 'P/1/stock', deleted: true as const, mtime: 150 },
    { key: 'P/1/color', deleted: true as const, mtime: 90 },
    { key: 'P/2/price', value: 3, mtime: 50 },
  ];

  it('sends everything (but tombstones) to a client that holds nothing', () => {
    assert.deepEqual(catchUp('P/1', records, {}), [
      { key: 'P/1/name', value: 'pen', mtime: 100 },
      { key: 'P/1/price', value: 12, mtime: 200 },
    ]);
  });

  it('sends only newer entries, deletions of held keys, and nothing outside the prefix', () => {
    const has = { 'P/1/name': 100, 'P/1/price': 150, 'P/1/stock': 120, 'P/2/price': 10, 'P/1/gone': 70 };
    assert.deepEqual(catchUp('P/1', records, has), [
      { key: 'P/1/gone', deleted: true, mtime: 70 },
      { key: 'P/1/price', value: 12, mtime: 200 },
      { key: 'P/1/stock', deleted: true, mtime: 150 },
    ]);
  });

  it('sends nothing to a client that is up to date', () => {
    assert.deepEqual(catchUp('P/1/price', records, { 'P/1/price': 200 }), []);
  });
});

/** The store's behaviour through the bus, on whichever backend. */
function serviceSuite(
  name: string,
  setup: () => Promise<{ bus: Bus; backend: StoreBackend; done: () => Promise<void> }>,
) {
  describe(`store service (${name})`, () => {
    let bus: Bus;
    let backend: StoreBackend;
    let done: () => Promise<void>;
    let service: Service;
    let published: { channel: string; data: any }[];
    let clock: number;

    beforeEach(async () => {
      ({ bus, backend, done } = await setup());
      published = fakeApi(bus);
      clock = 1_700_000_000_000;
      service = createStoreService(bus, { backend, now: () => clock });
      await service.start();
    });
    afterEach(async () => {
      await service.stop();
      await done();
    });

    it('sets a field and publishes it to the field and its parents', async () => {
      assert.deepEqual(await rpc(bus, 'set', { key: 'Product/123/price', value: 99.95 }), {
        result: { data: { mtime: clock } },
      });
      const event = { key: 'Product/123/price', value: 99.95, mtime: clock };
      assert.deepEqual(
        published.sort((a, b) => a.channel.localeCompare(b.channel)),
        [
          { channel: 'store:Product', data: event },
          { channel: 'store:Product/123', data: event },
          { channel: 'store:Product/123/price', data: event },
        ],
      );
    });

    it('gets a field, a missing field, and every field under a prefix', async () => {
      await rpc(bus, 'set', { key: 'Product/123/price', value: 10 });
      clock += 5;
      await rpc(bus, 'set', { key: 'Product/123/name', value: { en: 'Pen' } });
      await rpc(bus, 'set', { key: 'Product/124/price', value: 11 });
      assert.deepEqual(await rpc(bus, 'get', { key: 'Product/123/price' }), {
        result: { data: { key: 'Product/123/price', value: 10, mtime: clock - 5 } },
      });
      assert.deepEqual(await rpc(bus, 'get', { key: 'Product/999/price' }), {
        result: { data: { key: 'Product/999/price', value: null } },
      });
      assert.deepEqual(await rpc(bus, 'get', { key: 'Product/123' }), {
        result: {
          data: {
            key: 'Product/123',
            entries: [
              { key: 'Product/123/name', value: { en: 'Pen' }, mtime: clock },
              { key: 'Product/123/price', value: 10, mtime: clock - 5 },
            ],
          },
        },
      });
      const all = await rpc(bus, 'get', { key: 'Product' });
      assert.ok('result' in all);
      assert.equal(all.result.data.entries.length, 3);
    });

    it('deletes, publishes the deletion, and leaves a tombstone for catch-up', async () => {
      const set = await rpc(bus, 'set', { key: 'Product/123/price', value: 10 });
      assert.ok('result' in set);
      published.length = 0;
      const del = await rpc(bus, 'delete', { key: 'Product/123/price' });
      const mtime = set.result.data.mtime + 1;
      assert.deepEqual(del, { result: { data: { deleted: true, mtime } } });
      assert.equal(published.length, 3);
      for (const p of published) assert.deepEqual(p.data, { key: 'Product/123/price', deleted: true, mtime });
      assert.deepEqual(await rpc(bus, 'get', { key: 'Product/123/price' }), {
        result: { data: { key: 'Product/123/price', value: null } },
      });
      assert.deepEqual(await rpc(bus, 'delete', { key: 'Product/123/price' }), {
        result: { data: { deleted: false } },
      });
      const sub = await call(bus, 'subscribe', {
        channel: 'store:Product/123',
        data: { 'Product/123/price': set.result.data.mtime },
      });
      assert.deepEqual(sub, {
        result: { data: { entries: [{ key: 'Product/123/price', deleted: true, mtime }] } },
      });
    });

    it('answers a subscribe with only what the client lacks or holds an older version of', async () => {
      await rpc(bus, 'set', { key: 'Product/1/name', value: 'pen' });
      const old = clock;
      clock += 10;
      await rpc(bus, 'set', { key: 'Product/1/price', value: 2 });
      await rpc(bus, 'set', { key: 'Product/2/price', value: 3 });
      const reply = await call(bus, 'subscribe', {
        channel: 'store:Product/1',
        data: { 'Product/1/name': old, 'Product/1/price': old },
      });
      assert.deepEqual(reply, {
        result: { data: { entries: [{ key: 'Product/1/price', value: 2, mtime: clock }] } },
      });
      const fresh = await call(bus, 'subscribe', { channel: 'store:Product' });
      assert.ok('result' in fresh);
      assert.deepEqual(
        fresh.result.data.entries.map((e: { key: string }) => e.key),
        ['Product/1/name', 'Product/1/price', 'Product/2/price'],
      );
    });

    it('refuses bad keys, bad values, bad subscribe data and anonymous callers', async () => {
      assert.equal(code(await rpc(bus, 'set', { key: 'Product/1', value: 1 })), 107);
      assert.equal(code(await rpc(bus, 'set', { key: 'a.b/c/d', value: 1 })), 107);
      assert.equal(code(await rpc(bus, 'set', { key: 'a/b/c' })), 107);
      assert.equal(code(await rpc(bus, 'set', { key: 'a/b/c', value: null })), 107);
      assert.equal(code(await rpc(bus, 'set', { key: 'a/b/c', value: 'x'.repeat(70_000) })), 107);
      assert.equal(code(await rpc(bus, 'get', { key: 'a/b/c/d' })), 107);
      assert.equal(code(await rpc(bus, 'get', 'a/b/c')), 107);
      assert.equal(code(await rpc(bus, 'delete', { key: 'a' })), 107);
      assert.equal(code(await call(bus, 'subscribe', { channel: 'store:a/b/c/d' })), 107);
      assert.equal(code(await call(bus, 'subscribe', { channel: 'store:a', data: [1] })), 107);
      assert.equal(code(await call(bus, 'subscribe', { channel: 'store:a', data: { 'a/b/c': 'x' } })), 107);
      assert.equal(code(await call(bus, 'subscribe', { channel: 'store:a', data: { a: 1 } })), 107);
      assert.equal(code(await rpc(bus, 'set', { key: 'a/b/c', value: 1 }, '')), 103);
      assert.equal(code(await rpc(bus, 'get', { key: 'a/b/c' }, '')), 103);
      assert.equal(code(await call(bus, 'subscribe', { channel: 'store:a', user: '' })), 103);
      assert.equal(published.length, 0);
    });

    it('refuses client publications: writes go through set', async () => {
      const reply = await call(bus, 'publish', { channel: 'store:a/b/c', data: { value: 1 } });
      assert.equal(code(reply), 103);
      assert.match((reply as { error: { message: string } }).error.message, /store:set/);
    });

    it('lets two replicas on one bus share state through the backend', async () => {
      const other = createStoreService(bus, { backend, now: () => clock });
      await other.start();
      try {
        for (let i = 0; i < 6; i++) {
          clock += 1;
          assert.ok('result' in (await rpc(bus, 'set', { key: `Item/${i}/v`, value: i })));
        }
        // Requests alternate between the replicas: every get sees every set.
        for (let i = 0; i < 6; i++) {
          const got = await rpc(bus, 'get', { key: `Item/${i}/v` });
          assert.ok('result' in got);
          assert.equal(got.result.data.value, i);
        }
      } finally {
        await other.stop();
      }
    });
  });
}

serviceSuite('memory', async () => ({
  bus: new LocalBus(),
  backend: new MemoryBackend(),
  done: async () => {},
}));

describe('replicas on one LocalBus', () => {
  it('each answer some requests', async () => {
    const bus = new LocalBus();
    fakeApi(bus);
    const backend = new MemoryBackend();
    const answered = [0, 0];
    // Two replicas, each with a backend that counts the writes it was asked for.
    const counting = (i: number): StoreBackend => ({
      get: (k) => backend.get(k),
      list: (p) => backend.list(p),
      delete: (k, n) => backend.delete(k, n),
      set: (k, v, n) => {
        answered[i]!++;
        return backend.set(k, v, n);
      },
    });
    const a = createStoreService(bus, { backend: counting(0) });
    const b = createStoreService(bus, { backend: counting(1) });
    await a.start();
    await b.start();
    try {
      for (let i = 0; i < 10; i++) assert.ok('result' in (await rpc(bus, 'set', { key: 'x/y/z', value: i })));
      assert.ok(answered[0]! > 0 && answered[1]! > 0, String(answered));
      assert.equal(answered[0]! + answered[1]!, 10);
    } finally {
      await a.stop();
      await b.stop();
    }
  });
});

// ---- NATS KV, against a real nats-server when one is installed

const natsServer = spawnSync('nats-server', ['--version']).status === 0;

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('NATS KV backend', { skip: natsServer ? false : 'nats-server not installed' }, () => {
  let child: ChildProcess;
  let dir: string;
  let url: string;
  const connections: NatsConnection[] = [];
  let bucket = 0;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sb-store-'));
    const port = await freePort();
    url = `nats://127.0.0.1:${port}`;
    child = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], {
      stdio: 'ignore',
    });
  });
  after(async () => {
    for (const nc of connections) await nc.close();
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  const open = async () => {
    const nc = await connect({ servers: url, waitOnFirstConnect: true, timeout: 10_000 });
    connections.push(nc);
    return nc;
  };

  it('keeps mtimes strictly increasing when replicas write one key at once', async () => {
    const prefix = `t${++bucket}`;
    const [b1, b2] = await Promise.all([
      KvBackend.open(await open(), prefix),
      KvBackend.open(await open(), prefix),
    ]);
    const now = Date.now();
    const writes = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? b1 : b2).set('P/1/price', i, now)),
    );
    const mtimes = writes.map((w) => w.mtime).sort((a, b) => a - b);
    assert.equal(new Set(mtimes).size, 20, 'every write got its own mtime');
    const last = await b1.get('P/1/price');
    assert.ok(last && !('deleted' in last));
    assert.equal(last.mtime, mtimes[19]);
  });

  it('lists prefixes with tombstones, like the memory backend', async () => {
    const b = await KvBackend.open(await open(), `t${++bucket}`);
    await b.set('P/1/price', 10, 1000);
    await b.set('P/1/name', 'pen', 1000);
    await b.set('P/10/price', 30, 1000);
    await b.set('Q/1/price', 1, 1000);
    assert.deepEqual(await b.delete('P/1/name', 1000), { key: 'P/1/name', deleted: true, mtime: 1001 });
    assert.equal(await b.delete('P/1/name', 1000), undefined);
    assert.deepEqual(await b.list('P/1'), [
      { key: 'P/1/name', deleted: true, mtime: 1001 },
      { key: 'P/1/price', value: 10, mtime: 1000 },
    ]);
    assert.deepEqual(
      (await b.list('P')).map((r) => r.key),
      ['P/1/name', 'P/1/price', 'P/10/price'],
    );
    assert.deepEqual(await b.list('P/1/price'), [{ key: 'P/1/price', value: 10, mtime: 1000 }]);
    assert.deepEqual(await b.list('Z'), []);
    assert.deepEqual((await b.set('P/1/name', 'ink', 1000)).mtime, 1002);
  });

  serviceSuite('NATS KV', async () => {
    const nc = await connect({ servers: url, waitOnFirstConnect: true, timeout: 10_000 });
    return { bus: new LocalBus(), backend: await KvBackend.open(nc, `t${++bucket}`), done: () => nc.close() };
  });

  it('serves two replicas over NatsBus that share the bucket', async () => {
    const prefix = `t${++bucket}`;
    const nc = await open();
    const bus = new NatsBus(nc);
    const published = fakeApi(bus);
    const own = [await open(), await open()];
    const replicas = [];
    for (const c of own)
      replicas.push(createStoreService(new NatsBus(c), { backend: await KvBackend.open(c, prefix) }));
    for (const r of replicas) await r.start();
    // The replicas' subscriptions are in place once the server has read what came before the flush.
    await Promise.all(own.map((c) => c.flush()));
    try {
      const set = await rpc(bus, 'set', { key: 'Product/7/price', value: 5 });
      assert.ok('result' in set);
      for (let i = 0; i < 4; i++) {
        const got = await rpc(bus, 'get', { key: 'Product/7/price' });
        assert.deepEqual(got, {
          result: { data: { key: 'Product/7/price', value: 5, mtime: set.result.data.mtime } },
        });
      }
      assert.equal(published.length, 3);
    } finally {
      for (const r of replicas) await r.stop();
    }
  });
});
