/**
 * Pusher webhooks, delivered at least once: an event (from the occupancy
 * decider, or a client event or cache miss of a connection) becomes a job
 * per webhook that wants it, queued — in a cluster in a JetStream work queue,
 * replicated like history, so that no gateway's death loses one — and POSTed
 * by whichever gateway takes it, as Pusher sends them: `{time_ms, events}`
 * with `X-Pusher-Key` and `X-Pusher-Signature` (HMAC-SHA256 of the body with
 * the app's secret at the time of sending). A refusal or a timeout is tried
 * again with backoff (1 s, doubling, at most 60 s) up to MAX_ATTEMPTS.
 */

import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { type NatsConnection, nanos } from '@nats-io/transport-node';
import { isJsonObject, parseJson, type Subjects } from '@switchboard/protocol';
import { patiently } from '@switchboard/sdk';
import { isTransient } from '../broker/nats.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { Apps, WebhookEvent } from '../pusher/apps.js';
import { pusherName } from '../pusher/apps.js';
import { webhookSignature } from '../pusher/signature.js';
import type { Transition } from './occupancy.js';

/** Deliveries of one job before it is given up (and counted as failed). */
export const MAX_ATTEMPTS = 8;
/** How long a webhook endpoint has to answer. */
const REQUEST_TIMEOUT_MS = 10_000;
/** Jobs one gateway sends at once. */
const CONCURRENCY = 32;
/** A job waiting longer than this (every attempt failed meanwhile) is dropped by the stream. */
const JOB_MAX_AGE_MS = 24 * 3600 * 1000;

export const backoffMs = (attempt: number): number => Math.min(1000 * 2 ** (attempt - 1), 60_000);

/** One POST to one webhook: the app (its key and secret sign it when sent), the URL and the body. */
export interface WebhookJob {
  app: string;
  url: string;
  body: string;
}

/** A webhook event as Pusher's payload lists it. */
export type HookEvent = { name: WebhookEvent; channel: string } & Record<string, unknown>;

/** Where jobs wait until one gateway has sent them. */
export interface HookQueue {
  enqueue(job: WebhookJob): Promise<void>;
  /** Hands each job to `send` (true: done), again after a backoff while it fails, up to MAX_ATTEMPTS. */
  consume(send: (job: WebhookJob) => Promise<boolean>, failed: (job: WebhookJob) => void): Promise<void>;
  close(): Promise<void>;
}

const isJob = (v: unknown): v is WebhookJob =>
  isJsonObject(v) && typeof v.app === 'string' && typeof v.url === 'string' && typeof v.body === 'string';

/** Embedded mode: jobs in memory (one process: nothing else could take them over). */
export class MemoryHookQueue implements HookQueue {
  private send: ((job: WebhookJob) => Promise<boolean>) | undefined;
  private failed: ((job: WebhookJob) => void) | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();

  async enqueue(job: WebhookJob): Promise<void> {
    this.attempt(job, 1);
  }

  async consume(
    send: (job: WebhookJob) => Promise<boolean>,
    failed: (job: WebhookJob) => void,
  ): Promise<void> {
    this.send = send;
    this.failed = failed;
  }

  private attempt(job: WebhookJob, n: number): void {
    const send = this.send;
    if (!send) return;
    void send(job).then((done) => {
      if (done) return;
      if (n >= MAX_ATTEMPTS) return this.failed?.(job);
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        this.attempt(job, n + 1);
      }, backoffMs(n));
      this.timers.add(timer);
    });
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    this.send = undefined;
  }
}

/** Cluster mode: a JetStream work queue; every gateway consumes from one durable consumer. */
export class JetStreamHookQueue implements HookQueue {
  private stop: (() => void) | undefined;

