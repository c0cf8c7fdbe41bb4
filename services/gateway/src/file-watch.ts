/**
 * Noticing that a file changed, as mounted secrets and certificates change:
 * a Kubernetes Secret mount swaps a symlink in the file's directory, which
 * fs.watch on the directory sees; a stat every few seconds catches what it
 * misses (a symlink into another directory, filesystems without inotify).
 */

import { type FSWatcher, type Stats, statSync, watch } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Changes come in bursts (truncate then write; a Secret's symlink swap): `changed` runs once they settle. */
const SETTLE_MS = 100;

/** What a change of the file looks like to stat (through symlinks): a swapped Secret is another inode. */
const signatureOf = (s: Stats) => `${s.ino}:${s.size}:${s.mtimeMs}`;
const failureOf = (err: unknown) => `error:${(err as NodeJS.ErrnoException).code ?? String(err)}`;

/**
 * Calls `changed` after each change of `file` (also when it appears or goes);
 * `unwatchable` hears why its directory cannot be watched (the stat every
 * `pollMs` still runs). Returns what stops the watching.
 */
export function watchChanges(
  file: string,
  changed: () => void,
  unwatchable: (err: unknown) => void,
  pollMs: number,
): () => void {
  let signature: string;
  try {
    signature = signatureOf(statSync(file));
  } catch (err) {
    signature = failureOf(err);
  }
  // Other files of the directory change too: only a new signature of this one counts.
  const check = () =>
    void stat(file)
      .then(signatureOf, failureOf)
      .then((s) => {
        if (s === signature) return;
        signature = s;
        changed();
      });
  let settle: NodeJS.Timeout | undefined;
  let watcher: FSWatcher | undefined;
  try {
    // Anything in the directory may be the file's change (a rename onto it, a symlink swap).
    watcher = watch(dirname(file), () => {
      clearTimeout(settle);
      settle = setTimeout(check, SETTLE_MS);
    });
    watcher.on('error', (err) => {
      unwatchable(err);
      watcher?.close();
    });
    watcher.unref();
  } catch (err) {
    unwatchable(err);
  }
  const poll = setInterval(check, pollMs);
  poll.unref();
  return () => {
    clearInterval(poll);
    clearTimeout(settle);
    watcher?.close();
  };
}
