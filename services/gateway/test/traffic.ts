/**
 * Traffic for tests: subscribers that record what they got and how often
 * they recovered, a steady publisher that remembers what was accepted, and a
 * gateway's connection count from its own metrics.
 */

import assert from 'node:assert/strict';
import { after } from 'node:test';
import type { Centrifuge, PublicationContext, Subscription } from 'centrifuge';
import { HISTORY_UNANSWERED } from '../src/node.js';
import { api, type Gateway, waitUntil } from './harness.js';

export interface Subscriber {
  sub: Subscription;
  got: PublicationContext[];
  /** When each of `got` arrived (Date.now()). */
  at: number[];
  /** How many resubscribes recovered missed publications. */
  recoveries: number;
}

export async function subscribe(c: Centrifuge, channel: string): Promise<Subscriber> {
  const sub = c.newSubscription(channel);
  const result: Subscriber = { sub, got: [], at: [], recoveries: 0 };
  sub.on('publication', (ctx) => {
    result.got.push(ctx);
    result.at.push(Date.now());
  });
  sub.on('subscribed', (ctx) => {
    if (ctx.wasRecovering && ctx.recovered) result.recoveries++;
  });
  sub.subscribe();
  await sub.ready(10_000);
  return result;
}

/** Connections open on one gateway, from its own metrics. */
export async function connectionsOn(gateway: Gateway, transport = 'websocket'): Promise<number> {
  const text = await (await fetch(`${gateway.internalUrl}/metrics`)).text();
  return Number(
    new RegExp(`^switchboard_connections\\{transport="${transport}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0,
  );
}

export const numbers = (got: PublicationContext[]) => got.map((p) => (p.data as { n: number }).n);

/**
 * A subscriber got exactly the accepted numbers, each once and in order, and
 * of `uncertain` (refused, but possibly stored: see Publisher) nothing but
 * some in their place. When not, the message names what differs (a list of
 * hundreds is cut short in assert's own diff): what is missing, what was
 * never accepted and what came twice, with the offset and the time each
 * arrived with.
 */
export function assertGotExactly(
  s: Subscriber,
  accepted: number[],
  what: string,
  uncertain: readonly number[] = [],
): void {
  const got = numbers(s.got);
  const wanted = new Set(accepted);
  const allowed = new Set([...accepted, ...uncertain]);
  const seen = new Set(got);
  // The publisher's numbers rise: strictly rising means each once and in order.
  const rising = got.every((n, i) => i === 0 || n > got[i - 1]!);
  if (rising && got.every((n) => allowed.has(n)) && accepted.every((n) => seen.has(n))) return;
  const arrived = (i: number) => `${got[i]}@${s.got[i]!.offset} (#${i}, ${s.at[i]})`;
  const foreign: string[] = [];
  const repeated: string[] = [];
  const before = new Set<number>();
  for (const [i, n] of got.entries()) {
    if (!wanted.has(n)) foreign.push(arrived(i));
    else if (before.has(n)) repeated.push(arrived(i));
    before.add(n);
  }
  const firstDifference = got.findIndex((n, i) => n !== accepted[i]);
  assert.fail(
    `${what}: got ${got.length} of ${accepted.length} accepted, recovered ${s.recoveries} times; ` +
      `missing [${accepted.filter((n) => !seen.has(n)).join(',')}], ` +
      `never accepted [${foreign.join(', ')}] (may be stored: [${uncertain.join(',')}]), twice [${repeated.join(', ')}], ` +
      `first difference at #${firstDifference}: got ${got.slice(firstDifference, firstDifference + 5).join(',')}, ` +
      `accepted ${accepted.slice(firstDifference, firstDifference + 5).join(',')}`,
  );
}

/**
 * The loops of publishers not stopped yet. A test that fails before it stops its
 * publisher would leave the loop running, and the test file's process would
 * never exit (nor would `make test`): whatever is left ends after the file's tests.
 */
const running = new Set<() => void>();
after(() => {
  for (const halt of running) halt();
});

/**
 * Publishes n = 1, 2, ... through `via` every 10 ms until stopped; returns the
 * accepted numbers, and those refused with an attempt unanswered (`may still
 * be stored`: JetStream may store them after all, like any timed-out write).
 */
export function publisher(via: () => Gateway, channel: string) {
  const accepted: number[] = [];
  const uncertain: number[] = [];
  /** When the publish of each n was sent (Date.now()). */
  const sentAt = new Map<number, number>();
  let n = 0;
  let on = true;
  const halt = () => {
    on = false;
    running.delete(halt);
  };
  running.add(halt);
  const done = (async () => {
    while (on) {
      const current = ++n;
      sentAt.set(current, Date.now());
      const res = await api(via(), 'publish', { channel, data: { n: current } }).catch(() => undefined);
      if (res?.body.result) accepted.push(current);
      else if (res?.body.error?.message === HISTORY_UNANSWERED.message) uncertain.push(current);
      await new Promise((r) => setTimeout(r, 10)); // the publishing rate, not a synchronisation
    }
  })();
  return {
    accepted,
    uncertain,
    sentAt,
    stop: async () => {
      halt();
      await done;
    },
  };
}

export type Publisher = ReturnType<typeof publisher>;

/** Milliseconds from publish to delivery at quantile `q` (0.99) over every subscriber's deliveries. */
export function deliveryLatency(pub: Publisher, subscribers: Subscriber[], q: number): number {
  const all = subscribers
    .flatMap((s) => s.got.map((p, i) => s.at[i]! - (pub.sentAt.get((p.data as { n: number }).n) ?? s.at[i]!)))
    .sort((a, b) => a - b);
  return all[Math.min(all.length - 1, Math.floor(q * all.length))] ?? 0;
}

/**
 * After a disruption: lets `pub` get `more` publications accepted, stops it,
 * and resolves once every subscriber has the last accepted one and as many as
 * were accepted (what they are is the caller's to compare); returns the
 * accepted numbers.
 */
export async function finishTraffic(
  pub: Publisher,
  subscribers: Subscriber[],
  more = 30,
  what = 'the disruption',
): Promise<number[]> {
  const from = pub.accepted.length;
  // A publish waits out a stream leader election for up to publish_timeout (15 s by default), and
  // one may follow a disruption (nats-server 2.9 elects again when a cut node rejoins): two of them.
  await waitUntil(
    () => pub.accepted.length >= from + more,
    30_000,
    () => `traffic after ${what}`,
  );
  await pub.stop();
  const total = pub.accepted.length;
  const last = pub.accepted.at(-1);
  // One that got a publication never accepted (refused, yet stored) has as many before the last.
  await waitUntil(
    () => subscribers.every((s) => s.got.length >= total && numbers(s.got).includes(last!)),
    20_000,
    () =>
      `every subscriber to have ${total} up to ${last}: ` +
      subscribers
        .map((s) => {
          const got = new Set(numbers(s.got));
          return `${s.got.length} without [${pub.accepted.filter((n) => !got.has(n)).slice(0, 20)}]`;
        })
        .join('; '),
  );
  return pub.accepted;
}

/**
 * SIGKILLs `gateways[victim]` while publishing to `channel` through another
 * gateway, and resolves once every subscriber has as many publications as
 * were accepted; returns the accepted numbers for the caller to compare.
 */
export async function killDuringTraffic(
  gateways: Gateway[],
  victim: number,
  channel: string,
  subscribers: Subscriber[],
): Promise<number[]> {
  const survivor = gateways[(victim + 1) % gateways.length]!;
  const pub = publisher(() => survivor, channel);
  await waitUntil(
    () => subscribers.every((s) => s.got.length >= 10),
    10_000,
    () => 'traffic before the kill',
  );
  await gateways[victim]!.stop('SIGKILL');
  return finishTraffic(pub, subscribers, 30, 'the kill');
}
