/**
 * The demo page as a person sees it: its files and the demo token endpoint
 * over plain HTTP, then Debian's Chromium against a real cluster (NATS, three
 * gateways, HAProxy, the example services as processes): chat and presence
 * across gateways, the live price, a job's progress, and the fallback to the
 * HTTP transports when a proxy blocks WebSocket. Screenshots: test-output/browser/.
 */

import assert from 'node:assert/strict';
import { get as httpGet } from 'node:http';
import { after, afterEach, before, describe, test } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { loadConfig } from '../src/config.js';
import { DEMO_TOKEN_TTL } from '../src/demo.js';
import { CONTENT_SECURITY_POLICY } from '../src/static.js';
import { connectionsPerGateway, launchChromium, screenshot, startServices } from './browser-harness.js';
import { type Cluster, startBlockingProxy, startCluster } from './cluster.js';
import { client, type Gateway, nextEvent, startGateway, token, waitUntil } from './harness.js';

const WAIT = 10_000;

async function postToken(gateway: Gateway, body: string, headers: Record<string, string> = {}) {
  const res = await fetch(`http://127.0.0.1:${gateway.clientPort}/demo/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  const json = res.headers.get('content-type') === 'application/json';
  return { status: res.status, body: (json ? await res.json() : await res.text()) as any };
}

/** GET with the path sent as is (fetch would resolve the dot segments first). */
function rawGetStatus(port: number, path: string): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    const req = httpGet({ host: '127.0.0.1', port, path }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', reject);
  });
}

describe('demo page files and tokens over HTTP', () => {
  let gateway: Gateway;
  let noSecret: Gateway;
  before(async () => {
    [gateway, noSecret] = await Promise.all([
      startGateway({ SWITCHBOARD_DEMO: 'true' }),
      startGateway({ SWITCHBOARD_DEMO: 'true', SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: '' }),
    ]);
  });
  after(async () => {
    await Promise.all([gateway.stop(), noSecret.stop()]);
  });

  test('the page, its script, style and client library, with types, caching and a CSP', async () => {
    const base = `http://127.0.0.1:${gateway.clientPort}`;
    const expected: [string, string, string][] = [
      ['/', 'text/html; charset=utf-8', 'no-cache'],
      ['/index.html', 'text/html; charset=utf-8', 'no-cache'],
      ['/app.js', 'text/javascript; charset=utf-8', 'no-cache'],
      ['/style.css', 'text/css; charset=utf-8', 'no-cache'],
      ['/vendor/centrifuge.js', 'text/javascript; charset=utf-8', 'public, max-age=86400'],
      ['/vendor/centrifuge.protobuf.js', 'text/javascript; charset=utf-8', 'public, max-age=86400'],
    ];
    for (const [path, type, cache] of expected) {
      const res = await fetch(base + path);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get('content-type'), type, path);
      assert.equal(res.headers.get('cache-control'), cache, path);
      assert.equal(res.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY, path);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path);
      const body = await res.text();
      if (path.startsWith('/vendor/centrifuge')) assert.match(body, /globalThis\.Centrifuge=/);
      const etag = res.headers.get('etag')!;
      const again = await fetch(base + path, { headers: { 'if-none-match': etag } });
      assert.equal(again.status, 304, `${path} revalidates`);
      assert.equal(await again.text(), '');
    }
    assert.match(await (await fetch(`${base}/?transport=sse`)).text(), /<title>Switchboard demo<\/title>/);
  });

  test('only the listed files: no directory traversal, no other file of the package', async () => {
    const paths = ['/../package.json', '/%2e%2e/package.json', '/public/app.js', '/vendor/', '/app.js/..'];
    for (const path of [...paths, '/vendor/centrifuge.js.map', '/vendor/../../package.json', '/.env']) {
      assert.equal(await rawGetStatus(gateway.clientPort, path), 404, path);
    }
  });

  test('demo tokens: a new user per name, renewed for the same user, refused when malformed', async () => {
    assert.equal(loadConfig({}).demo, false, 'off by default');
    assert.match(gateway.output(), /SWITCHBOARD_DEMO is on: POST \/demo\/token gives a connection token/);
    const ada = await postToken(gateway, '{"name":"  Ada  "}');
    assert.equal(ada.status, 200);
    assert.equal(ada.body.name, 'Ada');
    assert.equal(ada.body.ttl, DEMO_TOKEN_TTL);
    const again = await postToken(gateway, '{"name":"Ada"}');
    assert.notEqual(again.body.user, ada.body.user, 'every name request is a new user');

    const c = client(gateway, { token: ada.body.token });
    c.connect();
    await nextEvent(c, 'connected');
    const rpc = await c.rpc('echo', { hi: 1 });
    assert.deepEqual(rpc.data, { hi: 1 });
    c.disconnect();

    const renewed = await postToken(gateway, JSON.stringify({ refresh: ada.body.token }));
    assert.equal(renewed.status, 200);
    assert.deepEqual([renewed.body.user, renewed.body.name], [ada.body.user, 'Ada']);
    const expired = await token(
      { sub: ada.body.user, info: { name: 'Ada' }, meta: { demo: true } },
      {
        expiresIn: -2 * DEMO_TOKEN_TTL,
      },
    );
    const notDemo = await token({ sub: '42', info: { name: 'Root' } });
    const refusals: [string, number, Record<string, string>?][] = [
      ['{"name":""}', 400],
      ['{"name":"' + 'x'.repeat(33) + '"}', 400],
      ['{"name":"a\\u0007b"}', 400],
      ['{"name":42}', 400],
      ['[1]', 400],
      ['not json', 400],
      [JSON.stringify({ name: 'x'.repeat(5000) }), 413],
      [JSON.stringify({ refresh: notDemo }), 403],
      [JSON.stringify({ refresh: expired }), 403],
      [JSON.stringify({ refresh: `${ada.body.token}x` }), 403],
      ['{"name":"Eve"}', 403, { origin: 'https://evil.example' }],
    ];
    for (const [body, status, headers] of refusals) {
      const res = await postToken(gateway, body, headers);
      assert.equal(res.status, status, body.slice(0, 40));
      assert.equal(typeof res.body.error, 'string');
    }
  });

  test('no HMAC secret: the token endpoint stays off (404) with a warning', async () => {
    const res = await postToken(noSecret, '{"name":"Ada"}');
    assert.equal(res.status, 404);
    assert.match(noSecret.output(), /SWITCHBOARD_DEMO is on but SWITCHBOARD_TOKEN_HMAC_SECRET_KEY is empty/);
  });
});

