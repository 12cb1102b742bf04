/**
 * The server's error codes: the closed list of protocol v1 (docs/PROTOCOL.md),
 * in its order. `not_started` refuses a claim on a scheduled coupon before
 * its startsAt.
 */
export const ERROR_CODES = Object.freeze([
  'bad_request',
  'unauthorized',
  'forbidden',
  'not_found',
  'sold_out',
  'expired',
  'not_started',
  'already_claimed',
  'rate_limited',
  'unavailable',
  'internal',
]);

/**
 * A coupon's statuses (docs/PROTOCOL.md): `scheduled` before its startsAt
 * (visible, not claimable), then `active`, `sold_out`, `expired` (from its
 * expiresAt) or `withdrawn`. The server pushes each change of status, the
 * start and the expiry included, as a coupon push.
 */
export const COUPON_STATUSES = Object.freeze(['scheduled', 'active', 'sold_out', 'expired', 'withdrawn']);

/**
 * An error answered by the server ({"error":{"code","message"}}) or raised by
 * the SDK itself. Server codes are ERROR_CODES; the SDK adds `timeout` (no
 * reply in time) and `disconnected` (the connection ended, or there was
 * none, before a reply came; not for requests a 1012 close left unanswered:
 * the node ran none of them, and the client sends them again on its next
 * connection).
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
