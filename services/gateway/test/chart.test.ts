/**
 * charts/switchboard: helm lint, helm template for the defaults and every
 * ci/*.yaml value set, every rendered manifest valid under the Kubernetes
 * schemas, and what the README promises: the drain fits in the grace period,
 * probes hit /readyz and /healthz on the internal port, no pod runs as root or
 * can escalate, HAProxy discovers gateway pods by DNS without stickiness (its
 * rendered config passes `haproxy -c`, and runs against three gateways found
 * through a test DNS server), NATS is a JetStream cluster of three by default
 * (routes to every pod, a PDB, every server's URL for the clients) or one
 * server, its config passes `nats-server -t` either way, TLS to NATS is on
 * (a generated CA and certificate for every pod's name, checked with
 * node:crypto, and a rendered server run over TLS and reloaded with a new
 * one; or a Secret of your own, or cert-manager), the values schema
 * refuses bad values, the Pusher apps reach the gateways from a Secret and
 * nowhere else, and the dashboards and alert rules in the chart are copies of
 * dashboards/.
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { after, describe, test } from 'node:test';
import { connect, PermissionViolationError } from '@nats-io/transport-node';
import { connectNats } from '@switchboard/sdk';
import { parse } from 'yaml';
import { envName, KEYS, loadConfig } from '../src/config.js';
import { parseKeyFile } from '../src/keys.js';
import { CHART, envOf, find, helm, MONITORING_APIS, render, validateManifest, VALUE_SETS } from './chart.js';
import { checkStates, exited, HAPROXY_CFG, type Proc, run, serverStates, startNats } from './cluster.js';
import { jobsInDashboards, REPO } from './compose.js';
import { startDns } from './dns.js';
import { freePort, MAIN, RawClient, SECRET, token, upgradeStatus, waitUntil } from './harness.js';
import { createPki } from './pki.js';

const scratch = mkdtempSync(join(tmpdir(), 'switchboard-chart-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
const pki = createPki();

/**
 * The rendered haproxy.cfg, its certificate path pointed at a directory here
 * that holds a test certificate for 127.0.0.1 under the names the pod mounts
 * the Secret's tls.crt and tls.key with.
 */
function haproxyCfgWithCert(manifests: any[]): string {
  const pod = find(manifests, 'Deployment', '-haproxy').spec.template.spec;
  const mount = pod.containers[0].volumeMounts.find((m: any) => m.name === 'tls');
  const items: { key: string; path: string }[] = pod.volumes.find((v: any) => v.name === 'tls').secret.items;
  const issued = pki.issue('chart', ['127.0.0.1']);
  const dir = mkdtempSync(join(scratch, 'tls-'));
  for (const { key, path } of items)
    copyFileSync({ 'tls.crt': issued.certFile, 'tls.key': issued.keyFile }[key]!, join(dir, path));
  const cfg: string = find(manifests, 'ConfigMap', '-haproxy').data['haproxy.cfg'];
  assert.ok(cfg.includes(`${mount.mountPath}/`), `haproxy.cfg reads its certificate from ${mount.mountPath}`);
  return cfg.replaceAll(`${mount.mountPath}/`, `${dir}/`);
}

/** haproxy -c on a config. */
function haproxyCheck(cfg: string): void {
  const file = join(mkdtempSync(join(scratch, 'cfg-')), 'haproxy.cfg');
  writeFileSync(file, cfg);
  execFileSync('haproxy', ['-c', '-q', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] });
}

const values = (file?: string) => {
  const defaults = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8'));
  return file ? mergeValues(defaults, parse(readFileSync(file, 'utf8'))) : defaults;
};

function mergeValues(base: any, over: any): any {
  if (
    typeof base !== 'object' ||
    base === null ||
    Array.isArray(base) ||
    typeof over !== 'object' ||
    over === null
  )
    return over;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = mergeValues(base[k], v);
  return out;
}

const rendered = VALUE_SETS.map((set) => ({
  ...set,
  values: values(set.files[0]),
  manifests: render({ files: set.files, apiVersions: MONITORING_APIS }),
}));

const podSpecs = (manifests: any[]) =>
  manifests
    .filter((m) => ['Deployment', 'StatefulSet'].includes(m.kind))
    .map((m) => ({ name: `${m.kind} ${m.metadata.name}`, spec: m.spec.template.spec }));

const gatewayContainer = (manifests: any[]) =>
  find(manifests, 'Deployment', '-gateway').spec.template.spec.containers.find(
    (c: any) => c.name === 'gateway',
  );

/** SWITCHBOARD_PUSHER_APPS as the gateways get it: the `apps` of the Secret their env names. */
function pusherAppsJson(manifests: any[]): string {
  const ref = /^secret:([^/]+)\/(.+)$/.exec(envOf(gatewayContainer(manifests)).SWITCHBOARD_PUSHER_APPS ?? '');
  assert.ok(ref, 'SWITCHBOARD_PUSHER_APPS from a Secret');
  const secret = find(manifests, 'Secret', ref[1]);
  assert.equal(secret.metadata.name, ref[1]);
  return Buffer.from(secret.data[ref[2]!], 'base64').toString();
}

/** Settings the chart sets itself, so values.schema.json leaves them out of gateway.config. */
const CHART_SETS = [
  'node_id',
  'host',
  'client_port',
  'internal_port',
  'grpc_port',
  'uni_grpc_port',
  'broker',
  'nats_url',
  'nats_tls_ca',
  'token_hmac_secret_key',
  'token_hmac_secret_key_file',
  'token_public_key',
  'api_key',
  'api_key_file',
  'nats_user',
  'nats_password',
  'shutdown_timeout',
  'embedded_services',
  'pusher_apps',
];
/**
 * Of those, the ones left out of the gateway's environment: keys come as files (`*_file`) instead, and the
 * Pusher apps only when there are some (pusher.apps or pusher.existingSecret; the Pusher test has them).
 */
const NOT_IN_ENV = ['embedded_services', 'api_key', 'token_hmac_secret_key', 'pusher_apps'];

