/**
 * The uWebSockets.js build this Node loads (uws.ts): the one expected for its
 * ABI and C library, a loud failure naming every build's reason when none
 * loads, and, on the build loaded, each uWS call the gateway makes: plain and
 * TLS apps, exclusive and shared (SO_REUSEPORT) listening, WebSocket user
 * data, topics, buffered amount, cork and close. `make test` runs this file
 * on the machine's Node and on Node 24, so each build is exercised.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import WebSocket from 'ws';
import {
  describeUwsBuild,
  libc,
  listenExclusive,
  listenShared,
  loadUws,
  NativeAddonError,
  UWS_CANDIDATES,
  type us_listen_socket,
  uws,
  uwsBuild,
} from '../src/uws.js';
import { freePort } from './harness.js';
import { createPki, trustingWebSocket } from './pki.js';

const BTC_VISION = '@btc-vision/uwebsockets.js';
const TRUFFLESUITE = '@trufflesuite/uws-js-unofficial';

function glibcAtLeast(major: number, minor: number): boolean {
  const m = /^glibc (\d+)\.(\d+)/.exec(libc());
  return m !== null && (Number(m[1]) > major || (Number(m[1]) === major && Number(m[2]) >= minor));
}

test('the build for this Node and C library: btc-vision where glibc >= 2.38, else trufflesuite on Node 20', () => {
  const abi = process.versions.modules;
  const expected =
    ['115', '127', '137', '141'].includes(abi) && glibcAtLeast(2, 38)
      ? BTC_VISION
      : abi === '115'
        ? TRUFFLESUITE
        : undefined;
  assert.ok(expected, `no build is expected to load on ABI ${abi}, ${libc()}`);
  assert.equal(uwsBuild.package, expected);
  assert.equal(uwsBuild.abi, abi);
  assert.equal(uwsBuild.binary, `uws_${process.platform}_${process.arch}_${abi}.node`);
  assert.equal(describeUwsBuild(), `${expected} ${uwsBuild.version} (ABI ${abi})`);
  assert.equal(uwsBuild.version, expected === BTC_VISION ? '20.57.0' : '20.30.0-unofficial.0');
});

test('when no build loads, start-up fails with each build’s reason and what to do', () => {
  const truffle = UWS_CANDIDATES.find((c) => c.specifier === 'uWebSockets.js')!;
  const btc = UWS_CANDIDATES.find((c) => c.specifier === BTC_VISION)!;
  const candidates = [
    { specifier: 'no-such-uws-build', root: '.', binaries: '.', supports: 'nothing' },
    // The trufflesuite package, looked for where it keeps no binaries.
    { ...truffle, binaries: 'src' },
    // The btc-vision build again where it failed in this process (glibc < 2.38).
    ...(uwsBuild.package === BTC_VISION ? [] : [btc]),
  ];
  assert.throws(
    () => loadUws(candidates),
    (err: Error) => {
      assert.ok(err instanceof NativeAddonError);
      const lines = err.message.split('\n');
      assert.match(
        lines[0]!,
        new RegExp(`^no native uWebSockets\\.js addon loads on Node ${process.version}`),
      );
      assert.ok(lines[0]!.includes(`(ABI ${process.versions.modules})`) && lines[0]!.includes(libc()));
      assert.match(lines[1]!, /^ {2}- no-such-uws-build is not installed \(.*\); run npm ci$/);
      assert.match(
        lines[2]!,
        /^ {2}- @trufflesuite\/uws-js-unofficial 20\.30\.0-unofficial\.0 \(Node 20 .*\): no binary uws_.*\.node \(for .* it has none\)$/,
      );
      if (candidates.length === 3)
        assert.match(lines[3]!, /^ {2}- @btc-vision\/uwebsockets\.js 20\.57\.0 .*GLIBC_2\.38' not found/);
      assert.match(lines.at(-1)!, /glibc 2\.38 or later .*scripts\/install-node\.sh/);
      return true;
    },
  );
});

test('listenExclusive refuses a taken port; listenShared lets a second app listen beside the first', async () => {
  const port = await freePort();
  const sockets: us_listen_socket[] = [];
  try {
    const first = uws.App().get('/*', (res) => void res.end('first'));
    sockets.push(await listenExclusive(first, '127.0.0.1', port));
    await assert.rejects(
      listenExclusive(uws.App(), '127.0.0.1', port),
      /cannot listen on 127\.0\.0\.1:\d+ \(in use\?\)/,
    );

    const shared = await freePort();
    const a = uws.App().get('/*', (res) => void res.end('a'));
    const b = uws.App().get('/*', (res) => void res.end('b'));
    sockets.push(await listenShared(a, '127.0.0.1', shared));
    sockets.push(await listenShared(b, '127.0.0.1', shared));
    // The reload closes the old listener: the new app then answers alone.
    uws.us_listen_socket_close(sockets.pop()!);
    uws.us_listen_socket_close(sockets.pop()!);
    const c = uws.App().get('/*', (res) => void res.end('c'));
    sockets.push(await listenShared(c, '127.0.0.1', shared));
    const res = await fetch(`http://127.0.0.1:${shared}/`, { headers: { connection: 'close' } });
    assert.equal(await res.text(), 'c');
  } finally {
    for (const s of sockets) uws.us_listen_socket_close(s);
  }
});

test('WebSocket: user data, topics, publish, buffered amount, cork, close code; over TLS (SSLApp) too', async () => {
  const pki = createPki();
  const cert = pki.issue('localhost', ['localhost', '127.0.0.1']);
  for (const tls of [false, true]) {
    const app = tls ? uws.SSLApp({ cert_file_name: cert.certFile, key_file_name: cert.keyFile }) : uws.App();
    interface Data {
      seen?: { id: string; buffered: number };
    }
    let opened: ((ws: import('../src/uws.js').WebSocket<Data>) => void) | undefined;
    const open = new Promise<import('../src/uws.js').WebSocket<Data>>((resolve) => (opened = resolve));
    const closed = new Promise<{ code: number; data: Data }>((resolve) => {
      app.ws<Data>('/ws', {
        idleTimeout: 0,
        sendPingsAutomatically: false,
        compression: uws.DISABLED,
        upgrade: (res, req, context) => {
          res.upgrade<Data>(
            {},
            req.getHeader('sec-websocket-key'),
            req.getHeader('sec-websocket-protocol'),
            req.getHeader('sec-websocket-extensions'),
            context,
          );
        },
        open: (ws) => {
          ws.getUserData().seen = { id: 'me', buffered: ws.getBufferedAmount() };
          ws.subscribe('room');
          opened!(ws);
        },
        message: (ws, message) => {
          const text = Buffer.from(message).toString();
          ws.cork(() => {
            ws.send(`echo ${text}`, false, false);
            ws.send(`from ${ws.getUserData().seen!.id}`, false, false);
          });
          if (text === 'bye') ws.end(4001, 'bye');
        },
        close: (ws, code) => resolve({ code, data: ws.getUserData() }),
      });
    });
    const port = await freePort();
    const socket = await listenExclusive(app, '127.0.0.1', port);
    try {
      const Client = tls ? trustingWebSocket(pki.ca) : WebSocket;
      const client = new Client(`${tls ? 'wss' : 'ws'}://localhost:${port}/ws`);
      const received: string[] = [];
      client.on('message', (m) => received.push(m.toString()));
      await once(client, 'open');
      const ws = await open;
      assert.deepEqual(ws.getUserData().seen, { id: 'me', buffered: 0 });
      assert.equal(app.numSubscribers('room'), 1);
      assert.equal(app.publish('room', 'to the room', false, false), true);
      client.send('bye');
      const [code] = (await once(client, 'close')) as [number];
      assert.equal(code, 4001);
      assert.deepEqual(received, ['to the room', 'echo bye', 'from me']);
      const { code: serverCode, data } = await closed;
      assert.equal(serverCode, 4001);
      assert.equal(data.seen?.id, 'me');
      assert.equal(app.numSubscribers('room'), 0);
    } finally {
      uws.us_listen_socket_close(socket);
    }
  }
});
