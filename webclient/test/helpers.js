// Test doubles: a fake WebSocket driven by the test, and an in-memory
// localforage driver.
import localforage from 'localforage';

export class FakeWebSocket {
  static instances = [];
  static reset() {
    FakeWebSocket.instances = [];
  }
  static get last() {
    return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  }

  constructor(url, protocols) {
    this.url = url;
    this.protocols = protocols;
    this.sent = [];
    this.readyState = 0;
    this.closedWith = undefined;
    FakeWebSocket.instances.push(this);
  }
  send(data) {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(data);
  }
  close(code, reason) {
    this.closedWith = { code, reason };
    this.readyState = 3;
  }
  // ---- driven by the test ----
  open() {
    this.readyState = 1;
    this.onopen && this.onopen({});
  }
  /** The requests sent, parsed. */
  get requests() {
    return this.sent.map((s) => JSON.parse(s));
  }
  lastRequest(op) {
    return this.requests.filter((r) => !op || r.op === op).at(-1);
  }
  receive(text) {
    this.onmessage && this.onmessage({ data: text });
  }
  reply(id, ok) {
    this.receive(JSON.stringify({ id, ok }));
  }
  replyError(id, code, message = code) {
    this.receive(JSON.stringify({ id, error: { code, message } }));
  }
  serverClose(code, reason = '') {
    this.readyState = 3;
    this.onclose && this.onclose({ code, reason });
  }
}

const stores = new Map();
export const memoryDriver = {
  _driver: 'memoryDriver',
  _support: true,
  async _initStorage(options) {
    const k = `${options.name}/${options.storeName}`;
    if (!stores.has(k)) stores.set(k, new Map());
    this._mem = stores.get(k);
  },
  async getItem(key) {
    return this._mem.has(key) ? structuredClone(this._mem.get(key)) : null;
  },
  async setItem(key, value) {
    this._mem.set(key, structuredClone(value));
    return value;
  },
  async removeItem(key) {
    this._mem.delete(key);
  },
  async clear() {
    this._mem.clear();
  },
  async length() {
    return this._mem.size;
  },
  async key(n) {
    return [...this._mem.keys()][n] ?? null;
  },
  async keys() {
    return [...this._mem.keys()];
  },
  async iterate(fn) {
    let i = 0;
    for (const [k, v] of this._mem) {
      const r = fn(v, k, ++i);
      if (r !== undefined) return r;
    }
  },
};

let defined;
export async function memoryStore(name) {
  if (!defined) defined = localforage.defineDriver(memoryDriver);
  await defined;
  const inst = localforage.createInstance({ name, storeName: 'test', driver: 'memoryDriver' });
  await inst.ready();
  return inst;
}

/** Lets pending promise callbacks run. */
export async function flush(n = 10) {
  for (let i = 0; i < n; i++) await Promise.resolve();
}
