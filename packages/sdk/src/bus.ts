/**
 * The one transport between gateways and backend services: request/reply
 * with queue groups. Over NATS in a cluster; in-process in embedded mode,
 * with the same semantics (one replica of a queue group answers; no one
 * listening is "no responders").
 */

export type Handler = (data: Uint8Array) => Promise<Uint8Array>;

export class NoResponders extends Error {
  constructor(subject: string) {
    super(`no service answers on ${subject}`);
  }
}

export class RequestTimeout extends Error {
  constructor(subject: string, ms: number) {
    super(`no answer on ${subject} within ${ms} ms`);
  }
}

export interface Bus {
  /** Sends a request to one member of whichever queue group serves `subject`. */
  request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
  /** Answers requests on `subject` as a member of `queue`; returns a function that stops it. */
  serve(subject: string, queue: string, handler: Handler): () => void;
  /** Resolves once what `serve` set up is in place (the NATS server knows the subscriptions). */
  flush(): Promise<void>;
}

/** In-process bus: queue groups take turns, like NATS spreads requests over replicas. */
export class LocalBus implements Bus {
  private readonly groups = new Map<string, Map<string, { members: Handler[]; next: number }>>();

  async request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const group = [...(this.groups.get(subject)?.values() ?? [])][0];
    if (!group || group.members.length === 0) throw new NoResponders(subject);
    const handler = group.members[group.next++ % group.members.length]!;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RequestTimeout(subject, timeoutMs)), timeoutMs);
    });
    try {
      return await Promise.race([handler(data), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async flush(): Promise<void> {}

  serve(subject: string, queue: string, handler: Handler): () => void {
    let queues = this.groups.get(subject);
    if (!queues) {
      queues = new Map();
      this.groups.set(subject, queues);
    }
    let group = queues.get(queue);
    if (!group) {
      group = { members: [], next: 0 };
      queues.set(queue, group);
    }
    group.members.push(handler);
    const g = group;
    return () => {
      g.members = g.members.filter((h) => h !== handler);
    };
  }
}
