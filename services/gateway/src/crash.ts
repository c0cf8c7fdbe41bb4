/**
 * The last resort, for errors that every handler's own catch missed (a bug,
 * by definition: each request, command and bus message ends in an answer).
 *
 * - An unhandled promise rejection failed one operation that nobody awaited;
 *   the event loop and every other connection are intact: it is logged and
 *   counted, and the gateway goes on serving.
 * - An uncaught exception unwound a stack in the middle of who knows what
 *   state: it is logged and counted, then the gateway drains as on SIGTERM
 *   (readiness 503, clients told to reconnect elsewhere) and exits with 70,
 *   for the orchestrator to start a fresh one.
 */

import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';

/** Exit code after an uncaught exception (EX_SOFTWARE). */
export const CRASH_EXIT_CODE = 70;

export function installCrashPolicy(
  log: Logger,
  metrics: Metrics,
  drainAndExit: (code: number) => void,
): void {
  process.on('unhandledRejection', (reason) => {
    metrics.uncaughtErrors.inc({ kind: 'unhandled_rejection' });
    log.error({ err: reason }, 'unhandled promise rejection (a bug): logged, serving goes on');
  });
  process.on('uncaughtException', (err) => {
    metrics.uncaughtErrors.inc({ kind: 'uncaught_exception' });
    log.fatal({ err }, 'uncaught exception (a bug): draining, then exiting');
    drainAndExit(CRASH_EXIT_CODE);
  });
}
