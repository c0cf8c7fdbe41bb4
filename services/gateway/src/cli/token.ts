#!/usr/bin/env node
/**
 * Mints development tokens signed with the gateway's signing secret: the first
 * of SWITCHBOARD_TOKEN_HMAC_SECRET_KEY (or of SWITCHBOARD_TOKEN_HMAC_SECRET_KEY_FILE):
 *   token --user 42 [--ttl 3600] [--info '{"name":"Ann"}'] [--channels a,b]   connection token
 *   token --user 42 --channel private:room [--ttl 3600]                        subscription token
 */

import { parseArgs } from 'node:util';
import { signHs256 } from '../auth.js';
import { loadConfig } from '../config.js';
import { readKeyFile } from '../keys.js';

const { values } = parseArgs({
  options: {
    user: { type: 'string', default: '' },
    ttl: { type: 'string', default: '86400' },
    info: { type: 'string' },
    channels: { type: 'string' },
    channel: { type: 'string' },
  },
});

function exit(message: string): never {
  process.stderr.write(`token: ${message}\n`);
  process.exit(2);
}

let secrets: string[];
try {
  const { hmacSecrets, hmacSecretFile } = loadConfig().token;
  secrets = hmacSecretFile ? readKeyFile(hmacSecretFile) : hmacSecrets;
} catch (err) {
  exit((err as Error).message);
}
const [secret] = secrets;
if (!secret) exit('set SWITCHBOARD_TOKEN_HMAC_SECRET_KEY or SWITCHBOARD_TOKEN_HMAC_SECRET_KEY_FILE');
const ttl = Number(values.ttl);
if (!Number.isInteger(ttl) || ttl < 0) exit('--ttl must be a whole number of seconds (0: never expires)');

const claims: Record<string, unknown> = { sub: values.user };
if (values.info) claims.info = JSON.parse(values.info);
if (values.channels) claims.channels = values.channels.split(',');
if (values.channel) claims.channel = values.channel;
process.stdout.write(`${await signHs256(claims, secret, ttl)}\n`);
