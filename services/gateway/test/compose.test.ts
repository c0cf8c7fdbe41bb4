/**
 * docker/compose.yaml cannot rot silently: it validates against the Compose
 * specification's schema, and every service it defines runs here as a host
 * process with the command and environment the file gives it (see
 * compose.ts for the translation). Then the cluster must work end to end: a
 * browser-like client through HAProxy receives a publication sent through
 * another gateway, a backend service answers an RPC, and Prometheus scrapes
 * its targets and loads the alert rules. Grafana, k6 and the NATS exporter
 * have no program on this machine: their files are checked statically.
 */

import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { basename, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { Ajv } from 'ajv';
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';
import { parse } from 'yaml';
import { envName, KEYS } from '../src/config.js';
import { checkStates, exited, HAPROXY_CFG, type Proc, run, serverStates } from './cluster.js';
import {
  COMPOSE_SCHEMA,
  jobsInDashboards,
  loadCompose,
  NOT_ON_HOST,
  planServices,
  REPO,
  scratchDir,
  type ServicePlan,
  startOrder,
} from './compose.js';
import { api, freePort, GATEWAY_NODE_FLAG, nextEvent, token, waitUntil } from './harness.js';

const execFileAsync = promisify(execFile);
// HAProxy's certificate, made by scripts/dev-cert.sh as the README tells compose users,
// here in a scratch directory instead of .run/tls.
const tlsDir = scratchDir();
execFileSync('bash', [join(REPO, 'scripts/dev-cert.sh'), tlsDir], { stdio: 'ignore' });
const model = loadCompose({ HAPROXY_CERT_DIR: join(tlsDir, 'haproxy') });
const services = model.services as Record<string, any>;
const isOwnImage = (name: string) => String(services[name].image).startsWith('switchboard:');

function validator() {
  const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
  // Draft 7, named by an https URL that Ajv's bundled meta-schema does not answer to.
  const schema = JSON.parse(readFileSync(COMPOSE_SCHEMA, 'utf8'));
  delete schema.$schema;
  return ajv.compile(schema);
}

describe('docker/compose.yaml, statically', () => {
  test('is valid under the Compose specification schema', () => {
    const validate = validator();
    assert.ok(validate(model), JSON.stringify(validate.errors, null, 2));
    // The schema is strict enough to catch a typo.
    const broken: any = structuredClone(model);
    broken.services.gw1.enviroment = broken.services.gw1.environment;
    assert.equal(validate(broken), false);
  });

  test('our services and HAProxy only set variables that exist', () => {
    const haproxyVariables = readFileSync(HAPROXY_CFG, 'utf8');
    for (const [name, service] of Object.entries(services)) {
      for (const key of Object.keys(service.environment ?? {})) {
        if (!key.startsWith('SWITCHBOARD_')) continue;
        if (isOwnImage(name)) {
          assert.ok(
            Object.keys(KEYS).some((k) => envName(k) === key),
            `${name}: ${key} is not a gateway setting`,
          );
        } else if (name === 'haproxy') {
          assert.match(
            haproxyVariables,
            new RegExp(`\\$\\{${key}\\}`),
            `${key} is not a haproxy.cfg variable`,
          );
        }
      }
    }
  });

  test("HAProxy's certificates default to the directory scripts/dev-cert.sh makes them in", () => {
    const mount = (loadCompose({}).services.haproxy.volumes as string[]).map((v) => v.split(':'));
    const certs = mount.find(
      ([, target]) => target === services.haproxy.environment.SWITCHBOARD_HAPROXY_TLS_CERT.replace(/\/$/, ''),
    );
    assert.equal(join(REPO, 'docker', certs![0]!), join(REPO, '.run/tls/haproxy'));
    assert.match(
      readFileSync(join(REPO, 'scripts/dev-cert.sh'), 'utf8'),
      /^DIR="\$\{1:-\$ROOT\/\.run\/tls\}"$/m,
    );
  });

  test('Grafana provisioning points at the Prometheus service and the dashboards folder', () => {
    const grafana = services.grafana;
    const mountOf = (target: string) =>
      (grafana.volumes as string[]).map((v) => v.split(':')).find(([, t]) => t === target)?.[0];
    const provisioning = join(REPO, 'docker', mountOf('/etc/grafana/provisioning')!);
    const datasources = parse(readFileSync(join(provisioning, 'datasources/prometheus.yaml'), 'utf8'));
    const url = new URL(datasources.datasources[0].url);
    assert.ok(services[url.hostname], `data source host ${url.hostname} is a compose service`);
    assert.ok(
      (services[url.hostname].ports as string[]).some((p) => p.endsWith(`:${url.port}`)),
      `${url.hostname} listens on ${url.port}`,
    );
    const providers = parse(readFileSync(join(provisioning, 'dashboards/switchboard.yaml'), 'utf8'));
    const folder = mountOf(providers.providers[0].options.path);
    assert.equal(join(REPO, 'docker', folder!), join(REPO, 'dashboards/grafana'));
    const dir = join(REPO, 'dashboards/grafana');
    for (const file of existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.json')) : []) {
      assert.doesNotThrow(() => JSON.parse(readFileSync(join(dir, file), 'utf8')), `${file} is JSON`);
    }
  });

  test('Prometheus scrapes under the job names the dashboards and alert rules use', () => {
    const config = parse(readFileSync(join(REPO, 'docker/prometheus.yml'), 'utf8'));
    const jobs = config.scrape_configs.map((c: { job_name: string }) => c.job_name);
    assert.ok(
      jobs.includes('switchboard') && jobs.includes('haproxy') && jobs.includes('nats'),
      String(jobs),
    );
    for (const job of jobsInDashboards()) assert.ok(jobs.includes(job), `dashboards/ select job="${job}"`);
  });

  test('the loadtest profile runs a built k6 script from loadtest/k6/dist against HAProxy', () => {
    const k6 = services.k6;
    assert.deepEqual(k6.profiles, ['loadtest']);
    const [source, target] = (k6.volumes[0] as string).split(':');
    assert.equal(join(REPO, 'docker', source!), join(REPO, 'loadtest/k6/dist'));
    assert.equal(k6.command[0], 'run');
    assert.ok(k6.command[1].startsWith(`${target}/`) && k6.command[1].endsWith('.js'), k6.command[1]);
    assert.match(k6.environment.SWITCHBOARD_URL, /^ws:\/\/haproxy:8000\//);
    assert.match(k6.environment.SWITCHBOARD_API_URL, /^http:\/\/gw1:9000$/);
  });
});

describe('docker/Dockerfile, statically (compose builds it; CI has no Docker engine)', () => {
  const dockerfile = readFileSync(join(REPO, 'docker/Dockerfile'), 'utf8');
  const runtimeFiles = readFileSync(join(REPO, 'docker/runtime-files.sh'), 'utf8');
  const workspaces: string[] = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).workspaces;

  test('copies every workspace manifest for npm ci, and ships every workspace', () => {
    for (const ws of workspaces) {
      assert.ok(dockerfile.includes(`COPY ${ws}/package.json ${ws}/`), `${ws}/package.json is copied`);
      assert.match(runtimeFiles, new RegExp(`for ws in [^;]*\\b${ws}\\b`), `${ws} is shipped`);
    }
    assert.match(dockerfile, /RUN npm ci --omit=dev/);
    const ignored = readFileSync(join(REPO, '.dockerignore'), 'utf8').split('\n');
    for (const needed of ['packages', 'services', 'package.json', 'package-lock.json', 'tsconfig.json'])
      assert.ok(!ignored.includes(needed), `.dockerignore keeps ${needed}`);
  });

  test('runs the gateway by default, as a non-root user, under tini, with a /healthz check on the internal port', () => {
    // The Node that make test runs second (scripts/install-node.sh), on Debian 13: glibc 2.41, as the
    // uWebSockets.js build for it needs (>= 2.38; no build has a musl addon).
    const node = /^NODE_VERSION='v(\d+)\./m.exec(
      readFileSync(join(REPO, 'scripts/install-node.sh'), 'utf8'),
    )![1];
    assert.match(dockerfile, new RegExp(`^ARG NODE_IMAGE=node:${node}-trixie-slim$`, 'm'));
    assert.match(dockerfile, /^USER 1000:1000$/m);
    assert.match(dockerfile, /^ENTRYPOINT \["\/usr\/bin\/tini", "--"\]$/m);
    const cmd = JSON.parse(/^CMD (.*)$/m.exec(dockerfile)![1]!) as string[];
    assert.deepEqual(cmd, ['node', GATEWAY_NODE_FLAG, 'services/gateway/dist/src/main.js']);
    assert.ok(existsSync(join(REPO, cmd.at(-1)!)), `${cmd.at(-1)} is what tsc -b builds`);
    assert.match(
      dockerfile,
      new RegExp(`SWITCHBOARD_INTERNAL_PORT\\|\\|${KEYS.internal_port.default}\\)\\+'/healthz'`),
    );
    // Every command compose gives our image exists in the build output.
    for (const [name, service] of Object.entries(services))
      if (isOwnImage(name))
        assert.ok(existsSync(join(REPO, service.command.at(-1)!)), `${name}: ${service.command.at(-1)}`);
  });
});

