/**
 * The queue of claims whose answer is not known yet: claims made while
 * offline and claims whose reply never came. Each entry keeps its rid (the
 * idempotency key), so sending it again is safe: the server answers a retry
 * with the first answer. Persisted through `storage` (a cache from
 * createCache, or anything with async get/set) under `key`; without storage
 * it lives in memory only.
 */
export class ClaimQueue {
  constructor({ storage, key = 'claims.queue' } = {}) {
    this.storage = storage;
    this.key = key;
    this.entries = null; // loaded lazily
    this._loading = null;
  }

  async _load() {
    if (this.entries) return this.entries;
    if (!this._loading) {
      this._loading = (async () => {
        let list = [];
        if (this.storage) {
          try {
            const v = await this.storage.get(this.key);
            if (Array.isArray(v)) list = v.filter((e) => e && e.rid && e.coupon);
          } catch {
            list = [];
          }
        }
        // Entries added before the load finished win.
        this.entries = [...(this.entries || []), ...list.filter((e) => !(this.entries || []).some((x) => x.rid === e.rid))];
        return this.entries;
      })();
    }
    return this._loading;
  }

  async _save() {
    if (this.storage) await this.storage.set(this.key, this.entries);
  }

  /** All queued claims, oldest first: [{rid, coupon, at}]. */
  async list() {
    return [...(await this._load())];
  }

  /** Adds a claim (no-op when its rid is queued already). */
  async add(entry) {
    await this._load();
    if (!this.entries.some((e) => e.rid === entry.rid)) {
      this.entries.push({ rid: entry.rid, coupon: entry.coupon, at: entry.at ?? Date.now() });
      await this._save();
    }
    return entry;
  }

  /** Removes the claim with this rid. */
  async remove(rid) {
    await this._load();
    const n = this.entries.length;
    this.entries = this.entries.filter((e) => e.rid !== rid);
    if (this.entries.length !== n) await this._save();
  }
}
