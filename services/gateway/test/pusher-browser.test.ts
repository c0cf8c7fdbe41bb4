/**
 * The Pusher demo page (/pusher.html) as a person sees it: its files over
 * plain HTTP, then Debian's Chromium running pusher-js's browser build
 * against an embedded gateway with Pusher apps. An event triggered with the
 * `pusher` SDK on the internal port shows on the page; an Origin the app's
 * allowed_origins (or, for an app without a list, the gateway's) does not
 * hold is refused at the upgrade; an unknown key is refused with 4001.
 * Screenshots: test-output/browser/.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import PusherServer from 'pusher';
import { CONTENT_SECURITY_POLICY } from '../src/static.js';
import { launchChromium, screenshot } from './browser-harness.js';
import { freePort, type Gateway, metric, RawClient, startGateway, waitUntil } from './harness.js';

const WAIT = 10_000;

/** No list of its own: the gateway's SWITCHBOARD_ALLOWED_ORIGINS, the page's origin at 127.0.0.1 (not at localhost). */
const OPEN = { id: 'page-app', key: 'page-key', secret: 'page-secret' };
/** Only another site: the page is refused by the app's list, though the gateway's allows it. */
const GUARDED = {
  id: 'guarded-app',
  key: 'guarded-key',
  secret: 'guarded-secret',
  allowed_origins: ['https://only.example'],
};

let gateway: Gateway;
let browser: Browser;
let base: string;
let sdk: PusherServer;

before(async () => {
  // The gateway's allow-list names the page's origin, port included: the client port is picked here.
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const [started, launched] = await Promise.all([
    startGateway({
      SWITCHBOARD_CLIENT_PORT: String(port),
      SWITCHBOARD_ALLOWED_ORIGINS: base,
      SWITCHBOARD_PUSHER_APPS: JSON.stringify([OPEN, GUARDED]),
    }),
    launchChromium(),
  ]);
  gateway = { ...started, clientPort: port, wsUrl: `ws://127.0.0.1:${port}/connection/websocket` };
  browser = launched;
  sdk = new PusherServer({
    appId: OPEN.id,
    key: OPEN.key,
    secret: OPEN.secret,
    host: gateway.host,
    port: String(gateway.internalPort),
    useTLS: false,
  });
});

after(async () => {
  await browser?.close();
  await gateway?.stop();
});

describe('Pusher page files over HTTP', () => {
  test('the page, its script and the pusher-js browser build, with types, caching and a CSP', async () => {
    const vendor = join(dirname(createRequire(import.meta.url).resolve('pusher-js')), '..', 'web');
    const expected: [string, string, string][] = [
      ['/pusher.html', 'text/html; charset=utf-8', 'no-cache'],
      ['/pusher.js', 'text/javascript; charset=utf-8', 'no-cache'],
      ['/vendor/pusher.min.js', 'text/javascript; charset=utf-8', 'public, max-age=86400'],
    ];
    for (const [path, type, cache] of expected) {
      const res = await fetch(base + path);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get('content-type'), type, path);
      assert.equal(res.headers.get('cache-control'), cache, path);
      assert.equal(res.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY, path);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path);
      const body = await res.text();
      // No app's secret (nor key) is in what the gateway serves: the page takes the key from its URL.
      for (const app of [OPEN, GUARDED]) {
        assert.ok(!body.includes(app.secret), `${path} holds ${app.id}'s secret`);
        assert.ok(!body.includes(app.key), `${path} holds ${app.id}'s key`);
      }
      const again = await fetch(base + path, { headers: { 'if-none-match': res.headers.get('etag')! } });
      assert.equal(again.status, 304, `${path} revalidates`);
    }
    const served = Buffer.from(await (await fetch(`${base}/vendor/pusher.min.js`)).arrayBuffer());
    assert.ok(served.equals(readFileSync(join(vendor, 'pusher.min.js'))), 'the pinned pusher-js build');
    assert.match(served.toString('utf8', 0, 400), /Pusher/);
    // Only the listed files: the rest of pusher-js's dist stays unserved.
    for (const path of ['/vendor/pusher.js', '/vendor/pusher-with-encryption.min.js', '/vendor/sockjs.js'])
      assert.equal((await fetch(base + path)).status, 404, path);
  });
});

/** A page of its own browser context, and what went wrong in it. */
interface PusherPage {
  page: Page;
  context: BrowserContext;
  /** Content Security Policy violations and uncaught errors seen by the page. */
  problems: string[];
}

/** The little of the DOM that page predicates use (the tests compile without the DOM library). */
declare const document: {
  querySelector(selector: string): { textContent: string | null } | null;
};

function waitForText(page: Page, selector: string, expected: string): Promise<unknown> {
  return page.waitForFunction(
    ([sel, want]) => document.querySelector(sel!)?.textContent?.includes(want!) === true,
    [selector, expected],
    { timeout: WAIT },
  );
}

const rejectedByOrigin = () =>
  metric(gateway, 'switchboard_connects_total', [
    'transport="pusher"',
    'outcome="rejected"',
    'reason="origin_not_allowed"',
  ]);
const pusherConnections = (app: string) =>
  metric(gateway, 'switchboard_pusher_connections', [`app="${app}"`]);