describe("the image's /app, assembled on the host as docker/Dockerfile does", () => {
  const dockerfile = readFileSync(join(REPO, 'docker/Dockerfile'), 'utf8');
  const app = join(scratchDir(), 'app');
  let gateway: Proc | undefined;

  after(() => gateway?.stop());

  test('production dependencies and build output only; the gateway starts, serves the demo page and passes the HEALTHCHECK', async () => {
    // The manifests stage's COPY lines, then the deps stage's npm ci (from the local cache).
    const manifests = dockerfile.slice(dockerfile.indexOf('AS manifests'), dockerfile.indexOf('AS build'));
    for (const [, args] of manifests.matchAll(/^COPY (.+)$/gm)) {
      const parts = args!.split(' ');
      const to = parts.pop()!;
      for (const from of parts) {
        const target = to.endsWith('/') ? join(app, to, basename(from)) : join(app, to);
        mkdirSync(join(target, '..'), { recursive: true });
        cpSync(join(REPO, from), target);
      }
    }
    assert.match(dockerfile, /^RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force$/m);
    await execFileAsync('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund', '--prefer-offline'], {
      cwd: app,
    });
    // The build stage's copy of the output, from this tree (built by tsc -b like the image).
    assert.match(dockerfile, /^RUN npx tsc -b && docker\/runtime-files.sh \/app \/out$/m);
    await execFileAsync('sh', [join(REPO, 'docker/runtime-files.sh'), REPO, app]);

    for (const dev of ['typescript', 'eslint', 'ws', 'kubernetes-models'])
      assert.ok(!existsSync(join(app, 'node_modules', dev)), `no ${dev} (a devDependency) in the image`);
    assert.ok(!existsSync(join(app, 'services/gateway/src')), 'no TypeScript sources');
    assert.ok(!existsSync(join(app, 'services/gateway/dist/test')), 'no tests');

    const [clientPort, internalPort, grpcPort] = [await freePort(), await freePort(), await freePort()];
    const proc = run(
      process.execPath,
      ['services/gateway/dist/src/main.js'],
      {
        SWITCHBOARD_HOST: '127.0.0.1',
        SWITCHBOARD_CLIENT_PORT: String(clientPort),
        SWITCHBOARD_INTERNAL_PORT: String(internalPort),
        SWITCHBOARD_GRPC_PORT: String(grpcPort),
        SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: 'image-layout-secret',
        SWITCHBOARD_LOG_LEVEL: 'warn',
      },
      app,
    );
    gateway = proc;
    await waitUntil(
      async () => {
        if (exited(proc)) throw new Error(`gateway exited:\n${proc.output()}`);
        return (
          (await fetch(`http://127.0.0.1:${internalPort}/readyz`).catch(() => undefined))?.status === 200
        );
      },
      15_000,
      () => `the gateway from the image layout to be ready:\n${proc.output()}`,
    );
    for (const path of ['/', '/vendor/centrifuge.js']) {
      const res = await fetch(`http://127.0.0.1:${clientPort}${path}`);
      await res.body?.cancel();
      assert.equal(res.status, 200, path);
    }
    const healthcheck = JSON.parse(/^\s+CMD (\[.*\])$/m.exec(dockerfile)![1]!) as string[];
    await execFileAsync(process.execPath, healthcheck.slice(1), {
      env: { ...process.env, SWITCHBOARD_INTERNAL_PORT: String(internalPort) },
      timeout: 5000,
    });
  });
});

