/**
 * Every way of starting the gateway runs it with the same Node flag as the
 * tests and benchmarks do (GATEWAY_NODE_FLAG), so that what is measured is
 * what users run.
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GATEWAY_NODE_FLAG } from './harness.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const LAUNCHERS = [
  'docker/Dockerfile',
  'docker/compose.yaml',
  'charts/switchboard/templates/gateway-deployment.yaml',
  'scripts/cluster.sh',
  'Makefile',
];

describe('gateway launchers', () => {
  for (const file of LAUNCHERS) {
    test(`${file} starts the gateway with ${GATEWAY_NODE_FLAG}`, () => {
      // Lines that run main.js with node (not the cluster script's check that it was built).
      const starts = readFileSync(`${ROOT}${file}`, 'utf8')
        .split('\n')
        .filter((line) => line.includes('services/gateway/dist/src/main.js') && /node|NODE/.test(line))
        .filter((line) => !line.includes('[ -f '));
      assert.ok(starts.length > 0, `no gateway start found in ${file}`);
      for (const line of starts) assert.ok(line.includes(GATEWAY_NODE_FLAG), `${file}: ${line.trim()}`);
    });
  }
});