describe('the Pusher page in Chromium', () => {
  const open: PusherPage[] = [];

  async function pusherPage(query: Record<string, string>, origin = base): Promise<PusherPage> {
    const context = await browser.newContext({ viewport: { width: 1000, height: 640 } });
    context.setDefaultTimeout(WAIT);
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error' && /Content Security Policy/i.test(msg.text())) problems.push(msg.text());
    });
    const opened = { page, context, problems };
    open.push(opened);
    await page.goto(`${origin}/pusher.html?${new URLSearchParams(query)}`);
    return opened;
  }

  async function close(p: PusherPage): Promise<void> {
    assert.deepEqual(p.problems, [], 'no CSP violations or page errors');
    await p.context.close();
  }

  afterEach(async () => {
    for (const p of open.splice(0)) await p.context.close().catch(() => undefined);
  });

  test(
    'events triggered with the pusher SDK show on the page; socket_id excludes the page',
    { timeout: 30_000 },
    async () => {
      const channel = `orders-${Date.now()}`;
      const ada = await pusherPage({ key: OPEN.key, channel });
      await ada.page.locator('#conn-state[data-state="connected"]').waitFor();
      await ada.page.locator('#sub-state[data-state="subscribed"]').waitFor();
      assert.equal(await ada.page.locator('#channel').innerText(), channel);
      const socketId = /^socket (\d+\.\d+)$/.exec(await ada.page.locator('#socket-id').innerText())?.[1];
      assert.ok(socketId, 'the page shows its socket id');
      assert.equal(await pusherConnections(OPEN.id), 1, 'the gateway counts the page');

      await sdk.trigger(channel, 'OrderShipped', { id: 42 });
      await waitForText(ada.page, '#events', 'OrderShipped{"id":42}');
      // String data is shown as text, never as markup.
      await sdk.trigger(channel, 'note', '<b>bold?</b>');
      await waitForText(ada.page, '#events', 'note<b>bold?</b>');
      assert.equal(await ada.page.locator('#events b').count(), 0, 'no element made of event data');
      // Excluded by socket_id (what Laravel's toOthers() sends): absent, as the later marker proves.
      await sdk.trigger(channel, 'excluded', { hidden: true }, { socket_id: socketId });
      await sdk.trigger(channel, 'marker', { last: true });
      await waitForText(ada.page, '#events', 'marker');
      assert.deepEqual(
        await ada.page
          .locator('#events li')
          .evaluateAll((lis) =>
            lis.map((li) => (li as unknown as { dataset: { event: string } }).dataset.event),
          ),
        ['OrderShipped', 'note', 'marker'],
      );
      assert.equal(await ada.page.locator('#error').isHidden(), true);
      await screenshot(ada.page, 'pusher-events');
      await close(ada);
      await waitUntil(
        async () => (await pusherConnections(OPEN.id)) === 0,
        WAIT,
        () => 'the page to disconnect',
      );
    },
  );

  test(
    "an Origin the app's allowed_origins, or the gateway's, does not hold is refused at the upgrade",
    { timeout: 30_000 },
    async () => {
      const refused: PusherPage[] = [];
      // The app's list refuses the gateway's own page; the gateway's list refuses the page at localhost.
      const cases = [
        { app: GUARDED, origin: base, list: "the app's" },
        { app: OPEN, origin: base.replace('127.0.0.1', 'localhost'), list: "the gateway's" },
      ];
      for (const { app, origin, list } of cases) {
        const before = await rejectedByOrigin();
        const eve = await pusherPage({ key: app.key, channel: 'orders' }, origin);
        refused.push(eve);
        await waitUntil(
          async () => (await rejectedByOrigin()) > before,
          WAIT,
          () => `${app.id} at ${origin}: the upgrade refused by ${list} allowed_origins`,
        );
        assert.equal(await eve.page.locator('#conn-state').getAttribute('data-state'), 'connecting');
        assert.equal(await eve.page.locator('#sub-state').getAttribute('data-state'), 'unsubscribed');
        assert.equal(await pusherConnections(app.id), 0, `${app.id}: no connection opened`);
      }
      // pusher-js keeps trying; after its unavailable timeout (10 s) the page says what may be wrong.
      for (const eve of refused) {
        await eve.page.locator('#conn-state[data-state="unavailable"]').waitFor({ timeout: 15_000 });
        await waitForText(eve.page, '#error', "refuses this page's origin");
      }
      assert.equal(await refused[0]!.page.locator('#events li').count(), 0);
      await screenshot(refused[0]!.page, 'pusher-origin-refused');
      for (const eve of refused) await close(eve);
      // The app is fine: its own origin connects (a raw socket sending that Origin).
      const own = new RawClient(`ws://${gateway.host}:${gateway.clientPort}/app/${GUARDED.key}?protocol=7`, {
        origin: 'https://only.example',
      });
      try {
        const established = await own.expect((m) => m.event === 'pusher:connection_established');
        assert.match(JSON.parse(established.data).socket_id, /^\d+\.\d+$/);
      } finally {
        own.ws.terminate();
      }
    },
  );

  test('an unknown app key is refused with 4001 and the page says so', { timeout: 30_000 }, async () => {
    const mallory = await pusherPage({ key: 'no-such-key' });
    await waitForText(mallory.page, '#error', 'refused: Application does not exist (4001)');
    // pusher-js does not come back after a 4000-4099 close.
    await mallory.page.locator('#conn-state[data-state="disconnected"]').waitFor();
    assert.ok(
      (await metric(gateway, 'switchboard_connects_total', ['transport="pusher"', 'reason="app"'])) >= 1,
    );
    await close(mallory);

    // Without a key, nor for a private channel, the page opens no connection and says why.
    const connects = () => metric(gateway, 'switchboard_connects_total', ['transport="pusher"']);
    const before = await connects();
    const nokey = await pusherPage({});
    await waitForText(nokey.page, '#error', '?key=<app key>');
    const priv = await pusherPage({ key: OPEN.key, channel: 'private-orders' });
    await waitForText(priv.page, '#error', 'public channels only');
    assert.equal(await connects(), before, 'no connection tried');
    await close(nokey);
    await close(priv);
  });
});
