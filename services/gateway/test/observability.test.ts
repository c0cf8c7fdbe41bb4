/**
 * Observability for real: a live cluster (NATS, three gateways, HAProxy)
 * under traffic, with idle drops, slow consumers, refused connects and
 * failing service calls, and a Pusher app with its connections, events,
 * refused frames and webhooks, scraped every second by Debian's Prometheus.
 * Every PromQL expression of every dashboard panel and alert rule must be
 * valid and return series; the overview and Pusher dashboards are rendered to
 * PNGs. Logs are JSON with levels, sampled for connection events, and never
 * carry a secret.
 */

import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Centrifuge } from 'centrifuge';
import PusherServer from 'pusher';
import WebSocket from 'ws';
import type { CentrifugoTransport as Transport } from '../src/metrics.js';
import { channelSignature } from '../src/pusher/signature.js';
import { type Cluster, startCluster, startNats } from './cluster.js';
import { dashboardExpressions, type Expression, loadDashboards, panelsOf, signalOf } from './dashboards.js';
import {
  API_KEY,
  api,
  client,
  freePort,
  type Gateway,
  metric,
  nextEvent,
  RawClient,
  rawConnect,
  SECRET,
  startGateway,
  token,
  transportClient,
  waitUntil,
} from './harness.js';
import { ALERT_TESTS_FILE, ALERTS_FILE, type Prometheus, startPrometheus } from './prometheus.js';
import { renderDashboard } from './render-dashboard.js';

const TEST_OUTPUT = fileURLToPath(new URL('../../../../test-output/', import.meta.url));

test('promtool accepts the alert rules, and their unit tests pass', async () => {
  const promtool = (...args: string[]) => promisify(execFile)('promtool', args);
  assert.match((await promtool('check', 'rules', ALERTS_FILE)).stdout, /SUCCESS: \d+ rules found/);
  // Synthetic series: thresholds, `for` durations and annotation templates (a failure exits non-zero).
  assert.match((await promtool('test', 'rules', ALERT_TESTS_FILE)).stdout, /SUCCESS/);
});

test('dashboards are templated by data source and laid out on the 24-column grid', () => {
  const files = loadDashboards();
  assert.deepEqual(
    files.map((f) => f.file),
    ['gateway.json', 'nats-haproxy.json', 'overview.json', 'pusher.json', 'services.json'],
  );
  for (const { file, dashboard } of files) {
    const variables = dashboard.templating.list;
    assert.ok(
      variables.some((v) => v.name === 'datasource' && v.type === 'datasource'),
      `${file}: a datasource variable`,
    );
    const panels = panelsOf(dashboard);
    assert.equal(new Set(panels.map((p) => p.id)).size, panels.length, `${file}: unique panel ids`);
    for (const panel of panels) {
      const where = `${file} "${panel.title}"`;
      assert.ok(panel.gridPos.x >= 0 && panel.gridPos.x + panel.gridPos.w <= 24, `${where}: inside the grid`);
      if (panel.type === 'row') continue;
      assert.equal(panel.datasource?.uid, '${datasource}', `${where}: uses the datasource variable`);
      assert.ok(panel.targets?.length, `${where}: has queries`);
    }
  }
  const overview = files.find((f) => f.file === 'overview.json')!.dashboard;
  assert.ok(
    overview.templating.list.some((v) => v.name === 'namespace'),
    'overview: a namespace variable',
  );
});

/** prometheus-nats-exporter is optional (no Debian package): NATS server panels are checked only with it. */
const NATS_EXPORTER = spawnSync('prometheus-nats-exporter', ['-version']).error === undefined;

/** Expressions that may return nothing in this test, and why. Keep it short. */
const MAY_BE_EMPTY: { pattern: RegExp; why: string }[] = NATS_EXPORTER
  ? []
  : [{ pattern: /gnatsd_/, why: 'needs prometheus-nats-exporter, not installed' }];

/** The cluster's Pusher app, with a webhook for its client events (the Pusher dashboard's webhook panels). */
const PUSHER_APP = { id: 'obs-app', key: 'obs-key', secret: 'obs-secret' };

