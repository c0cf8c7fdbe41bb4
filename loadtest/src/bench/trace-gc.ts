/**
 * Preloaded into the soak's gateway (`NODE_OPTIONS=--import <this file>`;
 * Node 20 refuses `--trace-gc` there): turns V8's GC trace on, so that the
 * process prints a line per collection on stdout, with the heap each
 * mark-compact left (read by soak.ts).
 */

import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--trace-gc');
