/**
 * The pure half of the lean subscriber (lean-client.ts): server WebSocket
 * frames out of TCP chunks, JSON lines out of a frame, and a publication's
 * sequence and send time out of a line, all without JSON.parse or a string
 * per line. A frame may carry one push or many newline-separated lines
 * (Centrifugo's JSON protocol allows both); replies, pings and anything else
 * go to `other` as a string, the rare path.
 */

export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

export interface FrameHandler {
  /** A whole text or binary message (fragments joined): `buf[start..end)`, valid only during the call. */
  message(buf: Buffer, start: number, end: number): void;
  ping(payload: Buffer): void;
  close(code: number, reason: string): void;
}

/**
 * Reads a server's WebSocket frames from TCP chunks split anywhere: a frame
 * cut by a chunk boundary waits (copied) for the rest, so the chunk's buffer
 * may be reused once `push` returns. Server frames are unmasked; a masked
 * one is unmasked in place anyway.
 */
export class FrameReader {
  /** Frames read (data, control and continuation). */
  frames = 0;
  private pending: Buffer | undefined;
  private fragments: Buffer[] = [];

  constructor(private readonly handler: FrameHandler) {}

  push(chunk: Buffer, from = 0, to = chunk.length): void {
    let buf = chunk;
    let pos = from;
    let end = to;
    if (this.pending !== undefined) {
      buf = Buffer.concat([this.pending, chunk.subarray(from, to)]);
      this.pending = undefined;
      pos = 0;
      end = buf.length;
    }
    while (end - pos >= 2) {
      const b0 = buf[pos]!;
      const b1 = buf[pos + 1]!;
      let length = b1 & 0x7f;
      let header = 2;
      if (length === 126) {
        if (end - pos < 4) break;
        length = (buf[pos + 2]! << 8) | buf[pos + 3]!;
        header = 4;
      } else if (length === 127) {
        if (end - pos < 10) break;
        length = buf.readUInt32BE(pos + 2) * 2 ** 32 + buf.readUInt32BE(pos + 6);
        header = 10;
      }
      const masked = (b1 & 0x80) !== 0;
      if (masked) header += 4;
      if (end - pos < header + length) break;
      const start = pos + header;
      pos = start + length;
      if (masked) unmask(buf, start, pos, start - 4);
      this.frames++;
      this.frame((b0 & 0x80) !== 0, b0 & 0x0f, buf, start, pos);
    }
    if (pos < end) this.pending = Buffer.from(buf.subarray(pos, end));
  }

  private frame(fin: boolean, opcode: number, buf: Buffer, start: number, end: number): void {
    if (opcode === OP_TEXT || opcode === OP_BINARY || opcode === OP_CONTINUATION) {
      if (fin && this.fragments.length === 0) {
        this.handler.message(buf, start, end);
        return;
      }
      this.fragments.push(Buffer.from(buf.subarray(start, end)));
      if (fin) {
        const whole = Buffer.concat(this.fragments);
        this.fragments = [];
        this.handler.message(whole, 0, whole.length);
      }
    } else if (opcode === OP_PING) {
      this.handler.ping(Buffer.from(buf.subarray(start, end)));
    } else if (opcode === OP_CLOSE) {
      const code = end - start >= 2 ? (buf[start]! << 8) | buf[start + 1]! : 1005;
      this.handler.close(code, buf.toString('utf8', Math.min(end, start + 2), end));
    }
    // OP_PONG and unknown opcodes: nothing to do.
  }
}

function unmask(buf: Buffer, start: number, end: number, key: number): void {
  for (let i = start; i < end; i++) buf[i]! ^= buf[key + ((i - start) & 3)]!;
}

/** A client frame (masked, as RFC 6455 wants of clients) carrying `payload`. */
export function clientFrame(opcode: number, payload: Buffer, mask: Buffer): Buffer {
  const length = payload.length;
  const header = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + 4 + length);
  frame[0] = 0x80 | opcode;
  if (header === 2) frame[1] = 0x80 | length;
  else if (header === 4) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    frame.writeUInt32BE(length % 2 ** 32, 6);
  }
  mask.copy(frame, header, 0, 4);
  for (let i = 0; i < length; i++) frame[header + 4 + i] = payload[i]! ^ mask[i & 3]!;
  return frame;
}

