/**
 * The Helm chart as Kubernetes would get it: helm (pinned, installed by
 * scripts/install-helm.sh) renders charts/switchboard, and every manifest is
 * checked against the Kubernetes API schemas (the kubernetes-models packages
 * ship them compiled, one validator per kind).
 */

import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { REPO } from './compose.js';

export const CHART = join(REPO, 'charts/switchboard');

/** Value sets rendered by the tests: the defaults and every charts/switchboard/ci/*.yaml. */
export const VALUE_SETS: { name: string; files: string[] }[] = [
  { name: 'defaults', files: [] },
  ...readdirSync(join(CHART, 'ci'))
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => ({ name: f, files: [join(CHART, 'ci', f)] })),
];

/** The Prometheus Operator API versions a cluster with its CRDs announces. */
export const MONITORING_APIS = ['ServiceMonitor', 'PodMonitor', 'PrometheusRule'].map(
  (kind) => `monitoring.coreos.com/v1/${kind}`,
);

let helmPath: string | undefined;

/** The pinned helm binary (installed on first use). */
export function helmBinary(): string {
  helmPath ??= execFileSync('bash', [join(REPO, 'scripts/install-helm.sh')], { encoding: 'utf8' }).trim();
  return helmPath;
}

/** Runs helm; throws with helm's own message when it fails. */
export function helm(args: string[]): string {
  try {
    return execFileSync(helmBinary(), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string };
    throw new Error(`helm ${args.join(' ')}:\n${e.stderr ?? ''}${e.stdout ?? ''}`, { cause: err });
  }
}

export interface RenderOptions {
  files?: string[];
  set?: string[];
  apiVersions?: string[];
}

/** `helm template` of the chart (release `sb`, namespace `rt`), as parsed manifests. */
export function render(options: RenderOptions = {}): any[] {
  const args = ['template', 'sb', CHART, '--namespace', 'rt'];
  for (const f of options.files ?? []) args.push('-f', f);
  for (const s of options.set ?? []) args.push('--set', s);
  for (const a of options.apiVersions ?? []) args.push('--api-versions', a);
  return parseAllDocuments(helm(args))
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`rendered YAML: ${doc.errors[0]!.message}`);
      return doc.toJS();
    })
    .filter((doc) => doc !== null);
}

/** Where kubernetes-models keeps the models of an apiVersion. */
function modelModule(apiVersion: string): string {
  if (apiVersion.startsWith('monitoring.coreos.com/'))
    return `@kubernetes-models/prometheus-operator/${apiVersion}`;
  return `kubernetes-models/${apiVersion}`;
}

/** Validates a manifest against its kind's schema; throws naming the object and the first errors. */
export async function validateManifest(manifest: any): Promise<void> {
  const where = `${manifest.apiVersion} ${manifest.kind} ${manifest.metadata?.name}`;
  const models = (await import(modelModule(manifest.apiVersion)).catch(() => ({}))) as Record<string, any>;
  const Model = models[manifest.kind];
  if (typeof Model !== 'function') throw new Error(`${where}: no schema for this kind`);
  try {
    new Model(manifest).validate();
  } catch (err) {
    throw new Error(`${where}: ${(err as Error).message}`, { cause: err });
  }
}

/** The first manifest of a kind whose name ends with `suffix`. */
export function find(manifests: any[], kind: string, suffix = ''): any {
  const found = manifests.find((m) => m.kind === kind && String(m.metadata.name).endsWith(suffix));
  if (!found) throw new Error(`no ${kind} named *${suffix}`);
  return found;
}

/** A container's environment as a map (values, or `secret:<name>/<key>` for secret references). */
export function envOf(container: any): Record<string, string> {
  return Object.fromEntries(
    (container.env ?? []).map((e: any) => [
      e.name,
      e.value ??
        (e.valueFrom?.secretKeyRef
          ? `secret:${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}`
          : `field:${e.valueFrom?.fieldRef?.fieldPath}`),
    ]),
  );
}
