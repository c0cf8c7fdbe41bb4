/**
 * Renders a Grafana dashboard of dashboards/ to a PNG without Grafana (Debian
 * has none): each panel's queries go through Prometheus' query_range, the
 * panels are drawn as SVG (line charts, stat numbers) on Grafana's 24-column
 * grid, and headless Chromium screenshots the page.
 *
 *   node services/gateway/dist/test/render-dashboard.js dashboards/grafana/overview.json \
 *     http://127.0.0.1:9090 overview.png [minutes]
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium } from './browser-harness.js';
import { type Dashboard, type Panel, panelsOf, substitute } from './dashboards.js';
import { type PrometheusApi, prometheusApi, type RangeSeries } from './prometheus.js';

const WIDTH = 1600;
const ROW_HEIGHT = 36;
const GAP = 8;
const COLORS = ['#73bf69', '#f2cc0c', '#5794f2', '#ff780a', '#f2495c', '#b877d9', '#8ab8ff', '#ffb357'];

export interface Range {
  start: number;
  end: number;
  step: number;
}

interface Line {
  label: string;
  points: [number, number][];
}

/** A panel's data: one line per returned series, labelled by the target's legend format. */
async function linesOf(
  panel: Panel,
  prometheus: Pick<PrometheusApi, 'queryRange'>,
  range: Range,
  rateInterval: string,
): Promise<Line[]> {
  const lines: Line[] = [];
  for (const target of panel.targets ?? []) {
    const series: RangeSeries[] = await prometheus.queryRange(
      substitute(target.expr, rateInterval),
      range.start,
      range.end,
      range.step,
    );
    for (const s of series) {
      lines.push({
        label:
          (target.legendFormat ?? '').replace(/\{\{\s*(\w+)\s*\}\}/g, (_, k: string) => s.metric[k] ?? '') ||
          '',
        points: s.values.map(([t, v]) => [t, Number(v)]),
      });
    }
  }
  return lines;
}

/** A value in the panel's Grafana unit, short. */
export function formatValue(value: number, unit = 'short'): string {
  if (!Number.isFinite(value)) return '–';
  const scaled = (v: number, steps: string[], base: number) => {
    let i = 0;
    while (Math.abs(v) >= base && i < steps.length - 1) {
      v /= base;
      i++;
    }
    return `${Number(v.toPrecision(3))}${steps[i]}`;
  };
  switch (unit) {
    case 'percentunit':
      return `${Number((value * 100).toPrecision(3))} %`;
    case 'bytes':
      return scaled(value, [' B', ' KiB', ' MiB', ' GiB'], 1024);
    case 'Bps':
      return scaled(value, [' B/s', ' KiB/s', ' MiB/s', ' GiB/s'], 1024);
    case 's':
      if (value === 0) return '0 s';
      if (Math.abs(value) < 0.001) return `${Number((value * 1e6).toPrecision(3))} µs`;
      if (Math.abs(value) < 1) return `${Number((value * 1000).toPrecision(3))} ms`;
      return `${Number(value.toPrecision(3))} s`;
    case 'ops':
      return `${scaled(value, ['', 'k', 'M'], 1000)}/s`;
    default:
      return scaled(value, ['', 'k', 'M', 'G'], 1000);
  }
}

const escape = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

function chart(lines: Line[], unit: string | undefined, w: number, h: number, range: Range): string {
  const left = 64;
  const right = 28;
  const top = 8;
  const legendRows = Math.min(3, Math.ceil(lines.length / 3));
  const bottom = 22 + legendRows * 16;
  const values = lines.flatMap((l) => l.points.map(([, v]) => v)).filter(Number.isFinite);
  if (values.length === 0)
    return `<text x="${w / 2}" y="${h / 2}" class="muted" text-anchor="middle">No data</text>`;
  const lo = Math.min(0, ...values);
  const hi = Math.max(...values) > lo ? Math.max(...values) * 1.1 : lo + 1;
  const x = (t: number) => left + ((t - range.start) / (range.end - range.start)) * (w - left - right);
  const y = (v: number) => top + (1 - (v - lo) / (hi - lo)) * (h - top - bottom);
  const parts: string[] = [];
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    parts.push(
      `<line x1="${left}" x2="${w - right}" y1="${y(v)}" y2="${y(v)}" class="grid"/>`,
      `<text x="${left - 6}" y="${y(v) + 4}" class="axis" text-anchor="end">${escape(formatValue(v, unit))}</text>`,
    );
  }
  for (let i = 0; i <= 4; i++) {
    const t = range.start + ((range.end - range.start) * i) / 4;
    const label = new Date(t * 1000).toISOString().slice(11, 19);
    parts.push(`<text x="${x(t)}" y="${h - bottom + 14}" class="axis" text-anchor="middle">${label}</text>`);
  }
  lines.forEach((line, i) => {
    const color = COLORS[i % COLORS.length];
    // A gap (NaN) ends a segment: Grafana does not bridge missing data either.
    const segments: string[][] = [[]];
    for (const [t, v] of line.points) {
      if (Number.isFinite(v)) segments.at(-1)!.push(`${x(t).toFixed(1)},${y(v).toFixed(1)}`);
      else if (segments.at(-1)!.length > 0) segments.push([]);
    }
    for (const s of segments.filter((s) => s.length > 0)) {
      parts.push(`<polyline points="${s.join(' ')}" fill="none" stroke="${color}" stroke-width="1.5"/>`);
    }
    if (i < legendRows * 3) {
      const lx = 8 + (i % 3) * ((w - 16) / 3);
      const ly = h - bottom + 32 + Math.floor(i / 3) * 16;
      parts.push(
        `<rect x="${lx}" y="${ly - 8}" width="10" height="3" fill="${color}"/>`,
        `<text x="${lx + 14}" y="${ly - 3}" class="legend">${escape(line.label.slice(0, 40))}</text>`,
      );
    }
  });
  return parts.join('');
}

