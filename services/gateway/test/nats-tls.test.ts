/**
 * NATS over TLS: a three-node JetStream cluster whose client connections and
 * routes speak TLS only (routes verified both ways), certificates from a test
 * CA; gateways and an SDK service connect with `SWITCHBOARD_NATS_TLS_CA`.
 * Publications cross gateways, a service answers, and whoever lacks the CA
 * or TLS is refused.
 */

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createConnection } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { connect } from '@nats-io/transport-node';
import type { Centrifuge } from 'centrifuge';
import { exited, type NatsCluster, type Proc, run, startNatsCluster } from './cluster.js';
import { api, connectedClient, type Gateway, startGateway, waitUntil } from './harness.js';
import { createPki, type TestPki } from './pki.js';
import { subscribe } from './traffic.js';

const STORE = fileURLToPath(new URL('../../../store/dist/src/main.js', import.meta.url));

describe('NATS over TLS: clients and cluster routes', () => {
  let pki: TestPki;
  let nats: NatsCluster;
  let store: Proc;
  const gateways: Gateway[] = [];
  const clients: Centrifuge[] = [];

  before(async () => {
    pki = createPki();
    const cert = pki.issue('nats', ['127.0.0.1', 'localhost']);
    nats = await startNatsCluster(3, { tls: { ...cert, caFile: pki.caFile } });
    const env = { SWITCHBOARD_NATS_URL: nats.urls, SWITCHBOARD_NATS_TLS_CA: pki.caFile };
    for (const id of ['tls1', 'tls2'])
      gateways.push(await startGateway({ ...env, SWITCHBOARD_BROKER: 'nats', SWITCHBOARD_NODE_ID: id }));
    store = run(process.execPath, [STORE], env);
    await waitUntil(
      () => {
        if (exited(store)) throw new Error(`the store service exited:\n${store.output()}`);
        return store.output().includes('"service ready"');
      },
      20_000,
      () => `the store service over TLS:\n${store.output()}`,
    );
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    await store?.stop();
    await Promise.all(gateways.map((g) => g.stop()));
    await nats?.stop();
  });

  test('routes require TLS; publications cross gateways and a service answers over it', async () => {
    for (const node of nats.nodes) {
      const varz = (await (await fetch(`http://${node.host}:${node.monitorPort}/varz`)).json()) as {
        tls_required: boolean;
        cluster: { tls_required: boolean; tls_verify: boolean };
      };
      assert.equal(varz.tls_required, true);
      assert.deepEqual([varz.cluster.tls_required, varz.cluster.tls_verify], [true, true]);
    }
    const reader = await subscribe(await connectedClient(gateways[1]!, 'reader', clients), 'chat:tls');
    await api(gateways[0]!, 'publish', { channel: 'chat:tls', data: { n: 1 } });
    await waitUntil(
      () => reader.got.length === 1,
      10_000,
      () => 'the publication from the other gateway',
    );
    assert.deepEqual(reader.got[0]!.data, { n: 1 });
    const writer = await connectedClient(gateways[0]!, 'writer', clients);
    await writer.rpc('store:set', { key: 'Thing/1/price', value: 7 });
    const got = await writer.rpc('store:get', { key: 'Thing/1/price' });
    assert.equal((got.data as { value: number }).value, 7);
  });

  test('a client without TLS, or without the CA, is refused', async () => {
    const servers = nats.urls.split(',');
    // Plain text: the server answers a CONNECT in clear with an error and closes.
    const [host, port] = servers[0]!.replace('nats://', '').split(':');
    const plain = createConnection(Number(port), host);
    let said = '';
    plain.on('data', (d) => {
      said += d;
      if (said.startsWith('INFO')) plain.write('CONNECT {"verbose":false}\r\nPING\r\n');
    });
    await once(plain, 'close');
    assert.match(said, /"tls_required":true/);
    assert.doesNotMatch(said, /PONG/);
    // nats.js itself upgrades to TLS, but with the default CAs cannot verify the test CA's servers.
    await assert.rejects(connect({ servers, reconnect: false, timeout: 3000 }), /verify|certificate/i);
    await assert.rejects(
      connect({ servers, reconnect: false, timeout: 3000, tls: { ca: createPki().ca } }),
      /certificate|self.signed|verify/i,
    );
    // A gateway that does not trust the servers' CA does not start.
    await assert.rejects(
      startGateway(
        {
          SWITCHBOARD_BROKER: 'nats',
          SWITCHBOARD_NATS_URL: nats.urls,
          SWITCHBOARD_NATS_TLS_CA: createPki().caFile,
        },
        { timeoutMs: 5000 },
      ),
      /gateway exited|not ready/,
    );
  });
});
