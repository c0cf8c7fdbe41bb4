/**
 * Jobs, an example backend service owning the `jobs` namespace: long-running
 * work whose progress is pushed to the browser until it is done.
 *
 * - RPC `start {steps?, interval_ms?}` answers `{job}` at once, then
 *   publishes `{job, progress, done}` to the caller's personal channel
 *   `jobs:#<user>` every interval until progress 100 with `done: true`.
 * - RPC `cancel {job}` stops one of the caller's jobs, whichever replica
 *   runs it: the job id names its replica, and a replica that does not run
 *   the job forwards the cancel to the one that does over the bus.
 * - Subscribe: only `jobs:#<own user>`. Client publications are refused.
 *
 * Jobs live in the replica that started them: when it stops, its jobs end
 * (their subscribers get a last `done: true, cancelled: true` publication).
 */

import { randomBytes } from 'node:crypto';
import { Errors, type ServiceReply, Subjects } from '@switchboard/protocol';
import { type Bus, Service, ServiceError, type ServiceRegistry } from '@switchboard/sdk';

export interface JobsOptions {
  /** Subject prefix of the deployment (`SWITCHBOARD_NATS_PREFIX`), default `sb`. */
  prefix?: string;
  /** Where the replica announces itself (the NATS KV registry in a cluster). */
  registry?: ServiceRegistry;
  /** Namespace the service owns, default `jobs`. */
  namespace?: string;
  /** Running jobs one user may have on one replica; beyond that `start` gets 106. Default 5. */
  maxJobsPerUser?: number;
  /** Running jobs on one replica; default 1000. */
  maxJobs?: number;
}

/** What the personal channel receives. */
export interface Progress {
  job: string;
  /** 0..100 */
  progress: number;
  done: boolean;
  /** Present when the job was cancelled (by its user, or because its replica stopped). */
  cancelled?: true;
}

interface Job {
  id: string;
  user: string;
  steps: number;
  intervalMs: number;
  step: number;
  timer: NodeJS.Timeout | undefined;
  /** Publications of one job go out one after another, in order. */
  queue: Promise<void>;
}

