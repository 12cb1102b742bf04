import { CouponmeshError, RETRYABLE_CODES } from './errors.js';
import { splitFrame } from './frames.js';
import { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
import { normalizeAddress, parseAddresses } from './addresses.js';
import { ClaimQueue } from './claimqueue.js';

/** The WebSocket subprotocol of protocol v1. */
export const SUBPROTOCOL = 'couponmesh.v1';

/** Connection states reported by the 'state' event. */
export const STATES = Object.freeze({ ONLINE: 'online', RECONNECTING: 'reconnecting', OFFLINE: 'offline' });

// Close codes after which reconnecting cannot help.
const FATAL_CLOSE = new Set([1002]);
// Claim errors that settle a claim for good (no retry).
const FEED_PAGE = 100;
/** The ops a visitor's (anonymous) session may use (docs/PROTOCOL.md). */
export const ANONYMOUS_OPS = Object.freeze(new Set(['subscribe', 'unsubscribe', 'get', 'ping']));
const SUBSCRIBE_CHUNK = 100;

function newRid() {
  if (globalThis.crypto && typeof globalThis.crypto.randomUUID === 'function') return globalThis.crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
}

/**
 * A client of couponmesh protocol v1 over WebSocket.
 *
 *   const c = new CouponmeshClient({ urls: ['wss://a.example/ws'], token: () => getToken() });
 *   c.on('state', (s) => …);           // 'online' | 'reconnecting' | 'offline'
 *   c.on('coupon', (coupon) => …);     // a newer state of a subscribed coupon
 *   c.on('feed', (entry) => …);        // a new feed entry, in seq order, deduped
 *   c.on('presence', ({coupon, watching}) => …); // signed-in shoppers watching a subscribed coupon
 *   c.on('claim', ({rid, coupon, claim, error, queued}) => …);
 *   c.connect();
 *   await c.subscribe(['c42']);
 *   await c.claim('c42');
 *
 * Options:
 *   urls / url       node WebSocket URLs (ws:// or wss://, or host:port) tried in turn
 *   token            a string or a (possibly async) function returning one; sent in
 *                    `auth` as the first frame of every connection, never in the URL
 *   anonymous        when true, a connection without a token (token empty, or the
 *                    function returns nothing) is a visitor's session: subscribe,
 *                    unsubscribe and get work, pushes arrive, the state is 'online'
 *                    and `anonymous` is true; other requests reject with
 *                    `unauthorized`. signIn() authenticates on the same connection.
 *                    When false (default), a missing token is fatal.
 *   WebSocket        the WebSocket class (default globalThis.WebSocket), for tests
 *   requestTimeoutMs per-request timeout (default 10000); request(op, f, {timeoutMs})
 *   backoff          {baseMs, capMs} (default 250 / 10000): full jitter,
 *                    delay n in [0, min(cap, base*2^n)]
 *   random           the random source of the jitter (default Math.random)
 *   maxInFlight      requests in flight at once (default 16, the server's limit)
 *   pingIntervalMs   application ping to detect dead connections (0: off, default)
 *   connectTimeoutMs the handshake must finish within this (default 10000)
 *   claimQueue       a ClaimQueue (persisted); default an in-memory one
 *   feedAfter        the last feed seq already applied (from a cache)
 *   watchNetwork     follow the browser's online/offline events (default true
 *                    when window.addEventListener exists)
 */
export class CouponmeshClient {
  constructor(opts = {}) {
    const urls = opts.urls || (opts.url ? [opts.url] : []);
    this.urls = [];
    for (const u of urls) this._addUrl(normalizeAddress(u) || u);
    if (this.urls.length === 0) throw new Error('couponmesh: at least one node URL is required');
    this.token = opts.token;
    this.allowAnonymous = !!opts.anonymous;
    this.anonymous = false; // the open connection is a visitor's (no auth)
    this.WebSocket = opts.WebSocket || globalThis.WebSocket;
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 10000;
    this.backoff = { ...DEFAULT_BACKOFF, ...(opts.backoff || {}) };
    this.random = opts.random || Math.random;
    this.maxInFlight = opts.maxInFlight ?? 16;
    this.pingIntervalMs = opts.pingIntervalMs ?? 0;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10000;
    this.claimQueue = opts.claimQueue || new ClaimQueue();
    this.lastSeq = opts.feedAfter ?? 0;

    this.state = STATES.OFFLINE;
    this.user = undefined; // the auth reply: {user, role, expiresAt}
    this.coupons = new Map(); // id -> newest coupon held
    this.presence = new Map(); // id -> number of signed-in shoppers watching (watching(id))
    this._presencePushes = 0; // presence pushes received, to order them against replies
    this._presenceAt = new Map(); // id -> _presencePushes at its last presence push
    this.subscriptions = new Set(); // ids to (re)subscribe on every connection
    this.feedWanted = false;

    this._listeners = new Map();
    this._ws = null;
    this._authed = false;
    this._nextId = 1;
    this._pending = new Map(); // id -> {resolve, reject, timer}
    this._waiting = []; // requests beyond maxInFlight: {frame, entry}
    this._inFlight = 0;
    this._urlIndex = 0;
    this._preferred = []; // URLs handed over by a 1012 close or a draining push, tried first
    // A draining push hands the connection over: the old socket stays open to
    // receive the replies of what was sent on it (_drainingConn, _drainingWs),
    // and requests made meanwhile wait for the next connection (_handingOver).
    this._drainingConn = 0;
    this._drainingWs = null;
    this._handingOver = false;
    this._attempt = 0;
    this._reconnectTimer = null;
    this._pingTimer = null;
    this._started = false;
    this._networkOffline = false;
    this._claimsSending = new Set();
    this._feedFetching = null;
    this._feedBuffer = new Map();
    this._connSeq = 0;
    this.lastDelay = undefined;

    const watch = opts.watchNetwork ?? (typeof globalThis.addEventListener === 'function' && typeof globalThis.navigator !== 'undefined');
    if (watch) {
      this._onOnline = () => this._networkChanged(true);
      this._onOffline = () => this._networkChanged(false);
      globalThis.addEventListener('online', this._onOnline);
      globalThis.addEventListener('offline', this._onOffline);
      if (globalThis.navigator && globalThis.navigator.onLine === false) this._networkOffline = true;
    }
  }

  // ---- events ----

  /** Adds a listener; returns a function that removes it. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }

  off(event, fn) {
    const s = this._listeners.get(event);
    if (s) s.delete(fn);
  }

  _emit(event, ...args) {
    const s = this._listeners.get(event);
    if (!s) return;
    for (const fn of [...s]) {
      try {
        fn(...args);
      } catch (err) {
        if (event !== 'error') this._emit('error', err);
      }
    }
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this._emit('state', s);
  }

  // ---- connection ----

  _addUrl(u) {
    if (u && !this.urls.includes(u)) this.urls.push(u);
  }

  /** Starts connecting (and reconnecting after every loss) until close(). */
  connect() {
    if (this._started) return;
    this._started = true;
    if (this._networkOffline) {
      this._setState(STATES.OFFLINE);
      return;
    }
    this._setState(STATES.RECONNECTING);
    this._open();
  }

  /** Closes the connection for good (until connect() is called again). */
  close() {
    this._started = false;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._dropSocket(1000, 'client closed');
    this._setState(STATES.OFFLINE);
  }

  /** Removes the browser event listeners too. */
  destroy() {
    this.close();
    if (this._onOnline) {
      globalThis.removeEventListener('online', this._onOnline);
      globalThis.removeEventListener('offline', this._onOffline);
    }
  }

  /** The URL the next connection attempt will use. */
  _nextUrl() {
    while (this._preferred.length) {
      const u = this._preferred.shift();
      if (u !== this._lastUrl || this.urls.length === 1) return u;
    }
    const u = this.urls[this._urlIndex % this.urls.length];
    this._urlIndex = (this._urlIndex + 1) % this.urls.length;
    return u;
  }

  _open() {
    this._reconnectTimer = null;
    if (!this._started || this._networkOffline) return;
    const url = this._nextUrl();
    this._lastUrl = url;
    const conn = ++this._connSeq;
    let ws;
    try {
      ws = new this.WebSocket(url, [SUBPROTOCOL]);
    } catch (err) {
      this._emit('error', err);
      this._scheduleReconnect();
      return;
    }
    this._ws = ws;
    this._authed = false;
    let opened = false;
    let ended = false;
    const end = (code, reason) => {
      if (ended) return;
      if (conn === this._drainingConn) {
        ended = true;
        this._onDrainedClose(conn, code, reason);
        return;
      }
      if (conn !== this._connSeq) return;
      ended = true;
      clearTimeout(connectTimer);
      this._onClose(conn, code, reason);
    };
    // A handshake that hangs (a node shutting down, a black-holed address)
    // counts as a failed attempt.
    const connectTimer = setTimeout(() => {
      if (opened || conn !== this._connSeq) return;
      try {
        ws.close();
      } catch {
        /* not open */
      }
      end(1006, 'connect timeout');
    }, this.connectTimeoutMs);
    ws.onopen = () => {
      if (conn !== this._connSeq) return;
      opened = true;
      clearTimeout(connectTimer);
      this._emit('open', url);
      this._authenticate(conn);
    };
    ws.onmessage = (ev) => {
      if (conn !== this._connSeq && conn !== this._drainingConn) return;
      this._onFrame(ev.data, conn);
    };
    ws.onerror = () => {
      // Browsers follow an error with a close event; some implementations
      // (Node's) do not when the connection is refused.
      if (!opened) end(1006, 'connection failed');
    };
    ws.onclose = (ev) => end(ev.code || 1006, ev.reason || '');
  }

  async _authenticate(conn) {
    let token;
    try {
      token = typeof this.token === 'function' ? await this.token() : this.token;
    } catch (err) {
      this._emit('error', err);
    }
    if (conn !== this._connSeq) return;
    if (!token) {
      if (this.allowAnonymous && !this._authed) {
        this._beAnonymous(conn);
        return;
      }
      this._fatal(new CouponmeshError('unauthorized', 'no token'));
      return;
    }
    let ok;
    try {
      ok = await this._send({ op: 'auth', token }, { direct: true });
    } catch (err) {
      if (conn !== this._connSeq) return;
      if (err.code === 'unauthorized' || err.code === 'forbidden') {
        this._fatal(err);
        return;
      }
      // The connection ended (or was handed over) meanwhile: its end
      // scheduled the next attempt and kept what waits for it.
      if (!this._ws) return;
      // timeout or another failure: drop this connection and try again.
      this._dropSocket(4000, 'auth failed');
      this._scheduleReconnect();
      return;
    }
    if (conn !== this._connSeq) return;
    this._onAuthed(conn, ok);
  }

  _onAuthed(conn, ok) {
    this._handingOver = false;
    this._authed = true;
    this.anonymous = false;
    this._attempt = 0;
    this.user = ok;
    this._emit('auth', ok);
    this._setState(STATES.ONLINE);
    this._startPing(conn);
    this._pump();
    this._resync(conn);
  }

  /** A visitor's connection: online without auth, the allowed ops only. */
  _beAnonymous(conn) {
    this._handingOver = false;
    this.anonymous = true;
    this.user = undefined;
    this._attempt = 0;
    this._emit('anonymous');
    this._setState(STATES.ONLINE);
    this._startPing(conn);
    this._pump();
    this._resync(conn);
  }

  /**
   * Signs in: token (a string or function, as in the options) replaces the
   * token, and a visitor's open connection authenticates on the spot (the
   * server keeps its subscriptions), then fetches the feed if wanted and
   * sends queued claims. Resolves with the auth reply, or undefined when
   * not connected (the next connection authenticates). Rejects with the
   * server's error when the token is refused.
   */
  async signIn(token) {
    this.token = token;
    if (!this._ws || this._authed || !this.anonymous) return undefined;
    const conn = this._connSeq;
    const t = typeof token === 'function' ? await token() : token;
    if (!t) throw new CouponmeshError('unauthorized', 'no token');
    // A refusal leaves the visitor's session as it was.
    const ok = await this._send({ op: 'auth', token: t }, { direct: true });
    if (conn !== this._connSeq) return undefined; // reconnected meanwhile: that connection authenticates
    this._onAuthed(conn, ok);
    return ok;
  }

  /** Signs out: forgets the token and reconnects as a visitor (or not at all without `anonymous`). */
  signOut() {
    this.token = undefined;
    this.user = undefined;
    this.feedWanted = false;
    if (this._started) this.reconnect();
  }

  async _resync(conn) {
    try {
      if (this.subscriptions.size) await this._subscribeIds([...this.subscriptions]);
      if (conn !== this._connSeq || !this._authed) return;
      if (this.feedWanted) await this._fetchFeed();
      if (conn !== this._connSeq) return;
      await this.flushClaims();
      this._emit('resync');
    } catch (err) {
      this._emit('error', err);
    }
  }

  _fatal(err) {
    this._started = false;
    clearTimeout(this._reconnectTimer);
    this._dropSocket(1000, 'auth failed');
    this._setState(STATES.OFFLINE);
    this._emit('error', err);
    if (err.code === 'unauthorized' || err.code === 'forbidden') this._emit('unauthorized', err);
  }

  _onClose(conn, code, reason) {
    this._ws = null;
    this._authed = false;
    this.anonymous = false;
    this._stopPing();
    if (code === 1012 && this._started) {
      // The node ran none of what it left unanswered (docs/PROTOCOL.md,
      // "Drain handover"): a handover, as after a draining push.
      this._resendLater(conn);
      this._handingOver = true;
    }
    this._failPending(new CouponmeshError('disconnected', `connection closed (${code}${reason ? ' ' + reason : ''})`), conn);
    this._emit('close', { code, reason });
    if (!this._started) {
      this._setState(STATES.OFFLINE);
      return;
    }
    if (FATAL_CLOSE.has(code)) {
      this._fatal(new CouponmeshError('bad_request', `closed with ${code}: ${reason}`));
      return;
    }
    if (code === 1012) {
      const handed = parseAddresses(reason, this._lastUrl);
      for (const u of handed) this._addUrl(u);
      this._preferred = handed.filter((u) => u !== this._lastUrl);
      // Draining: a short random delay, so the other nodes are not stampeded.
      this._attempt = 0;
    }
    this._scheduleReconnect();
  }

  _scheduleReconnect() {
    if (!this._started) return;
    if (this._networkOffline) {
      this._setState(STATES.OFFLINE);
      return;
    }
    this._setState(STATES.RECONNECTING);
    clearTimeout(this._reconnectTimer);
    const delay = backoffDelay(this._attempt, this.backoff, this.random);
    this._attempt++;
    this.lastDelay = delay;
    this._emit('reconnect', { delay, attempt: this._attempt });
    this._reconnectTimer = setTimeout(() => this._open(), delay);
  }

  _dropSocket(code, reason) {
    const ws = this._ws;
    const draining = this._drainingWs;
    this._connSeq++; // ignore whatever the old socket still reports
    this._ws = null;
    this._drainingWs = null;
    this._drainingConn = 0;
    this._handingOver = false;
    this._authed = false;
    this.anonymous = false;
    this._stopPing();
    this._failPending(new CouponmeshError('disconnected', reason));
    for (const s of [ws, draining]) {
      if (!s) continue;
      try {
        s.close(code, reason);
      } catch {
        /* already closed */
      }
    }
  }

  /**
   * A draining push: the node will close this connection with 1012 once it
   * has answered what it received. Nothing more is sent on it; drained tells
   * the node so (after every request sent before it), the socket stays open
   * for the replies, and the next connection opens at once, to the nodes
   * the push names first. Requests made meanwhile, and those waiting for a
   * slot, are sent on the next connection: none is failed for a request the
   * server never received. When the node then closes this socket with 1012,
   * what it left unanswered goes to the next connection too (the node ran
   * none of it).
   */
  _onDraining(msg, conn) {
    if (conn !== this._connSeq || !this._ws) return;
    const ws = this._ws;
    const addresses = Array.isArray(msg.addresses) ? msg.addresses.filter((a) => typeof a === 'string') : [];
    const handed = parseAddresses(addresses.join(','), this._lastUrl);
    for (const u of handed) this._addUrl(u);
    this._preferred = handed.filter((u) => u !== this._lastUrl);
    try {
      ws.send(JSON.stringify({ id: this._nextId++, op: 'drained' }));
    } catch {
      /* closing already: its close event ends it */
    }
    // The old socket's requests no longer count against the next
    // connection's slots (each session has its own limit on the server).
    for (const p of this._pending.values()) {
      if (p.conn === conn && p.counted) {
        p.counted = false;
        this._inFlight = Math.max(0, this._inFlight - 1);
      }
    }
    if (this._drainingWs && this._drainingWs !== ws) {
      // a second handover before the first socket closed: let it go, and
      // what it never answered with it
      const first = this._drainingConn;
      try {
        this._drainingWs.close(1000, 'handed over');
      } catch {
        /* closed */
      }
      this._failPending(new CouponmeshError('disconnected', 'connection closed (handed over twice)'), first, { keepWaiting: true });
    }
    this._drainingConn = conn;
    this._drainingWs = ws;
    this._handingOver = true;
    this._ws = null;
    this._authed = false;
    this.anonymous = false;
    this._stopPing();
    this._attempt = 0; // a short random delay: the other nodes are not stampeded
    this._scheduleReconnect();
  }

  /**
   * The draining socket closed. With 1012 the node ran none of what it left
   * unanswered: those requests go to the next connection (now, if it is
   * online). Any other end leaves their outcome unknown: they fail with
   * `disconnected`.
   */
  _onDrainedClose(conn, code, reason) {
    this._drainingConn = 0;
    this._drainingWs = null;
    if (code === 1012) {
      this._resendLater(conn);
      this._pump();
    }
    this._failPending(new CouponmeshError('disconnected', `connection closed (${code}${reason ? ' ' + reason : ''})`), conn, { keepWaiting: true });
  }

  _networkChanged(online) {
    this._networkOffline = !online;
    if (!this._started) return;
    if (!online) {
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
      this._dropSocket(1000, 'network offline');
      this._setState(STATES.OFFLINE);
    } else if (!this._ws) {
      clearTimeout(this._reconnectTimer);
      this._attempt = 0;
      this._setState(STATES.RECONNECTING);
      this._open();
    }
  }

  /** Drops the current connection and reconnects at once (e.g. after a token change). */
  reconnect() {
    if (!this._started) return this.connect();
    clearTimeout(this._reconnectTimer);
    this._dropSocket(1000, 'reconnect');
    this._attempt = 0;
    this._setState(STATES.RECONNECTING);
    this._open();
  }

  _startPing(conn) {
    this._stopPing();
    if (!this.pingIntervalMs) return;
    this._pingTimer = setInterval(() => {
      if (conn !== this._connSeq) return;
      this.request('ping').catch((err) => {
        if (conn === this._connSeq && err.code === 'timeout') {
          this._dropSocket(4000, 'ping timeout');
          this._scheduleReconnect();
        }
      });
    }, this.pingIntervalMs);
  }

  _stopPing() {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
  }

  // ---- frames ----

  _onFrame(data, conn = this._connSeq) {
    if (typeof data !== 'string') return; // the server sends text frames only
    for (const { msg, error, raw } of splitFrame(data)) {
      if (error) {
        this._emit('error', new CouponmeshError('bad_request', `malformed message from server: ${raw.slice(0, 80)}`));
        continue;
      }
      this._onMessage(msg, conn);
    }
  }

  _onMessage(msg, conn = this._connSeq) {
    if (!msg || typeof msg !== 'object') return;
    if (typeof msg.push === 'string') {
      this._emit('push', msg);
      if (msg.push === 'draining') this._onDraining(msg, conn);
      else if (msg.push === 'coupon' && msg.coupon) this.applyCoupon(msg.coupon);
      else if (msg.push === 'feed' && msg.entry) this._onFeedPush(msg.entry);
      else if (msg.push === 'presence' && typeof msg.coupon === 'string') {
        this._presenceAt.set(msg.coupon, ++this._presencePushes);
        this._notePresence(msg.coupon, msg.watching);
      }
      return; // unknown pushes are ignored
    }
    if (typeof msg.id === 'number') {
      const p = this._pending.get(msg.id);
      if (!p) return; // late reply of a timed-out request
      this._pending.delete(msg.id);
      clearTimeout(p.timer);
      if (p.counted) this._release();
      if (msg.error) p.reject(new CouponmeshError(msg.error.code || 'internal', msg.error.message));
      else p.resolve(msg.ok ?? {});
      return;
    }
    if (msg.error) this._emit('error', new CouponmeshError(msg.error.code || 'internal', msg.error.message));
  }

  // ---- requests ----

  /**
   * Sends a request and resolves with its `ok` object, or rejects with a
   * CouponmeshError (server code, `timeout` or `disconnected`). Needs an
   * authenticated connection: rejects with `disconnected` otherwise. A
   * request left unanswered by a 1012 close (the node ran none of them,
   * docs/PROTOCOL.md "Drain handover") is sent again on the next
   * connection, within its timeout; one left unanswered by any other end of
   * the connection rejects with `disconnected` (its outcome is unknown).
   */
  request(op, fields = {}, { timeoutMs } = {}) {
    return this._send({ ...fields, op }, { timeoutMs });
  }

  /** Whether a request of op can go out on the current connection now. */
  _ready(op) {
    return !!this._ws && (this._authed || (this.anonymous && ANONYMOUS_OPS.has(op)));
  }

  _send(body, { timeoutMs, direct = false } = {}) {
    return new Promise((resolve, reject) => {
      const handOver = !direct && this._handingOver; // until the next connection is online
      if (!handOver && !(direct ? this._ws : this._ready(body.op))) {
        if (this._ws && this.anonymous) reject(new CouponmeshError('unauthorized', `sign in to ${body.op}`));
        else reject(new CouponmeshError('disconnected', `not connected (${body.op})`));
        return;
      }
      const id = this._nextId++;
      const entry = { resolve, reject, timer: null, counted: false, conn: this._connSeq, op: body.op, frame: null, direct };
      const ms = timeoutMs ?? this.requestTimeoutMs;
      entry.timer = setTimeout(() => {
        if (!this._pending.has(id)) {
          // still waiting for a slot
          const i = this._waiting.findIndex((w) => w.id === id);
          if (i >= 0) this._waiting.splice(i, 1);
        } else {
          this._pending.delete(id);
          if (entry.counted) this._release();
        }
        reject(new CouponmeshError('timeout', `no reply to ${body.op} within ${ms} ms`));
      }, ms);
      const frame = JSON.stringify({ id, ...body });
      entry.frame = frame; // sent again after a 1012 close (_resendLater)
      if (!handOver && (direct || this._inFlight < this.maxInFlight)) this._transmit(id, frame, entry, !direct);
      else this._waiting.push({ id, op: body.op, frame, entry }); // sent by _pump on the next connection
    });
  }

  _transmit(id, frame, entry, count) {
    entry.conn = this._connSeq;
    this._pending.set(id, entry);
    if (count) {
      entry.counted = true;
      this._inFlight++;
    }
    try {
      this._ws.send(frame);
    } catch (err) {
      this._pending.delete(id);
      clearTimeout(entry.timer);
      if (count) this._release();
      entry.reject(new CouponmeshError('disconnected', String(err && err.message)));
    }
  }

  _release() {
    this._inFlight = Math.max(0, this._inFlight - 1);
    this._pump();
  }

  _pump() {
    while (this._waiting.length && this._inFlight < this.maxInFlight && this._ready(this._waiting[0].op)) {
      const w = this._waiting.shift();
      this._transmit(w.id, w.frame, w.entry, true);
    }
  }

  /**
   * Moves the requests sent on connection conn and never answered to the
   * front of the waiting list, to be sent again (same id and frame) on the
   * next connection: the node closed conn with 1012, which it does only
   * once everything it ran is answered, so it ran none of them. A
   * connection's own auth (direct) is not moved.
   */
  _resendLater(conn) {
    const again = [];
    for (const [id, p] of this._pending) {
      if (p.conn !== conn || p.direct) continue;
      this._pending.delete(id);
      if (p.counted) {
        p.counted = false;
        this._inFlight = Math.max(0, this._inFlight - 1);
      }
      again.push({ id, op: p.op, frame: p.frame, entry: p });
    }
    this._waiting.unshift(...again);
  }

  /**
   * Rejects the requests sent on connection conn (every connection's when
   * conn is undefined) and those waiting to be sent, unless a handover keeps
   * them for the next connection or keepWaiting says they wait for another
   * connection than conn.
   */
  _failPending(err, conn, { keepWaiting = false } = {}) {
    const pending = [];
    for (const [id, p] of this._pending) {
      if (conn !== undefined && p.conn !== conn) continue;
      this._pending.delete(id);
      if (p.counted) this._inFlight = Math.max(0, this._inFlight - 1);
      pending.push(p);
    }
    let waiting = [];
    if (conn === undefined || (!this._handingOver && !keepWaiting)) {
      waiting = this._waiting.map((w) => w.entry);
      this._waiting = [];
    }
    for (const p of [...pending, ...waiting]) {
      clearTimeout(p.timer);
      p.reject(err);
    }
  }

  // ---- coupons ----

  /**
   * Applies a coupon state if its version is newer than the one held (or
   * none is held). Returns true when applied; emits 'coupon'.
   */
  applyCoupon(c) {
    if (!c || typeof c.id !== 'string') return false;
    const held = this.coupons.get(c.id);
    const v = Number(c.version) || 0;
    if (held && (Number(held.version) || 0) >= v) return false;
    this.coupons.set(c.id, c);
    this._emit('coupon', c);
    return true;
  }

  /** The newest state held of a coupon. */
  coupon(id) {
    return this.coupons.get(id);
  }

  /**
   * The number of signed-in shoppers watching a coupon, over the whole
   * cluster (presence), as last heard from a presence push or from the
   * reply to subscribe or get; undefined when not known.
   */
  watching(id) {
    return this.presence.get(id);
  }

  /** Records a presence count; emits 'presence' when it changed. */
  _notePresence(id, n) {
    const v = Math.max(0, Number(n) || 0);
    if (this.presence.get(id) === v) return;
    this.presence.set(id, v);
    this._emit('presence', { coupon: id, watching: v });
  }

  /**
   * Records the count a reply read, unless a presence push of that coupon
   * arrived since the request was sent (mark): the push is newer.
   */
  _replyPresence(id, n, mark) {
    if ((this._presenceAt.get(id) || 0) > mark) return;
    this._notePresence(id, n);
  }

  /**
   * Subscribes to coupons: remembered for every later reconnect, and sent now
   * with the versions held when online (resolves with the reply; when
   * offline, with {coupons: [], offline: true}).
   */
  async subscribe(ids) {
    const fresh = [];
    for (const id of ids) {
      if (!this.subscriptions.has(id)) fresh.push(id);
      this.subscriptions.add(id);
    }
    if (!this._ready('subscribe')) return { coupons: [], offline: true };
    return this._subscribeIds(ids);
  }

  async _subscribeIds(ids) {
    const all = { coupons: [], missing: [] };
    for (let i = 0; i < ids.length; i += SUBSCRIBE_CHUNK) {
      const chunk = ids.slice(i, i + SUBSCRIBE_CHUNK).map((id) => {
        const held = this.coupons.get(id);
        return held ? { id, version: Number(held.version) || 0 } : { id, version: 0 };
      });
      const mark = this._presencePushes;
      const ok = await this.request('subscribe', { coupons: chunk });
      const counts = new Map(Object.entries(ok.watching || {}));
      for (const c of ok.coupons || []) {
        this.applyCoupon(c);
        all.coupons.push(c);
        counts.set(c.id, c.watching);
      }
      for (const id of ok.missing || []) {
        this.subscriptions.delete(id);
        all.missing.push(id);
      }
      // A snapshot carries its count, a coupon sent without one is in
      // ok.watching when anyone watches it.
      for (const { id } of chunk) {
        if (!(ok.missing || []).includes(id)) this._replyPresence(id, counts.get(id), mark);
      }
    }
    return all;
  }

  /** Unsubscribes (forgotten for later reconnects too). */
  async unsubscribe(ids) {
    for (const id of ids) this.subscriptions.delete(id);
    if (!this._ready('unsubscribe')) return {};
    return this.request('unsubscribe', { coupons: ids });
  }

  /** Reads a coupon (applied by the version rule). */
  async get(id) {
    const mark = this._presencePushes;
    const ok = await this.request('get', { coupon: id });
    if (ok.coupon) {
      this.applyCoupon(ok.coupon);
      this._replyPresence(id, ok.coupon.watching, mark);
    }
    return ok.coupon;
  }

  /** Follows a coupon (persisted on the user; also subscribes). */
  async follow(id) {
    const ok = await this.request('follow', { coupon: id });
    this.subscriptions.add(id);
    if (ok.coupon) this.applyCoupon(ok.coupon);
    return ok.coupon;
  }

  /** Unfollows a coupon (and unsubscribes). */
  async unfollow(id) {
    const ok = await this.request('unfollow', { coupon: id });
    this.subscriptions.delete(id);
    return ok;
  }

  /** The user's claims, oldest first. */
  async wallet() {
    const ok = await this.request('wallet');
    return ok.claims || [];
  }

  // ---- claims ----

  /**
   * Claims a coupon. The claim is first put in the claim queue with its rid
   * (an idempotency key, one per user intent), then sent when online.
   * Resolves with {rid, coupon, claim} once answered ok; rejects with the
   * server's error for a definitive refusal (sold_out, expired,
   * not_started, already_claimed, …);
   * resolves with {rid, coupon, queued: true} when the answer is not known
   * (offline, connection lost, timeout, unavailable): the claim stays queued
   * and is sent again, with the same rid, after the next (re)connect.
   * Every outcome is also emitted as a 'claim' event.
   */
  async claim(coupon, { rid } = {}) {
    if (this.anonymous) throw new CouponmeshError('unauthorized', 'sign in to claim');
    const entry = { rid: rid || newRid(), coupon, at: Date.now() };
    await this.claimQueue.add(entry);
    if (!this._authed) {
      const res = { rid: entry.rid, coupon, queued: true };
      this._emit('claim', res);
      return res;
    }
    const res = await this._sendClaim(entry);
    if (res.error) throw res.error;
    return res;
  }

  /** Claims queued and not answered yet. */
  pendingClaims() {
    return this.claimQueue.list();
  }

  async _sendClaim(entry) {
    if (this._claimsSending.has(entry.rid)) return { rid: entry.rid, coupon: entry.coupon, queued: true };
    this._claimsSending.add(entry.rid);
    let res;
    try {
      const ok = await this.request('claim', { coupon: entry.coupon, rid: entry.rid });
      await this.claimQueue.remove(entry.rid);
      res = { rid: entry.rid, coupon: entry.coupon, claim: ok.claim };
    } catch (err) {
      if (err instanceof CouponmeshError && RETRYABLE_CODES.has(err.code)) {
        res = { rid: entry.rid, coupon: entry.coupon, queued: true };
        if (this._authed) this._scheduleClaimRetry();
      } else {
        await this.claimQueue.remove(entry.rid);
        res = { rid: entry.rid, coupon: entry.coupon, error: err };
      }
    } finally {
      this._claimsSending.delete(entry.rid);
    }
    this._emit('claim', res);
    return res;
  }

  _scheduleClaimRetry() {
    if (this._claimRetryTimer) return;
    const delay = backoffDelay(2, this.backoff, this.random);
    this._claimRetryTimer = setTimeout(() => {
      this._claimRetryTimer = null;
      this.flushClaims();
    }, delay);
  }

  /**
   * Sends every queued claim not in flight, once, with its original rid.
   * Called after each (re)connect; safe to call at any time.
   */
  async flushClaims() {
    if (!this._authed) return [];
    const list = await this.claimQueue.list();
    return Promise.all(list.filter((e) => !this._claimsSending.has(e.rid)).map((e) => this._sendClaim(e)));
  }

  // ---- feed ----

  /**
   * Starts the user's feed: fetches the entries after `after` (default: the
   * last seq applied), page by page, and from then on applies feed pushes,
   * in seq order and deduped by seq. Remembered for every reconnect, which
   * resumes after the last seq applied.
   */
  async startFeed({ after } = {}) {
    if (typeof after === 'number' && after > this.lastSeq) this.lastSeq = after;
    this.feedWanted = true;
    if (!this._authed) return [];
    return this._fetchFeed();
  }

  _fetchFeed() {
    if (this._feedFetching) return this._feedFetching;
    this._feedFetching = (async () => {
      const got = [];
      try {
        for (;;) {
          const before = this.lastSeq;
          const ok = await this.request('feed', { after: this.lastSeq, limit: FEED_PAGE });
          const entries = ok.entries || [];
          for (const e of entries) if (this._applyFeedEntry(e)) got.push(e);
          got.push(...this._drainFeedBuffer());
          const full = entries.length >= FEED_PAGE;
          const gap = this._feedBuffer.size > 0;
          if (!(full || (gap && this.lastSeq > before))) break;
        }
      } finally {
        this._feedFetching = null;
      }
      return got;
    })();
    return this._feedFetching;
  }

  /** Applies buffered pushes that now follow the last seq; drops seen ones. */
  _drainFeedBuffer() {
    const got = [];
    for (;;) {
      const e = this._feedBuffer.get(this.lastSeq + 1);
      if (!e) break;
      this._feedBuffer.delete(this.lastSeq + 1);
      if (this._applyFeedEntry(e)) got.push(e);
    }
    for (const seq of this._feedBuffer.keys()) if (seq <= this.lastSeq) this._feedBuffer.delete(seq);
    return got;
  }

  _applyFeedEntry(e) {
    const seq = Number(e && e.seq);
    if (!Number.isFinite(seq) || seq <= this.lastSeq) return false;
    this.lastSeq = seq;
    if (e.change) this.applyCoupon(e.change);
    this._emit('feed', e);
    return true;
  }

  _onFeedPush(e) {
    const seq = Number(e.seq);
    if (!Number.isFinite(seq) || seq <= this.lastSeq) return; // seen already
    if (seq === this.lastSeq + 1 && !this._feedFetching) {
      this._applyFeedEntry(e);
      this._drainFeedBuffer();
      return;
    }
    // A page is being read, or a gap: keep the entry until the entries
    // before it are in; a gap is filled by reading the feed after lastSeq.
    this._feedBuffer.set(seq, e);
    if (!this._feedFetching) this._fetchFeed().catch((err) => this._emit('error', err));
  }
}