function stat(lines: Line[], unit: string | undefined, w: number, h: number): string {
  const last = lines
    .map((l) => [...l.points].reverse().find(([, v]) => Number.isFinite(v))?.[1])
    .find((v) => v !== undefined);
  return `<text x="${w / 2}" y="${h / 2 + 14}" class="stat" text-anchor="middle">${escape(
    last === undefined ? 'No data' : formatValue(last, unit),
  )}</text>`;
}

/** The dashboard as one HTML page of SVG panels. Returns the page and how many panels had no data. */
export async function dashboardHtml(
  dashboard: Dashboard,
  prometheus: Pick<PrometheusApi, 'queryRange'>,
  range: Range,
  rateInterval = '10s',
): Promise<{ html: string; empty: string[]; height: number }> {
  const column = (WIDTH - GAP) / 24;
  const boxes: string[] = [];
  const empty: string[] = [];
  let height = 0;
  for (const panel of panelsOf(dashboard)) {
    const { x, y, w, h } = panel.gridPos;
    const box = { left: x * column + GAP, top: y * ROW_HEIGHT + GAP + 48, width: w * column - GAP };
    const boxHeight = h * ROW_HEIGHT - GAP;
    height = Math.max(height, box.top + boxHeight + GAP);
    if (panel.type === 'row') {
      boxes.push(
        `<div class="row" style="left:${box.left}px;top:${box.top}px;width:${box.width}px">${escape(panel.title)}</div>`,
      );
      continue;
    }
    const lines = await linesOf(panel, prometheus, range, rateInterval);
    if (!lines.some((l) => l.points.some(([, v]) => Number.isFinite(v)))) empty.push(panel.title);
    const unit = panel.fieldConfig?.defaults?.unit;
    const svgHeight = boxHeight - 28;
    const body =
      panel.type === 'stat'
        ? stat(lines, unit, box.width, svgHeight)
        : chart(lines, unit, box.width, svgHeight, range);
    boxes.push(
      `<div class="panel" style="left:${box.left}px;top:${box.top}px;width:${box.width}px;height:${boxHeight}px">` +
        `<div class="title">${escape(panel.title)}</div>` +
        `<svg width="${box.width}" height="${svgHeight}">${body}</svg></div>`,
    );
  }
  const span = `${new Date(range.start * 1000).toISOString().slice(0, 19)}Z – ${new Date(range.end * 1000)
    .toISOString()
    .slice(11, 19)}Z`;
  const html = `<!doctype html><html><head><meta charset="utf-8"><style>
body{margin:0;background:#111217;color:#ccccdc;font:13px system-ui,sans-serif;width:${WIDTH}px;height:${height}px;position:relative}
h1{font-size:18px;font-weight:500;margin:0;padding:14px ${GAP}px}
h1 small{color:#8e8e9e;font-size:12px;margin-left:12px}
.panel{position:absolute;background:#181b1f;border:1px solid #2c3235;border-radius:3px;box-sizing:border-box}
.title{font-weight:500;padding:6px 8px;height:16px;white-space:nowrap;overflow:hidden}
.row{position:absolute;font-weight:500;font-size:15px;border-bottom:1px solid #2c3235;padding:6px 0}
svg text{fill:#ccccdc}.axis{font-size:10px;fill:#8e8e9e}.legend{font-size:11px}.muted{fill:#8e8e9e}
.stat{font-size:34px;font-weight:500;fill:#73bf69}.grid{stroke:#2c3235;stroke-width:1}
</style></head><body><h1>${escape(dashboard.title)}<small>${span}</small></h1>${boxes.join('')}</body></html>`;
  return { html, empty, height };
}

/** Renders the dashboard to `pngPath`; returns the titles of panels without data. */
export async function renderDashboard(
  dashboard: Dashboard,
  prometheus: Pick<PrometheusApi, 'queryRange'>,
  range: Range,
  pngPath: string,
  rateInterval?: string,
): Promise<string[]> {
  const { html, empty, height } = await dashboardHtml(dashboard, prometheus, range, rateInterval);
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: WIDTH, height: Math.ceil(height) } });
    await page.setContent(html);
    writeFileSync(pngPath, await page.screenshot({ fullPage: true }));
  } finally {
    await browser.close();
  }
  return empty;
}

async function cli(args: string[]): Promise<void> {
  const [file, url, out, minutes = '15'] = args;
  if (!file || !url || !out) {
    process.stderr.write('usage: render-dashboard.js DASHBOARD.json PROMETHEUS_URL OUT.png [MINUTES]\n');
    process.exit(64);
  }
  const dashboard = JSON.parse(readFileSync(file, 'utf8')) as Dashboard;
  const end = Math.floor(Date.now() / 1000);
  const start = end - Number(minutes) * 60;
  const step = Math.max(1, Math.round((end - start) / 300));
  // Grafana's $__rate_interval for a 15 s scrape interval, or wider for coarse steps.
  const rateInterval = `${Math.max(60, 4 * step)}s`;
  const empty = await renderDashboard(dashboard, prometheusApi(url), { start, end, step }, out, rateInterval);
  process.stdout.write(`${out}${empty.length ? ` (no data: ${empty.join(', ')})` : ''}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  cli(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`render-dashboard: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
