#!/usr/bin/env node
/**
 * Load generator CLI: runs one scenario against a gateway (or HAProxy) and
 * prints a progress line each second and a report at the end. Exits 1 when
 * connections failed or publications were lost or duplicated.
 *
 *   node loadtest/dist/src/cli.js --scenario fanout --connections 20000 --rate 10 \
 *     --duration 30s --secret "$SWITCHBOARD_TOKEN_HMAC_SECRET_KEY"
 */

import { parseArgs } from 'node:util';
import { loopbackAddresses } from './fleet.js';
import { formatReport, type Progress, runScenario, type Scenario, SCENARIOS } from './scenarios.js';

/** Bounds: a typo must not open a million sockets or run for a day. */
const MAX_CONNECTIONS = 200_000;
const MAX_DURATION_MS = 3_600_000;

const USAGE = `usage: node loadtest/dist/src/cli.js --scenario <${SCENARIOS.join('|')}> [options]
  --url URL              WebSocket endpoint (default ws://127.0.0.1:8000/connection/websocket)
  --connections N        connections to open (default 1000, at most ${MAX_CONNECTIONS})
  --connect-rate N       connection attempts per second (default 1000)
  --rate N               publications (fanout, channels) or RPCs (rpc) per second (default 100)
  --duration D           whole run, e.g. 30s, 2m, 500ms (default 30s, at most 1h)
  --channel NAME         channel (fanout) or channel prefix (channels) (default bench)
  --payload-bytes N      padding in each publication (default 64)
  --secret KEY           HS256 key: one token per connection, user load-<i>
  --token JWT            one token for every connection (instead of --secret)
  --api-url URL          publish over the server API, e.g. http://127.0.0.1:9000 (default: as a client)
  --api-key KEY          X-API-Key for --api-url
  --rpc-method NAME      RPC method (default echo)
  --source-addresses N   spread connections over 127.0.0.1..127.0.0.N (default 4 for loopback URLs)
  --timeout D            per-request timeout and final wait for deliveries (default 10s)`;

export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(text.trim());
  if (!m) throw new Error(`bad duration ${JSON.stringify(text)} (e.g. 30s, 2m, 500ms)`);
  const value = Number(m[1]);
  return m[2] === 'ms' ? value : m[2] === 'm' ? value * 60_000 : value * 1000;
}

function positive(name: string, text: string, max = Infinity): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || value > max) {
    throw new Error(`--${name} must be a number in (0, ${max}], got ${JSON.stringify(text)}`);
  }
  return value;
}

function progressLine(p: Progress, total: number): string {
  const l = p.latency;
  return (
    `[${(p.elapsedMs / 1000).toFixed(0).padStart(4)}s] open ${p.open}/${total} failed ${p.failed}` +
    ` sent ${p.sent} delivered ${p.delivered}` +
    (l.count > 0 ? ` p50 ${l.percentile(50).toFixed(1)} ms p99 ${l.percentile(99).toFixed(1)} ms` : '')
  );
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      scenario: { type: 'string' },
      url: { type: 'string', default: 'ws://127.0.0.1:8000/connection/websocket' },
      connections: { type: 'string', default: '1000' },
      'connect-rate': { type: 'string', default: '1000' },
      rate: { type: 'string', default: '100' },
      duration: { type: 'string', default: '30s' },
      channel: { type: 'string', default: 'bench' },
      'payload-bytes': { type: 'string', default: '64' },
      // The gateway's settings may list several keys while one rotates: the first signs.
      secret: { type: 'string', default: process.env.SWITCHBOARD_TOKEN_HMAC_SECRET_KEY?.split(',')[0] },
      token: { type: 'string' },
      'api-url': { type: 'string' },
      'api-key': { type: 'string', default: process.env.SWITCHBOARD_API_KEY?.split(',')[0] },
      'rpc-method': { type: 'string', default: 'echo' },
      'source-addresses': { type: 'string' },
      timeout: { type: 'string', default: '10s' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help || values.scenario === undefined) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  if (!(SCENARIOS as readonly string[]).includes(values.scenario)) {
    throw new Error(`unknown scenario ${JSON.stringify(values.scenario)} (${SCENARIOS.join(', ')})`);
  }
  const loopback = /^wss?:\/\/(127\.|localhost[:/])/.test(values.url);
  const sources = values['source-addresses'] ?? (loopback ? '4' : '0');
  const connections = positive('connections', values.connections, MAX_CONNECTIONS);
  const report = await runScenario(
    {
      scenario: values.scenario as Scenario,
      url: values.url,
      connections,
      connectRate: positive('connect-rate', values['connect-rate']),
      rate: positive('rate', values.rate),
      durationMs: Math.min(MAX_DURATION_MS, parseDuration(values.duration)),
      channel: values.channel,
      payloadBytes: Number(values['payload-bytes']),
      secret: values.secret,
      token: values.token,
      localAddresses: sources === '0' ? [] : loopbackAddresses(positive('source-addresses', sources, 254)),
      timeoutMs: parseDuration(values.timeout),
      apiUrl: values['api-url'],
      apiKey: values['api-key'],
      rpcMethod: values['rpc-method'],
    },
    (p) => console.error(progressLine(p, connections)),
  );
  console.log(formatReport(report));
  return report.failed > 0 || report.lost > 0 || report.duplicated > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`error: ${(err as Error).message}`);
    process.exit(2);
  },
);
