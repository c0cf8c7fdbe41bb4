#!/usr/bin/env node
/**
 * Mints development tokens signed with the gateway's signing secret: the first
 * of SWITCHBOARD_TOKEN_HMAC_SECRET_KEY (or of SWITCHBOARD_TOKEN_HMAC_SECRET_KEY_FILE):
 *   token --user 42 [--ttl 3600] [--info '{"name":"Ann"}'] [--channels a,b]   connection token
 *         [--subs '{"chat:a":{"info":{"role":"mod"}}}'] [--b64info aGk=] [--expire-at 1800000000]
 *   token --user 42 --channel private:room [--ttl 3600]                        subscription token
 * Claims are checked here as the gateway checks them (tokens it would refuse are not minted).
 */

import { parseArgs } from 'node:util';
import { connectionClaims } from '@switchboard/protocol';
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
    subs: { type: 'string' },
    b64info: { type: 'string' },
    'expire-at': { type: 'string' },
  },
});

function exit(message: string): never {
  process.stderr.write(`token: ${message}\n`);
  process.exit(2);
}

let secrets: string[];
let limits: { maxDepth: number; maxSubs: number };
try {
  const { hmacSecrets, hmacSecretFile, maxDepth, maxSubs } = loadConfig().token;
  secrets = hmacSecretFile ? readKeyFile(hmacSecretFile) : hmacSecrets;
  limits = { maxDepth, maxSubs };
} catch (err) {
  exit((err as Error).message);
}
const [secret] = secrets;
if (!secret) exit('set SWITCHBOARD_TOKEN_HMAC_SECRET_KEY or SWITCHBOARD_TOKEN_HMAC_SECRET_KEY_FILE');
const ttl = Number(values.ttl);
if (!Number.isInteger(ttl) || ttl < 0) exit('--ttl must be a whole number of seconds (0: never expires)');

function json(option: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return exit(`--${option} must be JSON`);
  }
}

const claims: Record<string, unknown> = { sub: values.user };
if (values.info) claims.info = json('info', values.info);
if (values.channels) claims.channels = values.channels.split(',');
if (values.channel) claims.channel = values.channel;
if (values.subs) claims.subs = json('subs', values.subs);
if (values.b64info) claims.b64info = values.b64info;
if (values['expire-at']) claims.expire_at = Number(values['expire-at']);
if (!values.channel) {
  const checked = connectionClaims(claims, Date.now() / 1000, limits);
  if (!checked.ok) exit(checked.reason);
}
process.stdout.write(`${await signHs256(claims, secret, ttl)}\n`);
