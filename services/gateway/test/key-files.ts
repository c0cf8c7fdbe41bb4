/** Key files as operators change them: replaced at once, or a Kubernetes Secret mount updated by the kubelet. */

import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Replaces `path` in one step (a rename), so that no reader sees it half written. */
export function writeAtomically(path: string, text: string): void {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

/**
 * A directory laid out as the kubelet mounts a Secret: each file a symlink
 * through `..data` to a versioned directory; an update writes a new version
 * and renames a new `..data` link over the old one, then removes the old version.
 */
export class SecretMount {
  private version = 0;
  private current = '';

  constructor(
    readonly dir: string,
    files: Record<string, string>,
  ) {
    mkdirSync(dir, { recursive: true });
    this.update(files);
    for (const name of Object.keys(files)) symlinkSync(join('..data', name), this.path(name));
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  update(files: Record<string, string>): void {
    const next = `..version_${++this.version}`;
    mkdirSync(join(this.dir, next));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(this.dir, next, name), text);
    symlinkSync(next, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    if (this.current) rmSync(join(this.dir, this.current), { recursive: true });
    this.current = next;
  }
}
