/**
 * Trying a step again until it succeeds, within a deadline: start-up against
 * a JetStream cluster that is still electing its leaders, and calls that must
 * wait out a leader change. One helper for services and gateways alike.
 */

/** How long start-up waits for a JetStream cluster that is still electing its leaders. */
export const STARTUP_PATIENCE_MS = 60_000;

export interface Patience {
  /** How long to keep trying (default STARTUP_PATIENCE_MS); the last failure is then thrown. */
  ms?: number;
  /** Which failures are worth another try (default: all); others are thrown at once. */
  retryIf?: (err: unknown) => boolean;
  /** Hears of each failure that is tried again. */
  failed?: (err: unknown) => void;
}

/** Runs `step` again while it fails, backing off a little more each time, within `ms`. */
export async function patiently<T>(step: () => Promise<T>, patience: Patience = {}): Promise<T> {
  const { ms = STARTUP_PATIENCE_MS, retryIf = () => true, failed } = patience;
  const deadline = Date.now() + ms;
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      if (!retryIf(err) || Date.now() >= deadline) throw err;
      failed?.(err);
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(25 * attempt, 500)));
  }
}