/** An unmasked server frame (for tests and for reading back what a server sends). */
export function serverFrame(opcode: number, payload: Buffer, fin = true): Buffer {
  const length = payload.length;
  const header = length < 126 ? 2 : length < 65536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + length);
  frame[0] = (fin ? 0x80 : 0) | opcode;
  if (header === 2) frame[1] = length;
  else if (header === 4) {
    frame[1] = 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 127;
    frame.writeUInt32BE(Math.floor(length / 2 ** 32), 2);
    frame.writeUInt32BE(length % 2 ** 32, 6);
  }
  payload.copy(frame, header);
  return frame;
}

export interface LineHandler {
  /**
   * A publication of the benchmark's payload: its sequence, and its send time
   * (ms since the epoch) when this line's time was read, else -1 (see
   * LineScanner's `timeEvery`).
   */
  publication(seq: number, sentAt: number): void;
  /** Any other line (a reply, a `{}` ping, another push). */
  other(line: string): void;
}

/**
 * How a protocol's publication line is recognised, and where the benchmark
 * payload `{"s":<seq>,"t":<ms>,...}` (tracker.ts payload()) sits in it.
 */
export interface PayloadMarks {
  /** How a publication line starts. */
  line: Buffer;
  /** Where the payload starts, and what stands before its send time. */
  seq: Buffer;
  time: Buffer;
}

/** Centrifugo's JSON protocol: `{"push":{...,"pub":{"data":{"s":1,"t":...}}}}`. */
export const CENTRIFUGO_MARKS: PayloadMarks = {
  line: Buffer.from('{"push":'),
  seq: Buffer.from('{"s":'),
  time: Buffer.from(',"t":'),
};

/**
 * Pusher's protocol: an event's data is a string, the payload JSON in it:
 * `{"event":"e","channel":"c","data":"{\"s\":1,\"t\":...}"}`.
 */
export const PUSHER_MARKS: PayloadMarks = {
  line: Buffer.from('{"event":"'),
  seq: Buffer.from('{\\"s\\":'),
  time: Buffer.from(',\\"t\\":'),
};

const NEWLINE = 0x0a;
const DOT = 0x2e;
const ZERO = 0x30;
const BRACE = 0x7b;

/**
 * Splits messages on '\n' and reads each line in place. What keeps a line
 * cheap (a byte costs several ns in a JavaScript loop): the next newline of
 * a buffer is searched natively, once, and remembered, so that a read of
 * many one-line frames is searched once, not once per frame; where in a
 * line the payload's `{"s":` was last found is looked at first; and the
 * send time, 17 digits, is read in one line of every `timeEvery` only (the
 * sequence in all of them).
 *
 * A buffer's bytes must not change while it is being scanned (a TCP read's
 * bytes are a new Buffer view per read).
 */
export class LineScanner {
  private seqHint = -1;
  private newlineIn: Buffer | undefined;
  private newlineAt = 0;
  private timeCountdown: number;
  /** Where the last number read ended. */
  private numberEnd = 0;

  /** `timeEvery`: read the send time of one publication in this many; `phase` (0 ..): which one first. */
  constructor(
    private readonly timeEvery = 1,
    phase = 0,
    private readonly marks: PayloadMarks = CENTRIFUGO_MARKS,
  ) {
    this.timeCountdown = 1 + (phase % timeEvery);
  }

  /** Hands each line of `buf[start..end)` to `handler`; returns the lines read. */
  scan(buf: Buffer, start: number, end: number, handler: LineHandler): number {
    let lines = 0;
    let at = start;
    while (at < end) {
      const stop = Math.min(end, this.nextNewline(buf, at));
      if (stop > at) {
        lines++;
        this.line(buf, at, stop, handler);
      }
      at = stop + 1;
    }
    return lines;
  }

  /** The first '\n' of `buf` at or after `at` (`buf.length` when none). */
  private nextNewline(buf: Buffer, at: number): number {
    if (this.newlineIn !== buf || this.newlineAt < at) {
      const found = buf.indexOf(NEWLINE, at);
      this.newlineIn = buf;
      this.newlineAt = found === -1 ? buf.length : found;
    }
    return this.newlineAt;
  }

