/**
 * Lean subscribers over `node:net`, for fan-outs the `ws`-based Connection
 * cannot read fast enough in one process (the hot channel: millions of
 * deliveries per second). LeanSocket is the WebSocket: the handshake by
 * hand, server frames read in place (lean-wire.ts), WebSocket pings
 * answered; publications are counted per subscriber (lost, duplicated,
 * reordered) and their latency recorded in one shared Histogram, without a
 * JSON.parse or a string per delivery. LeanSubscriber speaks Centrifugo's
 * JSON protocol on it (the protocol's `{}` pings answered), LeanPusher
 * (lean-pusher.ts) Pusher's.
 */

import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { ProtocolError } from './connection.js';
import { Histogram } from './histogram.js';
import {
  CENTRIFUGO_MARKS,
  clientFrame,
  FrameReader,
  type LineHandler,
  LineScanner,
  OP_CLOSE,
  OP_PONG,
  OP_TEXT,
  type PayloadMarks,
  SequenceCheck,
} from './lean-wire.js';
import { now } from './tracker.js';

/** What all subscribers of a fleet add up to; reset between warm-up and measurement. */
export class LeanStats {
  readonly latency = new Histogram();
  delivered = 0;
  duplicated = 0;
  reordered = 0;
  /** Data messages (WebSocket frames with a payload) and lines in them. */
  messages = 0;
  lines = 0;
  /** TCP reads, and when the last one arrived (ms since the epoch). */
  reads = 0;
  lastReadAt = 0;
  /** Each subscriber records the latency of one delivery in this many (1: all). */
  latencyEvery = 1;

  reset(): void {
    this.latency.reset();
    this.delivered = this.duplicated = this.reordered = 0;
    this.messages = this.lines = this.reads = 0;
  }
}

export interface LeanSocketOptions {
  url: string;
  localAddress?: string;
  timeoutMs: number;
  stats: LeanStats;
  /** Which of every `stats.latencyEvery` deliveries this subscriber times first (spreads the samples). */
  phase?: number;
}

export interface LeanOptions extends LeanSocketOptions {
  token: string;
}

interface Pending {
  resolve(reply: Record<string, unknown>): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

const HANDSHAKE_END = Buffer.from('\r\n\r\n');
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/**
 * Every subscriber's socket reads into this one buffer (net's `onread`): a
 * read is handled to its end before the next, and what must outlive it (a
 * frame cut by the read's end) is copied by the FrameReader.
 */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

/**
 * A client WebSocket on `node:net` whose messages are read in place by a
 * LineScanner with a protocol's marks: benchmark publications are counted
 * (lost, duplicated, reordered: one sequence per subscriber) and timed into
 * the shared LeanStats, every other line goes to `other`. WebSocket pings are
 * answered; what a protocol says on top is its subclass's.
 */
export abstract class LeanSocket implements LineHandler {
  /** Called once when the connection ends (after connecting), with the server's close code or 1006. */
  onClose: (code: number) => void = () => {};
  closed = false;
  protected socket!: net.Socket;
  /** When the current TCP read arrived: every line in it arrived then. */
  protected readAt = 0;
  private readonly reader: FrameReader;
  private readonly scanner: LineScanner;
  private check = new SequenceCheck();
  /** The HTTP response so far while the upgrade is under way; undefined once it is done. */
  private head: Buffer | undefined = Buffer.alloc(0);
  /** Checks the upgrade response; returns the bytes after it when it was accepted. */
  private upgraded: (head: Buffer) => Buffer | undefined = () => undefined;

  protected constructor(
    protected readonly stats: LeanStats,
    protected readonly timeoutMs: number,
    phase: number,
    marks: PayloadMarks,
  ) {
    this.scanner = new LineScanner(stats.latencyEvery, phase, marks);
    this.reader = new FrameReader({
      message: (buf, start, end) => {
        this.stats.messages++;
        this.stats.lines += this.scanner.scan(buf, start, end, this);
      },
      ping: (payload) => this.write(clientFrame(OP_PONG, payload, randomBytes(4))),
      close: (code) => {
        this.write(clientFrame(OP_CLOSE, Buffer.alloc(0), randomBytes(4)));
        this.end(code);
      },
    });
  }

