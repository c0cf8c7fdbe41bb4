/** README stays true: every setting and every metric of the gateway is documented there. */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { envName, KEYS } from '../src/config.js';
import { Metrics } from '../src/metrics.js';

const readme = readFileSync(new URL('../../../../README.md', import.meta.url), 'utf8');

test('README documents every configuration key', () => {
  for (const key of Object.keys(KEYS))
    assert.ok(readme.includes(`\`${envName(key)}\``), `${envName(key)} missing`);
});

test('README documents every switchboard metric', async () => {
  const metrics = new Metrics();
  const names = (await metrics.registry.getMetricsAsJSON())
    .map((m) => m.name)
    .filter((n) => !n.startsWith('switchboard_process_') && !n.startsWith('switchboard_nodejs_'));
  assert.ok(names.length > 5);
  for (const name of names) assert.ok(readme.includes(`\`${name}`), `${name} missing`);
});