describe('charts/switchboard', () => {
  test('helm lint passes for the defaults and every ci value set', () => {
    for (const set of VALUE_SETS) {
      const out = helm(['lint', CHART, '--strict', ...set.files.flatMap((f) => ['-f', f])]);
      assert.match(out, /1 chart\(s\) linted, 0 chart\(s\) failed/, `${set.name}:\n${out}`);
    }
  });

  test('every rendered manifest is valid under the Kubernetes schemas', async () => {
    for (const { name, manifests } of rendered) {
      assert.ok(manifests.length > 5, `${name}: rendered ${manifests.length} manifests`);
      for (const manifest of manifests) await validateManifest(manifest);
    }
    // The check has teeth: a port given as a string of letters is refused.
    const broken = structuredClone(find(rendered[0]!.manifests, 'Deployment', '-gateway'));
    broken.spec.template.spec.containers[0].ports[0].containerPort = 'eight thousand';
    await assert.rejects(validateManifest(broken), /containerPort must be integer/);
  });

  test('the drain fits: grace period > preStop + SWITCHBOARD_SHUTDOWN_TIMEOUT, with room to close NATS', () => {
    for (const { name, values: v, manifests } of rendered) {
      const pod = find(manifests, 'Deployment', '-gateway').spec.template.spec;
      const gateway = gatewayContainer(manifests);
      const preStop = gateway.lifecycle.preStop.exec.command;
      assert.deepEqual(preStop.slice(0, 1), ['sleep'], name);
      const sleep = Number(preStop[1]);
      const drain = Number(envOf(gateway).SWITCHBOARD_SHUTDOWN_TIMEOUT);
      assert.equal(sleep, v.gateway.preStopSleepSeconds, name);
      assert.equal(drain, v.gateway.shutdownTimeoutSeconds, name);
      assert.ok(pod.terminationGracePeriodSeconds >= sleep + drain + 5, `${name}: ${JSON.stringify(pod)}`);
      // A rolling update adds a pod before draining one.
      const strategy = find(manifests, 'Deployment', '-gateway').spec.strategy.rollingUpdate;
      assert.equal(strategy.maxUnavailable, 0, name);
    }
    const minimal = rendered.find((r) => r.name === 'minimal-values.yaml')!;
    assert.equal(
      find(minimal.manifests, 'Deployment', '-gateway').spec.template.spec.terminationGracePeriodSeconds,
      50,
    );
  });

  test('our containers keep the image entrypoint (tini) and run entry points that the build produces', () => {
    for (const { name, manifests } of rendered) {
      for (const pod of podSpecs(manifests)) {
        for (const c of pod.spec.containers.filter((c: any) => c.image.startsWith('switchboard:'))) {
          assert.equal(c.command, undefined, `${name}: ${pod.name} keeps tini`);
          assert.equal(c.args[0], 'node');
          const script = c.args.find((a: string) => !a.startsWith('-') && a !== 'node');
          assert.ok(existsSync(join(REPO, script)), `${name}: ${script}`);
        }
      }
    }
  });

  test('probes: readiness /readyz, liveness and startup /healthz, on the internal port the gateway listens on', () => {
    for (const { name, manifests } of rendered) {
      const gateway = gatewayContainer(manifests);
      const internal = gateway.ports.find((p: any) => p.name === 'internal').containerPort;
      assert.equal(String(internal), envOf(gateway).SWITCHBOARD_INTERNAL_PORT, name);
      assert.equal(String(KEYS.internal_port.default), envOf(gateway).SWITCHBOARD_INTERNAL_PORT, name);
      assert.deepEqual(gateway.readinessProbe.httpGet, { path: '/readyz', port: 'internal' }, name);
      assert.deepEqual(gateway.livenessProbe.httpGet, { path: '/healthz', port: 'internal' }, name);
      assert.deepEqual(gateway.startupProbe.httpGet, { path: '/healthz', port: 'internal' }, name);
      // Readiness reacts within seconds (HAProxy and Endpoints follow it); liveness is patient.
      assert.ok(gateway.readinessProbe.periodSeconds * gateway.readinessProbe.failureThreshold <= 10, name);
      assert.ok(gateway.livenessProbe.periodSeconds * gateway.livenessProbe.failureThreshold >= 20, name);
      assert.ok(gateway.resources.requests.cpu && gateway.resources.limits.memory, `${name}: resources`);
    }
  });

  test('no pod runs as root, writes its root filesystem, escalates or keeps a capability', () => {
    for (const { name, manifests } of rendered) {
      for (const pod of podSpecs(manifests)) {
        const where = `${name}: ${pod.name}`;
        assert.equal(pod.spec.securityContext.runAsNonRoot, true, where);
        assert.ok(pod.spec.securityContext.runAsUser > 0, where);
        assert.equal(pod.spec.automountServiceAccountToken, false, where);
        for (const c of pod.spec.containers) {
          assert.equal(c.securityContext.allowPrivilegeEscalation, false, `${where} ${c.name}`);
          assert.equal(c.securityContext.readOnlyRootFilesystem, true, `${where} ${c.name}`);
          assert.deepEqual(c.securityContext.capabilities.drop, ['ALL'], `${where} ${c.name}`);
        }
      }
    }
  });

  test('gateway: HPA on CPU (and connections per pod when enabled), PDB, topology spread, NetworkPolicy', async () => {
    const [defaults] = rendered;
    const hpa = find(defaults!.manifests, 'HorizontalPodAutoscaler');
    assert.deepEqual(
      hpa.spec.metrics.map((m: any) => m.type),
      ['Resource'],
    );
    assert.equal(hpa.spec.behavior.scaleDown.policies[0].value, 1);
    const external = rendered.find((r) => r.name === 'external-nats-values.yaml')!;
    const pods = find(external.manifests, 'HorizontalPodAutoscaler').spec.metrics.find(
      (m: any) => m.type === 'Pods',
    );
    assert.equal(pods.pods.metric.name, 'switchboard_connections');
    assert.equal(pods.pods.target.averageValue, '8000');
    // The metric the adapter serves is one the gateway exports.
    assert.match(
      readFileSync(join(REPO, 'services/gateway/src/metrics.ts'), 'utf8'),
      /name: 'switchboard_connections',/,
    );

    const labels = find(defaults!.manifests, 'Deployment', '-gateway').spec.template.metadata.labels;
    const selects = (selector: Record<string, string>) =>
      Object.entries(selector).every(([k, v]) => labels[k] === v);
    assert.ok(
      selects(find(defaults!.manifests, 'PodDisruptionBudget', '-gateway').spec.selector.matchLabels),
    );
    const spread = find(defaults!.manifests, 'Deployment', '-gateway').spec.template.spec
      .topologySpreadConstraints;
    assert.deepEqual(
      spread.map((s: any) => s.topologyKey),
      ['topology.kubernetes.io/zone', 'kubernetes.io/hostname'],
    );
    const policy = find(defaults!.manifests, 'NetworkPolicy', '-gateway');
    assert.ok(selects(policy.spec.podSelector.matchLabels));
    const client = policy.spec.ingress.find((r: any) => r.ports.some((p: any) => p.port === 'client'));
    assert.equal(client.from[0].podSelector.matchLabels['app.kubernetes.io/component'], 'haproxy');

    assert.throws(
      () => render({ set: ['gateway.autoscaling.maxReplicas=50'] }),
      /haproxy.maxGateways must be at least gateway.autoscaling.maxReplicas/,
    );
  });

  test('uni_grpc: with grpc in gateway.config.uni_transports, port 11000 on the pods, the client Service and the NetworkPolicy; none without', () => {
    const uniGrpcPorts = (manifests: any[]) => ({
      pod: gatewayContainer(manifests).ports.filter((p: any) => p.name === 'uni-grpc'),
      service: find(manifests, 'Service', '-gateway').spec.ports.filter((p: any) => p.name === 'uni-grpc'),
      policy: find(manifests, 'NetworkPolicy', '-gateway').spec.ingress.filter((r: any) =>
        r.ports.some((p: any) => p.port === 'uni-grpc'),
      ),
    });
    for (const uni of ['{grpc}', '{websocket,grpc}']) {
      const manifests = render({
        set: [`gateway.config.uni_transports=${uni}`, 'networkPolicy.enabled=true'],
      });
      const ports = uniGrpcPorts(manifests);
      assert.deepEqual(ports.pod, [{ name: 'uni-grpc', containerPort: 11000 }], uni);
      assert.deepEqual(ports.service, [{ name: 'uni-grpc', port: 11000, targetPort: 'uni-grpc' }], uni);
      assert.equal(ports.policy.length, 1, uni);
      const env = envOf(gatewayContainer(manifests));
      assert.equal(env.SWITCHBOARD_UNI_GRPC_PORT, '11000');
      assert.equal(env.SWITCHBOARD_UNI_TRANSPORTS, uni.slice(1, -1));
    }
    const without = render({
      set: ['gateway.config.uni_transports={websocket}', 'networkPolicy.enabled=true'],
    });
    assert.deepEqual(uniGrpcPorts(without), { pod: [], service: [], policy: [] });
    assert.throws(() => render({ set: ['gateway.config.uni_grpc_port=12000'] }), /uni_grpc_port/);
  });

  test('HAProxy: leastconn over the headless Service by DNS, no stickiness; its config passes haproxy -c', () => {
    const [defaults] = rendered;
    const cfg: string = find(defaults!.manifests, 'ConfigMap', '-haproxy').data['haproxy.cfg'];
    const headless = find(defaults!.manifests, 'Service', '-gateway-pods');
    assert.equal(headless.spec.clusterIP, 'None');
    assert.equal(headless.spec.publishNotReadyAddresses, false);
    assert.match(cfg, /^\s+balance leastconn$/m);
    assert.ok(
      cfg.includes(`server-template gw 1-30 ${headless.metadata.name}.rt.svc.cluster.local:8000`),
      cfg,
    );
    assert.match(cfg, /option httpchk GET \/readyz/);
    assert.match(cfg, /default-server check port 9000 /);
    assert.doesNotMatch(cfg, /^\s*(cookie|stick|hash-type|balance source)/m);
    haproxyCheck(haproxyCfgWithCert(defaults!.manifests));

    // With HAProxy off, an Ingress sends clients to the gateways' client Service.
    const ingress = rendered.find((r) => r.name === 'ingress-values.yaml')!;
    assert.equal(ingress.manifests.filter((m) => String(m.metadata.name).includes('haproxy')).length, 0);
    const rule = find(ingress.manifests, 'Ingress').spec.rules[0];
    assert.equal(
      rule.http.paths[0].backend.service.name,
      find(ingress.manifests, 'Service', '-gateway').metadata.name,
    );
  });

  test('the rendered HAProxy finds gateway pods through DNS (server-template), spreads clients by leastconn, passes Pusher clients on, drops a pod that leaves DNS', async (t) => {
    const [defaults] = rendered;
    // The gateways get the Pusher apps of the chart's Secret, as SWITCHBOARD_PUSHER_APPS from it.
    const pusherSet = rendered.find((r) => r.name === 'pusher-values.yaml')!;
    const pusherApps = pusherAppsJson(pusherSet.manifests);
    const pusherKey: string = pusherSet.values.pusher.apps[0].key;
    const host = `${find(defaults!.manifests, 'Service', '-gateway-pods').metadata.name}.rt.svc.cluster.local`;
    // Three "pods": gateways on 127.0.0.1..3 with the same ports, as pods have the same ports on their own IPs.
    const [clientPort, internalPort, haproxyPort, statsPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const pods = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];
    const procs: Proc[] = [];
    const dns = await startDns();
    t.after(async () => {
      for (const proc of procs.reverse()) await proc.stop();
      await dns.close();
    });
    for (const [i, ip] of pods.entries()) {
      const proc = run(process.execPath, [MAIN], {
        SWITCHBOARD_NODE_ID: `pod${i + 1}`,
        SWITCHBOARD_HOST: ip,
        SWITCHBOARD_CLIENT_PORT: String(clientPort),
        SWITCHBOARD_INTERNAL_PORT: String(internalPort),
        SWITCHBOARD_GRPC_PORT: '0',
        SWITCHBOARD_TOKEN_HMAC_SECRET_KEY: SECRET,
        SWITCHBOARD_PUSHER_APPS: pusherApps,
        SWITCHBOARD_LOG_LEVEL: 'warn',
      });
      procs.push(proc);
      await waitUntil(
        async () => {
          if (exited(proc)) throw new Error(`gateway on ${ip} exited:\n${proc.output()}`);
          return (await fetch(`http://${ip}:${internalPort}/readyz`).catch(() => undefined))?.status === 200;
        },
        15_000,
        () => `gateway on ${ip}`,
      );
    }
    dns.set(host, pods);

    // The rendered config, with only what a pod's network gives differently here: ports and the DNS server.
    let cfg = haproxyCfgWithCert(defaults!.manifests);
    const tlsPort = await freePort();
    const replace = (from: string, to: string) => {
      assert.ok(cfg.includes(from), `haproxy.cfg has ${from}`);
      cfg = cfg.replace(from, to);
    };
    replace('parse-resolv-conf', `nameserver test 127.0.0.1:${dns.port}`);
    replace('bind :8000', `bind 127.0.0.1:${haproxyPort}`);
    replace('bind :8404', `bind 127.0.0.1:${statsPort}`);
    replace('bind :8443', `bind 127.0.0.1:${tlsPort}`);
    replace('check port 9000', `check port ${internalPort}`);
    replace(`${host}:8000`, `${host}:${clientPort}`);
    const file = join(scratch, 'haproxy-live.cfg');
    writeFileSync(file, cfg);
    const haproxy = run('haproxy', ['-db', '-f', file]);
    procs.push(haproxy);
    const upServers = async () => {
      const text = await fetch(`http://127.0.0.1:${statsPort}/metrics`).then(
        (r) => r.text(),
        () => '',
      );
      const [states, checks] = [serverStates(text), checkStates(text)];
      return Object.keys(states).filter((s) => states[s] === 'UP' && checks[s] === 'L7OK').length;
    };
    await waitUntil(
      async () => (await upServers()) === 3,
      20_000,
      () => `3 gateways UP in HAProxy:\n${haproxy.output()}`,
    );

    const clients: RawClient[] = [];
    t.after(() => clients.forEach((c) => c.ws.close()));
    for (let i = 0; i < 3; i++) {
      const c = new RawClient(`ws://127.0.0.1:${haproxyPort}/connection/websocket`);
      clients.push(c);
      await c.open();
      c.send({ id: 1, connect: { token: await token({ sub: `u${i}` }) } });
      await c.expect((m) => m.id === 1 && m.connect);
    }
    const perPod = await Promise.all(
      pods.map(async (ip) => {
        const text = await (await fetch(`http://${ip}:${internalPort}/metrics`)).text();
        return Number(/^switchboard_connections\{transport="websocket"\} (\d+)/m.exec(text)?.[1] ?? 0);
      }),
    );
    assert.deepEqual(perPod, [1, 1, 1], 'leastconn: one client per gateway');
    // Pusher's client WebSocket (/app/<key>) goes through the same frontend to a gateway's Pusher edge.
    const pusher = new RawClient(`ws://127.0.0.1:${haproxyPort}/app/${pusherKey}?protocol=7`);
    clients.push(pusher);
    await pusher.open();
    const established = await pusher.expect((m) => m.event === 'pusher:connection_established');
    assert.match(JSON.parse(established.data).socket_id, /^\d+\.\d+$/);
    assert.equal(
      await upgradeStatus(`wss://127.0.0.1:${tlsPort}/connection/websocket`, { ca: pki.ca }),
      101,
      'wss:// through the TLS bind',
    );

    // A pod that leaves the headless Service (terminating, or scaled down) leaves HAProxy.
    dns.set(host, pods.slice(0, 2));
    await waitUntil(
      async () => (await upServers()) === 2,
      20_000,
      () => `2 gateways UP after DNS dropped one:\n${haproxy.output()}`,
    );
  });

  test('HAProxy TLS: on by default with a generated self-signed certificate, or an existing Secret, or cert-manager; redirect and HSTS; off', () => {
    const [defaults] = rendered;
    const service = find(defaults!.manifests, 'Service', '-haproxy');
    assert.deepEqual(
      service.spec.ports.map((p: any) => [p.name, p.port, p.targetPort]),
      [
        ['client', 80, 'client'],
        ['https', 443, 'https'],
      ],
    );
    const deployment = find(defaults!.manifests, 'Deployment', '-haproxy');
    const container = deployment.spec.template.spec.containers[0];
    assert.deepEqual(
      container.ports.find((p: any) => p.name === 'https'),
      { name: 'https', containerPort: 8443 },
    );
    const cfg: string = find(defaults!.manifests, 'ConfigMap', '-haproxy').data['haproxy.cfg'];
    assert.match(cfg, /^\s+bind :8443 ssl crt \/usr\/local\/etc\/haproxy-tls\/tls\.pem alpn http\/1\.1$/m);
    assert.match(cfg, /^\s+ssl-default-bind-options ssl-min-ver TLSv1\.2 no-tls-tickets$/m);
    assert.match(cfg, /^\s+http-request del-header X-Forwarded-For$/m);
    assert.doesNotMatch(cfg, /redirect|Strict-Transport-Security/);
    // Protocols, ciphers and forwarded headers as in docker/haproxy.cfg.
    const shared = (text: string) =>
      text
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => /^(ssl-default-bind-|http-request (del|set)-header X-Forwarded-)/.test(l));
    assert.equal(shared(cfg).length, 6);
    assert.deepEqual(shared(cfg), shared(readFileSync(HAPROXY_CFG, 'utf8')));

    // The generated certificate: a kubernetes.io/tls Secret for the Service's names, its key beside it.
    const secretOf = (manifests: any[]) =>
      find(manifests, 'Deployment', '-haproxy').spec.template.spec.volumes.find((v: any) => v.name === 'tls')
        .secret.secretName;
    const generated = find(defaults!.manifests, 'Secret', '-haproxy-tls');
    assert.equal(secretOf(defaults!.manifests), generated.metadata.name);
    assert.equal(generated.type, 'kubernetes.io/tls');
    assert.equal(generated.metadata.annotations['switchboard.io/certificate'], 'self-signed');
    const cert = new X509Certificate(Buffer.from(generated.data['tls.crt'], 'base64'));
    assert.ok(cert.checkPrivateKey(createPrivateKey(Buffer.from(generated.data['tls.key'], 'base64'))));
    assert.ok(
      cert.subjectAltName?.includes(`DNS:${service.metadata.name}.rt.svc.cluster.local`),
      cert.subjectAltName,
    );
    assert.ok(new Date(cert.validTo) > new Date(Date.now() + 365 * 86400_000));
    const withHost = find(render({ set: ['haproxy.tls.hosts={rt.example.com}'] }), 'Secret', '-haproxy-tls');
    assert.match(
      new X509Certificate(Buffer.from(withHost.data['tls.crt'], 'base64')).subject,
      /CN=rt\.example\.com/,
    );

    // An existing Secret: nothing generated, that Secret mounted.
    const own = render({ set: ['haproxy.tls.secretName=rt-example-com'] });
    assert.equal(secretOf(own), 'rt-example-com');
    assert.equal(
      own.filter((m) => m.kind === 'Secret' && m.metadata.name.endsWith('-haproxy-tls')).length,
      0,
    );

    // cert-manager: a Certificate into the Secret HAProxy mounts, only where its CRDs are.
    const certManager = [
      'haproxy.tls.certManager.enabled=true',
      'haproxy.tls.certManager.issuerRef.name=letsencrypt',
      'haproxy.tls.hosts={rt.example.com}',
    ];
    const issued = render({ set: certManager, apiVersions: ['cert-manager.io/v1'] });
    const certificate = find(issued, 'Certificate', '-haproxy');
    assert.equal(certificate.apiVersion, 'cert-manager.io/v1');
    assert.equal(certificate.spec.secretName, secretOf(issued));
    assert.deepEqual(certificate.spec.dnsNames, ['rt.example.com']);
    assert.deepEqual(certificate.spec.issuerRef, {
      name: 'letsencrypt',
      kind: 'ClusterIssuer',
      group: 'cert-manager.io',
    });
    assert.equal(
      issued.filter((m) => m.kind === 'Secret' && m.metadata.name.endsWith('-haproxy-tls')).length,
      0,
    );
    assert.throws(() => render({ set: certManager }), /cert-manager's CRDs \(cert-manager\.io\/v1\)/);
    assert.throws(
      () => render({ set: certManager.slice(0, 2), apiVersions: ['cert-manager.io/v1'] }),
      /needs haproxy\.tls\.hosts/,
    );

    // Redirect to https (the Service's TLS port) and HSTS: a config HAProxy takes.
    const strict = render({
      set: ['haproxy.tls.redirect=true', 'haproxy.tls.hsts=max-age=31536000', 'haproxy.service.tlsPort=8443'],
    });
    const strictCfg = haproxyCfgWithCert(strict);
    assert.match(
      strictCfg,
      /redirect location "https:\/\/%\[req\.hdr\(host\),regsub\(:\[0-9\]\+\\\$,\)\]:8443%\[pathq\]" code 308 unless \{ ssl_fc \}/,
    );
    assert.match(strictCfg, /set-header Strict-Transport-Security "max-age=31536000" if \{ ssl_fc \}/);
    haproxyCheck(strictCfg);

    // Off: plain HTTP only.
    const off = render({ set: ['haproxy.tls.enabled=false'] });
    assert.doesNotMatch(find(off, 'ConfigMap', '-haproxy').data['haproxy.cfg'], /^\s+bind .*ssl/m);
    assert.deepEqual(
      find(off, 'Service', '-haproxy').spec.ports.map((p: any) => p.name),
      ['client'],
    );
    assert.equal(
      off.filter((m) => m.kind === 'Secret' && m.metadata.name.endsWith('-haproxy-tls')).length,
      0,
    );
    haproxyCheck(find(off, 'ConfigMap', '-haproxy').data['haproxy.cfg']);
  });

  /** The NATS objects of a render: StatefulSet, its nats.conf, headless Service and server container. */
  const natsOf = (manifests: any[]) => {
    const sts = find(manifests, 'StatefulSet', '-nats');
    return {
      sts,
      conf: find(manifests, 'ConfigMap', '-nats').data['nats.conf'] as string,
      headless: find(manifests, 'Service', '-nats-headless'),
      container: sts.spec.template.spec.containers.find((c: any) => c.name === 'nats'),
    };
  };

  /**
   * A NATS pod's configuration files on this machine, as its containers see
   * them: the rendered nats.conf, and the NATS users its init container
   * writes (nats-config run here with the init container's arguments and
   * environment), and the files of its TLS Secret (the rendered one) where
   * nats.conf names them. Answers the nats container's environment, passwords
   * resolved from the rendered Secret and `$(POD_NAME)` from the pod's name.
   */
  const natsFiles = (manifests: any[], pod: string): { conf: string; env: Record<string, string> } => {
    const { sts, conf, container } = natsOf(manifests);
    const dir = mkdtempSync(join(scratch, `${pod}-`));
    const mountOf = (c: any, volume: string) => c.volumeMounts.find((m: any) => m.name === volume)?.mountPath;
    const file = join(dir, 'config/nats.conf');
    assert.equal(container.command.at(-1), `${mountOf(container, 'config')}/nats.conf`);
    mkdirSync(dirname(file), { recursive: true });
    const tls = mountOf(container, 'tls');
    if (tls) {
      const secretName = sts.spec.template.spec.volumes.find((v: any) => v.name === 'tls').secret.secretName;
      const secret = manifests.find((m) => m.kind === 'Secret' && m.metadata.name === secretName);
      mkdirSync(join(dir, 'tls'));
      for (const key of ['tls.crt', 'tls.key', 'ca.crt'])
        writeFileSync(join(dir, 'tls', key), Buffer.from(secret.data[key], 'base64'));
      assert.ok(conf.includes(`${tls}/`), `nats.conf reads its certificate from ${tls}`);
    }
    writeFileSync(file, tls ? conf.replaceAll(`${tls}/`, `${join(dir, 'tls')}/`) : conf);
    const env: Record<string, string> = { POD_NAME: pod };
    for (const e of container.env)
      if (typeof e.value === 'string') env[e.name] = e.value.replaceAll('$(POD_NAME)', pod);
    const init = sts.spec.template.spec.initContainers?.find((c: any) => c.name === 'users');
    if (!init) return { conf: file, env };
    // The include names the file the init container writes, on the volume both containers mount.
    const users: string = mountOf(init, 'users');
    assert.equal(mountOf(container, 'users'), users);
    const include = /^include (\S+)$/m.exec(conf)![1]!;
    assert.equal(posix.join(mountOf(container, 'config'), include), `${users}/auth.conf`);
    mkdirSync(join(dir, 'users'));
    const [program, script, ...args] = init.args as string[];
    assert.equal(program, 'node');
    execFileSync(
      process.execPath,
      [join(REPO, script!), ...args.map((a) => a.replace(users, join(dir, 'users')))],
      {
        env: { PATH: process.env.PATH ?? '', ...envOf(init) },
      },
    );
    for (const [name, value] of Object.entries(envOf(container))) {
      const ref = /^secret:([^/]+)\/(.+)$/.exec(value);
      if (!ref) continue;
      const secret = manifests.find((m) => m.kind === 'Secret' && m.metadata.name === ref[1]);
      env[name] = Buffer.from(secret.data[ref[2]!], 'base64').toString();
    }
    return { conf: file, env };
  };

  /** nats-server -t on a rendered nats.conf, as the pod named `pod` would read it. */
  const natsServerTest = (manifests: any[], pod: string) => {
    const { conf, env } = natsFiles(manifests, pod);
    execFileSync('nats-server', ['-c', conf, '-t'], { env: { ...process.env, ...env }, stdio: 'pipe' });
  };

  /** What the gateway makes of the NATS settings a container gets: its servers and stream replicas. */
  const natsConfigOf = (container: any) => {
    const env = Object.entries(envOf(container)).filter(([k]) => k.startsWith('SWITCHBOARD_NATS_'));
    return loadConfig(Object.fromEntries(env)).nats;
  };

  test('NATS by default: a JetStream cluster of three (routes to every pod, started together, spread, a PDB), every server given to the clients; config passes nats-server -t', () => {
    const [defaults] = rendered;
    const { sts, conf, headless, container } = natsOf(defaults!.manifests);
    const name: string = sts.metadata.name;
    assert.equal(sts.spec.replicas, 3);
    assert.equal(sts.spec.podManagementPolicy, 'Parallel');
    assert.equal(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage, '10Gi');
    assert.match(conf, /jetstream \{\n\s+store_dir: \/data/);
    assert.match(conf, /^server_name: \$POD_NAME$/m);

    // A cluster block whose routes name every pod by its stable DNS name in the headless Service.
    const cluster = /^cluster \{\n([\s\S]*?)\n\}$/m.exec(conf)?.[1];
    assert.ok(cluster, conf);
    assert.match(cluster, /^\s+name: sb-switchboard-nats$/m);
    assert.match(cluster, /^\s+port: 6222$/m);
    assert.deepEqual(
      [...cluster.matchAll(/nats-route:\/\/\S+/g)].map((m) => m[0]),
      [0, 1, 2].map((i) => `nats-route://${name}-${i}.${headless.metadata.name}.rt.svc.cluster.local:6222`),
    );
    assert.equal(sts.spec.serviceName, headless.metadata.name);
    assert.equal(headless.spec.clusterIP, 'None');
    assert.equal(
      headless.spec.publishNotReadyAddresses,
      true,
      'servers find each other before they are ready',
    );
    assert.deepEqual(
      headless.spec.ports.find((p: any) => p.name === 'cluster'),
      { name: 'cluster', port: 6222, targetPort: 'cluster' },
    );
    assert.equal(container.ports.find((p: any) => p.name === 'cluster').containerPort, 6222);
    for (const pod of [0, 1, 2]) natsServerTest(defaults!.manifests, `${name}-${pod}`);
    // Started once JetStream is current (a rolling update waits for it), ready once it is enabled.
    assert.equal(container.startupProbe.httpGet.path, '/healthz');
    assert.equal(container.readinessProbe.httpGet.path, '/healthz?js-enabled-only=true');

    // Shutdown in lame duck mode, within the grace period.
    assert.deepEqual(container.lifecycle.preStop.exec.command, ['nats-server', '--signal', 'ldm']);
    const lameDuck = Number(/^lame_duck_duration: (\d+)s$/m.exec(conf)?.[1]);
    assert.ok(
      sts.spec.template.spec.terminationGracePeriodSeconds > lameDuck + 10,
      `${lameDuck} s lame duck`,
    );

    // Spread over nodes, evicted one at a time, routes allowed between the servers only.
    const labels = sts.spec.template.metadata.labels;
    const selects = (selector: Record<string, string>) =>
      Object.entries(selector).every(([k, v]) => labels[k] === v);
    const [spread] =
      sts.spec.template.spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution;
    assert.equal(spread.podAffinityTerm.topologyKey, 'kubernetes.io/hostname');
    assert.ok(selects(spread.podAffinityTerm.labelSelector.matchLabels));
    const pdb = find(defaults!.manifests, 'PodDisruptionBudget', '-nats');
    assert.equal(pdb.spec.maxUnavailable, 1);
    assert.ok(selects(pdb.spec.selector.matchLabels));
    const routes = find(defaults!.manifests, 'NetworkPolicy', '-nats').spec.ingress.find((r: any) =>
      r.ports.some((p: any) => p.port === 'cluster'),
    );
    assert.ok(selects(routes.from[0].podSelector.matchLabels));
    assert.equal(routes.from.length, 1);

    // The gateway and the example services get every server (over TLS, by the name its certificate is for),
    // and so make their streams with three replicas.
    const urls = [0, 1, 2].map(
      (i) => `tls://${name}-${i}.${headless.metadata.name}.rt.svc.cluster.local:4222`,
    );
    const withServices = render({ set: ['services.chat.enabled=true'] });
    for (const c of [
      gatewayContainer(defaults!.manifests),
      find(withServices, 'Deployment', '-service-chat').spec.template.spec.containers[0],
    ]) {
      assert.equal(envOf(c).SWITCHBOARD_NATS_URL, urls.join(','), c.name);
      assert.deepEqual(natsConfigOf(c).servers, urls, c.name);
    }
    assert.equal(natsConfigOf(gatewayContainer(defaults!.manifests)).replicas, 3);

    // nats.affinity replaces the default anti-affinity.
    const placed = render({
      set: [
        'nats.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=nats',
      ],
    });
    assert.deepEqual(Object.keys(find(placed, 'StatefulSet', '-nats').spec.template.spec.affinity), [
      'nodeAffinity',
    ]);
  });

  test('NATS with nats.replicas=1: one server, no cluster, routes or PDB, one URL; an even number is refused', () => {
    const single = rendered.find((r) => r.name === 'nats-single-values.yaml')!;
    const { sts, conf, headless, container } = natsOf(single.manifests);
    assert.equal(sts.spec.replicas, 1);
    assert.equal(sts.spec.podManagementPolicy, undefined);
    assert.doesNotMatch(conf, /^cluster|nats-route|lame_duck/m);
    natsServerTest(single.manifests, `${sts.metadata.name}-0`);
    assert.deepEqual(
      headless.spec.ports.map((p: any) => p.name),
      ['client'],
    );
    assert.deepEqual(
      container.ports.map((p: any) => p.name),
      ['client', 'monitor'],
    );
    assert.equal(container.lifecycle, undefined);
    assert.equal(
      single.manifests.filter((m) => m.kind === 'PodDisruptionBudget' && m.metadata.name.endsWith('-nats'))
        .length,
      0,
    );
    const gateway = gatewayContainer(single.manifests);
    assert.equal(
      envOf(gateway).SWITCHBOARD_NATS_URL,
      `tls://${sts.metadata.name}-0.${headless.metadata.name}.rt.svc.cluster.local:4222`,
    );
    assert.equal(natsConfigOf(gateway).replicas, 1);

    for (const even of [2, 4])
      assert.throws(
        () => render({ set: [`nats.replicas=${even}`] }),
        new RegExp(`nats.replicas must be 1 or an odd number of at least 3 .*not ${even}`),
      );
    const five = natsOf(render({ set: ['nats.replicas=5'] }));
    assert.equal(five.sts.spec.replicas, 5);
    assert.equal(five.conf.match(/nats-route:/g)?.length, 5);
  });

  test('NATS of your own: nats.enabled=false and nats.url, given to the gateway and every service', () => {
    const external = rendered.find((r) => r.name === 'external-nats-values.yaml')!;
    assert.equal(external.manifests.filter((m) => m.kind === 'StatefulSet').length, 0);
    assert.equal(
      external.manifests.filter((m) => m.kind === 'PodDisruptionBudget' && m.metadata.name.endsWith('-nats'))
        .length,
      0,
    );
    for (const name of ['-gateway', '-service-chat', '-service-store', '-service-jobs']) {
      const env = envOf(find(external.manifests, 'Deployment', name).spec.template.spec.containers[0]);
      assert.equal(env.SWITCHBOARD_NATS_URL, external.values.nats.url, name);
      assert.equal(env.SWITCHBOARD_NATS_PREFIX, 'rt', name);
    }
    assert.throws(
      () => render({ set: ['nats.enabled=false', 'nats.auth.existingSecret=nats-users'] }),
      /nats.url is required/,
    );
  });

  test('NATS TLS by default: clients and verified routes over TLS, a generated CA and certificate for every pod, the CA for the gateway and services; the rendered server for real, and reloaded with a new certificate', async () => {
    const services = [
      'services.chat.enabled=true',
      'services.store.enabled=true',
      'services.jobs.enabled=true',
    ];
    const manifests = render({ set: services });
    const { sts, conf, headless, container } = natsOf(manifests);
    const name: string = sts.metadata.name;
    const podNames = [0, 1, 2].map((i) => `${name}-${i}.${headless.metadata.name}.rt.svc.cluster.local`);

    // The Secret, mounted as a directory in every NATS pod, and named by nats.conf for clients and routes.
    const pod = sts.spec.template.spec;
    const secretName = pod.volumes.find((v: any) => v.name === 'tls').secret.secretName;
    const secret = find(manifests, 'Secret', '-nats-tls');
    assert.equal(secret.metadata.name, secretName);
    assert.equal(secret.type, 'kubernetes.io/tls');
    const mount = container.volumeMounts.find((m: any) => m.name === 'tls');
    assert.equal(mount.readOnly, true);
    assert.equal(mount.subPath, undefined);
    const files = (block: string) =>
      Object.fromEntries([...block.matchAll(/^\s+(\w+): (\S+)$/gm)].map((m) => [m[1], m[2]]));
    const paths = {
      cert_file: `${mount.mountPath}/tls.crt`,
      key_file: `${mount.mountPath}/tls.key`,
      ca_file: `${mount.mountPath}/ca.crt`,
    };
    const clientTls = /^tls \{\n([^}]*)\n\}$/m.exec(conf)?.[1];
    assert.ok(clientTls, conf);
    assert.deepEqual(files(clientTls), paths);
    const cluster = /^cluster \{\n([\s\S]*?)\n\}$/m.exec(conf)?.[1] ?? '';
    const routeTls = /^\s+tls \{\n([^}]*)\n\s+\}$/m.exec(cluster)?.[1];
    assert.ok(routeTls, cluster);
    assert.deepEqual(files(routeTls), { ...paths, verify: 'true' });
    // Routes are gossiped by name (the certificate is for names, not the pods' IPs).
    assert.match(cluster, /^\s+advertise: \$CLUSTER_ADVERTISE$/m);
    assert.equal(
      envOf(container).CLUSTER_ADVERTISE,
      `$(POD_NAME).${headless.metadata.name}.rt.svc.cluster.local:6222`,
    );
    // Probes and the exporter keep the monitor port, plain HTTP.
    assert.match(conf, /^http_port: 8222$/m);
    assert.doesNotMatch(conf, /https_port/);
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      assert.equal(container[probe].httpGet.port, 'monitor', probe);
      assert.equal(container[probe].httpGet.scheme, undefined, probe);
    }
    assert.equal(pod.containers.find((c: any) => c.name === 'exporter').args.at(-1), 'http://localhost:8222');
    assert.ok(sts.spec.template.metadata.annotations['checksum/tls'], 'a new certificate rolls the servers');

    // The certificate: issued by the CA beside it, its key, for every pod's name, server and client auth.
    const pem = (key: string) => Buffer.from(secret.data[key], 'base64');
    const ca = new X509Certificate(pem('ca.crt'));
    const cert = new X509Certificate(pem('tls.crt'));
    assert.ok(ca.ca);
    assert.ok(!cert.ca);
    assert.ok(cert.checkIssued(ca));
    assert.ok(cert.verify(ca.publicKey));
    assert.ok(cert.checkPrivateKey(createPrivateKey(pem('tls.key'))));
    assert.deepEqual(cert.keyUsage?.slice().sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    const routes = [...conf.matchAll(/nats-route:\/\/([^:]+):6222/g)].map((m) => m[1]);
    assert.deepEqual(routes, podNames);
    const clientHosts = envOf(gatewayContainer(manifests))
      .SWITCHBOARD_NATS_URL!.split(',')
      .map((u) => new URL(u).hostname);
    assert.deepEqual(clientHosts, podNames);
    for (const host of [...podNames, `${name}.rt.svc.cluster.local`, `${headless.metadata.name}.rt.svc`])
      assert.notEqual(cert.checkHost(host), undefined, `${host} in ${cert.subjectAltName}`);
    for (const host of ['nats.example.com', `${name}-0.${headless.metadata.name}.other.svc.cluster.local`])
      assert.equal(cert.checkHost(host), undefined, host);
    assert.equal(cert.checkIP('127.0.0.1'), undefined);
    assert.ok(new Date(cert.validFrom) <= new Date());
    assert.ok(new Date(cert.validTo) > new Date(Date.now() + 5 * 365 * 86400_000));
    for (const i of [0, 1, 2]) natsServerTest(manifests, `${name}-${i}`);

    // The gateway and every service: tls:// URLs, and the CA alone (never the servers' key) as SWITCHBOARD_NATS_TLS_CA.
    const clients = [
      find(manifests, 'Deployment', '-gateway'),
      ...['chat', 'store', 'jobs'].map((s) => find(manifests, 'Deployment', `-service-${s}`)),
    ];
    for (const deployment of clients) {
      const spec = deployment.spec.template.spec;
      const c = spec.containers[0];
      const where = deployment.metadata.name;
      assert.ok(
        natsConfigOf(c).servers.every((u: string) => u.startsWith('tls://')),
        where,
      );
      const caMount = c.volumeMounts.find((m: any) => m.name === 'nats-ca');
      assert.equal(caMount.readOnly, true, where);
      assert.equal(natsConfigOf(c).tlsCa, `${caMount.mountPath}/ca.crt`, where);
      assert.deepEqual(
        spec.volumes.find((v: any) => v.name === 'nats-ca').secret,
        { secretName, items: [{ key: 'ca.crt', path: 'ca.crt' }] },
        where,
      );
    }

    // For real: the single server of nats-single-values with its rendered certificate. A client that
    // trusts the CA and names the pod gets in as its user; another name, another CA, plain text do not.
    const single = rendered.find((r) => r.name === 'nats-single-values.yaml')!;
    const singleSts = natsOf(single.manifests).sts.metadata.name;
    const host = `${singleSts}-0.${singleSts}-headless.rt.svc.cluster.local`;
    const served = natsFiles(single.manifests, `${singleSts}-0`);
    const tlsDir = join(dirname(served.conf), '../tls');
    // As the pod would run it, on free ports of 127.0.0.1 and a scratch store (and no flags, which a reload would lose).
    const [port, monitorPort] = [await freePort(), await freePort()];
    writeFileSync(
      served.conf,
      readFileSync(served.conf, 'utf8')
        .replace(/^port: 4222$/m, `host: 127.0.0.1\nport: ${port}`)
        .replace(/^http_port: 8222$/m, `http_port: ${monitorPort}`)
        .replace(/^(\s*store_dir:) \/data$/m, `$1 ${mkdtempSync(join(scratch, 'store-'))}`),
    );
    const server = run('nats-server', ['-c', served.conf], served.env);
    const nats = { url: `nats://127.0.0.1:${port}`, host: '127.0.0.1', port, output: server.output };
    await waitUntil(
      async () => {
        if (exited(server)) throw new Error(`nats-server exited:\n${server.output()}`);
        return (await fetch(`http://127.0.0.1:${monitorPort}/healthz`).catch(() => undefined))?.ok === true;
      },
      15_000,
      () => `nats-server:\n${server.output()}`,
    );
    try {
      const password = Buffer.from(
        find(single.manifests, 'Secret', '-nats-users').data.gateway,
        'base64',
      ).toString();
      const caFile = join(tlsDir, 'ca.crt');
      const login = (tls: Record<string, unknown>) =>
        connect({ servers: nats.url, user: 'gateway', pass: password, tls, reconnect: false, timeout: 5000 });
      const nc = await login({ caFile, servername: host });
      assert.equal(nc.info?.tls_required, true);
      await nc.flush();
      await nc.close();
      await assert.rejects(login({ caFile, servername: 'nats.example.com' }), /altnames|Hostname/i);
      await assert.rejects(login({ ca: pki.ca, servername: host }), /certificate|verify/i);
      const info = await new Promise<string>((resolve, reject) => {
        const socket = createConnection({ host: nats.host, port: nats.port });
        socket.once('data', (data) => {
          socket.destroy();
          resolve(data.toString());
        });
        socket.once('error', reject);
      });
      assert.equal(JSON.parse(info.replace(/^INFO /, '')).tls_required, true);

      // A new certificate and CA in the same files (the mounted Secret renewed), then
      // `nats-server --signal reload`: served from then on, no restart.
      const renewed = find(render({ files: single.files }), 'Secret', '-nats-tls');
      assert.notEqual(renewed.data['ca.crt'], find(single.manifests, 'Secret', '-nats-tls').data['ca.crt']);
      for (const key of ['tls.crt', 'tls.key', 'ca.crt'])
        writeFileSync(join(tlsDir, key), Buffer.from(renewed.data[key], 'base64'));
      execFileSync('nats-server', ['--signal', `reload=${server.child.pid}`], { stdio: 'pipe' });
      await waitUntil(
        async () =>
          login({ caFile, servername: host }).then(
            async (c) => (await c.close(), true),
            () => false,
          ),
        10_000,
        () => `the renewed certificate after reload:\n${nats.output()}`,
      );
      await assert.rejects(
        login({
          ca: Buffer.from(find(single.manifests, 'Secret', '-nats-tls').data['ca.crt'], 'base64').toString(),
          servername: host,
        }),
        /certificate|verify/i,
      );
    } finally {
      await server.stop();
    }
  });

  test('NATS TLS: off, from a Secret of your own, from cert-manager, and for NATS of your own', () => {
    const tlsMounts = (manifests: any[]) =>
      manifests
        .filter((m) => ['Deployment', 'StatefulSet'].includes(m.kind))
        .flatMap((m) => m.spec.template.spec.volumes ?? [])
        .filter((v: any) => v.secret?.secretName?.includes('nats-tls') || ['tls', 'nats-ca'].includes(v.name))
        .filter((v: any) => v.name !== 'tls' || !v.secret?.secretName?.includes('haproxy'))
        .map((v: any) => `${v.name}:${v.secret.secretName}`);
    const generated = (manifests: any[]) =>
      manifests.filter((m) => m.kind === 'Secret' && m.metadata.name.endsWith('-nats-tls')).length;

    // Off: no TLS anywhere, nats:// URLs.
    const off = render({ set: ['nats.tls.enabled=false', 'services.chat.enabled=true'] });
    const offNats = natsOf(off);
    assert.doesNotMatch(offNats.conf, /tls \{|verify|advertise/);
    assert.equal(generated(off), 0);
    assert.deepEqual(tlsMounts(off), []);
    assert.equal(envOf(offNats.container).CLUSTER_ADVERTISE, undefined);
    assert.equal(offNats.sts.spec.template.metadata.annotations['checksum/tls'], undefined);
    for (const c of [
      gatewayContainer(off),
      find(off, 'Deployment', '-service-chat').spec.template.spec.containers[0],
    ]) {
      assert.equal(envOf(c).SWITCHBOARD_NATS_TLS_CA, undefined, c.name);
      assert.ok(
        natsConfigOf(c).servers.every((u: string) => u.startsWith('nats://')),
        c.name,
      );
    }
    natsServerTest(off, `${offNats.sts.metadata.name}-0`);

    // A Secret of your own: nothing generated, that Secret mounted by the servers and (its CA) by the clients.
    const own = render({ set: ['nats.tls.secretName=nats-certs', 'services.chat.enabled=true'] });
    assert.equal(generated(own), 0);
    assert.deepEqual(tlsMounts(own).sort(), ['nats-ca:nats-certs', 'nats-ca:nats-certs', 'tls:nats-certs']);
    assert.equal(natsOf(own).sts.spec.template.metadata.annotations['checksum/tls'], undefined);
    assert.match(natsOf(own).conf, /^tls \{$/m);

    // cert-manager: a Certificate for the names the generated one has, server and client auth, into the Secret mounted.
    const certManager = ['nats.tls.certManager.enabled=true', 'nats.tls.certManager.issuerRef.name=nats-ca'];
    const issued = render({ set: certManager, apiVersions: ['cert-manager.io/v1'] });
    const certificate = find(issued, 'Certificate', '-nats');
    assert.equal(certificate.apiVersion, 'cert-manager.io/v1');
    assert.equal(generated(issued), 0);
    assert.deepEqual(
      [...new Set(tlsMounts(issued).map((m) => m.split(':')[1]))],
      [certificate.spec.secretName],
    );
    const san = new X509Certificate(
      Buffer.from(find(rendered[0]!.manifests, 'Secret', '-nats-tls').data['tls.crt'], 'base64'),
    ).subjectAltName!;
    assert.deepEqual(
      certificate.spec.dnsNames.map((n: string) => `DNS:${n}`),
      san.split(', '),
    );
    assert.ok(certificate.spec.dnsNames.includes('*.sb-switchboard-nats-headless.rt.svc.cluster.local'));
    assert.deepEqual(certificate.spec.usages, ['server auth', 'client auth']);
    assert.deepEqual(certificate.spec.issuerRef, {
      name: 'nats-ca',
      kind: 'Issuer',
      group: 'cert-manager.io',
    });
    assert.throws(
      () => render({ set: certManager }),
      /nats\.tls\.certManager\.enabled needs cert-manager's CRDs/,
    );
    assert.throws(
      () => render({ set: certManager.slice(0, 1), apiVersions: ['cert-manager.io/v1'] }),
      /needs nats\.tls\.certManager\.issuerRef\.name/,
    );

    // NATS of your own: its CA from nats.tls.secretName for the gateway and every service, the URLs as given.
    const external = rendered.find((r) => r.name === 'external-nats-values.yaml')!;
    assert.equal(generated(external.manifests), 0);
    for (const suffix of ['-gateway', '-service-chat', '-service-store', '-service-jobs']) {
      const deployment = find(external.manifests, 'Deployment', suffix);
      const env = envOf(deployment.spec.template.spec.containers[0]);
      assert.equal(env.SWITCHBOARD_NATS_URL, external.values.nats.url, suffix);
      assert.equal(env.SWITCHBOARD_NATS_TLS_CA, '/etc/switchboard/nats-ca/ca.crt', suffix);
      assert.equal(
        deployment.spec.template.spec.volumes.find((v: any) => v.name === 'nats-ca').secret.secretName,
        external.values.nats.tls.secretName,
        suffix,
      );
    }
    const noCa = render({ files: external.files, set: ['nats.tls.secretName='] });
    assert.equal(envOf(gatewayContainer(noCa)).SWITCHBOARD_NATS_TLS_CA, undefined);
    assert.deepEqual(tlsMounts(noCa), []);
  });

  test('NATS users by default: a password each in a generated Secret, written by nats-config in every NATS pod, each client its own; the rendered servers refuse what a role may not do', async () => {
    const manifests = render({
      set: ['services.chat.enabled=true', 'services.store.enabled=true', 'services.jobs.enabled=true'],
    });
    const secret = find(manifests, 'Secret', '-nats-users');
    const users = ['gateway', 'api', 'service-room', 'service-store', 'service-jobs'];
    assert.deepEqual(Object.keys(secret.data), users);
    for (const user of users)
      assert.match(Buffer.from(secret.data[user], 'base64').toString(), /^[A-Za-z][A-Za-z0-9]{39}$/, user);
    const credentials = (c: any) => [envOf(c).SWITCHBOARD_NATS_USER, envOf(c).SWITCHBOARD_NATS_PASSWORD];
    const ref = (user: string) => `secret:${secret.metadata.name}/${user}`;
    assert.deepEqual(credentials(gatewayContainer(manifests)), ['gateway', ref('gateway')]);
    for (const [service, user] of [
      ['chat', 'service-room'],
      ['store', 'service-store'],
      ['jobs', 'service-jobs'],
    ] as const) {
      const container = find(manifests, 'Deployment', `-service-${service}`).spec.template.spec.containers[0];
      assert.deepEqual(credentials(container), [user, ref(user)], service);
    }
    // nats-config in the NATS pod writes exactly these users, with the password variables the server gets.
    const { sts } = natsOf(manifests);
    const { conf, env } = natsFiles(manifests, `${sts.metadata.name}-0`);
    const written = readFileSync(join(dirname(conf), '../users/auth.conf'), 'utf8');
    assert.deepEqual(
      [...written.matchAll(/user: "([^"]+)"/g)].map((m) => m[1]),
      users,
    );
    assert.deepEqual(
      [...written.matchAll(/password: \$(\w+)/g)].map((m) => m[1]).sort(),
      Object.keys(env)
        .filter((k) => k.startsWith('NATS_PASSWORD_'))
        .sort(),
    );
    assert.ok(
      sts.spec.template.metadata.annotations['checksum/users'],
      'a changed password rolls the servers',
    );
    // gateway.config's prefix and namespaces reach nats-config.
    const minimal = rendered.find((r) => r.name === 'minimal-values.yaml')!;
    const custom = render({ files: minimal.files, set: ['gateway.config.nats_prefix=rt'] });
    const customUsers = readFileSync(
      join(dirname(natsFiles(custom, 'custom-0').conf), '../users/auth.conf'),
      'utf8',
    );
    assert.match(customUsers, /"rt\.live\.>"/);
    assert.match(customUsers, /"\$JS\.API\.STREAM\.INFO\.RT_HIST_chat"/);
    assert.doesNotMatch(customUsers, /RT_HIST_room/);

    // The single server of nats-single-values, for real: no one without a user, and each user within its role
    // (without TLS here: its certificate is for the pod's name; NATS TLS has its own test).
    const single = {
      manifests: render({
        files: rendered.find((r) => r.name === 'nats-single-values.yaml')!.files,
        set: ['nats.tls.enabled=false'],
      }),
    };
    const files = natsFiles(single.manifests, 'single-0');
    // The pod's volume is the harness's store here (startNats gives it).
    writeFileSync(files.conf, readFileSync(files.conf, 'utf8').replace(/^\s*store_dir: \/data\n/m, ''));
    const nats = await startNats(['-c', files.conf], 15_000, files.env);
    try {
      const password = (user: string) =>
        Buffer.from(find(single.manifests, 'Secret', '-nats-users').data[user], 'base64').toString();
      await assert.rejects(connectNats({ servers: [nats.url], name: 'nobody' }), /Authorization Violation/);
      for (const [user, subject] of [
        ['service-store', 'sb.svc.room.rpc'],
        ['service-store', 'sb.live.store.x'],
        ['gateway', '$JS.API.STREAM.DELETE.SB_HIST_chat'],
        ['api', 'sb.ctl'],
      ] as const) {
        const nc = await connectNats({ servers: [nats.url], name: user, user, password: password(user) });
        try {
          const refused = (async () => {
            for await (const status of nc.status())
              if (status.type === 'error' && status.error instanceof PermissionViolationError)
                return status.error;
            return undefined;
          })();
          nc.publish(subject, '{}');
          assert.equal((await refused)?.subject, subject, user);
        } finally {
          await nc.close();
        }
      }
    } finally {
      await nats.stop();
    }
  });

  test('NATS users: turned off, or from a Secret of your own (required with NATS of your own); every service namespace needs its user', () => {
    const off = render({ set: ['nats.auth.enabled=false', 'services.chat.enabled=true'] });
    assert.equal(off.filter((m) => m.kind === 'Secret' && m.metadata.name.endsWith('-nats-users')).length, 0);
    const { sts, conf, container } = natsOf(off);
    assert.equal(sts.spec.template.spec.initContainers, undefined);
    assert.doesNotMatch(conf, /^include/m);
    assert.ok(!Object.keys(envOf(container)).some((k) => k.startsWith('NATS_PASSWORD_')));
    for (const c of [
      gatewayContainer(off),
      find(off, 'Deployment', '-service-chat').spec.template.spec.containers[0],
    ])
      assert.equal(envOf(c).SWITCHBOARD_NATS_USER, undefined, c.name);

    const own = render({ set: ['nats.auth.existingSecret=my-nats-users'] });
    assert.equal(own.filter((m) => m.kind === 'Secret' && m.metadata.name.endsWith('-nats-users')).length, 0);
    assert.equal(envOf(gatewayContainer(own)).SWITCHBOARD_NATS_PASSWORD, 'secret:my-nats-users/gateway');
    assert.equal(
      envOf(natsOf(own).container).NATS_PASSWORD_SERVICE_ROOM,
      'secret:my-nats-users/service-room',
    );
    const external = rendered.find((r) => r.name === 'external-nats-values.yaml')!;
    assert.equal(
      envOf(gatewayContainer(external.manifests)).SWITCHBOARD_NATS_PASSWORD,
      'secret:switchboard-nats-users/gateway',
    );
    assert.throws(
      () => render({ set: ['nats.enabled=false', 'nats.url=nats://nats:4222'] }),
      /nats.auth.existingSecret is required with NATS of your own/,
    );
    assert.throws(
      () => render({ set: ['services.chat.enabled=true', 'nats.auth.services={store}'] }),
      /services.chat owns the namespace room: add it to nats.auth.services/,
    );
    assert.throws(() => render({ set: ['nats.auth.services={a.b}'] }), /nats\/auth\/services/);
  });

  test('keys: generated into a Secret, or taken from an existing one, read from its mounted files', () => {
    const [defaults] = rendered;
    const secret = find(defaults!.manifests, 'Secret', '-auth');
    for (const key of ['token-hmac-secret-key', 'api-key'])
      assert.ok(Buffer.from(secret.data[key], 'base64').length >= 32, key);
    /** The Secret the gateway's key files come from, mounted as a directory (a subPath mount never changes). */
    const keySecret = (manifests: any[]) => {
      const pod = find(manifests, 'Deployment', '-gateway').spec.template.spec;
      const env = envOf(gatewayContainer(manifests));
      assert.equal(env.SWITCHBOARD_API_KEY, undefined);
      assert.equal(env.SWITCHBOARD_TOKEN_HMAC_SECRET_KEY, undefined);
      const mount = gatewayContainer(manifests).volumeMounts.find((m: any) => m.name === 'auth');
      assert.equal(mount.subPath, undefined);
      assert.equal(mount.readOnly, true);
      assert.equal(env.SWITCHBOARD_API_KEY_FILE, `${mount.mountPath}/api-key`);
      assert.equal(env.SWITCHBOARD_TOKEN_HMAC_SECRET_KEY_FILE, `${mount.mountPath}/token-hmac-secret-key`);
      return pod.volumes.find((v: any) => v.name === 'auth').secret.secretName;
    };
    assert.equal(keySecret(defaults!.manifests), secret.metadata.name);
    const external = rendered.find((r) => r.name === 'external-nats-values.yaml')!;
    assert.equal(external.manifests.filter((m) => m.kind === 'Secret' && m.type === 'Opaque').length, 0);
    assert.equal(keySecret(external.manifests), 'switchboard-keys');
    const minimal = rendered.find((r) => r.name === 'minimal-values.yaml')!;
    assert.equal(
      Buffer.from(find(minimal.manifests, 'Secret', '-auth').data['api-key'], 'base64').toString(),
      'ci-api-key',
    );
  });

  test('keys rotate: a list of keys is one a line in the Secret, and changing them rolls no pod', () => {
    const withKeys = (apiKey: string, hmac: string) =>
      render({ set: [`auth.apiKey=${apiKey}`, `auth.tokenHmacSecretKey=${hmac}`] });
    const rotating = withKeys('{new-key,old-key}', '{new-secret,old-secret}');
    const data = find(rotating, 'Secret', '-auth').data;
    const file = (key: string) => parseKeyFile(Buffer.from(data[key], 'base64').toString());
    assert.deepEqual(file('api-key'), ['new-key', 'old-key']);
    assert.deepEqual(file('token-hmac-secret-key'), ['new-secret', 'old-secret']);
    const pod = (manifests: any[]) => find(manifests, 'Deployment', '-gateway').spec.template;
    assert.deepEqual(pod(withKeys('new-key', 'new-secret')), pod(rotating));
    const emptyKey = join(scratch, 'empty-key.yaml');
    writeFileSync(emptyKey, 'auth:\n  apiKey: [new-key, ""]\n');
    assert.throws(() => render({ files: [emptyKey] }), /apiKey/);
  });

  test('Pusher apps: in a Secret of their own as the JSON the gateway reads, to the gateways by secretKeyRef and in no other manifest; a change rolls them', () => {
    const set = rendered.find((r) => r.name === 'pusher-values.yaml')!;
    const apps: any[] = set.values.pusher.apps;
    assert.equal(apps.length, 2);
    const secret = find(set.manifests, 'Secret', '-pusher-apps');
    assert.equal(secret.metadata.name, 'sb-switchboard-pusher-apps');
    assert.equal(secret.type, 'Opaque');
    assert.deepEqual(Object.keys(secret.data), ['apps']);
    const json = Buffer.from(secret.data.apps, 'base64').toString();
    assert.deepEqual(JSON.parse(json), apps);
    // What the gateway makes of it: both apps with every field as given (the defaults for the first).
    const parsed = loadConfig({ SWITCHBOARD_PUSHER_APPS: json }).pusher.apps;
    assert.deepEqual(
      parsed.map((a) => [a.id, a.key, a.secret, a.namespace, a.max_connections, a.allowed_origins]),
      [
        ['1234567', 'shop-key', apps[0].secret, '1234567', 0, []],
        ['backoffice', 'backoffice-key', apps[1].secret, 'admin', 5000, ['https://admin.example.com']],
      ],
    );
    // values.schema.json describes exactly the fields the gateway knows (the ci app has every one).
    const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8'));
    const fields = schema.properties.pusher.properties.apps.items.properties;
    assert.deepEqual(Object.keys(fields).sort(), Object.keys(parsed[1]!).sort());
    assert.deepEqual(Object.keys(apps[1]).sort(), Object.keys(parsed[1]!).sort());

    // The gateway takes it from the Secret, never as a value; the activity timeout is a plain setting.
    const gateway = gatewayContainer(set.manifests);
    assert.deepEqual(
      gateway.env.filter((e: any) => e.name === 'SWITCHBOARD_PUSHER_APPS'),
      [
        {
          name: 'SWITCHBOARD_PUSHER_APPS',
          valueFrom: { secretKeyRef: { name: secret.metadata.name, key: 'apps' } },
        },
      ],
    );
    assert.equal(pusherAppsJson(set.manifests), json);
    assert.equal(envOf(gateway).SWITCHBOARD_PUSHER_ACTIVITY_TIMEOUT, '60');

    // No app secret anywhere else: not in the rendered YAML as text (the Secret has it in base64),
    // and no other manifest holds a string that has it, as it is or base64-decoded.
    const text = helm(['template', 'sb', CHART, '--namespace', 'rt', '-f', set.files[0]!]);
    assert.equal(text.split(secret.data.apps).length, 2, 'the apps are in the rendered YAML once');
    const strings = (node: unknown): string[] =>
      typeof node === 'string'
        ? [node]
        : node && typeof node === 'object'
          ? Object.values(node).flatMap(strings)
          : [];
    for (const app of apps) {
      assert.ok(!text.includes(app.secret), `${app.id}'s secret in the rendered YAML`);
      for (const manifest of set.manifests.filter((m) => m !== secret))
        for (const value of strings(manifest))
          assert.ok(
            !value.includes(app.secret) && !Buffer.from(value, 'base64').toString().includes(app.secret),
            `${app.id}'s secret in ${manifest.kind} ${manifest.metadata.name}`,
          );
    }

    // Changed apps roll the gateways (they read the apps when they start); nothing else about the pod changes.
    const podOf = (manifests: any[]) => find(manifests, 'Deployment', '-gateway').spec.template;
    const rotated = join(scratch, 'pusher-rotated.yaml');
    writeFileSync(
      rotated,
      JSON.stringify({ pusher: { apps: [{ ...apps[0], secret: 'ci-shop-secret-rotated' }, apps[1]] } }),
    );
    const before = podOf(set.manifests);
    const after = podOf(render({ files: [set.files[0]!, rotated] }));
    assert.ok(before.metadata.annotations['checksum/pusher-apps']);
    assert.notEqual(
      after.metadata.annotations['checksum/pusher-apps'],
      before.metadata.annotations['checksum/pusher-apps'],
    );
    delete after.metadata.annotations['checksum/pusher-apps'];
    delete before.metadata.annotations['checksum/pusher-apps'];
    assert.deepEqual(after, before);

    // The gateway would refuse two apps with one id, key or namespace at start: the chart refuses them first.
    const twice = join(scratch, 'pusher-twice.yaml');
    for (const [second, field] of [
      [{ ...apps[1], key: apps[0].key }, 'key'],
      [{ ...apps[1], id: apps[0].id, namespace: 'other' }, 'id'],
      [{ ...apps[1], namespace: apps[0].id }, 'namespace'],
    ] as const) {
      writeFileSync(twice, JSON.stringify({ pusher: { apps: [apps[0], second] } }));
      assert.throws(() => render({ files: [twice] }), new RegExp(`pusher.apps: two apps have the ${field} `));
    }
  });

  test('Pusher apps from a Secret of yours (the chart makes none), none without apps (the edge off); NOTES name the endpoints', () => {
    const pusherSecrets = (manifests: any[]) =>
      manifests.filter((m) => m.kind === 'Secret' && m.metadata.name.includes('pusher')).length;
    const own = render({ set: ['pusher.existingSecret=my-pusher-apps'] });
    assert.equal(pusherSecrets(own), 0);
    assert.equal(envOf(gatewayContainer(own)).SWITCHBOARD_PUSHER_APPS, 'secret:my-pusher-apps/apps');
    assert.equal(
      find(own, 'Deployment', '-gateway').spec.template.metadata.annotations['checksum/pusher-apps'],
      undefined,
    );
    assert.throws(
      () =>
        render({
          files: [rendered.find((r) => r.name === 'pusher-values.yaml')!.files[0]!],
          set: ['pusher.existingSecret=my-pusher-apps'],
        }),
      /pusher.apps and pusher.existingSecret: set one/,
    );
    // Without either: no Secret, no SWITCHBOARD_PUSHER_APPS, no checksum.
    for (const { name, manifests } of rendered.filter((r) => r.name !== 'pusher-values.yaml')) {
      assert.equal(pusherSecrets(manifests), 0, name);
      assert.ok(!('SWITCHBOARD_PUSHER_APPS' in envOf(gatewayContainer(manifests))), name);
      assert.equal(
        find(manifests, 'Deployment', '-gateway').spec.template.metadata.annotations['checksum/pusher-apps'],
        undefined,
        name,
      );
    }

    // In-cluster app servers reach Pusher's HTTP API on the internal port of the API Service, let in
    // by networkPolicy.internalFrom like callers of /api.
    const api = find(rendered[0]!.manifests, 'Service', '-api');
    assert.deepEqual(
      api.spec.ports.find((p: any) => p.name === 'internal'),
      { name: 'internal', port: KEYS.internal_port.default, targetPort: 'internal' },
    );
    const from = render({
      set: [
        'networkPolicy.internalFrom[0].namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name=laravel',
      ],
    });
    const internal = find(from, 'NetworkPolicy', '-gateway').spec.ingress.find((r: any) =>
      r.ports.some((p: any) => p.port === 'internal'),
    );
    assert.deepEqual(internal.from.at(-1), {
      namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'laravel' } },
    });

    // NOTES: the Pusher endpoints with apps (ids and keys, never secrets), nothing about Pusher without.
    const notes = (args: string[]) => {
      const out = helm(['install', 'sb', CHART, '--namespace', 'rt', '--dry-run=client', ...args]);
      return out.slice(out.indexOf('\nNOTES:\n'));
    };
    const set = rendered.find((r) => r.name === 'pusher-values.yaml')!;
    const withApps = notes(['-f', set.files[0]!]);
    assert.match(withApps, /Pusher .*Secret sb-switchboard-pusher-apps/);
    assert.match(withApps, /1234567 \(key shop-key\), backoffice \(key backoffice-key\)/);
    assert.match(withApps, /\/app\/<key>\?protocol=7/);
    assert.match(withApps, /http:\/\/sb-switchboard-api\.rt\.svc\.cluster\.local:9000\/apps\/<id>\/events/);
    assert.match(withApps, /PUSHER_HOST=sb-switchboard-api\.rt\.svc\.cluster\.local/);
    assert.match(withApps, /networkPolicy\.internalFrom/);
    for (const app of set.values.pusher.apps) assert.ok(!withApps.includes(app.secret), app.id);
    assert.match(
      notes(['--set', 'pusher.existingSecret=my-pusher-apps']),
      /Secret my-pusher-apps\n[\s\S]*rollout restart/,
    );
    assert.doesNotMatch(notes([]), /pusher/i);
  });

  test('gateway.config takes exactly the settings the chart does not set itself, and they reach the environment', () => {
    const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8'));
    const allowed = Object.keys(schema.properties.gateway.properties.config.properties).sort();
    assert.deepEqual(
      allowed,
      Object.keys(KEYS)
        .filter((k) => !CHART_SETS.includes(k))
        .sort(),
    );
    for (const { name, manifests } of rendered) {
      const env = envOf(gatewayContainer(manifests));
      for (const key of CHART_SETS.filter((k) => !NOT_IN_ENV.includes(k)))
        assert.ok(envName(key) in env, `${name}: ${envName(key)}`);
      for (const variable of Object.keys(env).filter((k) => k.startsWith('SWITCHBOARD_')))
        assert.ok(
          Object.keys(KEYS).some((k) => envName(k) === variable),
          `${name}: ${variable} is a setting`,
        );
    }
    const minimal = envOf(
      gatewayContainer(rendered.find((r) => r.name === 'minimal-values.yaml')!.manifests),
    );
    assert.equal(minimal.SWITCHBOARD_ALLOW_ANONYMOUS, 'true');
    assert.equal(JSON.parse(minimal.SWITCHBOARD_NAMESPACES!)[1].name, 'chat');
    const ingress = envOf(
      gatewayContainer(rendered.find((r) => r.name === 'ingress-values.yaml')!.manifests),
    );
    assert.equal(ingress.SWITCHBOARD_ALLOWED_ORIGINS, 'https://app.example.com,https://*.example.com');
  });

  test('values.schema.json refuses bad values with a message naming them', () => {
    const refused: [string, RegExp][] = [
      ['gateway.replicaCount=0', /replicaCount/],
      ['gateway.config.bogus=1', /bogus/],
      ['gateway.config.api_key=x', /api_key/],
      ['gateway.config.max_connections=many', /max_connections/],
      ['nats.url=http://nats:4222', /nats\/url/],
      ['nats.replicas=0', /nats\/replicas/],
      ['haproxy.service.type=Bogus', /service\/type/],
      ['haproxy.tls.hsts=max-age=1"; evil', /tls\/hsts/],
      ['haproxy.tls.certManager.issuerRef.kind=Bogus', /issuerRef\/kind/],
      ['nats.tls.secretName=1', /nats\/tls\/secretName/],
      ['nats.tls.certManager.issuerRef.kind=Bogus', /issuerRef\/kind/],
      ['gatway.replicaCount=2', /gatway/],
      ['gateway.config.pusher_activity_timeout=0', /pusher_activity_timeout/],
      ['gateway.config.pusher_apps=[]', /pusher_apps/],
      ['pusher.apps[0].id=shop,pusher.apps[0].key=shop-key', /\/pusher\/apps\/0': missing property 'secret'/],
      [
        'pusher.apps[0].id=shop,pusher.apps[0].key=shop-key,pusher.apps[0].secret=',
        /pusher\/apps\/0\/secret/,
      ],
      ['pusher.apps[0].id=shop/1,pusher.apps[0].key=shop-key,pusher.apps[0].secret=s', /pusher\/apps\/0\/id/],
      ['pusher.apps[0].id=shop,pusher.apps[0].key=shop key,pusher.apps[0].secret=s', /pusher\/apps\/0\/key/],
      [
        'pusher.apps[0].id=shop,pusher.apps[0].key=shop-key,pusher.apps[0].secret=s,pusher.apps[0].max_conections=1',
        /pusher\/apps\/0': additional properties 'max_conections'/,
      ],
    ];
    for (const [set, message] of refused) assert.throws(() => render({ set: [set] }), message, set);
  });

  test('monitoring objects only when the Prometheus Operator CRDs exist', () => {
    const without = render();
    assert.equal(without.filter((m) => m.apiVersion.startsWith('monitoring.coreos.com/')).length, 0);
    const [defaults] = rendered;
    const monitor = find(defaults!.manifests, 'ServiceMonitor');
    assert.equal(monitor.spec.endpoints[0].port, 'internal');
    // Exactly one Service (the API's) is scraped, else every gateway would be scraped twice.
    const scraped = defaults!.manifests.filter(
      (m) =>
        m.kind === 'Service' &&
        Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => m.metadata.labels[k] === v),
    );
    assert.deepEqual(
      scraped.map((m) => m.metadata.name),
      ['sb-switchboard-api'],
    );
    // Job names come from a label; they are the ones the dashboards and alert rules use.
    const jobs = [
      scraped[0].metadata.labels[monitor.spec.jobLabel],
      ...defaults!.manifests
        .filter((m) => m.kind === 'PodMonitor')
        .map((pm) => {
          const owner = defaults!.manifests.find(
            (m) =>
              ['Deployment', 'StatefulSet'].includes(m.kind) &&
              Object.entries(pm.spec.selector.matchLabels).every(
                ([k, v]) => m.spec.template.metadata.labels[k] === v,
              ),
          );
          return owner.spec.template.metadata.labels[pm.spec.jobLabel];
        }),
    ].sort();
    assert.deepEqual(jobs, ['haproxy', 'nats', 'switchboard']);
    for (const job of jobsInDashboards()) assert.ok(jobs.includes(job), `dashboards/ select job="${job}"`);
    assert.deepEqual(
      defaults!.manifests
        .filter((m) => m.kind === 'PodMonitor')
        .map((m) => m.spec.podMetricsEndpoints[0].port)
        .sort(),
      ['metrics', 'stats'],
    );
  });

  test('dashboards and alert rules in the chart are copies of dashboards/ (make chart-files)', () => {
    const sources = join(REPO, 'dashboards/grafana');
    const copies = join(CHART, 'files/dashboards');
    const list = (dir: string) =>
      existsSync(dir)
        ? readdirSync(dir)
            .filter((f) => f.endsWith('.json'))
            .sort()
        : [];
    assert.deepEqual(list(copies), list(sources), 'run: make chart-files');
    for (const file of list(sources))
      assert.equal(
        readFileSync(join(copies, file), 'utf8'),
        readFileSync(join(sources, file), 'utf8'),
        `${file}: run make chart-files`,
      );
    const alerts = join(REPO, 'dashboards/prometheus/alerts.yml');
    const alertsCopy = join(CHART, 'files/alerts.yml');
    assert.equal(existsSync(alertsCopy), existsSync(alerts), 'run: make chart-files');
    if (existsSync(alerts)) assert.equal(readFileSync(alertsCopy, 'utf8'), readFileSync(alerts, 'utf8'));

    const [defaults] = rendered;
    const dashboards = defaults!.manifests.find(
      (m) => m.kind === 'ConfigMap' && m.metadata.name.endsWith('-dashboards'),
    );
    assert.deepEqual(Object.keys(dashboards?.data ?? {}).sort(), list(sources));
    if (dashboards) assert.equal(dashboards.metadata.labels.grafana_dashboard, '1');
    const rule = defaults!.manifests.find((m) => m.kind === 'PrometheusRule');
    assert.deepEqual(
      rule?.spec.groups,
      existsSync(alerts) ? parse(readFileSync(alerts, 'utf8')).groups : undefined,
    );
  });
});
