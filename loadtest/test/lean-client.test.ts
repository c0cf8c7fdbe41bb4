/**
 * The lean subscriber against a small `ws` server speaking the Centrifugo
 * JSON protocol: handshake, connect and subscribe, pings of both kinds,
 * one push per frame and many per frame; and the /proc readers the hot
 * channel uses.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { WebSocketServer } from 'ws';
import { coreTimes, tcpQueues } from '../src/bench/proc.js';
import { LeanStats, LeanSubscriber, leanFleet } from '../src/lean-client.js';
import { now } from '../src/tracker.js';

const push = (s: number) =>
  JSON.stringify({ push: { channel: 'hot', pub: { data: { s, t: now() - 5, p: 'x'.repeat(64) } } } });

/** A server that accepts token `good`, and after a subscribe runs `script` on the socket. */
async function server(script: (send: (text: string) => void, ws: import('ws').WebSocket) => void) {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await once(wss, 'listening');
  const seen = { pongs: 0, wsPongs: 0, commands: [] as string[] };
  wss.on('connection', (ws) => {
    ws.on('pong', () => seen.wsPongs++);
    ws.on('message', (data) => {
      for (const line of data.toString().split('\n')) {
        const cmd = JSON.parse(line);
        if (cmd.id === undefined) {
          seen.pongs++;
          continue;
        }
        seen.commands.push(Object.keys(cmd).filter((k) => k !== 'id')[0]!);
        if (cmd.connect) {
          if (cmd.connect.token !== 'good')
            ws.send(JSON.stringify({ id: cmd.id, error: { code: 109, message: 'token expired' } }));
          else ws.send(JSON.stringify({ id: cmd.id, connect: { client: 'c1', ping: 25, pong: true } }));
        } else if (cmd.subscribe) {
          ws.send(JSON.stringify({ id: cmd.id, subscribe: {} }));
          script((text) => ws.send(text), ws);
        }
      }
    });
  });
  const { port } = wss.address() as AddressInfo;
  return { url: `ws://127.0.0.1:${port}/connection/websocket`, seen, close: () => wss.close() };
}

const until = async (ok: () => boolean, ms = 5000) => {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('lean subscriber', () => {
  test('connects, subscribes, counts pushes one per frame and many per frame, answers pings', async () => {
    const big = Array.from({ length: 600 }, (_, i) => push(5 + i)).join('\n'); // ~80 KB: a 64-bit length
    const srv = await server((send, ws) => {
      send(push(0));
      send('{}'); // the protocol's ping: answered with {}
      ws.ping();
      send([push(1), push(2), push(3)].join('\n'));
      send(`${push(4)}\n{"push":{"channel":"hot","join":{"info":{"user":"u"}}}}\n`);
      send(big);
      send(push(3)); // a duplicate
    });
    const stats = new LeanStats();
    try {
      const sub = await LeanSubscriber.connect({ url: srv.url, token: 'good', timeoutMs: 5000, stats });
      await sub.subscribe('hot');
      await until(() => stats.delivered + stats.duplicated >= 606);
      await until(() => srv.seen.pongs === 1 && srv.seen.wsPongs === 1);
      assert.deepEqual([stats.delivered, stats.duplicated, stats.reordered], [605, 1, 0]);
      assert.equal(stats.messages, 8); // the two replies are messages too
      assert.equal(stats.lines, 2 + 1 + 1 + 3 + 2 + 600 + 1);
      assert.equal(stats.latency.count, 606);
      assert.ok(stats.latency.percentile(50) >= 4, `latency ${stats.latency.percentile(50)}`);
      assert.deepEqual(srv.seen.commands, ['connect', 'subscribe']);
      sub.close();
    } finally {
      srv.close();
    }
  });

  test('a refused token is an error; a fleet counts failures and the server closing', async () => {
    const srv = await server((_send, ws) => setTimeout(() => ws.close(3000, 'bye'), 50));
    const stats = new LeanStats();
    try {
      await assert.rejects(
        LeanSubscriber.connect({ url: srv.url, token: 'bad', timeoutMs: 5000, stats }),
        /109 token expired/,
      );
      const { subscribers, errors } = await leanFleet(4, 'hot', {
        url: srv.url,
        timeoutMs: 5000,
        stats,
        token: (i) => (i === 2 ? 'bad' : 'good'),
        localAddresses: ['127.0.0.1'],
      });
      assert.equal(subscribers.length, 3);
      await until(() => subscribers.every((s) => s.closed));
      assert.deepEqual(Object.fromEntries(errors), { '109 token expired': 1, 'close 3000': 3 });
    } finally {
      srv.close();
    }
  });
});

describe('/proc readers', () => {
  test('tcpQueues: the server side and the client side of one port', () => {
    const table = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:1F90 0100007F:C350 01 00000010:00000000 00:00000000 00000000     0        0 1 1 0 10',
      '   1: 0100007F:C350 0100007F:1F90 01 00000000:00000020 00:00000000 00000000     0        0 1 1 0 10',
      '   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 10',
      '12345: 0200007F:1F90 0100007F:C351 01 00000001:00000000 00:00000000 00000000     0        0 1 1 0 10',
      '   4: 0100007F:1F91 0100007F:C352 01 00000100:00000000 00:00000000 00000000     0        0 1 1 0 10',
      '',
    ].join('\n');
    assert.deepEqual(tcpQueues(0x1f90, table), { serverSend: 0x11, clientReceive: 0x20, connections: 2 });
    assert.equal(typeof tcpQueues(0x1f90).serverSend, 'number');
  });

  test('coreTimes: busy, softirq and idle of one core', () => {
    const stat =
      'cpu  9 9 9 9 9 9 9 9 0 0\ncpu0 100 0 50 1000 10 0 0 0 0 0\ncpu1 200 10 100 2000 20 5 30 1 0 0\n';
    const ticks = coreTimes(1, stat);
    const scale = ticks.idle / 2020; // seconds per tick
    assert.ok(Math.abs(ticks.busy - 346 * scale) < 1e-9);
    assert.ok(Math.abs(ticks.softirq - 30 * scale) < 1e-9);
    assert.ok(coreTimes(0).busy > 0);
  });
});
