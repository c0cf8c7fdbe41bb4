/**
 * Chat, an example backend service owning the `room` namespace.
 *
 * - Rooms are channels `room:<name>`; only authenticated users subscribe.
 * - A client publication `{text}` is checked (1..2000 characters after
 *   trimming) and rewritten to `{text, user, at}`; it reaches every
 *   subscriber except the sender, who renders its own message locally.
 * - RPC `dm {to, text}` publishes `{from, text, at}` to the recipient's
 *   personal channel `room:#<to>` through the server API.
 * - RPC `rooms` lists the rooms that received messages since this replica
 *   started (memory of one replica: an example, not a directory).
 */

import { Errors, type ServiceRequest } from '@switchboard/protocol';
import { ApiCallError, type Bus, Service, ServiceError, type ServiceRegistry } from '@switchboard/sdk';

export interface ChatOptions {
  /** Subject prefix of the deployment (`SWITCHBOARD_NATS_PREFIX`), default `sb`. */
  prefix?: string;
  /** Where the replica announces itself (the NATS KV registry in a cluster). */
  registry?: ServiceRegistry;
  /** Namespace the service owns, default `room`. */
  namespace?: string;
  /** Longest message text in characters (after trimming), default 2000. */
  maxTextLength?: number;
  /** Clock in ms (tests). */
  now?: () => number;
}

/** What subscribers of a room receive. */
export interface ChatMessage {
  text: string;
  user: string;
  at: number;
}

/** What the recipient of `dm` receives on `room:#<user>`. */
export interface DirectMessage {
  from: string;
  text: string;
  at: number;
}

/**
 * A user id that can name a personal channel on its own: the channel
 * characters without `#` and `,` (`room:#1,2` would reach users 1 and 2).
 */
const PERSONAL_USER = /^[A-Za-z0-9_\-:./@=!~+]{1,128}$/;

export function createChatService(bus: Bus, options: ChatOptions = {}): Service {
  const namespace = options.namespace ?? 'room';
  const maxText = options.maxTextLength ?? 2000;
  const now = options.now ?? Date.now;
  const rooms = new Set<string>();
  const service = new Service(
    bus,
    { namespace, ...(options.prefix ? { prefix: options.prefix } : {}) },
    options.registry,
  );

  /** `lobby` for `room:lobby`; 102 for a channel outside the namespace. */
  const roomOf = (channel: string): string => {
    const head = `${namespace}:`;
    if (!channel.startsWith(head) || channel.length === head.length)
      throw ServiceError.from(Errors.unknownChannel);
    return channel.slice(head.length);
  };

  const text = (data: unknown): string => {
    const raw = isObject(data) ? data.text : undefined;
    if (typeof raw !== 'string') throw new ServiceError(107, 'message must be {"text": string}');
    const trimmed = raw.trim();
    const length = [...trimmed].length;
    if (length === 0 || length > maxText)
      throw new ServiceError(107, `text must be 1 to ${maxText} characters after trimming (got ${length})`);
    return trimmed;
  };

  return service
    .onSubscribe((req) => {
      authenticated(req);
      const room = roomOf(req.channel);
      // The gateway already refuses user-limited channels (`room:#42`) to
      // other users; checked again here so the service stands on its own.
      const hash = room.indexOf('#');
      if (
        hash !== -1 &&
        !room
          .slice(hash + 1)
          .split(',')
          .includes(req.user)
      )
        throw ServiceError.from(Errors.permissionDenied);
      return { data: { room } };
    })
    .onPublish((req) => {
      authenticated(req);
      const room = roomOf(req.channel);
      if (room.startsWith('#'))
        throw new ServiceError(103, `personal channels only receive direct messages (RPC ${namespace}:dm)`);
      const message: ChatMessage = { text: text(req.data), user: req.user, at: now() };
      // User-limited rooms (`team#1,2`) stay out of the public list.
      if (!room.includes('#')) rooms.add(room);
      return { data: message, skip_sender: true };
    })
    .onRpc('dm', async (req) => {
      authenticated(req);
      const to = isObject(req.data) ? req.data.to : undefined;
      if (typeof to !== 'string' || !PERSONAL_USER.test(to))
        throw new ServiceError(107, 'to must be a user id (1-128 characters, no "#" or ",")');
      const message: DirectMessage = { from: req.user, text: text(req.data), at: now() };
      try {
        await service.publish(`${namespace}:#${to}`, message);
      } catch (err) {
        throw apiFailure(err);
      }
      return { delivered: true };
    })
    .onRpc('rooms', (req) => {
      authenticated(req);
      return { rooms: [...rooms].sort() };
    });
}

function authenticated(req: ServiceRequest): void {
  if (req.user === '') throw new ServiceError(103, 'sign in to chat');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A failed server API call as the client's error: the gateway's code, else 100 (temporary). */
function apiFailure(err: unknown): ServiceError {
  if (err instanceof ApiCallError)
    return new ServiceError(err.error.code, err.error.message, err.error.temporary ?? false);
  return ServiceError.from(Errors.internal);
}
