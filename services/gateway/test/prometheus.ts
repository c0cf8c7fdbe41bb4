/**
 * Debian's real Prometheus for tests: a generated config scraping the given
 * targets every second and loading the repository's alert rules, a
 * temporary TSDB, free port. Needs the `prometheus` program on PATH (`make
 * deps` installs it, and `promtool` with it).
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, waitUntil } from './harness.js';

/** The repository's dashboards/ (this file runs from services/gateway/dist/test). */
export const DASHBOARDS_DIR = fileURLToPath(new URL('../../../../dashboards/', import.meta.url));
export const ALERTS_FILE = join(DASHBOARDS_DIR, 'prometheus', 'alerts.yml');
/** promtool unit tests of the alert rules. */
export const ALERT_TESTS_FILE = join(DASHBOARDS_DIR, 'tests', 'alerts.test.yml');

/** Scrape jobs by name (`switchboard`, `haproxy`, `nats`), each a list of host:port targets. */
export type Jobs = Record<string, string[]>;

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface RangeSeries {
  metric: Record<string, string>;
  values: [number, string][];
}

/** Prometheus' HTTP API. */
export interface PrometheusApi {
  url: string;
  /** An instant query; throws with Prometheus' own message when the expression is invalid. */
  query(expr: string): Promise<Sample[]>;
  queryRange(
    expr: string,
    startSeconds: number,
    endSeconds: number,
    stepSeconds: number,
  ): Promise<RangeSeries[]>;
  /** Targets by health (`up`, `down`, `unknown`), with the last scrape error of each. */
  targets(): Promise<{ job: string; health: string; lastError: string }[]>;
  /** Every loaded alert rule with its health after evaluation. */
  rules(): Promise<{ name: string; query: string; health: string; lastError?: string }[]>;
}

export interface Prometheus extends PrometheusApi {
  output(): string;
  stop(): Promise<void>;
}

function config(jobs: Jobs): string {
  // JSON is YAML: no YAML writer needed.
  return JSON.stringify({
    global: { scrape_interval: '1s', scrape_timeout: '900ms', evaluation_interval: '1s' },
    rule_files: [ALERTS_FILE],
    scrape_configs: Object.entries(jobs).map(([job, targets]) => ({
      job_name: job,
      static_configs: [{ targets }],
    })),
  });
}

async function api<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  const body = (await res.json()) as { status: string; data: T; error?: string };
  if (body.status !== 'success') throw new Error(body.error ?? `Prometheus answered ${res.status}`);
  return body.data;
}

export async function startPrometheus(jobs: Jobs, timeoutMs = 20_000): Promise<Prometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-prometheus-'));
  const file = join(dir, 'prometheus.yml');
  writeFileSync(file, config(jobs));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    'prometheus',
    [
      `--config.file=${file}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { env: { PATH: process.env.PATH ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.on('data', (d) => (out += d));
  child.on('error', (err: NodeJS.ErrnoException) => {
    out += err.code === 'ENOENT' ? 'prometheus not found on PATH; install it with: make deps\n' : err.message;
  });
  const closed = once(child, 'close');
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined)
      child.kill('SIGTERM');
    await closed;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitUntil(
      async () => {
        if (child.exitCode !== null || child.pid === undefined) throw new Error(`prometheus exited:\n${out}`);
        const res = await fetch(`${url}/-/ready`).catch(() => undefined);
        await res?.body?.cancel();
        return res?.status === 200;
      },
      timeoutMs,
      () => `prometheus ready on ${port}:\n${out}`,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { ...prometheusApi(url), output: () => out, stop };
}

export function prometheusApi(url: string): PrometheusApi {
  return {
    url,
    query: async (expr) =>
      (await api<{ result: Sample[] }>(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`)).result,
    queryRange: async (expr, start, end, step) =>
      (
        await api<{ result: RangeSeries[] }>(
          `${url}/api/v1/query_range?query=${encodeURIComponent(expr)}&start=${start}&end=${end}&step=${step}`,
        )
      ).result,
    targets: async () =>
      (
        await api<{ activeTargets: { labels: { job: string }; health: string; lastError: string }[] }>(
          `${url}/api/v1/targets`,
        )
      ).activeTargets.map((t) => ({ job: t.labels.job, health: t.health, lastError: t.lastError })),
    rules: async () =>
      (
        await api<{
          groups: { rules: { name: string; query: string; health: string; lastError?: string }[] }[];
        }>(`${url}/api/v1/rules`)
      ).groups.flatMap((g) => g.rules),
  };
}
