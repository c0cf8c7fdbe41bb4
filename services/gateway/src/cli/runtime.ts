#!/usr/bin/env node
/**
 * Prints what the gateway would run on with this Node: its version and ABI,
 * the C library, and the uWebSockets.js build that loads (see uws.ts); exits 1
 * with every build's reason when none does. `make bench` prints it first.
 *   runtime          one line
 *   runtime --json   {"node", "abi", "libc", "uws": {package, version, abi, binary}}
 */

import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { json: { type: 'boolean', default: false } } });

try {
  const { describeUwsBuild, libc, uwsBuild } = await import('../uws.js');
  if (values.json) {
    const described = { node: process.version, abi: process.versions.modules, libc: libc(), uws: uwsBuild };
    process.stdout.write(`${JSON.stringify(described)}\n`);
  } else {
    process.stdout.write(
      `runtime: Node ${process.version} (ABI ${process.versions.modules}), ${libc()}, ` +
        `uWebSockets.js ${describeUwsBuild()}\n`,
    );
  }
} catch (err) {
  process.stderr.write(`runtime: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
