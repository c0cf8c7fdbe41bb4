/**
 * How the hub's pushes look on the Pusher edge. A publication is an event:
 * its name is the publication's `event` tag (what the Pusher edge and its
 * HTTP API set; `message` when a Centrifugo client or the Centrifugo API
 * published it), its `data` a string as Pusher sends it (JSON for objects).
 * Joins and leaves are member_added / member_removed on `presence-` channels
 * only. Pure.
 */

import type { Edge, Push } from '../hub.js';
import { pusherName } from './apps.js';
import * as wire from './protocol.js';

/** The event name of a publication without an `event` tag. */
export const DEFAULT_EVENT = 'message';
/** The publication tag that carries a Pusher event name. */
export const EVENT_TAG = 'event';

/** Pusher connections' topics: a prefix no channel name can start with. */
const TOPIC_PREFIX = ' pusher ';

/** What a Pusher event's `data` string becomes in a publication: JSON objects and arrays parsed, the rest as it is. */
export function publicationData(data: string): unknown {
  const first = data.trimStart()[0];
  if (first !== '{' && first !== '[') return data;
  try {
    return JSON.parse(data);
  } catch {
    return data;
  }
}

export const pusherEdge: Edge = {
  topicPrefix: TOPIC_PREFIX,
  // pusher-js reads one JSON document per frame.
  coalesces: false,
  binary: false,
  transport: 'pusher',
  encode(channel: string, push: Push): string | undefined {
    const name = pusherName(channel);
    const presence = name.startsWith('presence-');
    if ('pub' in push) {
      const { pub } = push;
      const tagged = pub.tags?.[EVENT_TAG];
      // A tag that would forge a protocol event (pusher:…, pusher_internal:…) is no event name.
      const event =
        tagged !== undefined && wire.checkEventName(tagged) === undefined ? tagged : DEFAULT_EVENT;
      // Client events on presence channels say who sent them.
      const sender = presence && pub.info && event.startsWith('client-') ? pub.info.user : undefined;
      return wire.event(event, name, pub.data, sender);
    }
    // A connection's join and leave are Centrifugo's: members come from the occupancy decider.
    if (!presence || !('member' in push)) return undefined;
    const { member } = push;
    if (member.op === 'added') return wire.memberAdded(name, member.info.user, member.info.chan_info ?? null);
    return wire.memberRemoved(name, member.user);
  },
};
