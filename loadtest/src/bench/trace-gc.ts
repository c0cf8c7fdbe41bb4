/**
 * Preloaded into the soak's gateway (`NODE_OPTIONS=--import <this file>`;
 * Node 20 refuses `--trace-gc` there): turns V8's GC trace on, so that the
 * process prints a line per collection on stdout, with the heap each
 * mark-compact left (read by soak.ts).
 */

import { setFlagsFromString } from 'node:v8';
import { TRACE_GC_ON } from './gc-trace.js';

setFlagsFromString('--trace-gc');
// A line of its own, so that a reader of the output knows the trace is on even before any GC.
process.stdout.write(`${TRACE_GC_ON}\n`);
