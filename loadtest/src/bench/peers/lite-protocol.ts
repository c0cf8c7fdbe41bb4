/**
 * The part of the Centrifugo JSON protocol the bare peers (uWebSockets.js and
 * `ws`) implement for the benchmark: connect with an HS256 token, subscribe,
 * publish to a channel's subscribers. Enough for the same load generator to
 * drive them as it drives Switchboard, and nothing more.
 */

import { verifyHs256 } from '../../jwt.js';

export interface LiteSocket {
  authenticated: boolean;
  send(frame: string): void;
  subscribe(channel: string): void;
  close(): void;
}

interface Command {
  id?: number;
  connect?: { token?: string };
  subscribe?: { channel?: string };
  publish?: { channel?: string; data?: unknown };
}

let clients = 0;

/**
 * Handles one client frame. `publish(channel, frame)` sends an encoded push
 * to every subscriber of the channel; the frame is encoded once.
 */
export function handleFrame(
  text: string,
  socket: LiteSocket,
  secret: string,
  publish: (channel: string, frame: string) => void,
): void {
  for (const line of text.split('\n')) {
    if (line.length === 0) continue;
    const cmd = JSON.parse(line) as Command;
    const id = cmd.id;
    if (id === undefined) continue; // pong or send
    if (cmd.connect) {
      if (!verifyHs256(cmd.connect.token ?? '', secret)) {
        socket.send(JSON.stringify({ id, error: { code: 109, message: 'token expired' } }));
        socket.close();
        return;
      }
      socket.authenticated = true;
      socket.send(
        `{"id":${id},"connect":{"client":"c${++clients}","version":"peer","ping":${BENCH_KEEPALIVE_SECONDS},"pong":false}}`,
      );
    } else if (!socket.authenticated) {
      socket.close();
      return;
    } else if (cmd.subscribe?.channel !== undefined) {
      socket.subscribe(cmd.subscribe.channel);
      socket.send(`{"id":${id},"subscribe":{}}`);
    } else if (cmd.publish?.channel !== undefined) {
      const channel = cmd.publish.channel;
      publish(channel, JSON.stringify({ push: { channel, pub: { data: cmd.publish.data } } }));
      socket.send(`{"id":${id},"publish":{}}`);
    }
  }
}

/**
 * Seconds between keep-alive pings in every server of the bench (Switchboard's
 * `ping_interval`, the peers' own settings): longer than any pass runs after a
 * connection opens, so that no server's pings fall into a timed window. At
 * Centrifugo's 25 s, Switchboard pinged 10,000 connections (and read as many
 * pongs) in a burst every 25 s, wherever it fell, while bare uWS pinged after
 * 44 s without traffic from the client: about a fifth more socket events in
 * an N × 1 window (a publish, its reply and its delivery each) for one side only.
 */
export const BENCH_KEEPALIVE_SECONDS = 120;

/** Port and HS256 secret from the environment, as the benchmark passes them. */
export function peerSettings(): { port: number; secret: string } {
  const port = Number(process.env.PORT);
  const secret = process.env.SECRET ?? '';
  if (!Number.isInteger(port) || port <= 0 || secret === '') throw new Error('set PORT and SECRET');
  return { port, secret };
}

/** The line the benchmark waits for before it connects. */
export function announce(port: number): void {
  console.log(`listening ${port}`);
}
