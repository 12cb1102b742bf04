// couponmesh JS SDK: protocol v1 over WebSocket, a TTL cache over
// localforage and a persisted queue of offline claims. No framework.
export { CouponmeshClient, SUBPROTOCOL, STATES, ANONYMOUS_OPS } from './client.js';
export { CouponmeshError, RETRYABLE_CODES, ERROR_CODES, COUPON_STATUSES } from './errors.js';
export { createCache } from './cache.js';
export { ClaimQueue } from './claimqueue.js';
export { backoffDelay, backoffCeiling, DEFAULT_BACKOFF } from './backoff.js';
export { parseAddresses, normalizeAddress } from './addresses.js';
export { splitFrame } from './frames.js';