/** A page of its own browser context (own storage, own connection), joined under `name`. */
interface DemoPage {
  page: Page;
  context: BrowserContext;
  /** Content Security Policy violations and uncaught errors seen by the page. */
  problems: string[];
}

async function openDemo(browser: Browser, base: string, query: Record<string, string>): Promise<DemoPage> {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  context.setDefaultTimeout(WAIT);
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && /Content Security Policy/i.test(msg.text())) problems.push(msg.text());
  });
  await page.goto(`${base}/?${new URLSearchParams(query)}`);
  await page.locator('#conn-state[data-state="connected"]').waitFor();
  return { page, context, problems };
}

const text = (page: Page, selector: string) => page.locator(selector).innerText();

/** The little of the DOM that page predicates use (the tests compile without the DOM library). */
declare const document: {
  querySelector(
    selector: string,
  ): { textContent: string | null; getAttribute(name: string): string | null } | null;
};

/** Waits until the element's text contains `expected`. */
function waitForText(page: Page, selector: string, expected: string): Promise<unknown> {
  return page.waitForFunction(
    ([sel, want]) => document.querySelector(sel!)?.textContent?.includes(want!) === true,
    [selector, expected],
    { timeout: WAIT },
  );
}

describe('demo page in Chromium against a cluster behind HAProxy', () => {
  let cluster: Cluster;
  let services: { stop(): Promise<void> };
  let browser: Browser;
  let base: string;
  const open: DemoPage[] = [];

  async function demo(query: Record<string, string>, origin = base): Promise<DemoPage> {
    const page = await openDemo(browser, origin, query);
    open.push(page);
    return page;
  }

  async function close(...pages: DemoPage[]): Promise<void> {
    for (const p of pages) {
      assert.deepEqual(p.problems, [], 'no CSP violations or page errors');
      await p.context.close();
    }
  }

  before(async () => {
    let launched: Browser | undefined;
    // The page's origin is HAProxy's (a free port), or the WebSocket blocker's.
    [cluster, launched] = await Promise.all([
      startCluster({ env: { SWITCHBOARD_DEMO: 'true', SWITCHBOARD_ALLOWED_ORIGINS: '*' } }),
      launchChromium(),
    ]);
    browser = launched;
    services = await startServices(cluster.nats.url);
    base = `http://127.0.0.1:${cluster.haproxy.port}`;
  });

  // A failed test leaves its pages open: close them before the next test counts connections.
  afterEach(async () => {
    for (const p of open.splice(0)) await p.context.close().catch(() => undefined);
  });

  after(async () => {
    await browser?.close();
    await services?.stop();
    await cluster?.stop();
  });

  test(
    'two pages chat through different gateways and see each other in presence',
    { timeout: 30_000 },
    async () => {
      const room = `lobby-${Date.now()}`;
      const ada = await demo({ name: 'Ada', room });
      const bea = await demo({ name: 'Bea', room });
      assert.equal(await text(ada.page, '#transport'), 'websocket');
      assert.equal(await text(bea.page, '#transport'), 'websocket');
      // HAProxy's leastconn sends the second page to another gateway.
      const perGateway = await connectionsPerGateway(cluster.gateways);
      assert.deepEqual(
        [...perGateway].sort(),
        [0, 1, 1],
        `one page on each of two gateways: ${JSON.stringify(perGateway)}`,
      );

      await waitForText(ada.page, '#presence', 'Bea');
      await waitForText(bea.page, '#presence', 'Ada');
      await waitForText(bea.page, '#presence', 'Bea (you)');
      await ada.page.fill('#chat-text', 'hello from Ada');
      await ada.page.click('#chat-send');
      await waitForText(bea.page, '#messages', 'Adahello from Ada');
      await bea.page.fill('#chat-text', 'hi Ada, Bea here');
      await bea.page.press('#chat-text', 'Enter');
      await waitForText(ada.page, '#messages', 'Beahi Ada, Bea here');
      assert.equal(await ada.page.locator('#messages li').count(), 2, 'own message shown once, locally');
      await screenshot(ada.page, 'chat-ada');
      await screenshot(bea.page, 'chat-bea');

      await close(bea);
      await ada.page.waitForFunction(
        () => !document.querySelector('#presence')?.textContent?.includes('Bea'),
        null,
        {
          timeout: WAIT,
        },
      );
      assert.equal(await text(ada.page, '#presence-count'), '1');
      await close(ada);
    },
  );

  test(
    "the store's price: catch-up on open, then live set and delete on the other page",
    { timeout: 30_000 },
    async () => {
      const ada = await demo({ name: 'Ada' });
      await ada.page.fill('#price-input', '42.5');
      await ada.page.click('#price-set');
      await waitForText(ada.page, '#price-result', 'set 42.5');
      const bea = await demo({ name: 'Bea' });
      await waitForText(bea.page, '#price', '42.5');

      await ada.page.fill('#price-input', '43');
      await ada.page.click('#price-set');
      await waitForText(bea.page, '#price', '43');
      await bea.page.click('#price-get');
      await waitForText(bea.page, '#price-result', 'get: 43');
      await screenshot(bea.page, 'price-live');

      await ada.page.click('#price-delete');
      await bea.page.locator('#price[data-state="deleted"]').waitFor();
      await waitForText(ada.page, '#price-result', 'deleted');
      await bea.page.click('#price-get');
      await waitForText(bea.page, '#price-result', 'get: no value');
      await close(ada, bea);
    },
  );

  test('a job reports progress until the bar reaches 100 %', { timeout: 30_000 }, async () => {
    const cy = await demo({ name: 'Cy' });
    await cy.page.click('#job-start');
    const bar = cy.page.locator('#job-bar');
    // Partway first (10 steps of 200 ms), then done.
    await cy.page.waitForFunction(
      () => {
        const progress = Number(document.querySelector('#job-bar')?.getAttribute('data-progress'));
        return progress > 0 && progress < 100;
      },
      null,
      { timeout: WAIT },
    );
    await cy.page.locator('#job-bar[data-progress="100"]').waitFor();
    assert.equal(await bar.getAttribute('aria-valuenow'), '100');
    await waitForText(cy.page, '#job-status', 'done');
    assert.equal(await cy.page.locator('#job-start').isEnabled(), true);
    await screenshot(cy.page, 'job-done');
    await close(cy);
  });

  test(
    'WebSocket blocked by a proxy: the page falls back to HTTP-streaming, or SSE when forced',
    { timeout: 45_000 },
    async () => {
      const sum = async (transport: string) =>
        (await connectionsPerGateway(cluster.gateways, transport)).reduce((a, b) => a + b, 0);
      // The pages of the tests before are gone, so any WebSocket counted below would be this test's.
      await waitUntil(
        async () => (await sum('websocket')) === 0,
        WAIT,
        () => 'earlier pages to disconnect',
      );
      const blocker = await startBlockingProxy(cluster.haproxy.port);
      try {
        const origin = `http://127.0.0.1:${blocker.wsBlocked}`;
        const room = `blocked-${Date.now()}`;
        const dee = await demo({ name: 'Dee', room }, origin);
        const eve = await demo({ name: 'Eve', room, transport: 'sse' }, origin);
        assert.equal(await text(dee.page, '#transport'), 'http_stream');
        assert.equal(await text(eve.page, '#transport'), 'sse');
        // The gateways agree: one stream of each kind, no WebSocket got through.
        assert.deepEqual(
          { websocket: await sum('websocket'), http_stream: await sum('http_stream'), sse: await sum('sse') },
          { websocket: 0, http_stream: 1, sse: 1 },
        );

        await waitForText(dee.page, '#presence', 'Eve');
        await dee.page.fill('#chat-text', 'over http streaming');
        await dee.page.click('#chat-send');
        await waitForText(eve.page, '#messages', 'Deeover http streaming');
        await eve.page.fill('#chat-text', 'over sse');
        await eve.page.click('#chat-send');
        await waitForText(dee.page, '#messages', 'Eveover sse');

        await eve.page.fill('#price-input', '12.25');
        await eve.page.click('#price-set');
        await waitForText(dee.page, '#price', '12.25');
        await dee.page.click('#job-start');
        await dee.page.locator('#job-bar[data-progress="100"]').waitFor();
        await screenshot(dee.page, 'fallback-http-stream');
        await screenshot(eve.page, 'fallback-sse');
        await close(dee, eve);
      } finally {
        await blocker.stop();
      }
    },
  );
});