describe('dashboards and alert rules against a live cluster under traffic', () => {
  let cluster: Cluster;
  let receiver: Server;
  let webhooksReceived = 0;
  let prometheus: Prometheus;
  let stopExporter = () => {};
  const centrifuges: Centrifuge[] = [];
  const raws: RawClient[] = [];
  let publishing = true;
  let publisher: Promise<void> = Promise.resolve();
  /** When Prometheus started: the rendered range begins there. */
  let startedAt = 0;

  before(async () => {
    receiver = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        webhooksReceived++;
        res.writeHead(200).end('ok');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const hooks = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
    cluster = await startCluster({
      env: {
        SWITCHBOARD_PUSHER_APPS: JSON.stringify([
          { ...PUSHER_APP, webhooks: [{ url: hooks, event_types: ['client_event'] }] },
        ]),
        SWITCHBOARD_PING_INTERVAL: '1',
        // Long enough for the slow consumer below to fill its buffers before it would count as idle.
        SWITCHBOARD_PONG_TIMEOUT: '3',
        // Big enough that the once-a-second check sees the backlog before the hard limit (4x) cuts it.
        SWITCHBOARD_MAX_BACKPRESSURE: '2097152',
        SWITCHBOARD_MAX_CONNECTIONS: '50',
        SWITCHBOARD_SERVICE_TIMEOUT: '1000',
      },
    });
    const jobs: Record<string, string[]> = {
      switchboard: cluster.gateways.map((g) => `127.0.0.1:${g.internalPort}`),
      haproxy: [`127.0.0.1:${cluster.haproxy.statsPort}`],
    };
    if (NATS_EXPORTER) {
      const port = await freePort();
      const exporter = spawn(
        'prometheus-nats-exporter',
        [
          '-varz',
          '-connz',
          '-a',
          '127.0.0.1',
          '-p',
          String(port),
          `http://127.0.0.1:${cluster.nats.monitorPort}`,
        ],
        { stdio: 'ignore' },
      );
      stopExporter = () => exporter.kill();
      jobs.nats = [`127.0.0.1:${port}`];
    }
    prometheus = await startPrometheus(jobs);
    // Prometheus hands new targets to its scrapers after a few seconds: wait for the first scrapes.
    let targets: Awaited<ReturnType<Prometheus['targets']>> = [];
    await waitUntil(
      async () => {
        targets = await prometheus.targets();
        return targets.filter((t) => t.job !== 'nats' && t.health === 'up').length === 4;
      },
      20_000,
      () => `the gateways and HAProxy scraped: ${JSON.stringify(targets)}`,
    );
    startedAt = Math.floor(Date.now() / 1000);
  });

  after(async () => {
    publishing = false;
    await publisher;
    for (const c of centrifuges) c.disconnect();
    for (const r of raws) r.ws.terminate();
    stopExporter();
    await prometheus?.stop();
    await cluster?.stop();
    receiver?.close();
  });

  /** A client through HAProxy over `transport` (SSE and HTTP-streaming send commands to /emulation). */
  async function connected(user: string, transport: Transport = 'websocket'): Promise<Centrifuge> {
    const c = transportClient(`127.0.0.1:${cluster.haproxy.port}`, [transport], {
      token: await token({ sub: user }),
      maxReconnectDelay: 300,
    });
    centrifuges.push(c);
    c.connect();
    await nextEvent(c, 'connected', 10_000);
    return c;
  }

  /** A raw Pusher connection to `gateway` and its socket id. */
  async function pusherConnected(gateway: Gateway): Promise<{ raw: RawClient; socketId: string }> {
    const raw = new RawClient(`ws://127.0.0.1:${gateway.clientPort}/app/${PUSHER_APP.key}?protocol=7`);
    raws.push(raw);
    const established = await raw.expect((m) => m.event === 'pusher:connection_established', 10_000);
    return { raw, socketId: JSON.parse(established.data).socket_id };
  }

  test(
    'every dashboard query and alert signal is valid and returns series',
    { timeout: 90_000 },
    async () => {
      const [g1, g2] = cluster.gateways as [Gateway, Gateway];
      // Pusher clients on every gateway, on a public and a private channel, and the pusher SDK on each internal port.
      const pushers = await Promise.all(cluster.gateways.map((g) => pusherConnected(g)));
      for (const p of pushers) {
        for (const channel of ['obs-pusher', 'private-obs']) {
          const auth = channel.startsWith('private-')
            ? `${PUSHER_APP.key}:${channelSignature(PUSHER_APP.secret, p.socketId, channel)}`
            : '';
          p.raw.send({ event: 'pusher:subscribe', data: { channel, auth } });
          await p.raw.expect(
            (m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === channel,
            10_000,
          );
        }
      }
      const sdks = cluster.gateways.map(
        (g) =>
          new PusherServer({
            appId: PUSHER_APP.id,
            key: PUSHER_APP.key,
            secret: PUSHER_APP.secret,
            host: '127.0.0.1',
            port: String(g.internalPort),
            useTLS: false,
          }),
      );
      // Subscribers on every gateway and a steady publisher: fan-out, bandwidth, publish-to-deliver.
      const transports: Transport[] = [
        'websocket',
        'websocket',
        'websocket',
        'websocket',
        'sse',
        'http_stream',
      ];
      const users = await Promise.all(transports.map((t, i) => connected(`viewer-${i}`, t)));
      await Promise.all(
        users.map((c) => {
          const sub = c.newSubscription('chat:obs');
          sub.subscribe();
          return sub.ready(10_000);
        }),
      );
      // ... and churn: a short-lived connection every few publications, for connect rates and lifespans.
      publisher = (async () => {
        for (let n = 0; publishing; n++) {
          const via = cluster.gateways[n % cluster.gateways.length]!;
          await api(via, 'publish', { channel: 'chat:obs', data: { n } }).catch(() => undefined);
          if (n % 5 === 0)
            await users[n % users.length]!.publish('chat:obs', { n, from: 'client' }).catch(() => {});
          if (n % 3 === 0) (await rawConnect(via, `passer-${n}`).catch(() => undefined))?.ws.close();
          // Pusher: API events, client events (each a webhook), a refused frame now and then, connects and disconnects.
          const gw = n % cluster.gateways.length;
          await sdks[gw]!.trigger('obs-pusher', 'tick', { n }).catch(() => undefined);
          if (n % 2 === 0)
            pushers[gw]!.raw.send({ event: 'client-typing', channel: 'private-obs', data: { n } });
          if (n % 5 === 0) pushers[gw]!.raw.send('{"event":');
          if (n % 4 === 1) (await pusherConnected(via).catch(() => undefined))?.raw.ws.close();
          await new Promise((r) => setTimeout(r, 100)); // the publishing rate, not a synchronisation
        }
      })();

      // Refused connects with reasons: a bad token, a foreign Origin.
      const forged = new RawClient(g1.wsUrl);
      raws.push(forged);
      await forged.open();
      forged.send({
        id: 1,
        connect: { token: await token({ sub: 'mallory' }, { secret: 'not-the-secret' }) },
      });
      assert.equal((await forged.closed()).code, 3500);
      const foreign = new WebSocket(g2.wsUrl, { headers: { origin: 'https://evil.example' } });
      const status = await new Promise<number>((resolve) =>
        foreign.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)),
      );
      assert.equal(status, 403);

      // A backend service that is not running: unavailable (108), counted per namespace and operation.
      await assert.rejects(
        users[0]!.rpc('store:get', { key: 'Product/1/price' }),
        (err: { code: number }) => {
          assert.equal(err.code, 108);
          return true;
        },
      );

      // An idle client that never answers pings is dropped with 3012.
      const idle = await rawConnect(g2, 'sleeper');
      raws.push(idle);
      // A slow consumer: subscribed, never reads, while big publications pile up.
      const slow = await rawConnect(g1, 'snail');
      raws.push(slow);
      slow.send({ id: 2, subscribe: { channel: 'flood' } });
      await slow.expect((m) => m.id === 2);
      slow.ws.pause();
      const blob = 'x'.repeat(30_000);
      await waitUntil(
        async () => {
          await Promise.all(
            Array.from({ length: 10 }, () => api(g2, 'publish', { channel: 'flood', data: { blob } })),
          );
          return (await metric(g1, 'switchboard_slow_consumer_drops_total')) > 0;
        },
        20_000,
        () => 'the slow consumer to be dropped',
      );
      assert.equal((await idle.closed(10_000)).code, 3012);

      // Prometheus has what the gateways counted: wait until every expression answers with series.
      const alerts = await waitForRules(prometheus);
      const expressions: Expression[] = [
        ...dashboardExpressions(),
        ...alerts.map((rule) => ({ where: `alert ${rule.name}`, expr: signalOf(rule.query) })),
      ];
      assert.ok(expressions.length > 60, `only ${expressions.length} expressions found`);
      let problems: string[] = [];
      await waitUntil(
        async () => {
          problems = await check(prometheus, expressions);
          return problems.length === 0;
        },
        30_000,
        () => `every expression to return series:\n${problems.join('\n')}`,
      );
      // The Pusher panels show the traffic, not only series at zero.
      const value = async (expr: string) => Number((await prometheus.query(expr))[0]?.value[1] ?? 0);
      const seen: Record<string, number> = {};
      const app = `app="${PUSHER_APP.id}"`;
      await waitUntil(
        async () => {
          seen.connections = await value(`sum(switchboard_pusher_connections{${app}})`);
          seen.api = await value(`sum(switchboard_pusher_events_total{${app}, source="api"})`);
          seen.client = await value(`sum(switchboard_pusher_events_total{${app}, source="client"})`);
          seen.badFrames = await value(
            `sum(switchboard_pusher_rejections_total{${app}, reason="bad_frame"})`,
          );
          seen.delivered = await value(`sum(switchboard_pusher_webhooks_total{${app}, outcome="delivered"})`);
          seen.connects = await value(
            'sum(switchboard_connects_total{transport="pusher", outcome="accepted"})',
          );
          seen.disconnects = await value('sum(switchboard_disconnects_total{transport="pusher"})');
          return (
            seen.connections >= pushers.length &&
            Object.values(seen).every((v) => v > 0) &&
            seen.delivered <= webhooksReceived
          );
        },
        30_000,
        () =>
          `the Pusher traffic in Prometheus: ${JSON.stringify(seen)}, ${webhooksReceived} webhooks received`,
      );
    },
  );

  test('the overview dashboard renders to a PNG with data in every panel', { timeout: 60_000 }, async () => {
    mkdirSync(TEST_OUTPUT, { recursive: true });
    const overview = loadDashboards().find((d) => d.file === 'overview.json')!.dashboard;
    const png = join(TEST_OUTPUT, 'overview.png');
    // Enough history under the steady traffic for lines a reviewer can read: 20 scrapes, with rates over 5 s (Grafana's $__rate_interval for a 1 s scrape).
    await waitUntil(
      async () =>
        Number((await prometheus.query('min(count_over_time(up{job="switchboard"}[5m]))'))[0]?.value[1]) >=
        20,
      60_000,
      () => '20 s of scrapes',
    );
    const end = Math.floor(Date.now() / 1000);
    const empty = await renderDashboard(overview, prometheus, { start: startedAt, end, step: 1 }, png, '5s');
    assert.deepEqual(empty, [], 'panels without data');
    const bytes = readFileSync(png);
    assert.deepEqual([...bytes.subarray(1, 4)], [...Buffer.from('PNG')]);
    assert.ok(bytes.length > 20_000, `a PNG of ${bytes.length} bytes is too small to show the panels`);
  });

  test('the Pusher dashboard renders to a PNG with data in every panel', { timeout: 60_000 }, async () => {
    mkdirSync(TEST_OUTPUT, { recursive: true });
    const pusher = loadDashboards().find((d) => d.file === 'pusher.json')!.dashboard;
    const png = join(TEST_OUTPUT, 'pusher.png');
    const end = Math.floor(Date.now() / 1000);
    const empty = await renderDashboard(pusher, prometheus, { start: startedAt, end, step: 1 }, png, '5s');
    assert.deepEqual(empty, [], 'panels without data');
    const bytes = readFileSync(png);
    assert.ok(bytes.length > 20_000, `a PNG of ${bytes.length} bytes is too small to show the panels`);
  });
});

