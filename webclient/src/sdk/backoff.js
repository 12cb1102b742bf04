/** Default reconnect backoff bounds in milliseconds. */
export const DEFAULT_BACKOFF = Object.freeze({ baseMs: 250, capMs: 10000 });

/**
 * The upper bound of the delay before reconnect attempt n (0-based):
 * min(cap, base * 2^n).
 */
export function backoffCeiling(attempt, { baseMs = DEFAULT_BACKOFF.baseMs, capMs = DEFAULT_BACKOFF.capMs } = {}) {
  const n = Math.max(0, Math.min(attempt, 52));
  return Math.min(capMs, baseMs * 2 ** n);
}

/**
 * Exponential backoff with full jitter: a delay drawn uniformly from
 * [0, min(cap, base * 2^attempt)].
 */
export function backoffDelay(attempt, bounds = {}, random = Math.random) {
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.floor(r * backoffCeiling(attempt, bounds));
}
