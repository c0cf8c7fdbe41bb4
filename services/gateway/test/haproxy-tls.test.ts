/**
 * HAProxy terminating TLS with docker/haproxy.cfg (SWITCHBOARD_HAPROXY_TLS_*),
 * certificates from a test CA: centrifuge-js over wss:// and the SSE and
 * HTTP-streaming transports over https:// through HAProxy to a NATS cluster of
 * gateways, TLS 1.2+ with modern ciphers and ALPN http/1.1 only, expired and
 * wrong-host certificates refused by the client, X-Forwarded-For and
 * X-Forwarded-Proto as the gateways get them (what a client sends in them is
 * dropped), per-IP limits counting the client HAProxy names, HSTS and the
 * redirect to https, and Chromium loading the demo page over https and
 * connecting over wss, trusting only the test certificate's key.
 */

import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import { request, type RequestOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import type { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import { launchChromium, screenshot } from './browser-harness.js';
import { type Cluster, type Haproxy, startCluster, startHaproxy } from './cluster.js';
import {
  api,
  client,
  type Gateway,
  metric,
  nextEvent,
  startGateway,
  token,
  upgradeStatus,
  waitUntil,
} from './harness.js';
import { createPki, type Issued, type TestPki, trustingWebSocket } from './pki.js';

const HSTS = 'max-age=63072000';

let pki: TestPki;
let served: Issued;

/** An https request trusting the test CA; resolves with the response once its headers arrive. */
function httpsRequest(url: string, options: RequestOptions = {}, body?: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca: pki.ca, agent: false, ...options }, resolve);
    req.on('error', reject);
    req.end(body);
  });
}

/** The response's body as it arrives, in `text()`. */
function collect(res: IncomingMessage): { text(): string } {
  let text = '';
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => (text += chunk));
  return { text: () => text };
}

/** A TLS handshake with HAProxy's TLS bind, trusting the test CA. */
async function handshake(port: number, options: ConnectionOptions = {}): Promise<TLSSocket> {
  const socket = tlsConnect({ host: '127.0.0.1', port, ca: pki.ca, ...options });
  await once(socket, 'secureConnect');
  return socket;
}

before(() => {
  pki = createPki();
  served = pki.issue('haproxy', ['127.0.0.1', 'localhost']);
});

