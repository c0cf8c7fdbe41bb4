#!/usr/bin/env node
/**
 * One load-generator process of `make bench-scale` (scale.ts forks it with a
 * job as its argument): clients of one gateway, connected directly to it at a
 * bounded rate, each subscribed to one channel, counting every publication
 * they receive. Answers the bench's requests over the IPC channel; the bench
 * kills it when done. At most about 18,000 sockets each: the open-files limit.
 */

import { centrifugo } from '../connection.js';
import { Fleet } from '../fleet.js';
import { DeliveryTracker } from '../tracker.js';
import { tokens } from './measure.js';

export interface WorkerJob {
  url: string;
  /** The gateway's clients `from` .. `from + count - 1`; client i subscribes to `${channelPrefix}${i % channels}`. */
  from: number;
  count: number;
  channelPrefix: string;
  channels: number;
  /** Connection attempts per second of this worker. */
  connectRate: number;
  secret: string;
  timeoutMs: number;
}

export type WorkerCommand =
  | { type: 'connect' }
  /** A fresh count of deliveries, from now on. */
  | { type: 'reset' }
  /** Waits for the deliveries `publications` (channel → how many were published) owe these clients. */
  | { type: 'deliveries'; publications: Record<string, number>; timeoutMs: number }
  /** Connections that closed since they connected, and every error counted. */
  | { type: 'finish' };

export type WorkerRequest = { id: number } & WorkerCommand;

export interface Connected {
  connected: number;
  failed: number;
  /** The channels at least one of these clients subscribed to. */
  channels: string[];
  errors: Record<string, number>;
}

export interface Deliveries {
  expected: number;
  delivered: number;
  duplicated: number;
  reordered: number;
}

export interface Finished {
  closed: number;
  errors: Record<string, number>;
}

export type WorkerReply = { id: number } & (
  { reply: Connected | Deliveries | Finished | null } | { error: string }
);

const job = JSON.parse(process.argv[2]!) as WorkerJob;
const fleet = new Fleet({
  dialect: centrifugo,
  url: job.url,
  token: tokens(job.secret),
  // The system's choice: each gateway is its own destination port, so ~28k ephemeral ports per gateway.
  localAddresses: [],
  timeoutMs: job.timeoutMs,
});
const channelOf = (i: number) => `${job.channelPrefix}${i % job.channels}`;
const subscribed = new Set<string>();
let tracker = new DeliveryTracker();

async function handle(request: WorkerRequest): Promise<Connected | Deliveries | Finished | null> {
  switch (request.type) {
    case 'connect':
      await fleet.openMany(job.from, job.count, job.connectRate, async (conn, i) => {
        conn.onPublication = (channel, data) => tracker.receive(i, channel, data);
        await conn.subscribe(channelOf(i));
        subscribed.add(channelOf(i));
      });
      return {
        connected: fleet.connected,
        failed: fleet.failed,
        channels: [...subscribed],
        errors: Object.fromEntries(fleet.errors),
      };
    case 'reset':
      tracker = new DeliveryTracker();
      return null;
    case 'deliveries': {
      // Every client that ever connected is owed its channel's publications: a dropped one shows as lost.
      let expected = 0;
      fleet.connections.forEach((conn, i) => {
        if (conn) expected += request.publications[channelOf(i)] ?? 0;
      });
      await tracker.waitFor(expected, request.timeoutMs);
      const { delivered, duplicated, reordered } = tracker;
      return { expected, delivered, duplicated, reordered };
    }
    case 'finish':
      return { closed: fleet.closed, errors: Object.fromEntries(fleet.errors) };
  }
}

process.on('message', (request: WorkerRequest) => {
  handle(request).then(
    (reply) => process.send!({ id: request.id, reply } satisfies WorkerReply),
    (err: unknown) => process.send!({ id: request.id, error: String(err) } satisfies WorkerReply),
  );
});
// The bench is gone: so is its load.
process.on('disconnect', () => process.exit(0));