  /** A line that is no benchmark publication: a reply, a ping, another event. */
  abstract other(line: string): void;

  close(): void {
    if (this.closed) return;
    this.onClose = () => {}; // ours: not counted
    this.write(clientFrame(OP_CLOSE, Buffer.from([0x03, 0xe8]), randomBytes(4)));
    this.end(1000);
  }

  /** Forgets the sequences seen: publications are numbered from 0 again. */
  resetSequence(): void {
    this.check = new SequenceCheck();
  }

  publication(seq: number, sentAt: number): void {
    const stats = this.stats;
    if (sentAt >= 0) stats.latency.record(this.readAt - sentAt);
    const verdict = this.check.receive(seq);
    if (verdict === 2) stats.duplicated++;
    else {
      stats.delivered++;
      if (verdict === 1) stats.reordered++;
    }
  }

  /** Connects and upgrades to `options.url`; resolves once the server accepted the upgrade. */
  protected async open(options: LeanSocketOptions): Promise<void> {
    const { hostname, port, pathname, search } = new URL(options.url);
    const socket = (this.socket = net.connect({
      host: hostname,
      port: Number(port) || 80,
      ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number, buf: Uint8Array) => {
          this.read(buf as Buffer, n);
          return true;
        },
      },
    }));
    socket.setNoDelay(true);
    socket.on('error', () => {});
    const key = randomBytes(16).toString('base64');
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('handshake timed out')), options.timeoutMs);
        this.upgraded = (head) => {
          clearTimeout(timer);
          const end = head.indexOf(HANDSHAKE_END);
          const response = head.toString('latin1', 0, end);
          const accept = createHash('sha1').update(`${key}${WS_GUID}`).digest('base64');
          if (!/^HTTP\/1\.1 101/.test(response)) reject(new Error(`HTTP ${response.split(' ')[1] ?? '?'}`));
          else if (!new RegExp(`^sec-websocket-accept: *${escape(accept)}\\s*$`, 'im').test(response))
            reject(new Error('bad Sec-WebSocket-Accept'));
          else {
            resolve();
            return head.subarray(end + HANDSHAKE_END.length);
          }
          return undefined;
        };
        socket.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
        socket.once('close', () => {
          clearTimeout(timer);
          reject(new Error('closed during handshake'));
        });
        socket.once('connect', () =>
          socket.write(
            `GET ${pathname || '/'}${search} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
              `Upgrade: websocket\r\nConnection: Upgrade\r\n` +
              `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
          ),
        );
      });
    } catch (err) {
      socket.destroy();
      throw err;
    }
    socket.removeAllListeners('close');
    socket.on('close', () => this.end(1006));
  }

  protected send(text: string): void {
    this.write(clientFrame(OP_TEXT, Buffer.from(text), randomBytes(4)));
  }

  /** What waits for the server fails here: the connection ended with `code`. */
  protected ended(_code: number): void {}

  private write(frame: Buffer): void {
    if (!this.closed && this.socket.writable) this.socket.write(frame);
  }

  private end(code: number): void {
    if (this.closed) return;
    this.closed = true;
    this.ended(code);
    this.socket.end(); // after what was written (a close frame)
    this.onClose(code);
  }

  /** One TCP read of `n` bytes into `buf` (shared: used up before returning). */
  private read(buf: Buffer, n: number): void {
    if (this.head !== undefined) {
      // The upgrade response, and perhaps the first frames behind it.
      this.head = Buffer.concat([this.head, buf.subarray(0, n)]);
      if (this.head.indexOf(HANDSHAKE_END) === -1) return;
      const rest = this.upgraded(this.head);
      this.head = undefined;
      if (rest === undefined) this.socket.destroy();
      else if (rest.length > 0) this.reader.push(rest);
      return;
    }
    this.readAt = this.stats.lastReadAt = now();
    this.stats.reads++;
    this.reader.push(buf.subarray(0, n)); // a view of its own per read (LineScanner)
  }
}