  /** The line `buf[start..end)`: a benchmark publication read in place, anything else as a string. */
  private line(buf: Buffer, start: number, end: number, handler: LineHandler): void {
    const mark = this.marks.line;
    if (startsWith(buf, start, end, mark)) {
      const hinted = this.seqHint >= 0 ? start + this.seqHint : -1;
      if (hinted >= 0 && this.payload(buf, hinted, end, handler)) return;
      for (let i = start + mark.length; i < end; i++) {
        if (buf[i] === BRACE && i !== hinted && this.payload(buf, i, end, handler)) {
          this.seqHint = i - start;
          return;
        }
      }
    }
    handler.other(buf.toString('utf8', start, end));
  }

  /** Reads `{"s":<digits>,"t":<decimal>` at `at`: when it is there, hands it over and returns true. */
  private payload(buf: Buffer, at: number, end: number, handler: LineHandler): boolean {
    const { seq: seqMark, time: timeMark } = this.marks;
    if (!startsWith(buf, at, end, seqMark)) return false;
    const seqAt = at + seqMark.length;
    let seq = 0;
    let seqEnd = seqAt;
    for (; seqEnd < end; seqEnd++) {
      const d = buf[seqEnd]! - ZERO;
      if (d < 0 || d > 9) break;
      seq = seq * 10 + d;
    }
    if (seqEnd === seqAt || !startsWith(buf, seqEnd, end, timeMark)) return false;
    const timeAt = seqEnd + timeMark.length;
    const first = buf[timeAt]! - ZERO;
    if (timeAt >= end || first < 0 || first > 9) return false;
    if (--this.timeCountdown > 0) {
      handler.publication(seq, -1);
      return true;
    }
    this.timeCountdown = this.timeEvery;
    handler.publication(seq, this.decimal(buf, timeAt, end));
    return true;
  }

  /** The digits at `at` as a number; where they end goes to `numberEnd` (`at`: none). */
  private integer(buf: Buffer, at: number, end: number): number {
    let v = 0;
    let i = at;
    for (; i < end; i++) {
      const d = buf[i]! - ZERO;
      if (d < 0 || d > 9) break;
      v = v * 10 + d;
    }
    this.numberEnd = i;
    return v;
  }

  /** A non-negative decimal without exponent (`123`, `123.456`) at `at`, its end in `numberEnd`. */
  private decimal(buf: Buffer, at: number, end: number): number {
    let v = this.integer(buf, at, end);
    const dot = this.numberEnd;
    if (dot === at || dot >= end || buf[dot] !== DOT) return v;
    let scale = 1;
    let fraction = 0;
    let i = dot + 1;
    for (; i < end; i++) {
      const d = buf[i]! - ZERO;
      if (d < 0 || d > 9) break;
      fraction = fraction * 10 + d;
      scale *= 10;
    }
    if (i === dot + 1) {
      this.numberEnd = dot; // `123.` is not a number: the dot is not ours
      return v;
    }
    v += fraction / scale;
    this.numberEnd = i;
    return v;
  }
}

/** Splits a message on '\n' and hands each line to `handler`; returns the lines read. */
export function scanLines(message: Buffer, handler: LineHandler): number {
  return new LineScanner().scan(message, 0, message.length, handler);
}

function startsWith(buf: Buffer, at: number, end: number, mark: Buffer): boolean {
  if (end - at < mark.length) return false;
  for (let i = 0; i < mark.length; i++) if (buf[at + i] !== mark[i]) return false;
  return true;
}

/**
 * One receiver's view of one channel's sequence numbers, as DeliveryTracker
 * counts them (tracker.ts): delivered on first arrival, duplicated when seen
 * before, reordered when it arrives after a later one.
 */
export class SequenceCheck {
  private next = 0;
  private ahead: Set<number> | undefined;

  /** 0: delivered in order, 1: delivered out of order (reordered), 2: duplicate, 3: delivered ahead of a gap. */
  receive(s: number): 0 | 1 | 2 | 3 {
    if (s === this.next && this.ahead === undefined) {
      this.next++;
      return 0;
    }
    if (s < this.next || this.ahead?.has(s)) return 2;
    if (s > this.next) {
      (this.ahead ??= new Set()).add(s);
      return 3;
    }
    // The one waited for, after later ones arrived.
    this.next++;
    const ahead = this.ahead!;
    while (ahead.delete(this.next)) this.next++;
    if (ahead.size === 0) this.ahead = undefined;
    return 1;
  }
}
