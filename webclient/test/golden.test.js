// The golden frames of protocol v1 (protocol/testdata, written by the Go
// encoders and checked by the Go server and SDK tests): the JS SDK must send
// the golden requests and read the golden replies, pushes and errors, so a
// field renamed on one side fails here or in the Go tests.
import { describe, it, expect, beforeEach, afterEach, vi } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { CouponmeshClient, ERROR_CODES } from '../src/sdk/index.js';
import { FakeWebSocket, flush } from './helpers.js';

const DIR = new URL('../../protocol/testdata/', import.meta.url);

/** The golden frame kind/name, as text. */
function frame(kind, name) {
  return readFileSync(new URL(`${kind}/${name}.json`, DIR), 'utf8').trim();
}
const golden = (kind, name) => JSON.parse(frame(kind, name));
function names(kind) {
  return readdirSync(new URL(`${kind}/`, DIR))
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
}

/** Answers request `sent` with the golden frame kind/name, its id replaced. */
function answer(ws, sent, kind, name) {
  const text = frame(kind, name);
  expect(text).toMatch(/^\{"id":\d+,/);
  ws.receive(text.replace(/^\{"id":\d+,/, `{"id":${sent.id},`));
}

/** Checks that the SDK sent op's golden request (but its id). */
function sentGolden(ws, op) {
  const sent = ws.lastRequest(op);
  const want = golden('requests', op);
  expect(sent, `no ${op} request sent`).toBeDefined();
  expect(typeof sent.id).toBe('number');
  expect({ ...sent, id: want.id }).toEqual(want);
  return sent;
}

/**
 * The fields the JS side knows of the values in the frames
 * (docs/PROTOCOL.md, "Data"): a field of a golden frame not listed here was
 * added or renamed on the Go side.
 */
const FIELDS = {
  coupon: ['id', 'merchant', 'title', 'description', 'discount', 'quantity', 'claimed', 'remaining', 'startsAt', 'expiresAt', 'status', 'version', 'createdAt', 'updatedAt', 'watching'],
  claim: ['coupon', 'user', 'n', 'code', 'at'],
  entry: ['seq', 'type', 'coupon', 'at', 'claim', 'change'],
  auth: ['user', 'role', 'expiresAt'],
};

/** Checks that obj has only fields of kind, and returns it. */
function known(kind, obj) {
  expect(obj, `a ${kind}`).toBeTypeOf('object');
  for (const k of Object.keys(obj)) expect(FIELDS[kind], `field ${k} of a ${kind}`).toContain(k);
  return obj;
}

/** Returns obj[name], which must be there: a field the SDK reads. */
function field(obj, name) {
  expect(obj).toHaveProperty(name);
  return obj[name];
}

/** Connects c and answers its auth with the golden reply; returns the socket. */
async function connected(c) {
  c.connect();
  const ws = FakeWebSocket.last;
  ws.open();
  await flush();
  answer(ws, ws.lastRequest('auth'), 'replies', 'auth');
  await flush();
  return ws;
}

function newClient(opts = {}) {
  return new CouponmeshClient({ urls: ['ws://a:8080/ws'], WebSocket: FakeWebSocket, watchNetwork: false, ...opts });
}

beforeEach(() => {
  FakeWebSocket.reset();
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe('golden frames', () => {
  it('sends every golden request and reads every golden reply', async () => {
    const c = newClient({ token: golden('requests', 'auth').token });
    c.connect();
    const ws = FakeWebSocket.last;
    ws.open();
    await flush();

    // Each op: how the SDK is driven to send it, and what it must make of
    // the golden reply (ok is the reply's payload).
    const ops = {
      auth: { send: async () => c.user, check: (_, ok) => expect(c.user).toEqual(known('auth', ok)) },
      ping: { send: () => c.request('ping'), check: (res, ok) => expect(res).toEqual(ok) },
      subscribe: {
        send: () => {
          const req = golden('requests', 'subscribe');
          for (const { id, version } of req.coupons) if (version) c.applyCoupon({ id, version });
          return c.subscribe(req.coupons.map((s) => s.id));
        },
        check: (res, ok) => {
          expect(res.coupons).toEqual(field(ok, 'coupons').map((cp) => known('coupon', cp)));
          expect(res.missing).toEqual(field(ok, 'missing'));
          for (const cp of ok.coupons) {
            expect(c.coupon(cp.id)).toEqual(cp);
            expect(c.watching(cp.id)).toBe(field(cp, 'watching'));
          }
          for (const [id, n] of Object.entries(field(ok, 'watching'))) expect(c.watching(id)).toBe(n);
        },
      },
      unsubscribe: { send: () => c.unsubscribe(golden('requests', 'unsubscribe').coupons), check: (res, ok) => expect(res).toEqual(ok) },
      get: {
        send: () => c.get(golden('requests', 'get').coupon),
        check: (res, ok) => {
          expect(res).toEqual(known('coupon', field(ok, 'coupon')));
          expect(c.watching(ok.coupon.id)).toBe(field(ok.coupon, 'watching'));
        },
      },
      claim: {
        send: () => {
          const req = golden('requests', 'claim');
          return c.claim(req.coupon, { rid: req.rid });
        },
        check: (res, ok) => expect(res.claim).toEqual(known('claim', field(ok, 'claim'))),
      },
      follow: {
        send: () => c.follow(golden('requests', 'follow').coupon),
        check: (res, ok) => expect(res).toEqual(known('coupon', field(ok, 'coupon'))),
      },
      unfollow: { send: () => c.unfollow(golden('requests', 'unfollow').coupon), check: (res, ok) => expect(res).toEqual(ok) },
      wallet: { send: () => c.wallet(), check: (res, ok) => expect(res).toEqual(field(ok, 'claims').map((cl) => known('claim', cl))) },
      feed: {
        send: () => c.startFeed({ after: golden('requests', 'feed').after }),
        check: (res, ok) => {
          expect(res).toEqual(field(ok, 'entries').map((e) => known('entry', e)));
          for (const e of ok.entries) {
            if (e.claim) known('claim', e.claim);
            if (e.change) known('coupon', e.change);
          }
          expect(ok.entries.some((e) => e.claim) && ok.entries.some((e) => e.change)).toBe(true);
          const changed = ok.entries.find((e) => e.change).change;
          expect(c.coupon(changed.id)).toEqual(changed); // applied from the entry
        },
      },
      // No call sends drained: the SDK answers the draining push with it, as
      // the last request on the socket (so it comes last here too).
      drained: {
        send: async () => ws.receive(frame('pushes', 'draining')),
        check: (_, ok) => {
          expect(ok).toEqual({}); // its reply matches no call and is dropped
          expect(ws.requests.at(-1).op).toBe('drained');
          expect(c.state).toBe('reconnecting');
        },
      },
    };
    expect(Object.keys(ops).sort()).toEqual(names('requests'));
    expect(names('replies')).toEqual(names('requests'));

    // auth goes first, by itself, when the connection opens.
    const auth = sentGolden(ws, 'auth');
    answer(ws, auth, 'replies', 'auth');
    await flush();
    ops.auth.check(c.user, golden('replies', 'auth').ok);

    // The others in the order of docs/PROTOCOL.md (feed last: its
    // coupon_changed entry makes c42 newer than the subscribe request says).
    for (const op of Object.keys(ops).filter((o) => o !== 'auth')) {
      const p = ops[op].send();
      await flush();
      const sent = sentGolden(ws, op);
      answer(ws, sent, 'replies', op);
      const res = await p;
      ops[op].check(res, golden('replies', op).ok);
    }
    c.close();
  });

  it('reads every golden push', async () => {
    const feed = golden('pushes', 'feed');
    const c = newClient({ token: 't', feedAfter: feed.entry.seq - 1 });
    const got = {};
    c.on('coupon', (cp) => (got.coupon = cp));
    c.on('feed', (e) => (got.feed = e));
    c.on('presence', (p) => (got.presence = p));
    const ws = await connected(c);

    const want = {
      coupon: (m) => known('coupon', field(m, 'coupon')),
      feed: (m) => known('entry', field(m, 'entry')),
      presence: (m) => ({ coupon: field(m, 'coupon'), watching: field(m, 'watching') }),
      // the addresses join the node URLs, tried first by the next connection
      draining: (m) => field(m, 'addresses').map((a) => `ws://${a}/ws`),
    };
    expect(Object.keys(want).sort()).toEqual(names('pushes'));
    // draining last: the socket is handed over after it
    for (const kind of names('pushes').sort((a, b) => (a === 'draining') - (b === 'draining'))) {
      ws.receive(frame('pushes', kind));
      if (kind === 'draining') got.draining = c.urls.slice(1);
      expect(got[kind], `push ${kind}`).toEqual(want[kind](golden('pushes', kind)));
    }
    c.close();
  });

  it('reads every golden error as the CouponmeshError of its code', async () => {
    expect(names('errors')).toEqual([...ERROR_CODES].sort());
    const c = newClient({ token: 't' });
    const ws = await connected(c);
    for (const code of names('errors')) {
      const p = c.request('get', { coupon: 'c42' });
      await flush();
      answer(ws, ws.lastRequest('get'), 'errors', code);
      const { error } = golden('errors', code);
      await expect(p).rejects.toMatchObject({ name: 'CouponmeshError', code: error.code, message: error.message });
    }
    c.close();
  });
});
