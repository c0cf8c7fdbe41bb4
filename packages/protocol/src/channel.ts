/**
 * Channel-name rules. `ns:name` puts a channel in namespace `ns`; `name#42,43`
 * limits it to users 42 and 43 (`#42` is user 42's personal channel).
 * Only a conservative ASCII set is allowed, so a name can never carry
 * whitespace, wildcards (`*`, `>`) or non-ASCII into a broker subject.
 */

export const NAMESPACE_BOUNDARY = ':';
export const USER_BOUNDARY = '#';
export const USER_SEPARATOR = ',';

const ALLOWED = /^[A-Za-z0-9_\-:#,./@=!~+;]+$/;

export interface ChannelRules {
  maxLength: number;
}

export interface ChannelName {
  channel: string;
  namespace: string;
  /** Users allowed in a user-limited channel, or undefined when anyone may be. */
  users?: string[];
}

export type ChannelCheck = { ok: true; value: ChannelName } | { ok: false; reason: string };

export function parseChannel(channel: string, rules: ChannelRules): ChannelCheck {
  if (channel.length === 0) return { ok: false, reason: 'empty channel name' };
  if (channel.length > rules.maxLength)
    return { ok: false, reason: `channel name longer than ${rules.maxLength}` };
  if (!ALLOWED.test(channel))
    return { ok: false, reason: 'channel name has characters outside A-Z a-z 0-9 _-:#,./@=!~+;' };
  const namespace = namespaceOf(channel);
  const hash = channel.indexOf(USER_BOUNDARY);
  if (hash === -1) return { ok: true, value: { channel, namespace } };
  const users = channel.slice(hash + 1).split(USER_SEPARATOR);
  if (users.some((u) => u.length === 0))
    return { ok: false, reason: 'empty user id in user-limited channel' };
  return { ok: true, value: { channel, namespace, users } };
}

/** The namespace part of a channel name (`''` for the default namespace). */
export function namespaceOf(channel: string): string {
  const colon = channel.indexOf(NAMESPACE_BOUNDARY);
  const hash = channel.indexOf(USER_BOUNDARY);
  // A ':' after '#' belongs to the user part, not to a namespace.
  return colon > 0 && (hash === -1 || colon < hash) ? channel.slice(0, colon) : '';
}

/** Whether `user` may use this channel as far as the user limit goes. */
export function userAllowed(name: ChannelName, user: string): boolean {
  return name.users === undefined || (user !== '' && name.users.includes(user));
}
