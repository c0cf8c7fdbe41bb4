/**
 * What a load-generating client does, whatever the server speaks: connect
 * with a token, subscribe, publish, call, receive publications. The
 * Centrifugo JSON protocol (Switchboard, and the bare uWebSockets.js and `ws`
 * peers of the benchmark) is implemented here on the `ws` package; Socket.IO
 * and SocketCluster adapters live with the benchmark.
 */

import WebSocket from 'ws';

export interface ConnectOptions {
  url: string;
  token: string;
  /** Source address (127.0.0.x) so that tens of thousands of sockets fit in the ephemeral ports. */
  localAddress?: string;
  timeoutMs: number;
}

export interface Connection {
  subscribe(channel: string): Promise<void>;
  /** Publishes `data` (JSON) to a channel; the promise settles with the server's answer. */
  publish(channel: string, data: unknown): Promise<void>;
  rpc(method: string, data: unknown): Promise<unknown>;
  /** Called for every publication received. */
  onPublication: (channel: string, data: unknown) => void;
  /** Called once when the connection ends for any reason (`code` as the server sent it). */
  onClose: (code: number, reason: string) => void;
  close(): void;
}

export type Dialect = (options: ConnectOptions) => Promise<Connection>;

export class ProtocolError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(`${code} ${message}`);
  }
}

interface Reply {
  id?: number;
  error?: { code: number; message: string };
  push?: { channel?: string; pub?: { data: unknown }; disconnect?: { code: number; reason: string } };
  [result: string]: unknown;
}

interface Pending {
  resolve(reply: Reply): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

/** One Centrifugo protocol v2 JSON client over a WebSocket: commands with ids, pushes, ping/pong. */
class CentrifugoConnection implements Connection {
  onPublication: (channel: string, data: unknown) => void = () => {};
  onClose: (code: number, reason: string) => void = () => {};
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  pong = false;

  constructor(
    readonly ws: WebSocket,
    private readonly timeoutMs: number,
  ) {
    ws.on('message', (data: Buffer) => this.receive(data.toString()));
    ws.on('close', (code, reason) => {
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new Error(`closed ${code}`));
      }
      this.pending.clear();
      this.onClose(code, reason.toString());
    });
  }

  request(method: string, body: unknown): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method} timed out`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ id, [method]: body }));
    });
  }

  async subscribe(channel: string): Promise<void> {
    await this.request('subscribe', { channel });
  }

  async publish(channel: string, data: unknown): Promise<void> {
    await this.request('publish', { channel, data });
  }

  async rpc(method: string, data: unknown): Promise<unknown> {
    const reply = await this.request('rpc', { method, data });
    return (reply.rpc as { data?: unknown } | undefined)?.data;
  }

  close(): void {
    this.ws.close();
  }

  private receive(text: string): void {
    // A frame may carry several JSON objects, one per line.
    for (const line of text.split('\n')) {
      if (line.length === 0) continue;
      const msg = JSON.parse(line) as Reply;
      if (msg.id !== undefined && msg.id > 0) {
        const p = this.pending.get(msg.id);
        if (!p) continue;
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.error) p.reject(new ProtocolError(msg.error.code, msg.error.message));
        else p.resolve(msg);
      } else if (msg.push) {
        if (msg.push.pub && msg.push.channel !== undefined)
          this.onPublication(msg.push.channel, msg.push.pub.data);
      } else if (this.pong) {
        this.ws.send('{}');
      }
    }
  }
}

/** Opens a WebSocket and sends the connect command; resolves once the server accepted the token. */
export const centrifugo: Dialect = async ({ url, token, localAddress, timeoutMs }) => {
  const ws = new WebSocket(url, { localAddress, perMessageDeflate: false, handshakeTimeout: timeoutMs });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
  });
  ws.on('error', () => {});
  const conn = new CentrifugoConnection(ws, timeoutMs);
  try {
    const reply = await conn.request('connect', { token });
    conn.pong = (reply.connect as { pong?: boolean } | undefined)?.pong === true;
  } catch (err) {
    ws.terminate();
    throw err;
  }
  return conn;
};
