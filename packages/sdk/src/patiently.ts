/** Start-up steps against a JetStream cluster that may still be electing its leaders. */

/** How long start-up waits for a JetStream cluster that is still electing its leaders. */
export const STARTUP_PATIENCE_MS = 60_000;

/** Runs `step` again until it succeeds, for at most `ms`; `failed` hears of each failure but the last. */
export async function patiently<T>(
  failed: (err: unknown) => void,
  step: () => Promise<T>,
  ms = STARTUP_PATIENCE_MS,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      if (Date.now() >= deadline) throw err;
      failed(err);
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(100 * attempt, 2000)));
  }
}
