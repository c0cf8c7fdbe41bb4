/**
 * Keys that rotate without a restart: the server API keys and the HS256 token
 * secrets are lists, any of which is accepted (the first signs), given in an
 * environment variable or in a file that is re-read when it changes
 * (file-watch.ts: a Kubernetes Secret's symlink swap too). A
 * file that becomes unreadable or holds no key leaves the keys in use as they
 * are, so a botched edit never leaves the API or the tokens with no key.
 * Keys never reach a log line or a metric label: only their count does.
 */

import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { watchChanges } from './file-watch.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

export const KEY_KINDS = ['api_key', 'token_hmac'] as const;
export type KeyKind = (typeof KEY_KINDS)[number];

/** The setting that names each kind's file, for log lines. */
const FILE_SETTING: Record<KeyKind, string> = {
  api_key: 'SWITCHBOARD_API_KEY_FILE',
  token_hmac: 'SWITCHBOARD_TOKEN_HMAC_SECRET_KEY_FILE',
};

/** Milliseconds between stats of a key file, for the changes fs.watch does not report. */
const KEY_FILE_POLL_MS = 5000;

/** A key file's keys: one a line, surrounding whitespace trimmed; blank lines and lines starting with `#` skipped. */
export function parseKeyFile(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
}

export const readKeyFile = (path: string): string[] => parseKeyFile(readFileSync(path, 'utf8'));

const digest = (key: string) => createHash('sha256').update(key).digest();

/** The keys in use of one kind, in order: the newest first while one rotates. */
export class KeyRing {
  private keys: readonly string[] = [];
  private digests: readonly Buffer[] = [];
  private buffers: readonly Buffer[] = [];
  /** Told of each use of a key other than the first (`trackKeys` counts them): an older key still in use. */
  onOlderKey: () => void = () => undefined;

  constructor(keys: readonly string[] = []) {
    this.replace(keys);
  }

  get size(): number {
    return this.keys.length;
  }

  /** The key new tokens are signed with: the first. */
  get signing(): string {
    const key = this.keys[0];
    if (key === undefined) throw new Error('no key to sign with');
    return key;
  }

  /** The keys as HMAC secrets, the signing one first. */
  get secrets(): readonly Buffer[] {
    return this.buffers;
  }

  replace(keys: readonly string[]): void {
    this.keys = [...keys];
    this.digests = keys.map(digest);
    this.buffers = keys.map((key) => Buffer.from(key, 'utf8'));
  }

  equals(keys: readonly string[]): boolean {
    return keys.length === this.keys.length && keys.every((key, i) => key === this.keys[i]);
  }

  /** The position of `given` among the keys, or -1; compares with every key, in constant time. */
  indexOf(given: string): number {
    if (given === '') return -1;
    const theirs = digest(given);
    let found = -1;
    this.digests.forEach((ours, i) => {
      if (timingSafeEqual(ours, theirs) && found < 0) found = i;
    });
    this.used(found);
    return found;
  }

  /** Records that the key at `index` was used (for HMAC secrets, which are tried outside the ring). */
  used(index: number): void {
    if (index > 0) this.onOlderKey();
  }
}

/**
 * Keeps `ring` to the keys of `file` when one is given (read now, then on each
 * change), and counts the keys in use and the uses of older keys. Returns what
 * stops the watching.
 */
export function trackKeys(
  kind: KeyKind,
  ring: KeyRing,
  file: string,
  log: Logger,
  metrics: Metrics,
  pollMs = KEY_FILE_POLL_MS,
): () => void {
  metrics.keys.set({ kind }, ring.size);
  ring.onOlderKey = () => metrics.olderKeyUses.inc({ kind });
  if (!file) return () => undefined;
  const setting = FILE_SETTING[kind];
  const take = (keys: string[] | undefined, err?: unknown) => {
    if (keys && keys.length > 0) {
      if (ring.equals(keys)) return;
      ring.replace(keys);
      metrics.keys.set({ kind }, keys.length);
      metrics.keyReloads.inc({ kind, outcome: 'changed' });
      log.info({ file, keys: keys.length }, `${setting}: ${keys.length} key(s) in use`);
      return;
    }
    metrics.keyReloads.inc({ kind, outcome: 'error' });
    const kept = ring.size > 0 ? `keeping the ${ring.size} key(s) in use` : 'no key until it holds one';
    log.error({ file, err }, `${setting}: ${err ? 'unreadable' : 'holds no key'}, ${kept}`);
  };

  try {
    take(readKeyFile(file));
  } catch (err) {
    take(undefined, err);
  }

  let reading = false;
  let again = false;
  const reload = async () => {
    if (reading) {
      again = true;
      return;
    }
    reading = true;
    do {
      again = false;
      try {
        take(parseKeyFile(await readFile(file, 'utf8')));
      } catch (err) {
        take(undefined, err);
      }
    } while (again);
    reading = false;
  };
  return watchChanges(
    file,
    () => void reload(),
    (err) =>
      log.warn({ file, err }, `${setting}: its directory cannot be watched, checking it every ${pollMs} ms`),
    pollMs,
  );
}
