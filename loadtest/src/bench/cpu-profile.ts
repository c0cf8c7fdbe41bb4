/**
 * Preloaded into a server process (`NODE_OPTIONS=--import <this file>`;
 * Node 20 refuses `--cpu-prof` there): samples the CPU from start to exit and
 * writes a `.cpuprofile` (the format of `node --cpu-prof`) into
 * `$BENCH_CPU_PROFILE_DIR`.
 */

import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const dir = process.env.BENCH_CPU_PROFILE_DIR;
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.start');
  process.once('exit', () => {
    // The in-thread inspector answers synchronously, so this completes before exit.
    session.post('Profiler.stop', (err, result) => {
      if (err) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `server-${process.pid}.cpuprofile`), JSON.stringify(result.profile));
    });
  });
}
