/**
 * The PromQL of dashboards/: every panel query and template variable of the
 * Grafana dashboards, and every alert rule, as expressions Prometheus can run
 * (Grafana's template variables substituted).
 */

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DASHBOARDS_DIR } from './prometheus.js';

export interface Target {
  expr: string;
  legendFormat?: string;
}

export interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
  panels?: Panel[];
  gridPos: { x: number; y: number; w: number; h: number };
  fieldConfig?: { defaults?: { unit?: string } };
}

export interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: string | { query: string } }[] };
}

/** One expression to evaluate, and where it comes from (for error messages). */
export interface Expression {
  where: string;
  expr: string;
}

export const GRAFANA_DIR = join(DASHBOARDS_DIR, 'grafana');

export function loadDashboards(): { file: string; dashboard: Dashboard }[] {
  return readdirSync(GRAFANA_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => ({ file, dashboard: JSON.parse(readFileSync(join(GRAFANA_DIR, file), 'utf8')) }));
}

/** Panels in layout order, rows' nested panels included. */
export function panelsOf(dashboard: Dashboard): Panel[] {
  return dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

/**
 * Grafana's variables as a test cluster needs them: every namespace,
 * gateway and Pusher app (`All` is `.*`), and a rate window of ten 1 s scrapes.
 */
export function substitute(expr: string, rateInterval = '10s'): string {
  return expr
    .replaceAll('$__rate_interval', rateInterval)
    .replaceAll('$__interval', rateInterval)
    .replace(/\$\{?(namespace|instance|app)\}?/g, '.*');
}

/** `label_values(metric, label)` (Grafana's variable query) as PromQL that lists the label's values. */
export function variableQuery(query: string): string {
  const m = /^label_values\((.+),\s*(\w+)\)$/.exec(query.trim());
  if (!m) throw new Error(`unsupported variable query ${query}`);
  return `count by (${m[2]}) (${m[1]})`;
}

export function dashboardExpressions(): Expression[] {
  const out: Expression[] = [];
  for (const { file, dashboard } of loadDashboards()) {
    for (const variable of dashboard.templating.list) {
      if (variable.type !== 'query') continue;
      const query = typeof variable.query === 'string' ? variable.query : variable.query?.query;
      out.push({ where: `${file} variable $${variable.name}`, expr: variableQuery(query ?? '') });
    }
    for (const panel of panelsOf(dashboard)) {
      for (const target of panel.targets ?? []) {
        out.push({ where: `${file} panel "${panel.title}"`, expr: substitute(target.expr) });
      }
    }
  }
  return out;
}

/**
 * An alert's signal: its expression up to the first comparison outside
 * parentheses, braces and strings (`a / b > 0.05 and c > 20` gives `a / b`).
 * A healthy cluster rarely crosses a threshold; the signal must still exist.
 */
export function signalOf(expr: string): string {
  let depth = 0;
  let quote: string | undefined;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i]!;
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = undefined;
    } else if (c === '"' || c === "'" || c === '`') quote = c;
    else if ('({['.includes(c)) depth++;
    else if (')}]'.includes(c)) depth--;
    else if (depth === 0 && /^(==|!=|>=|<=|>|<)/.test(expr.slice(i))) return expr.slice(0, i).trim();
  }
  return expr.trim();
}
