#!/usr/bin/env node
/**
 * Writes nats-server's `authorization` block: a NATS user per role with
 * least privilege (README, "NATS users and permissions"):
 *
 *   nats-config [--prefix sb] [--namespaces chat,room,store,jobs] [--services room,store,jobs]
 *               [--user NAME=ROLE ...] [--out FILE]
 *
 * The prefix, the namespaces (the default one always among them) and those
 * owned by services default to the gateway's configuration
 * (SWITCHBOARD_NATS_PREFIX, SWITCHBOARD_NAMESPACES, SWITCHBOARD_CONFIG). The
 * users are `gateway`, `api` and `service-<namespace>` per service, or
 * exactly those given with --user (ROLE: gateway, api, service:<namespace>),
 * e.g. two of one role while its password rotates. nats-server reads each
 * password from its environment: $NATS_PASSWORD_<USER>.
 */

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { NatsRole } from '@switchboard/protocol';
import { type Config, ConfigError, loadConfig } from '../config.js';
import { authorizationConfig, defaultUsers, type NatsUser, permitted } from '../nats-users.js';

const fail = (message: string): never => {
  process.stderr.write(`nats-config: ${message}\n`);
  process.exit(2);
};

const { values } = parseArgs({
  options: {
    prefix: { type: 'string' },
    namespaces: { type: 'string' },
    services: { type: 'string' },
    user: { type: 'string', multiple: true },
    out: { type: 'string' },
  },
});

function gatewayConfig(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fail(err.message);
    throw err;
  }
}
const config = gatewayConfig();
const listed = (flag: string | undefined, fallback: string[]) =>
  flag === undefined
    ? fallback
    : flag
        .split(',')
        .map((name) => name.trim())
        .filter((name) => name !== '');
const configured = [...config.namespaces.values()];
const prefix = values.prefix ?? config.nats.prefix;
const named = listed(
  values.namespaces,
  configured.map((ns) => ns.name),
);
const namespaces = [...new Set(['', ...named])];
const services = listed(
  values.services,
  configured.filter((ns) => ns.service).map((ns) => ns.name),
);
const users: NatsUser[] = values.user
  ? values.user.map((spec) => {
      const at = spec.indexOf('=');
      if (at < 1) fail(`--user ${spec}: NAME=ROLE`);
      return { user: spec.slice(0, at), role: spec.slice(at + 1) as NatsRole };
    })
  : defaultUsers(services);

let text = '';
try {
  // Unknown roles, bad or clashing user names are refused here.
  text = authorizationConfig(prefix, namespaces, permitted(prefix, namespaces, users));
} catch (err) {
  fail((err as Error).message);
}
if (values.out) writeFileSync(values.out, text);
else process.stdout.write(text);