describe('HAProxy with TLS in front of a cluster', () => {
  let cluster: Cluster;
  let haproxy: Haproxy;
  const clients: Centrifuge[] = [];

  before(async () => {
    cluster = await startCluster({
      gateways: 2,
      env: {
        SWITCHBOARD_DEMO: 'true',
        SWITCHBOARD_ALLOWED_ORIGINS: '*',
        SWITCHBOARD_NAMESPACES: JSON.stringify([{ name: '', allow_subscribe_for_client: true }]),
      },
      tls: { cert: served.pemFile, hsts: HSTS },
    });
    haproxy = cluster.haproxy;
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    await cluster?.stop();
  });

  const tlsBase = () => `https://127.0.0.1:${haproxy.tlsPort}`;

  test('centrifuge-js over wss:// gets a publication sent through another gateway; ws:// still works', async () => {
    for (const [url, websocket] of [
      [haproxy.wssUrl!, trustingWebSocket(pki.ca)],
      [haproxy.url, undefined],
    ] as const) {
      const c = client(
        { wsUrl: url },
        { token: await token({ sub: 'ada' }), ...(websocket && { websocket }) },
      );
      clients.push(c);
      const sub = c.newSubscription(`through-${url.split(':')[0]}`);
      sub.subscribe();
      c.connect();
      await sub.ready(10_000);
      const publication = nextEvent<{ data: unknown }>(sub, 'publication', 10_000);
      for (const gateway of cluster.gateways) {
        const sent = await api(gateway, 'publish', { channel: sub.channel, data: { via: url } });
        assert.equal(sent.body.error, undefined);
      }
      assert.deepEqual((await publication).data, { via: url });
    }
  });

  test('TLS 1.3 (or 1.2 with an AEAD cipher), ALPN http/1.1 even when h2 is offered; older protocols and CBC ciphers refused', async () => {
    const port = haproxy.tlsPort!;
    const modern = await handshake(port, { ALPNProtocols: ['h2', 'http/1.1'] });
    assert.equal(modern.getProtocol(), 'TLSv1.3');
    assert.equal(modern.alpnProtocol, 'http/1.1');
    modern.destroy();
    const tls12 = await handshake(port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' });
    assert.equal(tls12.getProtocol(), 'TLSv1.2');
    tls12.destroy();
    // HAProxy answers with TLS alert 40 (handshake_failure), which OpenSSL 3.0 (Node 20) names
    // "sslv3 alert handshake failure" and OpenSSL 3.5 (Node 24) "ssl/tls alert handshake failure".
    await assert.rejects(
      handshake(port, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA' }),
      (err: NodeJS.ErrnoException) =>
        /^ERR_SSL_(SSLV3|SSL\/TLS)_ALERT_HANDSHAKE_FAILURE$/.test(err.code ?? '') &&
        /SSL alert number 40\b/.test(err.message),
    );
    await assert.rejects(
      handshake(port, { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }),
      { code: 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION' },
    );
  });

  test('SSE and HTTP-streaming over https:// get their publications', async () => {
    for (const transport of ['sse', 'http_stream'] as const) {
      const channel = `through-${transport}`;
      const connect = JSON.stringify({
        id: 1,
        connect: { token: await token({ sub: 'bea', channels: [channel] }) },
      });
      const res =
        transport === 'sse'
          ? await httpsRequest(`${tlsBase()}/connection/sse?cf_connect=${encodeURIComponent(connect)}`)
          : await httpsRequest(`${tlsBase()}/connection/http_stream`, { method: 'POST' }, connect);
      try {
        assert.equal(res.statusCode, 200, transport);
        assert.equal(res.headers['strict-transport-security'], HSTS);
        const body = collect(res);
        await waitUntil(
          () => body.text().includes('"connect"'),
          10_000,
          () => `${transport} connect reply: ${body.text()}`,
        );
        await api(cluster.gateways[1]!, 'publish', { channel, data: { over: transport } });
        await waitUntil(
          () => body.text().includes(`{"over":"${transport}"}`),
          10_000,
          () => `${transport} publication: ${body.text()}`,
        );
      } finally {
        res.destroy();
      }
    }
  });

  test('clients refuse an expired certificate and one for another host', async () => {
    const cases = [
      [pki.issue('expired', ['127.0.0.1'], { expired: true }), 'CERT_HAS_EXPIRED'],
      [pki.issue('elsewhere', ['other.example']), 'ERR_TLS_CERT_ALTNAME_INVALID'],
    ] as const;
    for (const [issued, code] of cases) {
      const wrong = await startHaproxy(cluster.gateways, { tls: { cert: issued.pemFile } });
      try {
        await assert.rejects(httpsRequest(`https://127.0.0.1:${wrong.tlsPort}/`), { code });
        const ws = new WebSocket(wrong.wssUrl!, { ca: pki.ca });
        const [err] = (await once(ws, 'error')) as [NodeJS.ErrnoException];
        assert.equal(err.code, code);
      } finally {
        await wrong.stop();
      }
    }
  });

  test('Chromium loads the demo page over https:// and connects over wss://, trusting only the test key', async (t) => {
    const spki = new X509Certificate(served.cert).publicKey.export({ type: 'spki', format: 'der' });
    const browser = await launchChromium([
      `--ignore-certificate-errors-spki-list=${createHash('sha256').update(spki).digest('base64')}`,
    ]);
    t.after(() => browser.close());
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('pageerror', (err) => problems.push(err.message));
    const response = await page.goto(`${tlsBase()}/?name=Tess&transport=websocket`);
    assert.equal(response?.status(), 200);
    assert.equal(response?.headers()['strict-transport-security'], HSTS);
    await page.locator('#conn-state[data-state="connected"]').waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#transport').innerText(), 'websocket');
    const sockets = await Promise.all(cluster.gateways.map((g) => metric(g, 'switchboard_connections')));
    assert.ok(
      sockets.some((n) => n > 0),
      'the page holds a connection on a gateway',
    );
    await screenshot(page, 'demo-over-https');
    assert.deepEqual(problems, []);
  });
});

describe('what HAProxy tells the gateways about the client', () => {
  test('X-Forwarded-For is the client HAProxy saw, X-Forwarded-Proto the scheme; what the client sent is replaced; HSTS on TLS; plain HTTP redirected', async (t) => {
    // A stand-in gateway that answers /readyz and echoes the headers of every request.
    const echo = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(req.rawHeaders));
    });
    echo.listen(0, '127.0.0.1');
    await once(echo, 'listening');
    t.after(() => echo.close());
    const { port } = echo.address() as AddressInfo;
    const haproxy = await startHaproxy([{ host: '127.0.0.1', clientPort: port, internalPort: port }], {
      tls: { cert: served.pemFile, hsts: HSTS, redirect: true },
    });
    t.after(() => haproxy.stop());

    const res = await httpsRequest(`https://127.0.0.1:${haproxy.tlsPort}/connection/sse`, {
      localAddress: '127.0.0.9',
      headers: { 'X-Forwarded-For': '203.0.113.7', 'X-Forwarded-Proto': 'http' },
    });
    const body = collect(res);
    await once(res, 'end');
    const raw = JSON.parse(body.text()) as string[];
    const header = (name: string) => raw.filter((_, i) => i % 2 === 1 && raw[i - 1]!.toLowerCase() === name);
    assert.deepEqual(header('x-forwarded-for'), ['127.0.0.9']);
    assert.deepEqual(header('x-forwarded-proto'), ['https']);
    assert.equal(res.headers['strict-transport-security'], HSTS);

    const plain = await fetch(`http://127.0.0.1:${haproxy.port}/emulation?a=1`, {
      method: 'POST',
      redirect: 'manual',
    });
    assert.equal(plain.status, 308);
    assert.equal(plain.headers.get('location'), `https://127.0.0.1:${haproxy.tlsPort}/emulation?a=1`);
    assert.equal(plain.headers.get('strict-transport-security'), null);
  });

  describe('per-IP limits of a gateway that trusts HAProxy', () => {
    let gateway: Gateway;
    let haproxy: Haproxy;

    before(async () => {
      gateway = await startGateway({
        SWITCHBOARD_CONNECTS_PER_IP_PER_SECOND: '1',
        SWITCHBOARD_TRUSTED_PROXIES: '127.0.0.1',
      });
      haproxy = await startHaproxy([gateway], { tls: { cert: served.pemFile } });
    });

    after(async () => {
      await haproxy?.stop();
      await gateway?.stop();
    });

    /** HTTP status of a WebSocket upgrade to `url` from `localAddress`, with headers of the client's choosing. */
    const upgrade = (url: string, localAddress: string, headers: Record<string, string> = {}) =>
      upgradeStatus(url, { ca: pki.ca, localAddress, headers });

    test('through HAProxy each client address has its own budget, and a client cannot claim another', async () => {
      const url = haproxy.wssUrl!;
      const [first, second, spoofed, other] = await Promise.all([
        upgrade(url, '127.0.0.5'),
        upgrade(url, '127.0.0.5'),
        upgrade(url, '127.0.0.5', { 'X-Forwarded-For': '198.51.100.1' }),
        upgrade(url, '127.0.0.6'),
      ]);
      assert.deepEqual(
        [first, second, spoofed].sort(),
        [101, 429, 429],
        'one connect a second from 127.0.0.5, whatever it claims',
      );
      assert.equal(other, 101, 'another client is not held back');
    });

    test('straight to the gateway, X-Forwarded-For from anyone but HAProxy is ignored', async () => {
      const statuses = await Promise.all(
        ['198.51.100.2', '198.51.100.3'].map((claimed) =>
          upgrade(gateway.wsUrl, '127.0.0.7', { 'X-Forwarded-For': claimed }),
        ),
      );
      assert.deepEqual(statuses.sort(), [101, 429]);
      assert.ok((await metric(gateway, 'switchboard_rate_limited_total', ['limit="connect"'])) >= 3);
    });
  });
});
