/**
 * Browser test helpers: Debian's Chromium driven by playwright-core, the
 * example services as processes, and a per-gateway view of open connections.
 */

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { run } from './cluster.js';
import { freePort, type Gateway, startGateway, waitUntil } from './harness.js';
import { connectionsOn } from './traffic.js';

/** Screenshots go to the repository's test-output/browser (this file runs from services/gateway/dist/test). */
export const SCREENSHOTS = fileURLToPath(new URL('../../../../test-output/browser/', import.meta.url));

/** Headless Debian Chromium (`make deps` installs it), quiet: no background traffic, no QUIC; `args` added. */
export function launchChromium(args: string[] = []): Promise<Browser> {
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
      ...args,
    ],
  });
}

/**
 * A gateway on a free port that allows its own origin (with `env`), Chromium,
 * and a page of that origin (`path` on it: any 404 will do) to run scripts in.
 */
export async function gatewayPage(
  env: Record<string, string>,
  path: string,
): Promise<{ gateway: Gateway; browser: Browser; page: Page; base: string }> {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const [gateway, browser] = await Promise.all([
    startGateway({ SWITCHBOARD_CLIENT_PORT: String(port), SWITCHBOARD_ALLOWED_ORIGINS: base, ...env }),
    launchChromium(),
  ]);
  const page = await browser.newPage();
  await page.goto(`${base}${path}`);
  return { gateway, browser, page, base };
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

/** Open connections of one transport on each gateway, in the order of `gateways`. */
export function connectionsPerGateway(gateways: Gateway[], transport = 'websocket'): Promise<number[]> {
  return Promise.all(gateways.map((gateway) => connectionsOn(gateway, transport)));
}
