#!/usr/bin/env node
/**
 * Manages the Pusher apps of the app store (SWITCHBOARD_PUSHER_APPS_BUCKET)
 * through a gateway's server API:
 *   switchboard-apps list                    the apps, without their secrets
 *   switchboard-apps put '<app json>'        adds or changes an app (or `put @file.json`)
 *   switchboard-apps delete <id>             removes one (its clients are closed with 4001)
 * SWITCHBOARD_API_URL (default http://localhost:9000) and SWITCHBOARD_API_KEY
 * name the gateway and the key.
 */

import { readFileSync } from 'node:fs';

const USAGE = "usage: switchboard-apps list | put '<app json>' | put @<file> | delete <id>";

function exit(message: string): never {
  process.stderr.write(`switchboard-apps: ${message}\n`);
  process.exit(2);
}

async function call(method: string, params: unknown): Promise<unknown> {
  const base = process.env.SWITCHBOARD_API_URL ?? 'http://localhost:9000';
  const key = process.env.SWITCHBOARD_API_KEY;
  if (!key) exit('set SWITCHBOARD_API_KEY');
  const res = await fetch(`${base}/api/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': key },
    body: JSON.stringify(params),
  }).catch((err: Error) => exit(`${base}: ${err.message}`));
  const body = (await res.json().catch(() => undefined)) as
    { result?: unknown; error?: { code: number; message: string } } | undefined;
  if (!res.ok || !body) exit(`${base}: HTTP ${res.status}`);
  if (body.error) exit(`${body.error.message} (${body.error.code})`);
  return body.result;
}

function appOf(text: string | undefined): unknown {
  if (!text) exit(USAGE);
  const json = text.startsWith('@') ? readFileSync(text.slice(1), 'utf8') : text;
  try {
    return JSON.parse(json);
  } catch {
    exit('the app must be a JSON object');
  }
}

const [command, arg] = process.argv.slice(2);
if (command === 'list') {
  const { apps } = (await call('pusher_apps', {})) as { apps: unknown[] };
  process.stdout.write(`${JSON.stringify(apps, null, 2)}\n`);
} else if (command === 'put') {
  await call('pusher_app_put', { app: appOf(arg) });
} else if (command === 'delete') {
  if (!arg) exit(USAGE);
  await call('pusher_app_delete', { id: arg });
} else {
  exit(USAGE);
}
