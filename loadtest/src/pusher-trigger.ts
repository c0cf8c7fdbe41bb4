/**
 * Triggers Pusher events through a server's HTTP API, signed as the `pusher`
 * server SDK signs (services/gateway/src/pusher/signature.ts signRequest:
 * auth_key, auth_timestamp, auth_version, body_md5, auth_signature), in the
 * order they were triggered: one keep-alive connection, one request at a
 * time, and what was triggered while a request was out goes in the next one
 * (POST /apps/<id>/events for one event, /batch_events for up to 10, Pusher's
 * batch limit). So an open-loop rate above one request per round trip is
 * met with batches, and the events of one channel reach the server, and so
 * its subscribers, in order.
 *
 * A refusal is an error whatever its status: Soketi 1.6 answers its errors
 * with 200 and `{"error": ..., "code": 4xx}`.
 */

import http from 'node:http';
import { signRequest } from '@switchboard/gateway/dist/src/pusher/signature.js';

export interface PusherApp {
  id: string;
  key: string;
  secret: string;
}

/** Pusher's limit of events per batch_events request. */
export const MAX_BATCH = 10;

interface Queued {
  name: string;
  channel: string;
  data: string;
  resolve(): void;
  reject(err: Error): void;
}

export class PusherTrigger {
  /** Requests sent, and events in them. */
  requests = 0;
  events = 0;
  private readonly url: URL;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  private queue: Queued[] = [];
  private sending = false;

  /** `apiUrl`: the HTTP API's origin (http://host:port). */
  constructor(
    apiUrl: string,
    private readonly app: PusherApp,
    private readonly timeoutMs = 10_000,
  ) {
    this.url = new URL(apiUrl);
  }

  /** Resolves once the request that carried the event was answered with success. */
  trigger(channel: string, name: string, data: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ name, channel, data, resolve, reject });
      this.flush();
    });
  }

  close(): void {
    this.agent.destroy();
  }

  private flush(): void {
    if (this.sending || this.queue.length === 0) return;
    const batch = this.queue.length <= MAX_BATCH ? this.queue : this.queue.slice(0, MAX_BATCH);
    this.queue = this.queue.length <= MAX_BATCH ? [] : this.queue.slice(MAX_BATCH);
    this.sending = true;
    const body =
      batch.length === 1
        ? JSON.stringify({ name: batch[0]!.name, channel: batch[0]!.channel, data: batch[0]!.data })
        : JSON.stringify({ batch: batch.map(({ name, channel, data }) => ({ name, channel, data })) });
    this.post(batch.length === 1 ? 'events' : 'batch_events', body, batch.length).then(
      () => {
        for (const e of batch) e.resolve();
      },
      (err: Error) => {
        for (const e of batch) e.reject(err);
      },
    );
  }

  private post(endpoint: string, body: string, events: number): Promise<void> {
    const path = `/apps/${encodeURIComponent(this.app.id)}/${endpoint}`;
    const query = signRequest({
      method: 'POST',
      path,
      key: this.app.key,
      secret: this.app.secret,
      timestampSeconds: Math.floor(Date.now() / 1000),
      body,
    });
    this.requests++;
    this.events += events;
    return new Promise<void>((resolve, reject) => {
      const req = http.request(
        {
          host: this.url.hostname,
          port: Number(this.url.port) || 80,
          method: 'POST',
          path: `${path}?${query}`,
          agent: this.agent,
          timeout: this.timeoutMs,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => {
            const refusal = refusalOf(res.statusCode ?? 0, text);
            if (refusal) reject(new Error(refusal));
            else resolve();
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('trigger timed out')));
      req.on('error', reject);
      req.end(body);
    }).finally(() => {
      this.sending = false;
      this.flush();
    });
  }
}

/** Why an HTTP API answer is a refusal, or undefined for a success. */
export function refusalOf(status: number, body: string): string | undefined {
  if (status !== 200) return `HTTP ${status}`;
  try {
    const parsed = JSON.parse(body) as { error?: unknown; code?: unknown } | null;
    if (parsed && typeof parsed === 'object' && 'error' in parsed)
      return `HTTP 200 with error ${String(parsed.code ?? '')}`.trim();
  } catch {
    return 'HTTP 200 without JSON';
  }
  return undefined;
}
