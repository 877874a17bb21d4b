// The one way tests wait for a condition: poll it, quickly at first, then at most every 200 ms.

/**
 * Resolves once `cond` holds; rejects after `timeoutMs` (generous by default: a loaded machine must not fail a
 * test) with "timed out waiting for <what>". `what` may be a function, to describe the state at the timeout.
 * An error thrown by `cond` ends the wait at once (a process that exited will never start).
 */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  what: string | (() => string),
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let intervalMs = 10;
  while (!(await cond())) {
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
    intervalMs = Math.min(intervalMs * 2, 200);
  }
}
