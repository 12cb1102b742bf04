import { describe, it, expect, beforeEach } from 'vitest';
import { createCache, ClaimQueue } from '../src/sdk/index.js';
import { memoryStore } from './helpers.js';

let seq = 0;
async function newCache() {
  const clock = { t: 1_000_000 };
  const store = await memoryStore(`cache-${++seq}`);
  const cache = createCache({ store, now: () => clock.t });
  return { cache, clock, store };
}

describe('cache', () => {
  let cache, clock;
  beforeEach(async () => {
    ({ cache, clock } = await newCache());
  });

  it('uses the localforage driver it is given', async () => {
    expect(cache.store.driver()).toBe('memoryDriver');
  });

  it('returns undefined for absent keys', async () => {
    expect(await cache.get('nope')).toBeUndefined();
    expect(await cache.getCacheEntry('nope')).toBeUndefined();
  });

  it('keeps a value without ttl for good', async () => {
    await cache.set('k', { a: 1 });
    clock.t += 10 * 365 * 24 * 3600 * 1000;
    expect(await cache.get('k')).toEqual({ a: 1 });
    expect(await cache.getCacheEntry('k')).toMatchObject({ value: { a: 1 }, expired: false });
  });

  it('serves a value while fresh and hides it once expired', async () => {
    await cache.set('c', { id: 'c42', remaining: 3 }, 1000);
    expect(await cache.get('c')).toEqual({ id: 'c42', remaining: 3 });
    clock.t += 999;
    expect(await cache.get('c')).toEqual({ id: 'c42', remaining: 3 });
    expect((await cache.getCacheEntry('c')).expired).toBe(false);
    clock.t += 1; // exactly at the expiry
    expect(await cache.get('c')).toBeUndefined();
    const e = await cache.getCacheEntry('c');
    expect(e).toMatchObject({ value: { id: 'c42', remaining: 3 }, expired: true });
    expect(e.expiresAt).toBe(1_001_000);
  });

  it('refreshes the ttl on set and keeps falsy values', async () => {
    await cache.set('n', 0, 100);
    clock.t += 150;
    expect(await cache.get('n')).toBeUndefined();
    await cache.set('n', 0, 100);
    expect(await cache.get('n')).toBe(0);
    await cache.set('f', false);
    expect(await cache.getCacheEntry('f')).toMatchObject({ value: false, expired: false });
  });

  it('ignores non-positive ttls and removes keys', async () => {
    await cache.set('z', 'v', 0);
    clock.t += 1e9;
    expect(await cache.get('z')).toBe('v');
    await cache.remove('z');
    expect(await cache.getCacheEntry('z')).toBeUndefined();
  });

  it('ignores foreign values in the store', async () => {
    const { cache: c2, store } = await newCache();
    await store.setItem('raw', 'not an entry');
    expect(await c2.get('raw')).toBeUndefined();
    expect(await c2.getCacheEntry('raw')).toBeUndefined();
  });
});

describe('claim queue', () => {
  it('persists entries through the cache and dedupes by rid', async () => {
    const { cache } = await newCache();
    const q = new ClaimQueue({ storage: cache });
    await q.add({ rid: 'r1', coupon: 'c1' });
    await q.add({ rid: 'r1', coupon: 'c1' });
    await q.add({ rid: 'r2', coupon: 'c2' });
    const again = new ClaimQueue({ storage: cache });
    expect((await again.list()).map((e) => e.rid)).toEqual(['r1', 'r2']);
    await again.remove('r1');
    expect((await new ClaimQueue({ storage: cache }).list()).map((e) => e.rid)).toEqual(['r2']);
  });
});
