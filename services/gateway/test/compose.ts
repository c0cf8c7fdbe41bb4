/**
 * docker/compose.yaml without a Docker engine: reads the file as Compose does
 * (YAML merge keys, `${VAR:-default}` interpolation, short and long syntaxes)
 * and turns each service into a host process with the command and
 * environment the file gives it. Container ports become free host ports,
 * service host names become 127.0.0.1, mounts become host paths (named
 * volumes: temporary directories), images become host programs. Only what the
 * container runtime would otherwise provide is translated; everything else is
 * taken from the file as written.
 */

import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { envName, KEYS } from '../src/config.js';

/** The repository root (this file runs from services/gateway/dist/test). */
export const REPO = fileURLToPath(new URL('../../../../', import.meta.url));
export const COMPOSE_FILE = join(REPO, 'docker/compose.yaml');
/** The Compose specification's JSON schema, as shipped by the dclint package (devDependency). */
export const COMPOSE_SCHEMA = join(REPO, 'node_modules/dclint/schemas/compose.schema.json');

/** The image docker/Dockerfile builds; its WORKDIR /app holds the repository's layout. */
const OWN_IMAGE = /^switchboard(:|$)/;

/** Prometheus job names the dashboards and alert rules of dashboards/ select on (`job="..."`). */
export function jobsInDashboards(): Set<string> {
  const jobs = new Set<string>();
  for (const dir of ['dashboards/grafana', 'dashboards/prometheus']) {
    const path = join(REPO, dir);
    for (const file of existsSync(path) ? readdirSync(path) : []) {
      for (const m of readFileSync(join(path, file), 'utf8').matchAll(/\bjob=~?\\?"([\w-]+)\\?"/g))
        jobs.add(m[1]!);
    }
  }
  return jobs;
}

/** Images with no program on this machine: not started, their configuration is checked statically instead. */
export const NOT_ON_HOST: { image: RegExp; reason: string }[] = [
  { image: /^grafana\/grafana(:|$)/, reason: 'Grafana is not installed here' },
  { image: /^grafana\/k6(:|$)/, reason: 'k6 is not installed here' },
  {
    image: /^natsio\/prometheus-nats-exporter(:|$)/,
    reason: 'prometheus-nats-exporter has no Debian package',
  },
];

/** `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `${VAR?error}` as Compose reads them. */
export function interpolate(text: string, env: Record<string, string | undefined>): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (match, name?: string, colon?: string, op?: string, arg?: string, bare?: string) => {
      if (match === '$$') return '$';
      if (bare !== undefined) return env[bare] ?? '';
      const value = env[name!];
      const missing = value === undefined || (colon === ':' && value === '');
      if (op === '-') return missing ? arg! : value!;
      if (op === '?' && missing) throw new Error(`compose: ${name} is required: ${arg}`);
      return value ?? '';
    },
  );
}

function interpolateTree(node: unknown, env: Record<string, string | undefined>): unknown {
  if (typeof node === 'string') return interpolate(node, env);
  if (Array.isArray(node)) return node.map((v) => interpolateTree(v, env));
  if (node !== null && typeof node === 'object')
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, interpolateTree(v, env)]));
  return node;
}

/** The compose model after merge keys and interpolation: what the schema validates. */
export function loadCompose(env: Record<string, string | undefined> = {}, file = COMPOSE_FILE): any {
  return interpolateTree(parse(readFileSync(file, 'utf8'), { merge: true }), env);
}

export interface Mount {
  /** Host path: a bind mount's source, or a temporary directory for a named volume. */
  source: string;
  target: string;
  bind: boolean;
}

export interface ServicePlan {
  name: string;
  image: string;
  /** Why the service is not started here, if it is not. */
  skip?: string;
  argv: string[];
  env: Record<string, string>;
  cwd: string;
  mounts: Mount[];
  /** Container port -> host port. */
  ports: Map<number, number>;
  dependsOn: Record<string, string>;
  /** The healthcheck command, ready to run on the host; undefined when there is none. */
  healthcheck?: string[];
}

