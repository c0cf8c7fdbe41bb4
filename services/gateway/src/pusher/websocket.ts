/**
 * The Pusher edge's WebSocket at `/app/<key>?protocol=7`, on the client port
 * beside the Centrifugo routes: the app's Origin allow-list and the
 * gateway's admission on upgrade; an unknown or disabled app, a missing or
 * unsupported protocol version and the app's connection quota are answered
 * as Pusher does, with pusher:error and the close code.
 */

import { decodeUtf8 } from '@switchboard/protocol';
import type { Node } from '../node.js';
import type { Admission } from '../transport/admission.js';
import { socketOptions, WebSocketSink } from '../transport/websocket.js';
import type { TemplatedApp } from '../uws.js';
import type { Webhooks } from '../hooks/webhooks.js';
import type { Apps, PusherApp } from './apps.js';
import * as wire from './protocol.js';
import { PusherSession } from './session.js';

/** Protocol versions served: pusher-js sends 7; 5 and 6 differ only in what 7 added. */
const PROTOCOLS = new Set(['5', '6', '7']);

interface SocketData {
  app: PusherApp | undefined;
  refused: { code: number; message: string } | undefined;
  session?: PusherSession;
}

class PusherSocketSink extends WebSocketSink {
  override get transport(): 'pusher' {
    return 'pusher';
  }
}

/** Why a connection to this app with this protocol version is refused, if it is. */
function refusalOf(
  app: PusherApp | undefined,
  protocol: string | null,
): { code: number; message: string } | undefined {
  if (!app) return wire.PusherErrors.appNotFound;
  if (!app.enabled) return wire.PusherErrors.appDisabled;
  if (protocol === null || protocol === '') return wire.PusherErrors.noProtocol;
  if (!/^\d+$/.test(protocol)) return wire.PusherErrors.invalidVersion;
  if (!PROTOCOLS.has(protocol)) return wire.PusherErrors.unsupportedProtocol;
  return undefined;
}

export function mountPusher(
  app: TemplatedApp,
  node: Node,
  admission: Admission,
  apps: Apps,
  webhooks: Webhooks | undefined,
): void {
  const { config, metrics, log } = node;
  const traffic = metrics.traffic('pusher');
  /** Open connections per app id. */
  const open = new Map<string, number>();
  for (const a of apps.all()) {
    open.set(a.id, 0);
    metrics.pusherApp(a.id);
  }
  metrics.pusherCounts = () => open;
  // An app of the store came, changed or went: a disabled or removed one's connections close now.
  apps.onChange((changed, removed) => {
    if (!open.has(changed.id)) {
      open.set(changed.id, 0);
      metrics.pusherApp(changed.id);
    }
    if (!removed && changed.enabled) return;
    const close = removed ? wire.PusherErrors.appNotFound : wire.PusherErrors.appDisabled;
    for (const connection of [...node.hub.all()]) {
      if (connection instanceof PusherSession && connection.app.id === changed.id)
        connection.disconnect(
          { code: close.code, reason: close.message },
          removed ? 'app_removed' : 'app_disabled',
        );
    }
  });

  app.ws<SocketData>('/app/:key', {
    ...socketOptions(config),

    upgrade: (res, req, context) => {
      const pusherApp = apps.byKey(req.getParameter(0) ?? '');
      const origins =
        pusherApp && pusherApp.allowed_origins.length > 0 ? pusherApp.allowed_origins : undefined;
      const refusal = admission.refusal(res, req, origins);
      if (refusal) return admission.refuse(res, 'pusher', refusal);
      const protocol = new URLSearchParams(req.getQuery() ?? '').get('protocol');
      res.upgrade<SocketData>(
        { app: pusherApp, refused: refusalOf(pusherApp, protocol) },
        req.getHeader('sec-websocket-key'),
        req.getHeader('sec-websocket-protocol'),
        req.getHeader('sec-websocket-extensions'),
        context,
      );
    },

    open: (ws) => {
      admission.opened('pusher');
      const data = ws.getUserData();
      let refused = data.refused;
      const pusherApp = data.app!;
      if (
        !refused &&
        pusherApp.max_connections > 0 &&
        (open.get(pusherApp.id) ?? 0) >= pusherApp.max_connections
      )
        refused = wire.PusherErrors.overConnectionQuota;
      if (refused) {
        metrics.connects.inc({ transport: 'pusher', outcome: 'rejected', reason: 'app' });
        ws.send(wire.error(refused.code, refused.message), false, false);
        ws.end(refused.code, refused.message);
        return;
      }
      open.set(pusherApp.id, (open.get(pusherApp.id) ?? 0) + 1);
      data.session = new PusherSession(new PusherSocketSink(ws, traffic), node, pusherApp, webhooks);
    },

    message: (ws, message) => {
      traffic.messagesIn.inc();
      traffic.bytesIn.inc(message.byteLength);
      const session = ws.getUserData().session;
      if (!session) return;
      if (message.byteLength > config.maxMessageSize) return session.oversized(config.maxMessageSize);
      const frame = decodeUtf8(new Uint8Array(message));
      if (frame === undefined) {
        session.handleFrame('');
        return;
      }
      try {
        session.handleFrame(frame);
      } catch (err) {
        log.error({ err, client: session.client }, 'pusher frame handling failed');
        metrics.handlerErrors.inc({ where: 'pusher' });
        ws.end(4200, 'internal server error');
      }
    },

    close: (ws, code) => {
      admission.closed('pusher');
      const { session, app: pusherApp } = ws.getUserData();
      if (!session || !pusherApp) return;
      open.set(pusherApp.id, (open.get(pusherApp.id) ?? 1) - 1);
      const sink = session.sink as PusherSocketSink;
      sink.open = false;
      const slow = code === 1006 && (sink.overLimit || sink.lastBuffered > 0);
      session.closed(code, slow ? 'slow' : undefined);
    },
  });
}