describe('docker/compose.yaml as host processes', () => {
  let plans: ServicePlan[];
  const procs = new Map<string, Proc>();
  const plan = (name: string) => plans.find((p) => p.name === name)!;
  const url = (name: string, port: number) => `http://127.0.0.1:${plan(name).ports.get(port)}`;
  const clients: Centrifuge[] = [];

  async function healthy(p: ServicePlan): Promise<boolean> {
    if (!p.healthcheck) return true;
    const [program, ...args] = p.healthcheck;
    return execFileAsync(program === 'node' ? process.execPath : program!, args, { timeout: 3000 }).then(
      () => true,
      () => false,
    );
  }

  async function started(name: string, condition: string): Promise<void> {
    const p = plan(name);
    const proc = procs.get(name);
    await waitUntil(
      async () => {
        if (proc && exited(proc)) throw new Error(`${name} exited:\n${proc.output()}`);
        return condition !== 'service_healthy' || (await healthy(p));
      },
      20_000,
      () => `${name} to be ${condition === 'service_healthy' ? 'healthy' : 'started'}:\n${proc?.output()}`,
    );
  }

  before(async () => {
    plans = startOrder(await planServices(model, scratchDir()));
    for (const p of plans) {
      if (p.skip) continue;
      for (const [dep, condition] of Object.entries(p.dependsOn)) await started(dep, condition);
      procs.set(p.name, run(p.argv[0]!, p.argv.slice(1), p.env, p.cwd));
    }
    for (const name of procs.keys()) await started(name, 'service_healthy');
  });

  after(async () => {
    for (const c of clients) c.disconnect();
    for (const p of [...plans].reverse()) await procs.get(p.name)?.stop();
  });

  test('starts every service it can, and names why the others are not', () => {
    const skipped = plans.filter((p) => p.skip).map((p) => `${p.name}: ${p.skip}`);
    assert.deepEqual(skipped.sort(), [
      'grafana: Grafana is not installed here',
      'k6: k6 is not installed here',
      'nats-exporter: prometheus-nats-exporter has no Debian package',
    ]);
    assert.equal(NOT_ON_HOST.length, 3);
    assert.deepEqual([...procs.keys()].sort(), [
      'chat',
      'gw1',
      'gw2',
      'gw3',
      'haproxy',
      'jobs',
      'nats1',
      'nats2',
      'nats3',
      'prometheus',
      'store',
    ]);
  });

  test('HAProxy puts the three gateways in service', async () => {
    await waitUntil(
      async () => {
        const text = await fetch(`${url('haproxy', 8404)}/metrics`).then(
          (r) => r.text(),
          () => '',
        );
        const [states, checks] = [serverStates(text), checkStates(text)];
        return ['gw1', 'gw2', 'gw3'].every((gw) => states[gw] === 'UP' && checks[gw] === 'L7OK');
      },
      20_000,
      () => `HAProxy servers UP:\n${procs.get('haproxy')!.output()}`,
    );
  });

  test('the demo page and a browser-like client through HAProxy: it gets a publication sent through another gateway, and an RPC answer', async () => {
    const env = plan('gw1').env;
    const origin = `http://127.0.0.1:${plan('haproxy').ports.get(8000)}`;
    // A browser page served through HAProxy's published port sends that Origin: the allow-list must take it.
    class BrowserSocket extends WebSocket {
      constructor(address: string, protocols?: string | string[]) {
        super(address, protocols, { headers: { Origin: origin } });
      }
    }
    // The demo page and its token, through HAProxy, as a browser would get them.
    const page = await fetch(`${origin}/`);
    assert.match(await page.text(), /<html/i);
    const demo = await fetch(`${origin}/demo/token`, {
      method: 'POST',
      headers: { Origin: origin, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Compose' }),
    });
    assert.equal(demo.status, 200);
    const { token: demoToken } = (await demo.json()) as { token: string };
    const c = new Centrifuge(`${origin.replace('http', 'ws')}/connection/websocket`, {
      websocket: BrowserSocket,
      token: demoToken,
    });
    clients.push(c);
    c.connect();
    await nextEvent(c, 'connected', 10_000);
    const sub = c.newSubscription('chat:compose');
    const publication = nextEvent<{ data: unknown }>(sub, 'publication', 10_000);
    sub.subscribe();
    await sub.ready(10_000);

    const gateways = ['gw1', 'gw2', 'gw3'].map((name) => ({ name, internalUrl: url(name, 9000) }));
    const info = async (gw: { internalUrl: string }) =>
      (await api(gw, 'info', {}, env.SWITCHBOARD_API_KEY)).body.result as {
        nodes: { name: string; num_clients: number }[];
        services: { namespace: string }[];
      };
    const counts = await Promise.all(gateways.map(async (gw) => (await info(gw)).nodes[0]!.num_clients));
    const home = counts.indexOf(1);
    assert.deepEqual(counts.toSorted(), [0, 0, 1], `one gateway holds the client: ${counts}`);
    const other = gateways[(home + 1) % 3]!;
    const sent = await api(
      other,
      'publish',
      { channel: 'chat:compose', data: { via: other.name } },
      env.SWITCHBOARD_API_KEY,
    );
    assert.deepEqual(sent.body.error, undefined);
    assert.deepEqual((await publication).data, { via: other.name });

    // The example services registered over NATS and answer through any gateway.
    await waitUntil(
      async () => {
        const namespaces = (await info(other)).services.map((s) => s.namespace);
        return ['room', 'store', 'jobs'].every((ns) => namespaces.includes(ns));
      },
      10_000,
      () => 'chat, store and jobs in the registry',
    );
    await c.rpc('store:set', { key: 'Compose/1/state', value: 'up' });
    assert.deepEqual(
      ((await c.rpc('store:get', { key: 'Compose/1/state' })).data as { value: unknown }).value,
      'up',
    );
  });

  test("wss:// and https:// on HAProxy's TLS port with scripts/dev-cert.sh's certificate: the demo page, and a publication", async () => {
    const env = plan('gw1').env;
    const origin = `https://127.0.0.1:${plan('haproxy').ports.get(8443)}`;
    const ca = readFileSync(join(tlsDir, 'ca.pem'), 'utf8');
    const [page] = (await once(httpsGet(`${origin}/`, { ca }), 'response')) as [IncomingMessage];
    page.resume();
    assert.equal(page.statusCode, 200);
    class BrowserSocket extends WebSocket {
      constructor(address: string, protocols?: string | string[]) {
        super(address, protocols, { headers: { Origin: origin }, ca });
      }
    }
    const c = new Centrifuge(`${origin.replace('https', 'wss')}/connection/websocket`, {
      websocket: BrowserSocket,
      token: await token({ sub: 'compose-tls' }, { secret: env.SWITCHBOARD_TOKEN_HMAC_SECRET_KEY! }),
    });
    clients.push(c);
    const sub = c.newSubscription('chat:compose-tls');
    sub.subscribe();
    c.connect();
    await sub.ready(10_000);
    const publication = nextEvent<{ data: unknown }>(sub, 'publication', 10_000);
    const sent = await api(
      { internalUrl: url('gw3', 9000) },
      'publish',
      { channel: sub.channel, data: { tls: true } },
      env.SWITCHBOARD_API_KEY,
    );
    assert.deepEqual(sent.body.error, undefined);
    assert.deepEqual((await publication).data, { tls: true });
  });

  test('Prometheus scrapes the gateways, HAProxy and itself, and loads the alert rules', async () => {
    const prometheus = url('prometheus', 9090);
    const owner = (instance: string) =>
      plans.find((p) => [...p.ports.values()].includes(Number(instance.split(':')[1])))?.name;
    let health: Record<string, string> = {};
    await waitUntil(
      async () => {
        const body = await fetch(`${prometheus}/api/v1/targets`).then(
          (r) =>
            r.json() as Promise<{
              data: { activeTargets: { labels: { instance: string }; health: string }[] };
            }>,
          () => undefined,
        );
        health = Object.fromEntries(
          (body?.data.activeTargets ?? []).map((t) => [
            owner(t.labels.instance) ?? t.labels.instance,
            t.health,
          ]),
        );
        return ['gw1', 'gw2', 'gw3', 'haproxy', 'prometheus'].every((name) => health[name] === 'up');
      },
      30_000,
      () => `Prometheus targets up: ${JSON.stringify(health)}\n${procs.get('prometheus')!.output()}`,
    );
    // Not started here (no program), but scraped in compose.
    assert.ok('nats-exporter' in health, JSON.stringify(health));

    const rules = join(REPO, 'dashboards/prometheus');
    const ruleFiles = existsSync(rules) ? readdirSync(rules).filter((f) => f.endsWith('.yml')) : [];
    const loaded = (await (await fetch(`${prometheus}/api/v1/rules`)).json()) as {
      data: { groups: { file: string }[] };
    };
    const files = new Set(loaded.data.groups.map((g) => g.file.split('/').at(-1)));
    assert.deepEqual([...files].sort(), ruleFiles.sort());
  });
});
