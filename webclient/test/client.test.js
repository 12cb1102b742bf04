import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import {
  CouponmeshClient,
  CouponmeshError,
  ClaimQueue,
  createCache,
  backoffDelay,
  backoffCeiling,
  parseAddresses,
  normalizeAddress,
  splitFrame,
  SUBPROTOCOL,
} from '../src/sdk/index.js';
import { FakeWebSocket, memoryStore, flush } from './helpers.js';

function coupon(id, version, extra = {}) {
  return { id, merchant: 'm', title: id, quantity: 10, claimed: version, remaining: 10 - version, status: 'active', version, ...extra };
}

function newClient(opts = {}) {
  return new CouponmeshClient({
    urls: ['ws://a:8080/ws'],
    token: 'tok',
    WebSocket: FakeWebSocket,
    watchNetwork: false,
    ...opts,
  });
}

/** Opens the newest fake socket and answers its auth. */
async function openAndAuth(ws = FakeWebSocket.last) {
  ws.open();
  await flush();
  const auth = ws.lastRequest('auth');
  ws.reply(auth.id, { user: 'alice', role: 'shopper', expiresAt: '2030-01-01T00:00:00Z' });
  await flush();
  return ws;
}

beforeEach(() => {
  FakeWebSocket.reset();
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('frames and addresses', () => {
  it('splits frames on newlines, skipping empty parts', () => {
    const parts = splitFrame('{"a":1}\n\n{"b":2}\n  \n{bad\n');
    expect(parts.map((p) => p.msg)).toEqual([{ a: 1 }, { b: 2 }, undefined]);
    expect(parts[2].error).toBeDefined();
  });

  it('parses 1012 reasons leniently', () => {
    expect(parseAddresses('10.0.0.2:8080,10.0.0.3:8080', 'ws://a:8080/ws')).toEqual(['ws://10.0.0.2:8080/ws', 'ws://10.0.0.3:8080/ws']);
    expect(parseAddresses(' b:1 ,  wss://c.example/ws; http://d:2 https://e ,, bad@@ ', 'wss://a/ws')).toEqual([
      'wss://b:1/ws',
      'wss://c.example/ws',
      'ws://d:2/ws',
      'wss://e/ws',
    ]);
    expect(parseAddresses('[::1]:9000 b:1 b:1', 'ws://a/ws')).toEqual(['ws://[::1]:9000/ws', 'ws://b:1/ws']);
    expect(parseAddresses('', 'ws://a/ws')).toEqual([]);
    expect(parseAddresses('draining', 'ws://a/ws')).toEqual([]);
    expect(parseAddresses('node draining', 'ws://a/ws')).toEqual([]); // the reason of a node with no other to name
    expect(parseAddresses('b:1/ws c', 'ws://a/ws')).toEqual(['ws://b:1/ws']);
    expect(normalizeAddress('ftp://x')).toBeUndefined();
  });
});

describe('backoff', () => {
  it('keeps every delay within [0, min(cap, base*2^n)]', () => {
    const bounds = { baseMs: 250, capMs: 10000 };
    for (let n = 0; n < 40; n++) {
      const ceil = Math.min(10000, 250 * 2 ** n);
      expect(backoffCeiling(n, bounds)).toBe(ceil);
      for (const r of [0, 0.25, 0.5, 0.999999, Math.random()]) {
        const d = backoffDelay(n, bounds, () => r);
        expect(d).toBeGreaterThanOrEqual(0);
        expect(d).toBeLessThanOrEqual(ceil);
      }
    }
    expect(backoffDelay(100, bounds, () => 1)).toBe(10000);
    expect(backoffDelay(3, { baseMs: 100, capMs: 300 }, () => 1)).toBe(300);
  });

  it('the client waits a jittered, bounded delay between failed attempts', async () => {
    const random = vi.fn(() => 0.999);
    const c = newClient({ backoff: { baseMs: 100, capMs: 1000 }, random });
    const delays = [];
    c.on('reconnect', ({ delay }) => delays.push(delay));
    c.connect();
    for (let i = 0; i < 8; i++) {
      FakeWebSocket.last.serverClose(1006);
      const n = FakeWebSocket.instances.length;
      await vi.advanceTimersByTimeAsync(delays.at(-1));
      expect(FakeWebSocket.instances.length).toBe(n + 1);
    }
    delays.forEach((d, n) => {
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(Math.min(1000, 100 * 2 ** n));
    });
    expect(delays.slice(0, 5)).toEqual([99, 199, 399, 799, 999]);
    // a successful auth resets the backoff
    await openAndAuth();
    FakeWebSocket.last.serverClose(1006);
    expect(delays.at(-1)).toBe(99);
    c.close();
  });
});

describe('connection', () => {
  it('offers the subprotocol and sends auth first, never the token in the URL', async () => {
    const c = newClient({ token: async () => 'secret-token' });
    const states = [];
    c.on('state', (s) => states.push(s));
    c.connect();
    const ws = FakeWebSocket.last;
    expect(ws.protocols).toEqual([SUBPROTOCOL]);
    expect(ws.url).toBe('ws://a:8080/ws');
    expect(ws.url).not.toContain('secret');
    await openAndAuth(ws);
    expect(ws.requests[0]).toMatchObject({ op: 'auth', token: 'secret-token' });
    expect(c.user).toMatchObject({ user: 'alice' });
    expect(states).toEqual(['reconnecting', 'online']);
    ws.serverClose(1006);
    expect(states.at(-1)).toBe('reconnecting');
    c.close();
    expect(states.at(-1)).toBe('offline');
  });

  it('stops on a refused token and reports offline', async () => {
    const c = newClient();
    const errors = [];
    c.on('unauthorized', (e) => errors.push(e));
    c.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    await flush();
    ws.replyError(ws.lastRequest('auth').id, 'unauthorized');
    await flush();
    expect(errors[0].code).toBe('unauthorized');
    expect(c.state).toBe('offline');
    await vi.advanceTimersByTimeAsync(60000);
    expect(FakeWebSocket.instances.length).toBe(1);
  });

  it('treats a refused connection (error without close) and a hung handshake as failed attempts', async () => {
    const c = newClient({ connectTimeoutMs: 1000, backoff: { baseMs: 100, capMs: 100 }, random: () => 1 });
    c.connect();
    FakeWebSocket.last.onerror({}); // Node's WebSocket fires no close after a refused connection
    expect(c.state).toBe('reconnecting');
    await vi.advanceTimersByTimeAsync(100);
    expect(FakeWebSocket.instances.length).toBe(2);
    FakeWebSocket.instances[0].serverClose(1006); // a late close of the failed socket is not counted twice
    await vi.advanceTimersByTimeAsync(999); // the handshake hangs
    expect(FakeWebSocket.instances.length).toBe(2);
    await vi.advanceTimersByTimeAsync(1 + 100);
    expect(FakeWebSocket.instances.length).toBe(3);
    await openAndAuth();
    expect(c.state).toBe('online');
    c.close();
  });

  it('goes offline with the network and reconnects when it is back', async () => {
    const c = newClient();
    c.connect();
    await openAndAuth();
    c._networkChanged(false);
    expect(c.state).toBe('offline');
    await vi.advanceTimersByTimeAsync(60000);
    expect(FakeWebSocket.instances.length).toBe(1);
    c._networkChanged(true);
    expect(c.state).toBe('reconnecting');
    expect(FakeWebSocket.instances.length).toBe(2);
    await openAndAuth();
    expect(c.state).toBe('online');
    c.close();
  });
});

describe('requests', () => {
  it('matches replies to requests by id, in any order', async () => {
    const c = newClient();
    c.connect();
    const ws = await openAndAuth();
    const p1 = c.request('get', { coupon: 'c1' });
    const p2 = c.request('get', { coupon: 'c2' });
    const [r1, r2] = ws.requests.slice(-2);
    expect(r1.id).not.toBe(r2.id);
    expect(r1).toMatchObject({ op: 'get', coupon: 'c1' });
    ws.reply(r2.id, { coupon: coupon('c2', 1) });
    ws.replyError(r1.id, 'not_found', 'no c1');
    await expect(p2).resolves.toEqual({ coupon: coupon('c2', 1) });
    const err = await p1.catch((e) => e);
    expect(err).toBeInstanceOf(CouponmeshError);
    expect(err.code).toBe('not_found');
    c.close();
  });

  it('times out a request without a reply and ignores the late reply', async () => {
    const c = newClient({ requestTimeoutMs: 500 });
    c.connect();
    const ws = await openAndAuth();
    const p = c.request('ping');
    const fast = c.request('ping', {}, { timeoutMs: 100 });
    const [slowReq, fastReq] = ws.requests.slice(-2);
    const fastErr = fast.catch((e) => e);
    const slowErr = p.catch((e) => e);
    await vi.advanceTimersByTimeAsync(100);
    expect((await fastErr).code).toBe('timeout');
    await vi.advanceTimersByTimeAsync(400);
    expect((await slowErr).code).toBe('timeout');
    ws.reply(slowReq.id, {}); // late: harmless
    ws.reply(fastReq.id, {});
    c.close();
  });

  it('rejects requests in flight when the connection drops, and when not connected', async () => {
    const c = newClient();
    await expect(c.request('ping')).rejects.toMatchObject({ code: 'disconnected' });
    c.connect();
    const ws = await openAndAuth();
    const p = c.request('wallet').catch((e) => e);
    ws.serverClose(1006);
    expect((await p).code).toBe('disconnected');
    c.close();
  });

  it('handles several messages in one frame, in order', async () => {
    const c = newClient();
    c.connect();
    const ws = await openAndAuth();
    const subP = c.subscribe(['c42']);
    const sub = ws.lastRequest('subscribe');
    const claimP = c.claim('c42', { rid: 'rid-1' });
    await flush();
    const cl = ws.lastRequest('claim');
    const seen = [];
    c.on('coupon', (x) => seen.push(['coupon', x.version]));
    c.on('claim', (x) => seen.push(['claim', x.claim && x.claim.code]));
    ws.receive(
      [
        JSON.stringify({ id: sub.id, ok: { coupons: [coupon('c42', 17)] } }),
        '',
        JSON.stringify({ push: 'coupon', coupon: coupon('c42', 18) }),
        JSON.stringify({ push: 'mystery', x: 1 }),
        JSON.stringify({ id: cl.id, ok: { claim: { coupon: 'c42', user: 'alice', n: 18, code: 'c42-0018' } } }),
        '',
      ].join('\n'),
    );
    await expect(claimP).resolves.toMatchObject({ rid: 'rid-1', claim: { code: 'c42-0018' } });
    // the push (v18) was handled before the reply's older snapshot (v17),
    // which the version rule then dropped
    expect(seen).toEqual([
      ['coupon', 18],
      ['claim', 'c42-0018'],
    ]);
    expect(c.coupon('c42').version).toBe(18);
    await subP;
    c.close();
  });

  it('keeps at most maxInFlight requests in flight', async () => {
    const c = newClient({ maxInFlight: 2 });
    c.connect();
    const ws = await openAndAuth();
    const ps = [1, 2, 3, 4].map((n) => c.request('get', { coupon: `c${n}` }));
    expect(ws.requests.filter((r) => r.op === 'get').length).toBe(2);
    ws.reply(ws.requests.at(-1).id, {});
    expect(ws.requests.filter((r) => r.op === 'get').length).toBe(3);
    for (const r of ws.requests.filter((r) => r.op === 'get')) ws.reply(r.id, {});
    ws.reply(ws.requests.at(-1).id, {});
    await Promise.all(ps);
    c.close();
  });
});

describe('coupons and resync', () => {
  it('applies coupon states only when their version is newer', async () => {
    const c = newClient();
    c.connect();
    const ws = await openAndAuth();
    const p = c.subscribe(['c42']);
    const sub = ws.lastRequest('subscribe');
    expect(sub.coupons).toEqual([{ id: 'c42', version: 0 }]);
    ws.receive(JSON.stringify({ push: 'coupon', coupon: coupon('c42', 19) })); // push before the reply
    ws.reply(sub.id, { coupons: [coupon('c42', 18)] });
    await p;
    expect(c.coupon('c42').version).toBe(19);
    ws.receive(JSON.stringify({ push: 'coupon', coupon: coupon('c42', 19, { title: 'dup' }) }));
    expect(c.coupon('c42').title).toBe('c42');
    ws.receive(JSON.stringify({ push: 'coupon', coupon: coupon('c42', 20) }));
    expect(c.coupon('c42').version).toBe(20);
    c.close();
  });

  it('keeps presence counts from pushes and from subscribe and get replies; a push newer than a reply wins', async () => {
    const c = newClient();
    c.connect();
    const ws = await openAndAuth();
    const heard = [];
    c.on('presence', (p) => heard.push([p.coupon, p.watching]));
    const p = c.subscribe(['a', 'b', 'c']);
    const sub = ws.lastRequest('subscribe');
    // a's snapshot carries its count; b was not sent (version held) but is
    // in the watching map; c is watched by nobody
    ws.reply(sub.id, { coupons: [coupon('a', 1, { watching: 3 })], watching: { b: 7 } });
    await p;
    expect([c.watching('a'), c.watching('b'), c.watching('c')]).toEqual([3, 7, 0]);
    ws.receive(JSON.stringify({ push: 'presence', coupon: 'a', watching: 4 }));
    expect(c.watching('a')).toBe(4);
    // a reply read before a push that arrives first does not undo it
    const g = c.get('a');
    const get = ws.lastRequest('get');
    ws.receive(JSON.stringify({ push: 'presence', coupon: 'a', watching: 6 }));
    ws.reply(get.id, { coupon: coupon('a', 1, { watching: 5 }) });
    await g;
    expect(c.watching('a')).toBe(6);
    // a coupon push carries no count and leaves it alone
    ws.receive(JSON.stringify({ push: 'coupon', coupon: coupon('a', 2) }));
    expect(c.watching('a')).toBe(6);
    expect(heard).toEqual([
      ['a', 3],
      ['b', 7],
      ['c', 0],
      ['a', 4],
      ['a', 6],
    ]);
    c.close();
  });

  it('after a reconnect: re-auths, resubscribes with the versions held, resumes the feed after its last seq', async () => {
    const c = newClient();
    c.applyCoupon(coupon('cached', 5)); // e.g. from the local cache
    c.connect();
    let ws = await openAndAuth();
    const s1 = c.subscribe(['c1', 'c2', 'cached']);
    ws.reply(ws.lastRequest('subscribe').id, { coupons: [coupon('c1', 3), coupon('c2', 7)] });
    await s1;
    expect(ws.lastRequest('subscribe').coupons).toEqual([
      { id: 'c1', version: 0 },
      { id: 'c2', version: 0 },
      { id: 'cached', version: 5 },
    ]);
    const f = c.startFeed();
    expect(ws.lastRequest('feed')).toMatchObject({ after: 0 });
    ws.reply(ws.lastRequest('feed').id, { entries: [{ seq: 1, type: 'followed', coupon: 'c1' }, { seq: 2, type: 'followed', coupon: 'c2' }] });
    await f;
    ws.receive(JSON.stringify({ push: 'coupon', coupon: coupon('c2', 8) }));
    ws.receive(JSON.stringify({ push: 'feed', entry: { seq: 3, type: 'claimed', coupon: 'c1' } }));
    expect(c.lastSeq).toBe(3);
    const u = c.unsubscribe(['c1']);
    ws.reply(ws.lastRequest('unsubscribe').id, {});
    await u;

    ws.serverClose(1013, 'slow consumer');
    expect(c.state).toBe('reconnecting');
    await vi.advanceTimersByTimeAsync(10000);
    ws = FakeWebSocket.last;
    expect(FakeWebSocket.instances.length).toBe(2);
    ws.open();
    await flush();
    expect(ws.requests[0]).toMatchObject({ op: 'auth', token: 'tok' });
    ws.reply(ws.requests[0].id, { user: 'alice' });
    await flush();
    const resub = ws.lastRequest('subscribe');
    expect(resub.coupons).toEqual([
      { id: 'c2', version: 8 },
      { id: 'cached', version: 5 },
    ]);
    ws.reply(resub.id, { coupons: [coupon('c2', 9)] });
    await flush();
    expect(c.coupon('c2').version).toBe(9);
    const feed = ws.lastRequest('feed');
    expect(feed).toMatchObject({ op: 'feed', after: 3 });
    const got = [];
    c.on('feed', (e) => got.push(e.seq));
    // the page and a push overlap: dedupe by seq
    ws.receive(JSON.stringify({ push: 'feed', entry: { seq: 5, type: 'claimed', coupon: 'c2' } }));
    ws.reply(feed.id, { entries: [{ seq: 3 }, { seq: 4 }, { seq: 5 }] });
    await flush();
    ws.receive(JSON.stringify({ push: 'feed', entry: { seq: 5 } }));
    ws.receive(JSON.stringify({ push: 'feed', entry: { seq: 6 } }));
    expect(got).toEqual([4, 5, 6]);
    expect(c.lastSeq).toBe(6);
    c.close();
  });

  it('fetches the feed after a gap instead of skipping entries', async () => {
    const c = newClient({ feedAfter: 10 });
    c.connect();
    const ws = await openAndAuth();
    const f = c.startFeed();
    ws.reply(ws.lastRequest('feed').id, { entries: [] });
    await f;
    const got = [];
    c.on('feed', (e) => got.push(e.seq));
    ws.receive(JSON.stringify({ push: 'feed', entry: { seq: 13 } }));
    await flush();
    const req = ws.lastRequest('feed');
    expect(req.after).toBe(10);
    ws.reply(req.id, { entries: [{ seq: 11 }, { seq: 12 }, { seq: 13 }] });
    await flush();
    expect(got).toEqual([11, 12, 13]);
    c.close();
  });

  it('adds the addresses of a 1012 close to the rotation and goes there next', async () => {
    const c = newClient({ urls: ['ws://a:8080/ws', 'ws://b:8080/ws'], random: () => 0.5 });
    c.connect();
    expect(FakeWebSocket.last.url).toBe('ws://a:8080/ws');
    await openAndAuth();
    FakeWebSocket.last.serverClose(1012, 'c:8080, ws://d:9090/ws ,a:8080');
    expect(c.urls).toEqual(['ws://a:8080/ws', 'ws://b:8080/ws', 'ws://c:8080/ws', 'ws://d:9090/ws']);
    expect(c.lastDelay).toBeLessThanOrEqual(250);
    await vi.advanceTimersByTimeAsync(250);
    expect(FakeWebSocket.last.url).toBe('ws://c:8080/ws');
    FakeWebSocket.last.serverClose(1006);
    await vi.advanceTimersByTimeAsync(10000);
    expect(FakeWebSocket.last.url).toBe('ws://d:9090/ws');
    // then round robin over every known node
    const seen = new Set();
    for (let i = 0; i < 8; i++) {
      FakeWebSocket.last.serverClose(1006);
      await vi.advanceTimersByTimeAsync(10000);
      seen.add(FakeWebSocket.last.url);
    }
    expect([...seen].sort()).toEqual(c.urls.slice().sort());
    c.close();
  });
});

describe('drain handover', () => {
  it('on a draining push: sends drained, moves unsent requests to the next node, keeps the old socket for its replies', async () => {
    const c = newClient({ urls: ['ws://a:8080/ws'], random: () => 0.5 });
    const errors = [];
    c.on('error', (e) => errors.push(e));
    c.connect();
    const old = await openAndAuth();
    const inFlight = c.wallet();
    const sentBefore = old.lastRequest('wallet');
    old.receive(JSON.stringify({ push: 'draining', addresses: ['b:8080', 'c:8080'] }));
    // drained goes out after every request sent before it, and nothing after it
    expect(old.requests.at(-1).op).toBe('drained');
    expect(old.requests.findIndex((r) => r.op === 'drained')).toBeGreaterThan(old.requests.findIndex((r) => r.id === sentBefore.id));
    const during = c.get('c42'); // made during the handover: waits, never fails
    const claimed = c.claim('c43', { rid: 'r1' });
    expect(old.requests.at(-1).op).toBe('drained');
    expect(c.urls).toEqual(['ws://a:8080/ws', 'ws://b:8080/ws', 'ws://c:8080/ws']);
    // the next connection opens at once (a jittered delay of at most 250 ms), to a named node
    await vi.advanceTimersByTimeAsync(250);
    const next = FakeWebSocket.last;
    expect(next).not.toBe(old);
    expect(next.url).toBe('ws://b:8080/ws');
    // a failed attempt keeps the waiting request for the one after
    next.serverClose(1006);
    await vi.advanceTimersByTimeAsync(1000);
    const next2 = FakeWebSocket.last;
    expect(next2.url).toBe('ws://c:8080/ws');
    // the old socket still delivers the reply to what it received
    old.reply(sentBefore.id, { claims: [{ coupon: 'c1', n: 1 }] });
    expect(await inFlight).toEqual([{ coupon: 'c1', n: 1 }]);
    await openAndAuth(next2);
    const get = next2.lastRequest('get');
    expect(get.coupon).toBe('c42');
    next2.reply(get.id, { coupon: coupon('c42', 3) });
    expect((await during).version).toBe(3);
    const claim = next2.lastRequest('claim');
    expect(claim.rid).toBe('r1');
    // the old socket's 1012 close fails nothing and does not disturb the new connection
    old.serverClose(1012, 'b:8080,c:8080');
    expect(c.state).toBe('online');
    next2.reply(claim.id, { claim: { coupon: 'c43', n: 1, code: 'c43-1' } });
    await flush();
    expect((await claimed).queued).toBe(true); // made while not authed: sent from the queue, answered there
    expect(await c.pendingClaims()).toEqual([]);
    expect(errors).toEqual([]);
    c.close();
  });

  it('a request sent before the draining push and lost with the connection (no 1012) is still reported', async () => {
    const c = newClient({ urls: ['ws://a:8080/ws', 'ws://b:8080/ws'], random: () => 0.5 });
    c.connect();
    const old = await openAndAuth();
    const lost = c.wallet();
    old.receive(JSON.stringify({ push: 'draining', addresses: ['b:8080'] }));
    await vi.advanceTimersByTimeAsync(250);
    await openAndAuth(FakeWebSocket.last);
    old.serverClose(1006);
    await expect(lost).rejects.toMatchObject({ code: 'disconnected' });
    expect(c.state).toBe('online');
    c.close();
  });

  it('a request the draining socket left unanswered at its 1012 close is sent again on the next connection', async () => {
    const c = newClient({ urls: ['ws://a:8080/ws', 'ws://b:8080/ws'], random: () => 0.5, maxInFlight: 1 });
    c.connect();
    const old = await openAndAuth();
    const unanswered = c.wallet();
    const sent = old.lastRequest('wallet');
    old.receive(JSON.stringify({ push: 'draining', addresses: ['b:8080'] }));
    await vi.advanceTimersByTimeAsync(250);
    const next = await openAndAuth(FakeWebSocket.last);
    const busy = c.get('c1'); // takes the new connection's only slot
    const get = next.lastRequest('get');
    const queued = c.get('c2'); // waits for that slot: the old socket's close must not fail it
    old.serverClose(1012, 'b:8080'); // the node ran none of what it left unanswered
    expect(next.lastRequest('wallet')).toBeUndefined(); // waits for a slot
    next.reply(get.id, { coupon: coupon('c1', 1) });
    await busy;
    const again = next.lastRequest('wallet');
    expect(again).toEqual(sent); // the same frame, id included, before the request made later
    next.reply(again.id, { claims: [] });
    expect(await unanswered).toEqual([]);
    const get2 = next.lastRequest('get');
    expect(get2.coupon).toBe('c2');
    next.reply(get2.id, { coupon: coupon('c2', 1) });
    expect((await queued).id).toBe('c2');
    expect(c.state).toBe('online');
    c.close();
  });

  it('requests the current socket left unanswered at a 1012 close wait for the next connection, also past a second 1012', async () => {
    const c = newClient({ urls: ['ws://a:8080/ws'], random: () => 0.5 });
    c.connect();
    const first = await openAndAuth();
    const unanswered = c.wallet();
    const sent = first.lastRequest('wallet');
    first.serverClose(1012, 'b:8080,c:8080'); // no draining push (a node of an earlier revision)
    const during = c.get('c42'); // made while reconnecting: waits, never fails
    await vi.advanceTimersByTimeAsync(250);
    const second = FakeWebSocket.last;
    expect(second.url).toBe('ws://b:8080/ws');
    second.open(); // a node draining too: 1012 at once, before its auth reply
    await flush();
    second.serverClose(1012, 'c:8080');
    await vi.advanceTimersByTimeAsync(250);
    const third = await openAndAuth(FakeWebSocket.last);
    expect(third.url).toBe('ws://c:8080/ws');
    const again = third.lastRequest('wallet');
    expect(again).toEqual(sent);
    third.reply(again.id, { claims: [{ coupon: 'c1', n: 1 }] });
    expect(await unanswered).toEqual([{ coupon: 'c1', n: 1 }]);
    const get = third.lastRequest('get');
    third.reply(get.id, { coupon: coupon('c42', 2) });
    expect((await during).version).toBe(2);
    c.close();
  });

  it('a 1006 close still rejects what the socket left unanswered', async () => {
    const c = newClient({ urls: ['ws://a:8080/ws'], random: () => 0.5 });
    c.connect();
    const ws = await openAndAuth();
    const lost = c.wallet();
    ws.serverClose(1006);
    await expect(lost).rejects.toMatchObject({ code: 'disconnected' });
    c.close();
  });
});

describe('offline claims', () => {
  it('queues a claim made offline with its rid and sends it once on reconnect', async () => {
    const cache = createCache({ store: await memoryStore('claims-1') });
    const queue = new ClaimQueue({ storage: cache });
    const c = newClient({ claimQueue: queue });
    const events = [];
    c.on('claim', (e) => events.push(e));
    const res = await c.claim('c42', { rid: 'rid-offline' });
    expect(res).toEqual({ rid: 'rid-offline', coupon: 'c42', queued: true });
    expect(await new ClaimQueue({ storage: cache }).list()).toMatchObject([{ rid: 'rid-offline', coupon: 'c42' }]);

    c.connect();
    let ws = await openAndAuth();
    await flush(30);
    let claims = ws.requests.filter((r) => r.op === 'claim');
    expect(claims).toEqual([{ id: claims[0].id, op: 'claim', coupon: 'c42', rid: 'rid-offline' }]);
    // a second flush while the first is in flight sends nothing more
    await c.flushClaims();
    expect(ws.requests.filter((r) => r.op === 'claim').length).toBe(1);
    ws.reply(claims[0].id, { claim: { coupon: 'c42', user: 'alice', n: 1, code: 'c42-0001' } });
    await flush(30);
    expect(events.at(-1)).toMatchObject({ rid: 'rid-offline', claim: { code: 'c42-0001' } });
    expect(await queue.list()).toEqual([]);

    // a later reconnect sends nothing again
    ws.serverClose(1006);
    await vi.advanceTimersByTimeAsync(10000);
    ws = await openAndAuth();
    await flush(30);
    expect(ws.requests.filter((r) => r.op === 'claim')).toEqual([]);
    c.close();
  });

  it('retries a claim whose reply never came with the same rid, and drops refused ones', async () => {
    const c = newClient();
    c.connect();
    let ws = await openAndAuth();
    const p = c.claim('c1', { rid: 'r-lost' });
    await flush();
    const q = c.claim('c2', { rid: 'r-sold' });
    await flush();
    ws.replyError(ws.lastRequest('claim').id, 'sold_out', 'c2 is sold out');
    await expect(q).rejects.toMatchObject({ code: 'sold_out' });
    ws.serverClose(1006);
    await expect(p).resolves.toMatchObject({ rid: 'r-lost', queued: true });
    await vi.advanceTimersByTimeAsync(10000);
    ws = await openAndAuth();
    await flush(30);
    const claims = ws.requests.filter((r) => r.op === 'claim');
    expect(claims.map((r) => [r.coupon, r.rid])).toEqual([['c1', 'r-lost']]);
    c.close();
  });
});

describe('visitors (anonymous sessions)', () => {
  it('browses without a token: subscribe and get go out, pushes apply, no auth is sent', async () => {
    const c = newClient({ token: () => undefined, anonymous: true });
    const states = [];
    c.on('state', (s) => states.push(s));
    c.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    await flush();
    expect(c.state).toBe('online');
    expect(c.anonymous).toBe(true);
    expect(ws.requests.some((r) => r.op === 'auth')).toBe(false);

    const sub = c.subscribe(['c1']);
    await flush();
    const req = ws.lastRequest('subscribe');
    expect(req.coupons).toEqual([{ id: 'c1', version: 0 }]);
    ws.reply(req.id, { coupons: [coupon('c1', 1)] });
    await sub;
    ws.receive(JSON.stringify({ push: 'coupon', coupon: coupon('c1', 2) }));
    expect(c.coupon('c1').version).toBe(2);

    const got = c.get('c1');
    await flush();
    ws.reply(ws.lastRequest('get').id, { coupon: coupon('c1', 3) });
    expect((await got).version).toBe(3);
    expect(states).toEqual(['reconnecting', 'online']);
    c.close();
  });

  it('refuses what needs a user without sending it', async () => {
    const c = newClient({ token: '', anonymous: true });
    c.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    await flush();
    await expect(c.claim('c1')).rejects.toMatchObject({ code: 'unauthorized' });
    await expect(c.wallet()).rejects.toMatchObject({ code: 'unauthorized' });
    await expect(c.follow('c1')).rejects.toMatchObject({ code: 'unauthorized' });
    expect(await c.pendingClaims()).toEqual([]); // nothing queued for later either
    expect(ws.requests.map((r) => r.op)).toEqual([]);
    c.close();
  });

  it('signs in on the same connection, keeps its subscriptions, then sends queued work', async () => {
    const c = newClient({ token: undefined, anonymous: true });
    c.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    await flush();
    const sub = c.subscribe(['c1']);
    await flush();
    ws.reply(ws.lastRequest('subscribe').id, { coupons: [coupon('c1', 4)] });
    await sub;
    c.startFeed();

    const signedIn = c.signIn(async () => 'tok2');
    await flush();
    const auth = ws.lastRequest('auth');
    expect(auth.token).toBe('tok2');
    ws.reply(auth.id, { user: 'bob', role: 'shopper', expiresAt: '2030-01-01T00:00:00Z' });
    expect(await signedIn).toMatchObject({ user: 'bob' });
    expect(c.anonymous).toBe(false);
    expect(FakeWebSocket.instances.length).toBe(1); // no reconnect
    await flush();
    // The resync after auth: resubscribe with the version held, then the feed.
    const resub = ws.lastRequest('subscribe');
    expect(resub.coupons).toEqual([{ id: 'c1', version: 4 }]);
    ws.reply(resub.id, { coupons: [] });
    await flush();
    expect(ws.lastRequest('feed')).toMatchObject({ after: 0 });

    const claimed = c.claim('c1', { rid: 'r1' });
    await flush();
    const cr = ws.lastRequest('claim');
    expect(cr).toMatchObject({ coupon: 'c1', rid: 'r1' });
    ws.reply(cr.id, { claim: { coupon: 'c1', user: 'bob', n: 5, code: 'c1-0005' } });
    expect((await claimed).claim.code).toBe('c1-0005');
    c.close();
  });

  it('stays a visitor when the sign-in is refused', async () => {
    const c = newClient({ token: undefined, anonymous: true });
    c.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    await flush();
    const signedIn = c.signIn('bad');
    await flush();
    ws.replyError(ws.lastRequest('auth').id, 'unauthorized', 'token is malformed');
    await expect(signedIn).rejects.toMatchObject({ code: 'unauthorized' });
    expect(c.anonymous).toBe(true);
    expect(c.state).toBe('online');
    const got = c.get('c1');
    await flush();
    ws.reply(ws.lastRequest('get').id, { coupon: coupon('c1', 1) });
    await got;
    c.close();
  });

  it('signs out into a visitor session on a new connection', async () => {
    const c = newClient({ token: 'tok', anonymous: true });
    c.connect();
    await openAndAuth();
    expect(c.anonymous).toBe(false);
    c.signOut();
    expect(FakeWebSocket.instances.length).toBe(2);
    const ws = FakeWebSocket.last;
    ws.open();
    await flush();
    expect(ws.requests.some((r) => r.op === 'auth')).toBe(false);
    expect(c.anonymous).toBe(true);
    expect(c.state).toBe('online');
    c.close();
  });

  it('without `anonymous`, a missing token is still fatal', async () => {
    const c = newClient({ token: undefined });
    const errors = [];
    c.on('unauthorized', (e) => errors.push(e));
    c.connect();
    FakeWebSocket.last.open();
    await flush();
    expect(errors.length).toBe(1);
    expect(c.state).toBe('offline');
  });
});