  constructor(
    private readonly nc: () => NatsConnection,
    private readonly subjects: Subjects,
    private readonly replicas: number,
    private readonly maxDepth: number,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  private get stream(): string {
    return this.subjects.hooksStream;
  }

  /** The stream and its consumer, made when missing (a cluster that just started may still elect its leader). */
  private async ensure(): Promise<void> {
    const jsm = await jetstreamManager(this.nc());
    await patiently(
      async () => {
        await jsm.streams.info(this.stream).catch(async () => {
          await jsm.streams.add({
            name: this.stream,
            subjects: [this.subjects.hooks('>')],
            retention: RetentionPolicy.Workqueue,
            storage: StorageType.File,
            num_replicas: this.replicas,
            max_age: nanos(JOB_MAX_AGE_MS),
          });
        });
        await jsm.consumers.info(this.stream, 'webhooks').catch(async () => {
          await jsm.consumers.add(this.stream, {
            durable_name: 'webhooks',
            ack_policy: AckPolicy.Explicit,
            ack_wait: nanos(REQUEST_TIMEOUT_MS * 3),
            max_deliver: MAX_ATTEMPTS,
            max_ack_pending: 1000,
          });
        });
      },
      { retryIf: isTransient },
    );
  }

  async enqueue(job: WebhookJob): Promise<void> {
    await jetstream(this.nc()).publish(this.subjects.hooks(job.app), JSON.stringify(job));
  }

  async consume(
    send: (job: WebhookJob) => Promise<boolean>,
    failed: (job: WebhookJob) => void,
  ): Promise<void> {
    await this.ensure();
    const consumer = await jetstream(this.nc()).consumers.get(this.stream, 'webhooks');
    const messages = await consumer.consume({ max_messages: CONCURRENCY });
    this.stop = () => void messages.close();
    void (async () => {
      for await (const msg of messages) {
        const parsed = parseJson(msg.string(), this.maxDepth);
        if (!parsed.ok || !isJob(parsed.value)) {
          this.metrics.invalidMessages.inc({ source: 'hooks' });
          msg.term('not a webhook job');
          continue;
        }
        const job = parsed.value;
        const attempt = msg.info.deliveryCount;
        void send(job).then((done) => {
          if (done) msg.ack();
          else if (attempt >= MAX_ATTEMPTS) {
            msg.term('every attempt failed');
            failed(job);
          } else msg.nak(backoffMs(attempt));
        });
      }
    })().catch((err) => this.log.warn({ err }, 'webhook queue consumer ended'));
  }

  async close(): Promise<void> {
    this.stop?.();
  }
}

/** Turns events into jobs for the webhooks that want them, and sends jobs. */
export class Webhooks {
  constructor(
    private readonly apps: Apps,
    private readonly queue: HookQueue,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  async start(): Promise<void> {
    await this.queue.consume(
      (job) => this.send(job),
      (job) => {
        this.metrics.pusherWebhooks.inc({ app: job.app, outcome: 'failed' });
        this.log.error({ app: job.app, url: job.url }, `webhook given up after ${MAX_ATTEMPTS} attempts`);
      },
    );
  }

  /** A decider transition of an app's channel, as the webhook event Pusher sends for it. */
  transition(t: Transition): void {
    const colon = t.channel.indexOf(':');
    const app = this.apps.byNamespace(t.channel.slice(0, colon));
    if (!app) return;
    const channel = pusherName(t.channel);
    const event: HookEvent =
      t.kind === 'member_added' || t.kind === 'member_removed'
        ? { name: t.kind, channel, user_id: t.user }
        : { name: t.kind, channel };
    this.emit(app.id, event);
  }

  /** Queues the event for each of the app's webhooks that wants it. */
  emit(appId: string, event: HookEvent): void {
    const app = this.apps.byId(appId);
    if (!app) return;
    const body = JSON.stringify({ time_ms: Date.now(), events: [event] });
    for (const hook of app.webhooks) {
      if (!hook.event_types.includes(event.name)) continue;
      this.queue.enqueue({ app: app.id, url: hook.url, body }).catch((err) => {
        this.metrics.pusherWebhooks.inc({ app: app.id, outcome: 'failed' });
        this.log.error({ err, app: app.id, event: event.name }, 'webhook could not be queued');
      });
    }
  }

  private async send(job: WebhookJob): Promise<boolean> {
    const app = this.apps.byId(job.app);
    // The app is gone: nobody wants it any more.
    if (!app) return true;
    try {
      const res = await fetch(job.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-pusher-key': app.key,
          'x-pusher-signature': webhookSignature(app.secret, job.body),
        },
        body: job.body,
        redirect: 'error',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      await res.arrayBuffer().catch(() => undefined);
      const done = res.status >= 200 && res.status < 300;
      this.metrics.pusherWebhooks.inc({ app: app.id, outcome: done ? 'delivered' : 'retried' });
      return done;
    } catch (err) {
      this.metrics.pusherWebhooks.inc({ app: app.id, outcome: 'retried' });
      this.log.warn(
        { err: (err as Error).message, app: app.id, url: job.url },
        'webhook not delivered: retrying',
      );
      return false;
    }
  }
}
