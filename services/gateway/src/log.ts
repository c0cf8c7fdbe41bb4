/** Structured JSON logs. Secrets never reach a log line: known fields are redacted. */

import { pino } from 'pino';

export type Logger = pino.Logger;

export function createLogger(level: string, nodeId: string): Logger {
  return pino({
    level,
    base: { node: nodeId },
    redact: {
      paths: ['token', '*.token', 'apiKey', '*.apiKey', 'api_key', 'headers["x-api-key"]', 'authorization'],
      censor: '[redacted]',
    },
  });
}