/** Waits until Prometheus evaluated every alert rule; fails on a rule it could not evaluate. */
async function waitForRules(prometheus: Prometheus) {
  let rules: Awaited<ReturnType<Prometheus['rules']>> = [];
  await waitUntil(
    async () => {
      rules = await prometheus.rules();
      return rules.length > 0 && rules.every((r) => r.health !== 'unknown');
    },
    15_000,
    () => `alert rules evaluated: ${JSON.stringify(rules)}`,
  );
  for (const rule of rules) assert.equal(rule.health, 'ok', `${rule.name}: ${rule.lastError}`);
  return rules;
}

/** What is wrong with the expressions: invalid ones, and empty ones not allowed to be. */
async function check(prometheus: Prometheus, expressions: Expression[]): Promise<string[]> {
  const problems: string[] = [];
  for (const { where, expr } of expressions) {
    const result = await prometheus.query(expr).catch((err: Error) => err);
    if (result instanceof Error) problems.push(`${where}: invalid: ${result.message}\n  ${expr}`);
    else if (result.length === 0 && !MAY_BE_EMPTY.some((m) => m.pattern.test(expr)))
      problems.push(`${where}: no series\n  ${expr}`);
  }
  return problems;
}

describe('logs', () => {
  /** The JSON log lines of a gateway's output (it prints nothing else). */
  const lines = (gateway: Gateway) =>
    gateway
      .output()
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { level: number; msg: string; node: string });

  test('are JSON with levels and never show a token or API key, even at debug level', async () => {
    const gateway = await startGateway({ SWITCHBOARD_LOG_LEVEL: 'debug', SWITCHBOARD_NODE_ID: 'logged' });
    const good = await token({ sub: 'ann' });
    const forged = await token({ sub: 'eve' }, { secret: 'a-different-secret' });
    try {
      const ann = client(gateway, { token: good });
      ann.connect();
      await nextEvent(ann, 'connected');
      const raw = new RawClient(gateway.wsUrl);
      await raw.open();
      raw.send({ id: 1, connect: { token: forged } });
      await raw.closed();
      assert.equal((await api(gateway, 'publish', { channel: 'news', data: { token: good } })).status, 200);
      assert.equal((await api(gateway, 'info', {}, 'wrong-key')).status, 401);
      ann.disconnect();
    } finally {
      assert.equal(await gateway.stop(), 0);
    }
    const logged = lines(gateway);
    assert.ok(
      logged.every((l) => typeof l.level === 'number' && typeof l.msg === 'string' && l.node === 'logged'),
    );
    const messages = logged.map((l) => l.msg);
    for (const msg of ['switchboard gateway ready', 'connected', 'disconnected', 'shutdown complete'])
      assert.ok(messages.includes(msg), `"${msg}" logged: ${messages.join(' | ')}`);
    const text = gateway.output();
    for (const [what, secret] of Object.entries({ good, forged, API_KEY, SECRET, 'wrong-key': 'wrong-key' }))
      assert.ok(!text.includes(secret), `${what} appears in the logs`);
  });

  test('connection events are sampled at info level', async () => {
    const [none, all] = await Promise.all([
      startGateway({ SWITCHBOARD_LOG_LEVEL: 'info', SWITCHBOARD_LOG_CONNECTION_SAMPLE: '0' }),
      startGateway({ SWITCHBOARD_LOG_LEVEL: 'info', SWITCHBOARD_LOG_CONNECTION_SAMPLE: '1' }),
    ]);
    try {
      for (const gateway of [none, all]) {
        for (let i = 0; i < 5; i++) (await rawConnect(gateway, `u${i}`)).ws.close();
      }
      await waitUntil(
        async () =>
          lines(all).filter((l) => l.msg === 'disconnected').length === 5 &&
          (await metric(none, 'switchboard_disconnects_total')) === 5,
        5000,
        () => 'five disconnects on each',
      );
      assert.equal(lines(all).filter((l) => l.msg === 'connected').length, 5);
      assert.ok(lines(all).every((l) => l.msg !== 'connected' || (l as { sampled?: number }).sampled === 1));
      assert.equal(lines(none).filter((l) => l.msg === 'connected' || l.msg === 'disconnected').length, 0);
    } finally {
      await Promise.all([none.stop(), all.stop()]);
    }
  });
});

