/**
 * Opens many connections at a bounded rate with a bounded number in flight,
 * spread over several loopback source addresses, and counts what happened:
 * connects, failures by reason, connect latency, closes.
 */

import type { ConnectOptions, Connection, Dialect } from './connection.js';
import { Histogram } from './histogram.js';

export interface FleetOptions {
  dialect: Dialect;
  url: string;
  /** The token of connection `index`. */
  token(index: number): string;
  /** Source addresses to spread connections over (round robin); empty for the system's choice. */
  localAddresses: string[];
  timeoutMs: number;
  /** Connection attempts in flight at most. */
  maxInFlight?: number;
}

/** Loopback source addresses 127.0.0.1 .. 127.0.0.n: about 28k ephemeral ports each. */
export function loopbackAddresses(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `127.0.0.${i + 1}`);
}

/** A short, bounded label for an error (counted per label). */
export function errorLabel(err: unknown): string {
  if (typeof err === 'string') return err;
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e?.code === 'string' || typeof e?.code === 'number') return String(e.code);
  return String(e?.message ?? err).slice(0, 60);
}

export class Fleet {
  readonly connections: Connection[] = [];
  readonly connectLatency = new Histogram();
  connected = 0;
  failed = 0;
  closed = 0;
  readonly errors = new Map<string, number>();
  /** Called when a connection closes (after it was counted). */
  onClose: (index: number, code: number) => void = () => {};
  private inFlight = 0;

  constructor(private readonly options: FleetOptions) {}

  get open(): number {
    return this.connected - this.closed;
  }

  countError(err: unknown): void {
    const label = errorLabel(err);
    this.errors.set(label, (this.errors.get(label) ?? 0) + 1);
  }

  /** Connects connection `index` (again); undefined when it failed (counted). */
  async connect(index: number): Promise<Connection | undefined> {
    const { localAddresses } = this.options;
    const connectOptions: ConnectOptions = {
      url: this.options.url,
      token: this.options.token(index),
      localAddress: localAddresses.length > 0 ? localAddresses[index % localAddresses.length] : undefined,
      timeoutMs: this.options.timeoutMs,
    };
    const started = performance.now();
    this.inFlight++;
    try {
      const conn = await this.options.dialect(connectOptions);
      this.connectLatency.record(performance.now() - started);
      this.connected++;
      this.connections[index] = conn;
      conn.onClose = (code) => {
        this.closed++;
        this.countError(`close ${code}`);
        this.onClose(index, code);
      };
      return conn;
    } catch (err) {
      this.failed++;
      this.countError(err);
      return undefined;
    } finally {
      this.inFlight--;
    }
  }

  /**
   * Opens connections `from` .. `from + count - 1` at `rate` per second at most
   * (Infinity: as fast as the in-flight bound allows), running `setup` on each
   * (e.g. subscribe). Resolves when every attempt has settled or `deadline` passed.
   */
  async openMany(
    from: number,
    count: number,
    rate: number,
    setup: (conn: Connection, index: number) => Promise<void> = async () => {},
    deadline = Infinity,
  ): Promise<void> {
    const maxInFlight = this.options.maxInFlight ?? 256;
    const started = performance.now();
    const settled: Promise<void>[] = [];
    let launched = 0;
    while (launched < count && performance.now() < deadline) {
      const due = Math.min(count, Math.floor(((performance.now() - started) * rate) / 1000) + 1);
      while (launched < due && this.inFlight < maxInFlight) {
        const index = from + launched++;
        settled.push(
          this.connect(index).then(async (conn) => {
            if (!conn) return;
            await setup(conn, index).catch((err: unknown) => {
              this.countError(err);
              this.failed++;
            });
          }),
        );
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(settled);
  }

  closeAll(): void {
    for (const conn of this.connections) conn?.close();
  }
}
