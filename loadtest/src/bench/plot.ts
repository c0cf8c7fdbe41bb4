/**
 * How the figures grow with connections, channels and load: small SVG line
 * charts (own code, no charting library) in one HTML page, screenshotted to
 * PNG by headless Chromium (the gateway tests' launcher). `make bench` and
 * `make bench-scale` (scale.ts) draw their charts with it.
 */

import { existsSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { launchChromium } from '@switchboard/gateway/dist/test/browser-harness.js';
import type { LatencyResult, ServerResult } from './measure.js';
import { LABELS } from './servers.js';

/** Debian's Chromium, as the gateway's browser tests launch it. */
const CHROMIUM = '/usr/bin/chromium';
const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#ff7f0e', '#9467bd'];
const WIDTH = 460;
const HEIGHT = 340;
const PAD = { left: 70, right: 15, top: 40, bottom: 50 };

export interface Series {
  label: string;
  points: [number, number][];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
const short = (v: number) =>
  v >= 1e6 ? `${+(v / 1e6).toFixed(1)}M` : v >= 1e3 ? `${+(v / 1e3).toFixed(1)}k` : `${+v.toFixed(1)}`;

/**
 * A line chart (SVG); the y axis is logarithmic when the values span more than 20×. The x axis is
 * labelled at every x of the points, or at `xTicks` (a time series has too many points for that).
 */
export function chart(
  title: string,
  xLabel: string,
  yLabel: string,
  series: Series[],
  xTicks?: number[],
): string {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter((y) => y > 0);
  if (xs.length === 0 || ys.length === 0) return '';
  const [xMin, xMax] = [Math.min(...xs), Math.max(...xs)];
  const log = Math.max(...ys) / Math.min(...ys) > 20;
  const yMax = Math.max(...ys) * 1.1;
  const yMin = log ? Math.min(...ys) / 1.5 : 0;
  const w = WIDTH - PAD.left - PAD.right;
  const h = HEIGHT - PAD.top - PAD.bottom;
  const x = (v: number) => PAD.left + (xMax === xMin ? w / 2 : ((v - xMin) / (xMax - xMin)) * w);
  const yNorm = (v: number) =>
    log ? Math.log(v / yMin) / Math.log(yMax / yMin) : (v - yMin) / (yMax - yMin);
  const y = (v: number) => PAD.top + h - yNorm(Math.max(v, yMin)) * h;
  const ticks = log
    ? Array.from({ length: 20 }, (_, i) => 10 ** (Math.floor(Math.log10(yMin)) + i))
        .flatMap((decade) => [decade, 2 * decade, 5 * decade])
        .filter((t) => t >= yMin && t <= yMax)
    : Array.from({ length: 5 }, (_, i) => (yMax * i) / 4);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${WIDTH / 2}" y="18" text-anchor="middle" font-size="13" font-weight="bold">${esc(title)}</text>`,
    `<text x="${PAD.left + w / 2}" y="${HEIGHT - 10}" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text transform="translate(14 ${PAD.top + h / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}${log ? ' (log)' : ''}</text>`,
    `<line x1="${PAD.left}" y1="${PAD.top + h}" x2="${PAD.left + w}" y2="${PAD.top + h}" stroke="#333"/>`,
    `<line x1="${PAD.left}" y1="${PAD.top}" x2="${PAD.left}" y2="${PAD.top + h}" stroke="#333"/>`,
  ];
  for (const t of ticks) {
    parts.push(
      `<line x1="${PAD.left}" y1="${y(t)}" x2="${PAD.left + w}" y2="${y(t)}" stroke="#eee"/>`,
      `<text x="${PAD.left - 5}" y="${y(t) + 4}" text-anchor="end">${short(t)}</text>`,
    );
  }
  for (const v of xTicks ?? [...new Set(xs)].sort((a, b) => a - b)) {
    parts.push(`<text x="${x(v)}" y="${PAD.top + h + 15}" text-anchor="middle">${short(v)}</text>`);
  }
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const path = s.points.map(([px, py]) => `${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${path}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const [px, py] of s.points)
      parts.push(`<circle cx="${x(px)}" cy="${y(py)}" r="3" fill="${color}"/>`);
    parts.push(
      `<rect x="${PAD.left + 10}" y="${PAD.top + 4 + i * 14}" width="10" height="3" fill="${color}"/>`,
      `<text x="${PAD.left + 24}" y="${PAD.top + 9 + i * 14}">${esc(s.label)}</text>`,
    );
  });
  parts.push('</svg>');
  return parts.join('\n');
}

export function charts(results: ServerResult[], latencies: LatencyResult[]): string[] {
  const series = (f: (r: ServerResult) => [number, number][]) =>
    results.map((r) => ({ label: LABELS[r.kind], points: f(r) }));
  return [
    chart(
      'Memory per idle connection',
      'connections',
      'KB of server RSS per connection',
      series((r) => r.memory.map((m) => [m.connections, m.bytesPerConnection / 1024])),
    ),
    chart(
      'Fan-out: 1 channel × N subscribers',
      'subscribers',
      'deliveries per server CPU-second',
      series((r) => r.fanout.map((d) => [d.n, d.perCpuSecond])),
    ),
    chart(
      'Fan-out: N channels × 1 subscriber',
      'channels',
      'deliveries per server CPU-second',
      series((r) => r.channels.map((d) => [d.n, d.perCpuSecond])),
    ),
    chart(
      'Switchboard publish→deliver latency',
      'deliveries per second',
      'milliseconds',
      (['embedded', 'cluster'] as const).flatMap((setup) => {
        const runs = latencies.filter((l) => l.setup === setup);
        const label = setup === 'cluster' ? 'HAProxy + NATS + 3 gateways' : 'embedded';
        return runs.length === 0
          ? []
          : [
              {
                label: `${label} p50`,
                points: runs.map((l): [number, number] => [l.offeredDeliveryRate, l.p50]),
              },
              {
                label: `${label} p99`,
                points: runs.map((l): [number, number] => [l.offeredDeliveryRate, l.p99]),
              },
            ];
      }),
    ),
  ];
}

/** Writes `<base>.html` with the charts of `make bench` and screenshots it to `<base>.png`; undefined without Chromium. */
export function renderPlot(
  results: ServerResult[],
  latencies: LatencyResult[],
  base: string,
): Promise<string | undefined> {
  return renderCharts(charts(results, latencies), base);
}

/** Writes `<base>.html` with `svgs` (from chart(), two a row) and screenshots it to `<base>.png`; undefined without Chromium. */
export async function renderCharts(svgs: string[], base: string): Promise<string | undefined> {
  const shown = svgs.filter(Boolean);
  const html = `<!doctype html><html><body style="margin:0;display:flex;flex-wrap:wrap;width:${WIDTH * 2}px;background:white">${shown.join('\n')}</body></html>`;
  writeFileSync(resolve(`${base}.html`), html);
  if (!existsSync(CHROMIUM)) return undefined;
  const png = resolve(`${base}.png`);
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({
      viewport: { width: WIDTH * 2, height: HEIGHT * Math.ceil(shown.length / 2) },
    });
    await page.setContent(html);
    await page.screenshot({ path: png });
  } finally {
    await browser.close();
  }
  return png;
}
