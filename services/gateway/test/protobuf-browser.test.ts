/**
 * The Protobuf client protocol in Debian's Chromium: centrifuge-js's protobuf
 * browser build, as the gateway serves it (/vendor/centrifuge.protobuf.js),
 * over the browser's own WebSocket and over fetch streaming (HTTP-streaming
 * with its emulation requests), from a page of the gateway's origin.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { gatewayPage } from './browser-harness.js';
import { api, type Gateway, token } from './harness.js';

/**
 * Runs in the page: centrifuge-js's protobuf browser build, served by the
 * gateway, over the browser's WebSocket and over fetch streaming
 * (HTTP-streaming); each subscribes, publishes JSON bytes, and collects what
 * it gets as text into `window.protobuf`.
 */
const PROTOBUF_SCRIPT = String.raw`
(async ({ tokens, host, channel }) => {
  const got = { websocket: [], http_stream: [], transports: {} };
  window.protobuf = got;
  const endpoints = {
    websocket: 'ws://' + host + '/connection/websocket',
    http_stream: 'http://' + host + '/connection/http_stream',
  };
  for (const transport of ['websocket', 'http_stream']) {
    const c = new Centrifuge([{ transport, endpoint: endpoints[transport] }], {
      token: tokens[transport],
      emulationEndpoint: 'http://' + host + '/emulation',
    });
    c.on('connected', (ctx) => (got.transports[transport] = ctx.transport));
    const sub = c.newSubscription(channel);
    sub.on('publication', (ctx) => got[transport].push(new TextDecoder().decode(ctx.data)));
    sub.subscribe();
    c.connect();
    await sub.ready(10000);
    await sub.publish(new TextEncoder().encode(JSON.stringify({ from: transport })));
  }
})`;

describe('the Protobuf client in Chromium', () => {
  let gateway: Gateway;
  let browser: Browser;
  let page: Page;
  let base: string;

  before(async () => {
    ({ gateway, browser, page, base } = await gatewayPage(
      {
        SWITCHBOARD_NAMESPACES: JSON.stringify([
          { name: 'chat', allow_subscribe_for_client: true, allow_publish_for_subscriber: true },
        ]),
      },
      '/protobuf-test',
    ));
    await page.addScriptTag({ url: `${base}/vendor/centrifuge.protobuf.js` });
  });

  after(async () => {
    await browser?.close();
    await gateway?.stop();
  });

  test("centrifuge-js's protobuf build over WebSocket and HTTP-streaming: each gets both publications and the API's", async () => {
    const channel = 'chat:protobuf-browser';
    const tokens = {
      websocket: await token({ sub: 'browser-pb-ws' }),
      http_stream: await token({ sub: 'browser-pb-stream' }),
    };
    await page.evaluate(
      `${PROTOBUF_SCRIPT}(${JSON.stringify({ tokens, host: new URL(base).host, channel })})`,
    );
    const res = await api(gateway, 'publish', { channel, data: { from: 'api' } });
    assert.ok(res.body.result, JSON.stringify(res.body));
    type Got = { websocket: string[]; http_stream: string[]; transports: Record<string, string> };
    const got = () => page.evaluate('window.protobuf') as Promise<Got>;
    const deadline = Date.now() + 15_000;
    for (let g = await got(); g.websocket.length < 3 || g.http_stream.length < 2; g = await got()) {
      if (Date.now() > deadline) throw new Error(JSON.stringify(g));
      await page.waitForTimeout(50); // polling the page, not a synchronisation point
    }
    const final = await got();
    assert.deepEqual(final.transports, { websocket: 'websocket', http_stream: 'http_stream' });
    // The WebSocket client was subscribed first: it saw its own, the stream's and the API's.
    assert.deepEqual(
      final.websocket.map((t) => JSON.parse(t)),
      [{ from: 'websocket' }, { from: 'http_stream' }, { from: 'api' }],
    );
    assert.deepEqual(
      final.http_stream.map((t) => JSON.parse(t)),
      [{ from: 'http_stream' }, { from: 'api' }],
    );
  });
});