const asList = (v: unknown): string[] =>
  v === undefined ? [] : Array.isArray(v) ? v.map(String) : String(v).split(/\s+/).filter(Boolean);

function environment(v: unknown): Record<string, string> {
  if (Array.isArray(v))
    return Object.fromEntries(
      v.map((entry: string) => {
        const i = entry.indexOf('=');
        return i < 0 ? [entry, ''] : [entry.slice(0, i), entry.slice(i + 1)];
      }),
    );
  return Object.fromEntries(
    Object.entries((v ?? {}) as Record<string, unknown>).map(([k, x]) => [k, String(x)]),
  );
}

/** Container ports a service listens on: `ports` (container side), `expose`, and `name:port` references elsewhere. */
function containerPorts(name: string, service: any, allText: string): Set<number> {
  const ports = new Set<number>();
  for (const p of service.ports ?? []) {
    const target = typeof p === 'object' ? p.target : String(p).split('/')[0]!.split(':').at(-1);
    ports.add(Number(target));
  }
  for (const p of service.expose ?? []) ports.add(Number(String(p).split('/')[0]));
  for (const m of allText.matchAll(new RegExp(`\\b${name}:(\\d+)\\b`, 'g'))) ports.add(Number(m[1]));
  return ports;
}

function mounts(service: any, volumesDir: (volume: string) => string): Mount[] {
  const composeDir = dirname(COMPOSE_FILE);
  return (service.volumes ?? []).map((v: any): Mount => {
    const [source, target] =
      typeof v === 'object' ? [String(v.source), String(v.target)] : String(v).split(':').slice(0, 2);
    const bind = /^[./~]/.test(source!);
    return { source: bind ? resolve(composeDir, source!) : volumesDir(source!), target: target!, bind };
  });
}

/**
 * Turns every service into a host process plan. `name:port` references count
 * as ports of `name` wherever they are: in the file and in bind-mounted files
 * (Prometheus targets). `scratch` receives named volumes and rewritten files.
 */
