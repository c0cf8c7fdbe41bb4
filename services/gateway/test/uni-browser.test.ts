/**
 * The unidirectional transports with a browser's own APIs, no SDK: Debian's
 * Chromium opens `WebSocket`, `EventSource` and a streaming `fetch` from a
 * page of the gateway's origin; publications made with the server API show
 * up in each, without the push envelope.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { gatewayPage } from './browser-harness.js';
import { api, type Gateway, token } from './harness.js';

const CHANNEL = 'chat:uni-browser';

/** What the page's three clients received, as parsed JSON (pings counted apart). */
interface Received {
  ws: Record<string, unknown>[];
  sse: Record<string, unknown>[];
  stream: Record<string, unknown>[];
  pings: { ws: number; sse: number; stream: number };
}

/**
 * Runs in the page (plain browser JavaScript, as an app without an SDK would
 * write it): the three clients, collecting into `window.received`.
 */
const PAGE_SCRIPT = String.raw`
(({ tokens, host }) => {
  const received = { ws: [], sse: [], stream: [], pings: { ws: 0, sse: 0, stream: 0 } };
  window.received = received;
  const ws = new WebSocket('ws://' + host + '/connection/uni_websocket');
  ws.onopen = () => ws.send(JSON.stringify({ token: tokens.ws }));
  ws.onmessage = (e) => {
    const value = JSON.parse(e.data);
    if (JSON.stringify(value) === '{}') received.pings.ws++;
    else received.ws.push(value);
  };
  const url = new URL('http://' + host + '/connection/uni_sse');
  url.searchParams.set('cf_connect', JSON.stringify({ token: tokens.sse }));
  const es = new EventSource(url);
  es.onmessage = (e) => received.sse.push(JSON.parse(e.data));
  es.addEventListener('ping', () => received.pings.sse++);
  (async () => {
    const res = await fetch('http://' + host + '/connection/uni_http_stream', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ token: tokens.stream }),
    });
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      text += value;
      let nl;
      while ((nl = text.indexOf('\n')) >= 0) {
        const line = JSON.parse(text.slice(0, nl));
        text = text.slice(nl + 1);
        if (line === null) received.pings.stream++;
        else received.stream.push(line);
      }
    }
  })();
})`;

const KINDS = ['ws', 'sse', 'stream'] as const;
const publicationsOf = (messages: Record<string, unknown>[]) =>
  messages.filter((m) => 'pub' in m).map((m) => [m.channel, (m.pub as { data: { n: number } }).data.n]);

describe('unidirectional transports in Chromium', () => {
  let gateway: Gateway;
  let browser: Browser;
  let page: Page;
  let base: string;

  before(async () => {
    ({ gateway, browser, page, base } = await gatewayPage(
      {
        SWITCHBOARD_UNI_TRANSPORTS: 'websocket,sse,http_stream',
        SWITCHBOARD_PING_INTERVAL: '1',
        SWITCHBOARD_PONG_TIMEOUT: '1',
      },
      '/uni-test',
    ));
  });

  after(async () => {
    await browser?.close();
    await gateway?.stop();
  });

  test('WebSocket, EventSource and fetch get the connect push, publications in order, pings, and stay open', async () => {
    const tokens = {
      ws: await token({ sub: 'browser-ws', channels: [CHANNEL] }),
      sse: await token({ sub: 'browser-sse', channels: [CHANNEL] }),
      stream: await token({ sub: 'browser-stream', channels: [CHANNEL] }),
    };
    await page.evaluate(`${PAGE_SCRIPT}(${JSON.stringify({ tokens, host: new URL(base).host })})`);
    const received = () => page.evaluate('window.received') as Promise<Received>;
    const until = async (what: string, done: (r: Received) => boolean) => {
      const deadline = Date.now() + 15_000;
      for (let r = await received(); !done(r); r = await received()) {
        if (Date.now() > deadline) throw new Error(`${what}: ${JSON.stringify(r)}`);
        await page.waitForTimeout(50); // polling the page, not a synchronisation point
      }
    };
    await until('connect pushes', (r) => KINDS.every((k) => r[k].length >= 1));
    for (const n of [1, 2, 3]) {
      const res = await api(gateway, 'publish', { channel: CHANNEL, data: { n } });
      assert.ok(res.body.result, JSON.stringify(res.body));
    }
    await until('three publications and two pings each', (r) =>
      KINDS.every((k) => publicationsOf(r[k]).length >= 3 && r.pings[k] >= 2),
    );
    const got = await received();
    for (const kind of KINDS) {
      assert.ok('connect' in got[kind][0]!, `${kind}: ${JSON.stringify(got[kind])}`);
      assert.deepEqual(
        publicationsOf(got[kind]),
        [
          [CHANNEL, 1],
          [CHANNEL, 2],
          [CHANNEL, 3],
        ],
        kind,
      );
      assert.ok(!got[kind].some((m) => 'push' in m), `${kind}: no push envelope`);
    }
    // Two pings each with a pong timeout of a second, no pong possible: all three still there.
    const info = await api(gateway, 'presence_stats', { channel: CHANNEL });
    assert.equal(info.body.result?.num_clients, 3, JSON.stringify(info.body));
  });
});
