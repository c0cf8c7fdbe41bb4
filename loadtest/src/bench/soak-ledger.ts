/**
 * Delivery accounting of the soak, where connections come and go while
 * publications flow: which publications a subscriber had to receive, and
 * which it did. Pure (time is passed in), so it is unit-tested apart from
 * the sockets.
 *
 * Each publication carries its channel's sequence number (0, 1, 2, ...).
 * A subscription's *session* runs from its subscribe reply to the moment
 * the soak closes the connection (or sees it closed). It must receive:
 *
 * - from: every publication *sent* after the subscribe reply arrived. The
 *   gateway registered the subscription before it replied, and the publisher
 *   sends after the reply was read, so the gateway sees the publish after
 *   the subscription. Those sent before may or may not arrive (in flight):
 *   they are not counted either way.
 * - up to: every publication whose publish answer the publisher had
 *   received `graceMs` before the session ended: the gateway had delivered
 *   it long before the connection went away. Later ones are not counted.
 *
 * Failed publishes (error or timeout) are left out of what is expected, and
 * the open sessions of the channel step over them (a gap nothing will fill).
 * Lost is expected minus received within that range; duplicated is a
 * sequence received twice in one session; reordered as in DeliveryTracker.
 */

/** What one subscription session received of its channel. */
export class Session {
  /** First sequence it must receive; Infinity until the subscribe reply. */
  from = Infinity;
  /** Every sequence in [from, next) received or stepped over (failed publishes). */
  private next = Infinity;
  /** Received (or stepped over) above a gap. */
  private readonly ahead = new Set<number>();
  /** Unique sequences received at or above `from`. */
  received = 0;
  duplicated = 0;
  reordered = 0;
  /** Received below `from` (sent before the subscription was known to be in place): not judged. */
  early = 0;
  closed = false;

  constructor(readonly channel: number) {}

  /** The subscribe reply arrived when `sent` publications of the channel had been sent. */
  start(sent: number): void {
    this.from = sent;
    this.next = sent;
  }

  receive(seq: number): void {
    if (this.closed) return;
    if (seq < this.from) {
      this.early++;
      return;
    }
    if (seq < this.next || this.ahead.has(seq)) {
      this.duplicated++;
      return;
    }
    this.received++;
    if (seq > this.next) {
      this.ahead.add(seq);
      return;
    }
    if (this.ahead.size > 0) this.reordered++;
    this.advance();
  }

  /** `seq` was never published (its publish failed): no gap to wait for, nothing received. */
  skip(seq: number): void {
    if (this.closed || seq < this.next || this.ahead.has(seq)) return;
    if (seq > this.next) this.ahead.add(seq);
    else this.advance();
  }

  private advance(): void {
    this.next++;
    while (this.ahead.delete(this.next)) this.next++;
  }

  /** Sequences in [from, upTo) received or stepped over. */
  receivedBelow(upTo: number): number {
    if (this.from === Infinity || upTo <= this.from) return 0;
    if (this.next >= upTo) return upTo - this.from;
    let above = 0;
    for (const s of this.ahead) if (s < upTo) above++;
    return this.next - this.from + above;
  }
}

export interface DeliveryCount {
  /** Publications the sessions had to receive (see the module comment). */
  expected: number;
  /** Of those, received. */
  delivered: number;
  lost: number;
  duplicated: number;
  reordered: number;
  /** Every unique publication received, counted or not (sessions' whole lives). */
  received: number;
}

const zero = (): DeliveryCount => ({
  expected: 0,
  delivered: 0,
  lost: 0,
  duplicated: 0,
  reordered: 0,
  received: 0,
});

/** Per channel: publications sent, their answers, and the answered counts as they were a while ago. */
export class Ledger {
  /** Publications sent per channel (the next sequence number). */
  readonly sent: number[];
  /** Publish answers received per channel (success or failure). */
  private readonly settled: number[];
  /** Sequences whose publish failed, per channel (rare: kept as lists). */
  private readonly failed: number[][];
  /** `settled` as it was at `at`, oldest first, about a second apart. */
  private readonly history: { at: number; settled: number[] }[] = [];
  /** Open sessions per channel. */
  private readonly open: Set<Session>[];
  /** What the sessions closed so far had to receive and received. */
  private readonly done = zero();
  publishErrors = 0;

  constructor(
    readonly channels: number,
    readonly graceMs: number,
  ) {
    this.sent = new Array<number>(channels).fill(0);
    this.settled = new Array<number>(channels).fill(0);
    this.failed = Array.from({ length: channels }, () => []);
    this.open = Array.from({ length: channels }, () => new Set());
  }

  /** The sequence number of the channel's next publication. */
  nextSeq(channel: number): number {
    return this.sent[channel]!++;
  }

  /** The publish of `seq` was answered (ok) or failed. */
  settle(channel: number, seq: number, ok: boolean): void {
    this.settled[channel]!++;
    if (!ok) {
      this.publishErrors++;
      this.failed[channel]!.push(seq);
      for (const session of this.open[channel]!) session.skip(seq);
    }
  }

  /** Remembers the answered counts at `at` (call about once a second); forgets what no session can need. */
  remember(at: number): void {
    this.history.push({ at, settled: [...this.settled] });
    // Keep the newest entry at or before at - grace, and everything after it.
    while (this.history.length > 1 && this.history[1]!.at <= at - this.graceMs) this.history.shift();
  }

  /** Answered publications of `channel` by `at - graceMs` (0 when nothing was remembered that early). */
  settledBefore(channel: number, at: number): number {
    let value = 0;
    for (const h of this.history) {
      if (h.at > at - this.graceMs) break;
      value = h.settled[channel]!;
    }
    return value;
  }

  /** A new session of `channel`, not started yet (see Session.start). */
  openSession(channel: number): Session {
    const session = new Session(channel);
    this.open[channel]!.add(session);
    return session;
  }

  /** Ends a session at `at`: what it had to receive is now counted for good. */
  closeSession(session: Session, at: number): void {
    if (session.closed) return;
    add(this.done, this.judge(session, at));
    session.closed = true;
    this.open[session.channel]!.delete(session);
  }

  /**
   * Everything so far: closed sessions, and open ones judged as if they ended at `at` (so the
   * figures can be sampled during the run). After the last publication was answered, waiting
   * graceMs and remembering again makes `at` cover everything sent.
   */
  count(at: number): DeliveryCount {
    const total = { ...this.done };
    for (const sessions of this.open) for (const session of sessions) add(total, this.judge(session, at));
    return total;
  }

  get openSessions(): number {
    return this.open.reduce((n, sessions) => n + sessions.size, 0);
  }

  private judge(session: Session, at: number): DeliveryCount {
    const { channel, from } = session;
    const upTo = this.settledBefore(channel, at);
    const span = from === Infinity ? 0 : Math.max(0, upTo - from);
    let failed = 0;
    if (span > 0) for (const s of this.failed[channel]!) if (s >= from && s < upTo) failed++;
    // Received or stepped over: what is missing of the span is lost.
    const lost = span - session.receivedBelow(upTo);
    const expected = span - failed;
    return {
      expected,
      delivered: expected - lost,
      lost,
      duplicated: session.duplicated,
      reordered: session.reordered,
      received: session.received,
    };
  }
}

function add(into: DeliveryCount, more: DeliveryCount): void {
  into.expected += more.expected;
  into.delivered += more.delivered;
  into.lost += more.lost;
  into.duplicated += more.duplicated;
  into.reordered += more.reordered;
  into.received += more.received;
}