export async function planServices(model: any, scratch: string): Promise<ServicePlan[]> {
  const names = Object.keys(model.services);
  const volumeDirs = new Map<string, string>();
  const volumesDir = (volume: string) => {
    if (!volumeDirs.has(volume)) volumeDirs.set(volume, mkdtempSync(join(scratch, `volume-${volume}-`)));
    return volumeDirs.get(volume)!;
  };
  const allMounts = new Map(names.map((n) => [n, mounts(model.services[n], volumesDir)]));
  // Image tags (`nats:2.10-alpine`) are not `name:port` references.
  let allText = JSON.stringify(
    Object.values(model.services).map((service: any) => ({ ...service, image: undefined })),
  );
  for (const list of allMounts.values())
    for (const m of list)
      if (m.bind && statSync(m.source, { throwIfNoEntry: false })?.isFile())
        allText += readFileSync(m.source, 'utf8');

  const portMaps = new Map<string, Map<number, number>>();
  const taken = new Set<number>();
  for (const name of names) {
    const service = model.services[name];
    const ports = containerPorts(name, service, allText);
    if (OWN_IMAGE.test(service.image ?? '') && asList(service.command).at(-1)?.includes('gateway')) {
      for (const key of ['client_port', 'internal_port', 'grpc_port'] as const) ports.add(KEYS[key].default);
    }
    const map = new Map<number, number>();
    for (const port of ports) map.set(port, await unusedPort(taken));
    portMaps.set(name, map);
  }

  // Host port published by `ports:` -> the host port it stands for here.
  const published = new Map<number, number>();
  for (const name of names) {
    for (const p of model.services[name].ports ?? []) {
      const [hostPort, target] =
        typeof p === 'object'
          ? [Number(p.published), Number(p.target)]
          : String(p).split('/')[0]!.split(':').slice(-2).map(Number);
      const mapped = portMaps.get(name)!.get(target!);
      if (hostPort && mapped) published.set(hostPort, mapped);
    }
  }

  return names.map((name) => {
    const service = model.services[name];
    const image = String(service.image ?? '');
    const ports = portMaps.get(name)!;
    const own = allMounts.get(name)!;
    const rewrite = rewriter(name, own, portMaps);
    // Bind-mounted files are copied with their `name:port` references and
    // container paths rewritten, before the command line is (it names them).
    for (const m of own) {
      if (!m.bind || !statSync(m.source, { throwIfNoEntry: false })?.isFile()) continue;
      const copy = join(mkdtempSync(join(scratch, `${name}-`)), basename(m.source));
      writeFileSync(copy, rewrite(readFileSync(m.source, 'utf8')));
      m.source = copy;
    }
    const env = Object.fromEntries(
      Object.entries(environment(service.environment)).map(([k, v]) => [k, rewrite(v)]),
    );
    const argv = [...asList(service.entrypoint), ...asList(service.command)].map(rewrite);
    argv.forEach((arg, i) => {
      // `--port 4222`: a bare container port after a port flag.
      if (i > 0 && /port/i.test(argv[i - 1]!) && ports.has(Number(arg)))
        argv[i] = String(ports.get(Number(arg)));
    });
    const plan: ServicePlan = {
      name,
      image,
      argv,
      env,
      cwd: scratch,
      mounts: own,
      ports,
      dependsOn: Array.isArray(service.depends_on)
        ? Object.fromEntries(service.depends_on.map((d: string) => [d, 'service_started']))
        : Object.fromEntries(
            Object.entries(service.depends_on ?? {}).map(([d, v]: [string, any]) => [
              d,
              v.condition ?? 'service_started',
            ]),
          ),
    };
    const skip = NOT_ON_HOST.find((s) => s.image.test(image));
    if (skip) plan.skip = skip.reason;
    else if (service.profiles?.length) plan.skip = `only in profile(s) ${service.profiles.join(', ')}`;
    const test = service.healthcheck?.disable ? [] : asList(service.healthcheck?.test);
    if (test[0] === 'CMD') plan.healthcheck = test.slice(1).map(rewrite);
    else if (test[0] === 'CMD-SHELL') plan.healthcheck = ['sh', '-c', rewrite(test.slice(1).join(' '))];

    if (OWN_IMAGE.test(image)) adaptOwnImage(plan, environment(service.environment), published);
    if (/^haproxy(:|$)/.test(image)) adaptHaproxy(plan, portMaps);
    plan.argv[0] = programFor(plan.argv[0] ?? '');
    return plan;
  });
}

/**
 * The translation of one service's strings: `other:PORT` -> 127.0.0.1 and the
 * other's host port; `localhost:PORT`, `127.0.0.1:PORT`, `0.0.0.0:PORT`,
 * `*:PORT` and `:PORT` of its own ports -> 127.0.0.1 and its host port;
 * container paths of its mounts -> host paths.
 */
function rewriter(self: string, own: Mount[], portMaps: Map<string, Map<number, number>>) {
  const names = [...portMaps.keys()].sort((a, b) => b.length - a.length);
  const hostPort = (service: string, port: string) => portMaps.get(service)?.get(Number(port));
  const targets = [...own].sort((a, b) => b.target.length - a.target.length);
  return (text: string): string => {
    let out = text.replace(
      new RegExp(`\\b(${names.map((n) => n.replace(/[-.]/g, '\\$&')).join('|')}):(\\d+)\\b`, 'g'),
      (match, service: string, port: string) => {
        const mapped = hostPort(service, port);
        return mapped ? `127.0.0.1:${mapped}` : match;
      },
    );
    // No other host name may end right before: `gw1:9000` is not `:9000`.
    out = out.replace(
      /(?<![\w.-])(localhost|127\.0\.0\.1|0\.0\.0\.0|\*)?:(\d+)\b/g,
      (match, _host, port: string) => {
        const mapped = hostPort(self, port);
        return mapped ? `127.0.0.1:${mapped}` : match;
      },
    );
    for (const m of targets) {
      out = out.replace(
        new RegExp(`(?<![\\w.-])${m.target.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?=$|[/'"\\s,])`, 'g'),
        () => m.source,
      );
    }
    return out;
  };
}

