/**
 * The gateway's own TLS (uWS SSLApp, `tls_*`): centrifuge-js over wss://
 * and HTTP over https:// with a test CA, certificates clients must refuse,
 * and a certificate replaced on disk while clients stay connected.
 */

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import type { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import { api, client, type Gateway, metric, startGateway, token, waitUntil } from './harness.js';
import { createPki, type Issued, type TestPki, trustingWebSocket } from './pki.js';

const NAMESPACES = JSON.stringify([{ name: '', allow_subscribe_for_client: true }]);

/** The certificate a TLS server at `url` presents (its serial), as a client trusting `ca` sees it. */
function served(
  url: string,
  ca: string,
  path = '/',
  identity: { cert?: Buffer; key?: Buffer } = {},
): Promise<{ status: number; serial: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { ca, agent: false, ...identity }, (res) => {
      const serial = (res.socket as TLSSocket).getPeerCertificate().serialNumber;
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, serial }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Why a wss:// connection trusting `ca` fails (the TLS error code). */
function refusal(url: string, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { ca });
    ws.on('open', () => {
      ws.close();
      reject(new Error('connected'));
    });
    ws.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe("the gateway's own TLS", () => {
  let pki: TestPki;
  let gateway: Gateway;
  let certFile: string;
  let keyFile: string;
  const clients: Centrifuge[] = [];

  before(async () => {
    pki = createPki();
    const first = pki.issue('first', ['127.0.0.1', 'localhost']);
    // The gateway reads the files at these paths; the test replaces their contents.
    certFile = join(pki.dir, 'served.pem');
    keyFile = join(pki.dir, 'served.key');
    copyFileSync(first.certFile, certFile);
    copyFileSync(first.keyFile, keyFile);
    gateway = await startGateway({
      SWITCHBOARD_TLS_CERT_FILE: certFile,
      SWITCHBOARD_TLS_KEY_FILE: keyFile,
      SWITCHBOARD_NAMESPACES: NAMESPACES,
    });
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    await gateway?.stop();
  });

  const wssUrl = () => gateway.wsUrl.replace('ws://', 'wss://');
  const httpsUrl = () => `https://127.0.0.1:${gateway.clientPort}`;

  async function connected(channel: string): Promise<{ c: Centrifuge; got: unknown[] }> {
    const c = client(
      { wsUrl: wssUrl() },
      { token: await token({ sub: channel }), websocket: trustingWebSocket(pki.ca) },
    );
    clients.push(c);
    const got: unknown[] = [];
    const sub = c.newSubscription(channel);
    sub.on('publication', (ctx) => got.push(ctx.data));
    sub.subscribe();
    c.connect();
    await sub.ready(10_000);
    return { c, got };
  }

  test('centrifuge-js over wss:// receives a publication; the demo page over https://', async () => {
    const { got } = await connected('tls');
    await api(gateway, 'publish', { channel: 'tls', data: { n: 1 } });
    await waitUntil(
      () => got.length === 1,
      5000,
      () => 'the publication over wss',
    );
    assert.deepEqual(got, [{ n: 1 }]);
    assert.equal((await served(httpsUrl(), pki.ca)).status, 200);
    // Plain ws:// to a TLS port gets nowhere.
    assert.notEqual(await refusal(gateway.wsUrl, pki.ca), 'connected');
    assert.ok(
      (await metric(gateway, 'switchboard_tls_certificate_expiry_timestamp_seconds')) > Date.now() / 1000,
    );
  });

  test('clients refuse a certificate from another CA, for another host, or expired', async () => {
    assert.match(
      await refusal(wssUrl(), createPki().ca),
      /SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/,
    );
    for (const [issued, code] of [
      [pki.issue('elsewhere', ['other.example']), 'ERR_TLS_CERT_ALTNAME_INVALID'],
      [pki.issue('expired', ['127.0.0.1'], { expired: true }), 'CERT_HAS_EXPIRED'],
    ] as const) {
      const g = await startGateway({
        SWITCHBOARD_TLS_CERT_FILE: issued.certFile,
        SWITCHBOARD_TLS_KEY_FILE: issued.keyFile,
      });
      try {
        assert.equal(await refusal(g.wsUrl.replace('ws://', 'wss://'), pki.ca), code);
      } finally {
        await g.stop();
      }
    }
  });

  test('with a client CA: a client certificate from it passes, one from elsewhere is refused, none is let in', async () => {
    const g = await startGateway({
      SWITCHBOARD_TLS_CERT_FILE: certFile,
      SWITCHBOARD_TLS_KEY_FILE: keyFile,
      SWITCHBOARD_TLS_CA_FILE: pki.caFile,
    });
    const url = `https://127.0.0.1:${g.clientPort}`;
    const as = (issued: Issued) => ({
      cert: readFileSync(issued.certFile),
      key: readFileSync(issued.keyFile),
    });
    try {
      assert.equal(
        (await served(url, pki.ca, '/', as(pki.issue('alice', ['alice'], { client: true })))).status,
        200,
      );
      await assert.rejects(
        served(url, pki.ca, '/', as(createPki().issue('mallory', ['mallory'], { client: true }))),
        /unknown ca|UNKNOWN_CA/i,
      );
      assert.equal((await served(url, pki.ca)).status, 200);
    } finally {
      await g.stop();
    }
  });

  test('a certificate replaced on disk is served to new connections; open ones carry on', async () => {
    const { got } = await connected('rotate');
    const before = await served(httpsUrl(), pki.ca);
    const next = pki.issue('second', ['127.0.0.1', 'localhost']);
    const nextSerial = new X509Certificate(next.cert).serialNumber;
    assert.notEqual(before.serial, nextSerial);
    copyFileSync(next.keyFile, keyFile);
    copyFileSync(next.certFile, certFile);
    // A connection that arrives in the instant the old listener closes may be reset by the kernel
    // (its accept queue goes with it, unless net.ipv4.tcp_migrate_req is on): the poll tries again.
    const servedAfterReset = () =>
      served(httpsUrl(), pki.ca).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ECONNRESET') return undefined;
        throw err;
      });
    await waitUntil(
      async () => (await servedAfterReset())?.serial === nextSerial,
      10_000,
      () => 'the new certificate on new connections',
    );
    assert.equal(await metric(gateway, 'switchboard_tls_reloads_total', ['outcome="reloaded"']), 1);
    // The connection made before the reload is still there and still delivered to.
    await api(gateway, 'publish', { channel: 'rotate', data: { n: 1 } });
    await waitUntil(
      () => got.length === 1,
      5000,
      () => 'a publication on the connection from before',
    );
    // A certificate that does not load is refused, and the one in use stays.
    writeFileSync(certFile, 'not a certificate\n');
    await waitUntil(
      async () => (await metric(gateway, 'switchboard_tls_reloads_total', ['outcome="failed"'])) === 1,
      10_000,
      () => 'the broken certificate to be refused',
    );
    assert.equal((await served(httpsUrl(), pki.ca)).serial, nextSerial);
    assert.match(gateway.output(), /TLS certificate reload failed/);
  });
});