describe('NATS health metrics', () => {
  test('follow a NATS outage: disconnected, bytes waiting, heartbeat ageing and failing, then back', async () => {
    const nats = await startNats();
    const gateway = await startGateway({
      SWITCHBOARD_BROKER: 'nats',
      SWITCHBOARD_NATS_URL: nats.url,
      // The registry entry beats every second (a third of the TTL).
      SWITCHBOARD_PRESENCE_TTL: '3',
    });
    try {
      assert.equal(await metric(gateway, 'switchboard_broker_connected'), 1);
      assert.ok((await metric(gateway, 'switchboard_registry_heartbeat_age_seconds')) < 2);
      await nats.stop();
      const seen = { pending: 0, age: 0, failed: 0 };
      await waitUntil(
        async () => {
          seen.pending = Math.max(seen.pending, await metric(gateway, 'switchboard_nats_pending_bytes'));
          seen.age = await metric(gateway, 'switchboard_registry_heartbeat_age_seconds');
          seen.failed = await metric(gateway, 'switchboard_kv_errors_total', ['operation="heartbeat"']);
          return seen.pending > 0 && seen.age > 3 && seen.failed > 0;
        },
        15_000,
        () => `outage in the metrics: ${JSON.stringify(seen)}`,
      );
      assert.equal(await metric(gateway, 'switchboard_broker_connected'), 0);
      await nats.restart();
      await waitUntil(
        async () =>
          (await metric(gateway, 'switchboard_broker_connected')) === 1 &&
          (await metric(gateway, 'switchboard_registry_heartbeat_age_seconds')) < 2 &&
          (await metric(gateway, 'switchboard_broker_reconnects_total')) === 1,
        15_000,
        () => 'the metrics to recover',
      );
    } finally {
      await gateway.stop();
      await nats.stop();
    }
  });
});
