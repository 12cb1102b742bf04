import localforage from 'localforage';

/**
 * A key/value cache with optional time-to-live over localforage (IndexedDB,
 * WebSQL or localStorage in a browser). Expired entries are kept, not
 * deleted, so an app can still show them marked as possibly stale while
 * offline: get() hides them, getCacheEntry() returns them with expired: true.
 *
 *   const cache = createCache({ name: 'couponmesh' });
 *   await cache.set('coupon:c42', coupon, 60_000);
 *   await cache.get('coupon:c42');          // the coupon while fresh, else undefined
 *   await cache.getCacheEntry('coupon:c42'); // {value, expired, storedAt, expiresAt} or undefined
 *
 * Options: `store` (a localforage instance or anything with getItem, setItem,
 * removeItem, keys; default localforage.createInstance({name, storeName})),
 * `now` (clock, default Date.now).
 */
export function createCache({ store, name = 'couponmesh', storeName = 'cache', now = Date.now } = {}) {
  const db = store || localforage.createInstance({ name, storeName });

  async function read(key) {
    const rec = await db.getItem(key);
    if (rec == null || typeof rec !== 'object' || !('v' in rec)) return undefined;
    return rec;
  }

  return {
    store: db,
    /** Stores value under key; ttlMs > 0 makes it expire that many ms from now. */
    async set(key, value, ttlMs) {
      const t = now();
      const e = typeof ttlMs === 'number' && ttlMs > 0 && Number.isFinite(ttlMs) ? t + ttlMs : null;
      await db.setItem(key, { v: value, t, e });
      return value;
    },
    /** The value while fresh; undefined when absent or expired. */
    async get(key) {
      const rec = await read(key);
      if (!rec) return undefined;
      if (rec.e != null && now() >= rec.e) return undefined;
      return rec.v;
    },
    /** {value, expired, storedAt, expiresAt} for a present entry (fresh or not), else undefined. */
    async getCacheEntry(key) {
      const rec = await read(key);
      if (!rec) return undefined;
      return { value: rec.v, expired: rec.e != null && now() >= rec.e, storedAt: rec.t, expiresAt: rec.e ?? undefined };
    },
    async remove(key) {
      await db.removeItem(key);
    },
    async keys() {
      return db.keys();
    },
  };
}
