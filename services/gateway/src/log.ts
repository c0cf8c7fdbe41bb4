/**
 * Structured JSON logs (pino, one object a line, with levels). Secrets never
 * reach a log line: known fields are redacted wherever they sit. Connection
 * events are sampled: at 100k connections one line per connect and
 * disconnect would drown everything else.
 */

import { pino } from 'pino';

export type Logger = pino.Logger;

/** Fields that may hold a credential, at the top level or one object down. */
const SECRET_FIELDS = [
  'token',
  'apiKey',
  'apiKeys',
  'api_key',
  'password',
  'pass',
  'secret',
  'hmacSecret',
  'hmacSecrets',
  'authorization',
];

export function createLogger(level: string, nodeId: string, destination?: pino.DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { node: nodeId },
    redact: {
      paths: [
        ...SECRET_FIELDS.flatMap((field) => [field, `*.${field}`]),
        'headers["x-api-key"]',
        '*.headers["x-api-key"]',
        '*.headers.authorization',
      ],
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options);
}

export type ConnectionEvent = 'connected' | 'disconnected';

/**
 * Logs a connection event: every one at debug level, else one in `1/rate` at
 * info (`sampled` says the rate, to scale counts back up). Metrics count them all.
 */
export function logConnection(log: Logger, rate: number, event: ConnectionEvent, fields: object): void {
  if (log.isLevelEnabled('debug')) log.debug(fields, event);
  else if (rate > 0 && Math.random() < rate) log.info({ ...fields, sampled: rate }, event);
}
