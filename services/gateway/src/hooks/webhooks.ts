/**
 * Webhooks, delivered at least once: Pusher apps' and Centrifugo
 * namespaces' (`webhook_url`: occupancy hooks). An event (from the occupancy
 * decider, or a client event or cache miss of a Pusher connection) becomes a
 * job per webhook that wants it, queued — in a cluster in a JetStream work
 * queue, replicated like history, so that no gateway's death loses one — and
 * POSTed by whichever gateway takes it, as Pusher sends them: `{time_ms,
 * events}` with `X-Pusher-Key` and `X-Pusher-Signature` (HMAC-SHA256 of the
 * body with the app's secret at the time of sending); a namespace's alike,
 * signed in `X-Switchboard-Signature` with the server API's signing key. A
 * refusal or a timeout is tried again with backoff (1 s, doubling, at most
 * 60 s) up to MAX_ATTEMPTS.
 */

import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import { isJsonObject, parseJson } from '@switchboard/protocol';
import { patiently } from '@switchboard/sdk';
import { isTransient, type NatsParts } from '../broker/nats.js';
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
/**
 * How long each pull request for jobs lives (nats.js renews it). A SIGKILLed gateway's last
 * request stays at the server until it expires, and a job handed to it waits out the ack
 * wait (30 s) before another gateway gets it: with the default 30 s expiry, an event decided
 * after a gateway's death (its channels vacated a presence TTL later) could go to the dead one.
 * Shorter than the presence TTL's minimum (3 s is the lowest allowed) it cannot; a pull every few
 * seconds per gateway costs the server nothing to speak of.
 */
const PULL_EXPIRES_MS = 2500;
/** A job waiting longer than this (every attempt failed meanwhile) is dropped by the stream. */
const JOB_MAX_AGE_MS = 24 * 3600 * 1000;

export const backoffMs = (attempt: number): number => Math.min(1000 * 2 ** (attempt - 1), 60_000);

/** One POST to one webhook: the app (its key and secret sign it when sent; '' for a namespace's hook), the URL and the body. */
export interface WebhookJob {
  app: string;
  url: string;
  body: string;
  /** Instead of a URL: the namespace whose backend service takes it over NATS (`service_hooks`). */
  service?: string;
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
  isJsonObject(v) &&
  typeof v.app === 'string' &&
  typeof v.url === 'string' &&
  typeof v.body === 'string' &&
  (v.service === undefined || typeof v.service === 'string');

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

  constructor(private readonly nats: NatsParts) {}

  private get stream(): string {
    return this.nats.subjects.hooksStream;
  }