const JOB_ID = /^([0-9a-f]{8})-[0-9a-f]{8}$/;
/** A user id that names a personal channel on its own (no `#`, no `,`). */
const PERSONAL_USER = /^[A-Za-z0-9_\-:./@=!~+]{1,128}$/;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class JobsService extends Service {
  /** Short id of this replica, the first half of its job ids. */
  readonly replica = randomBytes(4).toString('hex');
  private readonly jobs = new Map<string, Job>();
  private readonly maxJobsPerUser: number;
  private readonly maxJobs: number;
  private readonly replicaSubjects: (replica: string) => string;
  private stopReplica: (() => void) | undefined;

  constructor(
    private readonly jobsBus: Bus,
    options: JobsOptions = {},
  ) {
    const namespace = options.namespace ?? 'jobs';
    const prefix = options.prefix ?? 'sb';
    super(jobsBus, { namespace, prefix }, options.registry);
    this.maxJobsPerUser = options.maxJobsPerUser ?? 5;
    this.maxJobs = options.maxJobs ?? 1000;
    const queue = new Subjects(prefix).serviceQueue(namespace);
    // Beside the gateway's `<prefix>.svc.<ns>.{subscribe,publish,rpc}`: one subject per replica.
    this.replicaSubjects = (replica) => `${queue}.replica.${replica}`;

    this.onSubscribe((req) => {
      if (req.user === '' || req.channel !== this.channelOf(req.user))
        throw new ServiceError(103, `subscribe to your own channel ${namespace}:#<your user id>`);
      return {};
    });
    this.onPublish(() => {
      throw new ServiceError(103, 'clients do not publish here: progress comes from the service');
    });
    this.onRpc('start', (req) => {
      const user = personal(req.user);
      const steps = integer(req.data, 'steps', 1, 100, 10);
      const intervalMs = integer(req.data, 'interval_ms', 10, 5000, 200);
      return { job: this.startJob(user, steps, intervalMs) };
    });
    this.onRpc('cancel', async (req) => {
      const user = personal(req.user);
      const job = isObject(req.data) ? req.data.job : undefined;
      const match = typeof job === 'string' ? JOB_ID.exec(job) : null;
      if (!match || typeof job !== 'string') throw new ServiceError(107, 'job must be a job id from start');
      if (match[1] === this.replica) return this.cancelJob(user, job);
      return this.forwardCancel(match[1]!, user, job);
    });
  }

  /** Running jobs on this replica (of one user, or all). */
  running(user?: string): number {
    let n = 0;
    for (const job of this.jobs.values()) if (user === undefined || job.user === user) n++;
    return n;
  }

  override async start(heartbeatMs?: number): Promise<void> {
    await super.start(heartbeatMs);
    const subject = this.replicaSubjects(this.replica);
    this.stopReplica = this.jobsBus.serve(subject, subject, async (data) => {
      let reply: ServiceReply<unknown>;
      try {
        const { user, job } = JSON.parse(decoder.decode(data)) as { user: string; job: string };
        reply = { result: await this.cancelJob(user, job) };
      } catch (err) {
        const e = err instanceof ServiceError ? err : ServiceError.from(Errors.internal);
        reply = { error: { code: e.code, message: e.message, ...(e.temporary ? { temporary: true } : {}) } };
      }
      return encoder.encode(JSON.stringify(reply));
    });
  }

  /** Stops answering, then ends every running job with a last `cancelled` publication. */
  override async stop(): Promise<void> {
    this.stopReplica?.();
    this.stopReplica = undefined;
    await super.stop();
    const running = [...this.jobs.values()];
    await Promise.allSettled(running.map((job) => this.endJob(job)));
  }

  private channelOf(user: string): string {
    return `${this.namespace}:#${user}`;
  }

  private startJob(user: string, steps: number, intervalMs: number): string {
    if (this.running(user) >= this.maxJobsPerUser)
      throw new ServiceError(106, `limit exceeded: at most ${this.maxJobsPerUser} running jobs per user`);
    if (this.jobs.size >= this.maxJobs) throw new ServiceError(106, 'limit exceeded: too many running jobs');
    const id = `${this.replica}-${randomBytes(4).toString('hex')}`;
    const job: Job = { id, user, steps, intervalMs, step: 0, timer: undefined, queue: Promise.resolve() };
    this.jobs.set(id, job);
    const tick = () => {
      job.timer = undefined;
      job.step++;
      const done = job.step >= job.steps;
      if (done) this.jobs.delete(id);
      this.send(job, { job: id, progress: Math.floor((job.step * 100) / job.steps), done });
      if (!done) job.timer = setTimeout(tick, job.intervalMs);
    };
    job.timer = setTimeout(tick, intervalMs);
    return id;
  }

  private async cancelJob(user: string, id: string): Promise<{ cancelled: boolean }> {
    const job = this.jobs.get(id);
    // Finished, cancelled before, or never started: nothing to cancel.
    if (!job) return { cancelled: false };
    if (job.user !== user) throw new ServiceError(103, 'not your job');
    await this.endJob(job);
    return { cancelled: true };
  }

  private endJob(job: Job): Promise<void> {
    clearTimeout(job.timer);
    job.timer = undefined;
    this.jobs.delete(job.id);
    const progress = Math.floor((job.step * 100) / job.steps);
    return this.send(job, { job: job.id, progress, done: true, cancelled: true });
  }

  /** Queues a publication behind the job's earlier ones; a failed publication does not stop the job. */
  private send(job: Job, progress: Progress): Promise<void> {
    job.queue = job.queue.then(() =>
      this.publish(this.channelOf(job.user), progress).then(
        () => undefined,
        () => undefined,
      ),
    );
    return job.queue;
  }

  /** The job runs on another replica: ask that one. */
  private async forwardCancel(replica: string, user: string, job: string): Promise<{ cancelled: boolean }> {
    let raw: Uint8Array;
    try {
      raw = await this.jobsBus.request(
        this.replicaSubjects(replica),
        encoder.encode(JSON.stringify({ user, job })),
        5000,
      );
    } catch {
      // The replica is gone (and its jobs with it) or does not answer.
      return { cancelled: false };
    }
    const reply = JSON.parse(decoder.decode(raw)) as ServiceReply<{ cancelled: boolean }>;
    if ('error' in reply) throw ServiceError.from(reply.error);
    return reply.result;
  }
}

export function createJobsService(bus: Bus, options: JobsOptions = {}): JobsService {
  return new JobsService(bus, options);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The caller's id, usable as a personal channel; anonymous callers have none. */
function personal(user: string): string {
  if (user === '') throw new ServiceError(103, 'sign in to run jobs: progress goes to your personal channel');
  if (!PERSONAL_USER.test(user)) throw new ServiceError(107, 'user id cannot name a personal channel');
  return user;
}

function integer(data: unknown, name: string, min: number, max: number, fallback: number): number {
  if (data !== undefined && data !== null && !isObject(data))
    throw new ServiceError(107, 'data must be an object');
  const value = isObject(data) ? data[name] : undefined;
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    throw new ServiceError(107, `${name} must be an integer from ${min} to ${max}`);
  return value;
}
