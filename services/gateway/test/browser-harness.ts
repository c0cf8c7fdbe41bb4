/**
 * Browser test helpers: Debian's Chromium driven by playwright-core, the
 * example services as processes, an HAProxy that blocks WebSocket upgrades the
 * way some corporate proxies do, and a per-gateway view of open connections.
 */

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { exited, run } from './cluster.js';
import { freePort, type Gateway, waitUntil } from './harness.js';
import { connectionsOn } from './traffic.js';

/** Screenshots go to the repository's test-output/browser (this file runs from services/gateway/dist/test). */
export const SCREENSHOTS = fileURLToPath(new URL('../../../../test-output/browser/', import.meta.url));

/** Headless Debian Chromium (`make deps` installs it), quiet: no background traffic, no QUIC. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: 20_000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** The chat, store and jobs services as processes of the cluster, ready once each has said so. */
export async function startServices(natsUrl: string): Promise<{ stop(): Promise<void> }> {
  const children = ['chat', 'store', 'jobs'].map((name) =>
    run(process.execPath, [fileURLToPath(new URL(`../../../${name}/dist/src/main.js`, import.meta.url))], {
      SWITCHBOARD_NATS_URL: natsUrl,
    }),
  );
  const stop = async () => {
    await Promise.all(children.map((c) => c.stop()));
  };
  try {
    await waitUntil(
      () => children.every((c) => c.output().includes('service ready')),
      15_000,
      () => `services ready:\n${children.map((c) => c.output()).join('\n')}`,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { stop };
}

/**
 * An HAProxy in front of `upstreamPort` that answers every WebSocket upgrade
 * with 403, as a proxy that blocks WebSocket does; plain HTTP (the page, SSE,
 * HTTP-streaming, emulation POSTs) passes.
 */
export async function startWebSocketBlocker(
  upstreamPort: number,
): Promise<{ port: number; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'switchboard-blocker-'));
  const cfg = join(dir, 'haproxy.cfg');
  writeFileSync(
    cfg,
    [
      'defaults',
      '  mode http',
      '  timeout connect 2s',
      '  timeout client 60s',
      '  timeout server 60s',
      'frontend blocker',
      `  bind 127.0.0.1:${port}`,
      '  http-request deny deny_status 403 if { hdr(upgrade) -i websocket }',
      '  default_backend upstream',
      'backend upstream',
      `  server cluster 127.0.0.1:${upstreamPort}`,
      '',
    ].join('\n'),
  );
  const proxy = run('haproxy', ['-db', '-f', cfg]);
  const stop = async () => {
    await proxy.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitUntil(
      async () => {
        if (exited(proxy)) throw new Error(`haproxy exited:\n${proxy.output()}`);
        const res = await fetch(`http://127.0.0.1:${port}/`).catch(() => undefined);
        await res?.body?.cancel();
        return res?.status === 200;
      },
      10_000,
      () => `the WebSocket-blocking HAProxy:\n${proxy.output()}`,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, stop };
}

/** Open connections of one transport on each gateway, in the order of `gateways`. */
export function connectionsPerGateway(gateways: Gateway[], transport = 'websocket'): Promise<number[]> {
  return Promise.all(gateways.map((gateway) => connectionsOn(gateway, transport)));
}
