/**
 * An error answered by the server ({"error":{"code","message"}}) or raised by
 * the SDK itself. Server codes are the closed list of protocol v1
 * (bad_request, unauthorized, forbidden, not_found, sold_out, expired,
 * already_claimed, rate_limited, unavailable, internal); the SDK adds
 * `timeout` (no reply in time) and `disconnected` (the connection ended, or
 * there was none, before a reply came).
 */
export class CouponmeshError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = 'CouponmeshError';
    this.code = code;
  }
}

/** Codes after which the outcome of a write is unknown: retry with the same rid. */
export const RETRYABLE_CODES = new Set(['timeout', 'disconnected', 'unavailable', 'rate_limited', 'internal']);