/**
 * Our image: node from this machine, the repository as /app, listeners on the
 * mapped ports. The Origin allow-list names what a browser sees, the ports
 * published on the host (HAProxy's 8000), so it follows those.
 */
function adaptOwnImage(plan: ServicePlan, raw: Record<string, string>, published: Map<number, number>): void {
  const origins = raw[envName('allowed_origins')];
  if (origins !== undefined) {
    plan.env[envName('allowed_origins')] = origins.replace(
      /\b(localhost|127\.0\.0\.1):(\d+)\b/g,
      (match, _host, port: string) =>
        published.has(Number(port)) ? `127.0.0.1:${published.get(Number(port))}` : match,
    );
  }
  plan.cwd = REPO;
  plan.env.SWITCHBOARD_HOST = '127.0.0.1';
  for (const key of ['client_port', 'internal_port', 'grpc_port'] as const) {
    const inside = Number(plan.env[envName(key)] ?? KEYS[key].default);
    const mapped = plan.ports.get(inside);
    if (mapped) plan.env[envName(key)] = String(mapped);
  }
}

/**
 * docker/haproxy.cfg checks gateway N on SWITCHBOARD_GWn_CHECK_PORT (default
 * 9000, the gateway's internal port): on the host that is the gateway's mapped
 * internal port. The gateway is found by its mapped client address.
 */
function adaptHaproxy(plan: ServicePlan, portMaps: Map<string, Map<number, number>>): void {
  for (const [key, value] of Object.entries(plan.env)) {
    const n = /^SWITCHBOARD_GW(\d)_ADDR$/.exec(key)?.[1];
    if (!n) continue;
    const port = Number(value.split(':')[1]);
    const gateway = [...portMaps].find(([, map]) => [...map.values()].includes(port));
    const inside = Number(plan.env[`SWITCHBOARD_GW${n}_CHECK_PORT`] ?? KEYS.internal_port.default);
    const mapped = gateway?.[1].get(inside);
    if (mapped) plan.env[`SWITCHBOARD_GW${n}_CHECK_PORT`] = String(mapped);
  }
}

/** An image's program on this machine: node for ours, else the command's base name on PATH. */
function programFor(command: string): string {
  return command === 'node' ? process.execPath : basename(command);
}

/**
 * A port nothing listens on, below the ephemeral range: ports are handed out
 * before the processes start, and the outgoing connections made in between
 * (gateways to NATS, ...) take their local ports from the ephemeral range.
 */
async function unusedPort(taken: Set<number>): Promise<number> {
  const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
  for (;;) {
    const port = 20_000 + Math.floor(Math.random() * (Math.max(low, 21_000) - 20_000));
    if (taken.has(port)) continue;
    const server = createServer();
    server.listen(port, '0.0.0.0');
    // once() rejects when 'error' comes first (EADDRINUSE): try another port.
    const bound = await once(server, 'listening').then(
      () => true,
      () => false,
    );
    if (bound) await new Promise((r) => server.close(r));
    if (!bound) continue;
    taken.add(port);
    return port;
  }
}

/** Services in an order that starts each after what it depends on. */
export function startOrder(plans: ServicePlan[]): ServicePlan[] {
  const byName = new Map(plans.map((p) => [p.name, p]));
  const order: ServicePlan[] = [];
  const visit = (plan: ServicePlan, path: string[]) => {
    if (order.includes(plan)) return;
    if (path.includes(plan.name))
      throw new Error(`compose: dependency cycle ${[...path, plan.name].join(' -> ')}`);
    for (const dep of Object.keys(plan.dependsOn)) {
      const target = byName.get(dep);
      if (!target) throw new Error(`compose: ${plan.name} depends on unknown service ${dep}`);
      visit(target, [...path, plan.name]);
    }
    order.push(plan);
  };
  for (const plan of plans) visit(plan, []);
  return order;
}

/** A scratch directory for rewritten files and named volumes, removed when the test process exits. */
export function scratchDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-compose-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
