/**
 * Keys that rotate, without sockets: key files parsed, keys compared, and a
 * key file followed through plain writes, a Kubernetes Secret's symlink swap,
 * a symlink into another directory (seen by the periodic stat alone), and
 * files that turn empty or vanish (the keys in use stay, an error is logged,
 * no key reaches the log).
 */

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { KeyRing, parseKeyFile, trackKeys } from '../src/keys.js';
import { createLogger } from '../src/log.js';
import { Metrics } from '../src/metrics.js';
import { waitUntil } from './harness.js';
import { SecretMount, writeAtomically } from './key-files.js';

const has = (ring: KeyRing, key: string) => ring.indexOf(key) >= 0;

const scratch = mkdtempSync(join(tmpdir(), 'switchboard-keys-'));
after(() => rmSync(scratch, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => {
  const dir = join(scratch, `d${++dirs}`);
  mkdirSync(dir);
  return dir;
};

/** A ring following `file` with a log and metrics to look at; stopped after the test. */
function follow(t: { after(fn: () => void): void }, file: string, pollMs?: number) {
  const lines: any[] = [];
  const log = createLogger('info', 'test', { write: (line: string) => void lines.push(JSON.parse(line)) });
  const metrics = new Metrics();
  const ring = new KeyRing();
  t.after(trackKeys('api_key', ring, file, log, metrics, pollMs));
  const count = async (name: string, labels: string) =>
    Number(
      new RegExp(`^${name}\\{${labels}\\} (\\d+)`, 'm').exec(await metrics.registry.metrics())?.[1] ?? NaN,
    );
  return { ring, lines, count, errors: () => lines.filter((l) => l.level >= 50) };
}

describe('key files and key lists', () => {
  test('one key a line; blank lines, # comments and surrounding whitespace skipped', () => {
    assert.deepEqual(parseKeyFile('new-key\n# rotated in on Monday\n\n  old-key  \r\n'), [
      'new-key',
      'old-key',
    ]);
    assert.deepEqual(parseKeyFile('a secret, with a comma\n'), ['a secret, with a comma']);
    assert.deepEqual(parseKeyFile(''), []);
    assert.deepEqual(parseKeyFile('# only a comment\n\n'), []);
  });

  test('a ring accepts any of its keys, signs with the first, tells of older ones used, and refuses the empty key', () => {
    const ring = new KeyRing(['new-key', 'old-key']);
    let olderUses = 0;
    ring.onOlderKey = () => olderUses++;
    assert.equal(ring.indexOf('new-key'), 0);
    assert.equal(olderUses, 0);
    assert.equal(ring.indexOf('old-key'), 1);
    assert.equal(olderUses, 1);
    assert.equal(ring.indexOf('other-key'), -1);
    assert.ok(!has(ring, 'new-ke'));
    assert.ok(!has(ring, ''));
    assert.equal(ring.signing, 'new-key');
    assert.deepEqual(ring.secrets, [Buffer.from('new-key'), Buffer.from('old-key')]);
    assert.ok(ring.equals(['new-key', 'old-key']));
    assert.ok(!ring.equals(['old-key', 'new-key']));
    ring.replace(['other-key']);
    assert.ok(has(ring, 'other-key') && !has(ring, 'new-key'));
    const empty = new KeyRing();
    assert.ok(!has(empty, ''));
    assert.throws(() => empty.signing, /no key/);
  });
});

describe('following a key file', () => {
  test('read at start, then each change: a key added, the old one removed, without a restart', async (t) => {
    const file = join(freshDir(), 'api-key');
    writeFileSync(file, 'old-key\n');
    const { ring, count, errors } = follow(t, file);
    assert.ok(has(ring, 'old-key'));
    assert.equal(await count('switchboard_keys', 'kind="api_key"'), 1);
    writeAtomically(file, 'new-key\nold-key\n');
    await waitUntil(
      () => has(ring, 'new-key'),
      3000,
      () => 'the added key',
    );
    assert.ok(has(ring, 'old-key'));
    assert.equal(await count('switchboard_keys', 'kind="api_key"'), 2);
    writeFileSync(file, 'new-key\n');
    await waitUntil(
      () => !has(ring, 'old-key'),
      3000,
      () => 'the old key removed',
    );
    assert.ok(has(ring, 'new-key'));
    assert.equal(await count('switchboard_key_reloads_total', 'kind="api_key",outcome="changed"'), 3);
    assert.deepEqual(errors(), []);
  });

  test('a Kubernetes Secret mount: the ..data symlink swapped to a new directory', async (t) => {
    const mount = new SecretMount(freshDir(), { 'api-key': 'old-key' });
    const { ring } = follow(t, mount.path('api-key'));
    assert.ok(has(ring, 'old-key'));
    mount.update({ 'api-key': 'new-key\nold-key' });
    await waitUntil(
      () => has(ring, 'new-key') && has(ring, 'old-key'),
      3000,
      () => 'the swapped keys',
    );
  });

  test('a symlink into another directory: the periodic stat sees the change that fs.watch does not', async (t) => {
    const elsewhere = join(freshDir(), 'keys.txt');
    writeFileSync(elsewhere, 'old-key\n');
    const file = join(freshDir(), 'api-key');
    symlinkSync(elsewhere, file);
    const { ring } = follow(t, file, 50);
    assert.ok(has(ring, 'old-key'));
    writeFileSync(elsewhere, 'new-key\n');
    await waitUntil(
      () => has(ring, 'new-key') && !has(ring, 'old-key'),
      3000,
      () => 'the new key',
    );
  });

  test('a file emptied or removed keeps the keys in use and logs an error, without the keys', async (t) => {
    const file = join(freshDir(), 'api-key');
    writeFileSync(file, 'kept-key\n');
    const { ring, count, lines, errors } = follow(t, file);
    writeFileSync(file, '# nothing here\n');
    await waitUntil(
      () => errors().length === 1,
      3000,
      () => 'an error for the empty file',
    );
    assert.match(errors()[0].msg, /SWITCHBOARD_API_KEY_FILE: holds no key, keeping the 1 key\(s\) in use/);
    unlinkSync(file);
    await waitUntil(
      () => errors().length === 2,
      3000,
      () => 'an error for the missing file',
    );
    assert.match(errors()[1].msg, /SWITCHBOARD_API_KEY_FILE: unreadable, keeping the 1 key\(s\) in use/);
    assert.ok(has(ring, 'kept-key'));
    assert.equal(await count('switchboard_keys', 'kind="api_key"'), 1);
    assert.equal(await count('switchboard_key_reloads_total', 'kind="api_key",outcome="error"'), 2);
    writeFileSync(file, 'back-key\n');
    await waitUntil(
      () => has(ring, 'back-key'),
      3000,
      () => 'the file back',
    );
    for (const key of ['kept-key', 'back-key']) assert.ok(!JSON.stringify(lines).includes(key), key);
  });

  test('a file missing at start: no key until it appears', async (t) => {
    const file = join(freshDir(), 'api-key');
    const { ring, errors } = follow(t, file);
    assert.equal(ring.size, 0);
    assert.match(errors()[0].msg, /unreadable, no key until it holds one/);
    writeAtomically(file, 'late-key\n');
    await waitUntil(
      () => has(ring, 'late-key'),
      3000,
      () => 'the late key',
    );
  });
});