  /** The stream and its consumer, made when missing (a cluster that just started may still elect its leader). */
  private async ensure(): Promise<void> {
    const jsm = await jetstreamManager(this.nats.nc());
    await patiently(
      async () => {
        await jsm.streams.info(this.stream).catch(async () => {
          await jsm.streams.add({
            name: this.stream,
            subjects: [this.nats.subjects.hooks('>')],
            retention: RetentionPolicy.Workqueue,
            storage: StorageType.File,
            num_replicas: this.nats.replicas,
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
    await jetstream(this.nats.nc()).publish(this.nats.subjects.hooks(job.app || '-'), JSON.stringify(job));
  }

  async consume(
    send: (job: WebhookJob) => Promise<boolean>,
    failed: (job: WebhookJob) => void,
  ): Promise<void> {
    await this.ensure();
    const consumer = await jetstream(this.nats.nc()).consumers.get(this.stream, 'webhooks');
    const messages = await consumer.consume({ max_messages: CONCURRENCY, expires: PULL_EXPIRES_MS });
    this.stop = () => void messages.close();
    void (async () => {
      for await (const msg of messages) {
        const parsed = parseJson(msg.string(), this.nats.maxDepth);
        if (!parsed.ok || !isJob(parsed.value)) {
          this.nats.metrics.invalidMessages.inc({ source: 'hooks' });
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
    })().catch((err) => this.nats.log.warn({ err }, 'webhook queue consumer ended'));
  }

  async close(): Promise<void> {
    this.stop?.();
  }
}

/** Where a Centrifugo namespace's occupancy hooks go. */
export interface NamespaceHooks {
  /** Its webhook_url ('' none). */
  url(namespace: string): string;
  /** Whether its backend service takes them too (service_hooks). */
  toService(namespace: string): boolean;
  /** Hands an event to the namespace's service; true once a replica acknowledged it. */
  deliver(namespace: string, event: unknown): Promise<boolean>;
  /** What signs the webhook_url POSTs (the server API's signing key). */
  signingKey(): string;
}

/** The namespace of a namespace hook's job: its first event's channel's. */
function namespaceOfJob(job: WebhookJob): string {
  const parsed = parseJson(job.body, 8);
  const events = parsed.ok && isJsonObject(parsed.value) ? parsed.value.events : undefined;
  const channel = Array.isArray(events) && isJsonObject(events[0]) ? String(events[0].channel) : '';
  const colon = channel.indexOf(':');
  return colon < 0 ? '' : channel.slice(0, colon);
}

/** Turns events into jobs for the webhooks that want them, and sends jobs. */
export class Webhooks {
  constructor(
    private readonly apps: Apps,
    private readonly queue: HookQueue,
    private readonly namespaces: NamespaceHooks,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  async start(): Promise<void> {
    await this.queue.consume(
      (job) => this.send(job),
      (job) => {
        this.count(job, 'failed');
        this.log.error({ app: job.app, url: job.url }, `webhook given up after ${MAX_ATTEMPTS} attempts`);
      },
    );
  }

  /** A decider transition: the webhook event Pusher sends for it (an app's channel), or the namespace's hook. */
  transition(t: Transition): void {
    const colon = t.channel.indexOf(':');
    const namespace = colon < 0 ? '' : t.channel.slice(0, colon);
    const app = this.apps.byNamespace(namespace);
    if (app) {
      const channel = pusherName(t.channel);
      const event: HookEvent =
        t.kind === 'member_added' || t.kind === 'member_removed'
          ? { name: t.kind, channel, user_id: t.user }
          : { name: t.kind, channel };
      return this.emit(app.id, event);
    }
    const event =
      'user' in t ? { name: t.kind, channel: t.channel, user: t.user } : { name: t.kind, channel: t.channel };
    const body = JSON.stringify({ time_ms: Date.now(), events: [event] });
    const url = this.namespaces.url(namespace);
    if (url !== '') this.enqueue({ app: '', url, body }, t.kind);
    if (this.namespaces.toService(namespace))
      this.enqueue({ app: '', url: '', body, service: namespace }, t.kind);
  }

  /** Queues the event for each of the app's webhooks that wants it. */
  emit(appId: string, event: HookEvent): void {
    const app = this.apps.byId(appId);
    if (!app) return;
    const body = JSON.stringify({ time_ms: Date.now(), events: [event] });
    for (const hook of app.webhooks) {
      if (hook.event_types.includes(event.name))
        this.enqueue({ app: app.id, url: hook.url, body }, event.name);
    }
  }

  private enqueue(job: WebhookJob, event: string): void {
    this.queue.enqueue(job).catch((err) => {
      this.count(job, 'failed');
      this.log.error({ err, app: job.app, event }, 'webhook could not be queued');
    });
  }

  private count(job: WebhookJob, outcome: 'delivered' | 'retried' | 'failed'): void {
    if (job.app === '') this.metrics.namespaceWebhooks.inc({ namespace: namespaceOfJob(job), outcome });
    else this.metrics.pusherWebhooks.inc({ app: job.app, outcome });
  }

  private async send(job: WebhookJob): Promise<boolean> {
    if (job.service !== undefined) return this.deliver(job, job.service);
    if (job.app === '')
      return this.post(job, {
        'x-switchboard-signature': webhookSignature(this.namespaces.signingKey(), job.body),
      });
    const app = this.apps.byId(job.app);
    // The app is gone: nobody wants it any more.
    if (!app) return true;
    return this.post(job, {
      'x-pusher-key': app.key,
      'x-pusher-signature': webhookSignature(app.secret, job.body),
    });
  }

  /** To the namespace's service over NATS: its answer acknowledges, an error or none has it retried. */
  private async deliver(job: WebhookJob, namespace: string): Promise<boolean> {
    const parsed = parseJson(job.body, 8);
    const events = parsed.ok && isJsonObject(parsed.value) ? parsed.value.events : undefined;
    const event = Array.isArray(events) ? events[0] : undefined;
    const done = event !== undefined && (await this.namespaces.deliver(namespace, event).catch(() => false));
    this.count(job, done ? 'delivered' : 'retried');
    return done;
  }

  private async post(job: WebhookJob, headers: Record<string, string>): Promise<boolean> {
    try {
      const res = await fetch(job.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: job.body,
        redirect: 'error',
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      await res.arrayBuffer().catch(() => undefined);
      const done = res.status >= 200 && res.status < 300;
      this.count(job, done ? 'delivered' : 'retried');
      return done;
    } catch (err) {
      this.count(job, 'retried');
      this.log.warn(
        { err: (err as Error).message, app: job.app, url: job.url },
        'webhook not delivered: retrying',
      );
      return false;
    }
  }
}
