#!/usr/bin/env node
/**
 * Mints development tokens signed with SWITCHBOARD_TOKEN_HMAC_SECRET_KEY:
 *   token --user 42 [--ttl 3600] [--info '{"name":"Ann"}'] [--channels a,b]   connection token
 *   token --user 42 --channel private:room [--ttl 3600]                        subscription token
 */

import { parseArgs } from 'node:util';
import { signHs256 } from '../auth.js';

const { values } = parseArgs({
  options: {
    user: { type: 'string', default: '' },
    ttl: { type: 'string', default: '86400' },
    info: { type: 'string' },
    channels: { type: 'string' },
    channel: { type: 'string' },
  },
});

const secret = process.env.SWITCHBOARD_TOKEN_HMAC_SECRET_KEY;
if (!secret) {
  process.stderr.write('token: set SWITCHBOARD_TOKEN_HMAC_SECRET_KEY\n');
  process.exit(2);
}
const ttl = Number(values.ttl);
if (!Number.isInteger(ttl) || ttl < 0) {
  process.stderr.write('token: --ttl must be a whole number of seconds (0: never expires)\n');
  process.exit(2);
}

const claims: Record<string, unknown> = { sub: values.user };
if (values.info) claims.info = JSON.parse(values.info);
if (values.channels) claims.channels = values.channels.split(',');
if (values.channel) claims.channel = values.channel;
process.stdout.write(`${await signHs256(claims, secret, ttl)}\n`);