/** A Centrifugo JSON subscriber: the connect command with a token, subscribe, the protocol's `{}` pings. */
export class LeanSubscriber extends LeanSocket {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private pong = false;

  private constructor(stats: LeanStats, timeoutMs: number, phase: number) {
    super(stats, timeoutMs, phase, CENTRIFUGO_MARKS);
  }

  /** Connects, sends the connect command with the token, resolves once the server accepted it. */
  static async connect(options: LeanOptions): Promise<LeanSubscriber> {
    const sub = new LeanSubscriber(options.stats, options.timeoutMs, options.phase ?? 0);
    await sub.open(options);
    try {
      const reply = await sub.request('connect', { token: options.token });
      sub.pong = (reply.connect as { pong?: boolean } | undefined)?.pong === true;
    } catch (err) {
      sub.socket.destroy();
      throw err;
    }
    return sub;
  }

  async subscribe(channel: string): Promise<void> {
    await this.request('subscribe', { channel });
  }

  other(line: string): void {
    const msg = JSON.parse(line) as { id?: number; error?: { code: number; message: string } };
    if (msg.id !== undefined && msg.id > 0) {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) p.reject(new ProtocolError(msg.error.code, msg.error.message));
      else p.resolve(msg as Record<string, unknown>);
    } else if (Object.keys(msg).length === 0) {
      if (this.pong) this.send('{}'); // the protocol's ping
    }
  }

  protected override ended(code: number): void {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error(`closed ${code}`));
    }
    this.pending.clear();
  }

  private request(method: string, body: unknown): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method} timed out`));
      }, this.timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.send(JSON.stringify({ id, [method]: body }));
    });
  }
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** Counts one more of `label`. */
export const tally = (errors: Map<string, number>, label: string) =>
  errors.set(label, (errors.get(label) ?? 0) + 1);

export interface LeanFleetOptions {
  localAddresses: string[];
  maxInFlight?: number;
  /** The index of the first connection (its token, its phase, its source address). */
  first?: number;
  /** Where failures and closes are counted (a new map by default). */
  errors?: Map<string, number>;
}

/**
 * Opens `count` lean sockets with `connect` (connection `i` from source
 * address `i mod localAddresses`) with at most `maxInFlight` connecting at
 * once, each made ready by `ready` (a subscribe); failures are counted by
 * message, not thrown, and so are the server's closes after (`close <code>`).
 */
export async function openLean<T extends LeanSocket>(
  count: number,
  options: LeanFleetOptions,
  connect: (i: number, localAddress: string | undefined) => Promise<T>,
  ready: (socket: T) => Promise<void>,
): Promise<{ subscribers: T[]; errors: Map<string, number> }> {
  const subscribers: T[] = [];
  const errors = options.errors ?? new Map<string, number>();
  const first = options.first ?? 0;
  const addresses = options.localAddresses;
  let next = first;
  const worker = async () => {
    while (next < first + count) {
      const i = next++;
      let sub: T | undefined;
      try {
        sub = await connect(i, addresses.length > 0 ? addresses[i % addresses.length] : undefined);
        sub.onClose = (code) => tally(errors, `close ${code}`);
        await ready(sub);
        subscribers.push(sub);
      } catch (err) {
        sub?.close();
        tally(errors, String((err as Error)?.message ?? err).slice(0, 60));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(count, options.maxInFlight ?? 200) }, worker));
  return { subscribers, errors };
}

/** `count` lean Centrifugo subscribers of `channel`, connection `i` with token `token(i)` (openLean). */
export function leanFleet(
  count: number,
  channel: string,
  options: Omit<LeanOptions, 'token' | 'localAddress'> & {
    token(i: number): string;
    localAddresses: string[];
    maxInFlight?: number;
  },
): Promise<{ subscribers: LeanSubscriber[]; errors: Map<string, number> }> {
  return openLean(
    count,
    options,
    (i, localAddress) =>
      LeanSubscriber.connect({
        ...options,
        token: options.token(i),
        phase: i,
        ...(localAddress === undefined ? {} : { localAddress }),
      }),
    (sub) => sub.subscribe(channel),
  );
}
