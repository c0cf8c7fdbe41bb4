/**
 * The NATS users of a deployment as nats-server's `authorization` block:
 * each user's permissions from its role (natsPermissions, written from the
 * NATS map), its password read by nats-server from its environment
 * (`$NATS_PASSWORD_<USER>`), so that the file holds no secret. nats-server
 * takes a bcrypt hash (`$2a$...`) there as well as the password itself.
 */

import {
  encodeToken,
  type NatsPermissions,
  type NatsRole,
  natsPermissions,
  roleNamespace,
} from '@switchboard/protocol';

export interface NatsUser {
  user: string;
  role: NatsRole;
}

/** A user with what it may do. */
export interface PermittedUser extends NatsUser {
  permissions: NatsPermissions;
}

/** The user a role connects as unless told otherwise: `gateway`, `api`, `service-<namespace>`. */
function userOf(role: NatsRole): string {
  const ns = roleNamespace(role);
  return ns === undefined ? role : `service-${encodeToken(ns)}`;
}

/** The environment variable nats-server reads a user's password from. */
export function passwordVariable(user: string): string {
  return `NATS_PASSWORD_${user.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}`;
}

/** The users of a deployment: the gateways', the API caller's and one per namespace owned by a service. */
export function defaultUsers(services: readonly string[]): NatsUser[] {
  const roles: NatsRole[] = ['gateway', 'api', ...services.map((ns): NatsRole => `service:${ns}`)];
  return roles.map((role) => ({ user: userOf(role), role }));
}

/** Every user with its role's permissions in the deployment under `prefix` with `namespaces`. */
export function permitted(prefix: string, namespaces: readonly string[], users: NatsUser[]): PermittedUser[] {
  return users.map((u) => ({ ...u, permissions: natsPermissions(prefix, namespaces, u.role, u.user) }));
}

const list = (items: string[], indent: string) =>
  items.length === 0
    ? '[]'
    : `[\n${items.map((i) => `${indent}  ${JSON.stringify(i)},`).join('\n')}\n${indent}]`;

function rules(name: string, r: { allow: string[]; deny: string[] }, indent: string): string {
  const inner = `${indent}  `;
  const deny = r.deny.length > 0 ? `\n${inner}deny: ${list(r.deny, inner)}` : '';
  return `${indent}${name}: {\n${inner}allow: ${list(r.allow, inner)}${deny}\n${indent}}`;
}

/** nats-server's `authorization { users = [...] }` for `users` of the deployment under `prefix` with `namespaces`. */
export function authorizationConfig(
  prefix: string,
  namespaces: readonly string[],
  users: PermittedUser[],
): string {
  const seen = new Map<string, string>();
  for (const { user } of users) {
    if (!/^[A-Za-z0-9_-]+$/.test(user))
      throw new Error(`NATS user ${JSON.stringify(user)}: use letters, digits, - and _ only`);
    const variable = passwordVariable(user);
    if (seen.has(variable))
      throw new Error(
        `NATS users ${seen.get(variable)} and ${user} would share the password variable ${variable}`,
      );
    seen.set(variable, user);
  }
  const entries = users.map(({ user, permissions: p }) =>
    [
      '    {',
      `      user: ${JSON.stringify(user)}`,
      `      password: $${passwordVariable(user)}`,
      '      permissions: {',
      rules('publish', p.publish, '        '),
      rules('subscribe', p.subscribe, '        '),
      `        allow_responses: ${p.allowResponses}`,
      '      }',
      '    }',
    ].join('\n'),
  );
  return [
    '# NATS users of Switchboard, written by nats-config (services/gateway/src/cli/nats-config.ts)',
    `# from the NATS map: prefix ${prefix}, namespaces ${namespaces.map((ns) => JSON.stringify(ns)).join(', ')}.`,
    "# Each password (or its bcrypt hash) comes from nats-server's environment:",
    ...users.map((u) => `#   ${u.user} (${u.role}): $${passwordVariable(u.user)}`),
    'authorization {',
    '  users = [',
    ...entries,
    '  ]',
    '}',
    '',
  ].join('\n');
}
