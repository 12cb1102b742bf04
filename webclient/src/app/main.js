// The couponmesh web app: plain DOM over the SDK.
import './style.css';
import { CouponmeshClient, ClaimQueue, createCache } from '../sdk/index.js';
import * as api from './api.js';

const COUPON_TTL = 5 * 60_000;
const LIST_TTL = 60_000;
const WALLET_TTL = 60_000;
const FEED_KEEP = 50;

const $ = (sel) => document.querySelector(sel);
const cache = createCache({ name: 'couponmesh' });

const app = {
  session: null, // {user, role, token, expiresAt}
  client: null,
  current: null, // coupon id on screen
  follows: new Set(),
  wallet: [], // claims
  pending: [], // queued claims [{rid, coupon}]
  feed: [], // newest first
  list: { query: null, next: '', fromCache: false },
};

const key = (k) => `u:${app.session.user}:${k}`;

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-') || k === 'href' || k === 'class') e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

function show(node, on) {
  node.hidden = !on;
}

function online() {
  return app.client && app.client.state === 'online';
}

function errText(err) {
  return err && err.code ? `${err.code}: ${err.message}` : String((err && err.message) || err);
}

// ---- session ----

async function login(user, role) {
  const { token, expiresAt } = await api.devLogin(user, role);
  app.session = { user, role, token, expiresAt };
  await cache.set('session', app.session);
}

async function tokenProvider() {
  const s = app.session;
  const exp = Date.parse(s.expiresAt || '') || 0;
  if (exp && exp - Date.now() < 60_000) {
    try {
      await login(s.user, s.role); // dev mode: a fresh token
    } catch {
      /* offline: try the old one */
    }
  }
  return app.session.token;
}

async function startSession() {
  show($('#login-view'), false);
  show($('#app-view'), true);
  $('#whoami').textContent = `${app.session.user} (${app.session.role})`;
  show($('#whoami'), true);
  show($('#logout-btn'), true);
  show($('#create-panel'), app.session.role !== 'shopper');

  const [wallet, feed, follows] = await Promise.all([cache.getCacheEntry(key('wallet')), cache.get(key('feed')), cache.get(key('follows'))]);
  app.wallet = (wallet && wallet.value) || [];
  app.feed = (feed && feed.entries) || [];
  app.follows = new Set(follows || []);

  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const client = new CouponmeshClient({
    urls: [`${proto}//${location.host}/ws`],
    token: tokenProvider,
    claimQueue: new ClaimQueue({ storage: cache, key: key('claims') }),
    feedAfter: (feed && feed.lastSeq) || 0,
    pingIntervalMs: 25_000,
  });
  app.client = client;
  window.couponmesh = client; // for the console and browser tests

  client.on('state', onState);
  client.on('coupon', onCoupon);
  client.on('feed', onFeed);
  client.on('claim', onClaim);
  client.on('resync', refreshWallet);
  let relogins = 0;
  client.on('auth', () => (relogins = 0));
  client.on('unauthorized', async () => {
    // The token was refused (e.g. the node's signing key changed): in dev
    // mode get a fresh one once; otherwise back to the sign-in form.
    if (relogins++ === 0) {
      try {
        await login(app.session.user, app.session.role);
        client.connect();
        return;
      } catch {
        /* fall through */
      }
    }
    await cache.remove('session');
    location.hash = '#/';
    location.reload();
  });

  app.pending = await client.pendingClaims();
  renderWallet();
  renderFeed();
  if (app.follows.size) client.subscribe([...app.follows]);
  client.startFeed();
  onState(client.state);
  client.connect();
  route();
}

// ---- connection ----

function onState(state) {
  const c = $('#conn-state');
  c.textContent = state;
  c.dataset.state = state;
  document.body.dataset.conn = state;
  renderStale();
}

function renderStale() {
  const stale = !online();
  show(document.querySelector('[data-testid="coupon-stale"]'), stale && !!app.current);
  show(document.querySelector('[data-testid="wallet-stale"]'), stale);
  show(document.querySelector('[data-testid="list-stale"]'), stale || app.list.fromCache);
  $('#app-view').dataset.stale = String(stale);
}

// ---- coupons: list ----

function couponItem(c) {
  return el(
    'li',
    { 'data-coupon-id': c.id, 'data-status': c.status },
    el(
      'a',
      { href: `#/coupon/${encodeURIComponent(c.id)}` },
      el('strong', { text: c.title }),
      el('span', { class: 'discount', text: c.discount || '' }),
      el('span', { class: 'muted', text: `by ${c.merchant}` }),
      el('span', { class: 'rem', 'data-testid': 'list-remaining', text: `${c.remaining} left` }),
      el('span', { class: `status s-${c.status}`, text: c.status.replace('_', ' ') }),
    ),
  );
}

async function loadList(reset) {
  const query = { status: $('#filter-status').value, merchant: $('#filter-merchant').value.trim() };
  const qkey = `browse:${query.status}|${query.merchant}`;
  if (reset) app.list = { query, next: '', fromCache: false };
  show($('#list-error'), false);
  let page;
  try {
    page = await api.browse({ ...app.list.query, after: reset ? undefined : app.list.next });
    if (reset) await cache.set(qkey, page, LIST_TTL);
    app.list.fromCache = false;
    for (const c of page.coupons) cache.set(`coupon:${c.id}`, c, COUPON_TTL);
  } catch (err) {
    const entry = reset ? await cache.getCacheEntry(qkey) : undefined;
    if (!entry) {
      $('#list-error').textContent = `Could not load coupons (${errText(err)}).`;
      show($('#list-error'), true);
      if (reset) $('#coupon-list').replaceChildren();
      renderStale();
      return;
    }
    page = entry.value;
    app.list.fromCache = true;
  }
  const list = $('#coupon-list');
  if (reset) list.replaceChildren();
  for (const c of page.coupons) list.append(couponItem(app.client.coupon(c.id) || c));
  app.list.next = page.next || '';
  show($('#more-btn'), !!app.list.next);
  show($('#list-empty'), list.children.length === 0);
  renderStale();
}

// ---- coupons: one ----

function renderCoupon(c) {
  if (!c) return;
  $('#coupon-title').textContent = c.title;
  $('#coupon-meta').textContent = `${c.discount ? c.discount + ' · ' : ''}by ${c.merchant}${c.expiresAt ? ' · until ' + new Date(c.expiresAt).toLocaleString() : ''}`;
  $('#coupon-description').textContent = c.description || '';
  $('#claimed').textContent = String(c.claimed);
  $('#remaining').textContent = String(c.remaining);
  $('#coupon-status').textContent = c.status.replace('_', ' ');
  $('#coupon-view').dataset.version = String(c.version);
  $('#coupon-view').dataset.status = c.status;
  renderClaimButton();
}

function renderClaimButton() {
  const id = app.current;
  const c = id && app.client.coupon(id);
  const mine = app.wallet.find((x) => x.coupon === id);
  const queued = app.pending.find((x) => x.coupon === id);
  const btn = $('#claim-btn');
  btn.disabled = !c || !!mine || !!queued || c.status !== 'active';
  btn.textContent = mine ? 'Claimed' : queued ? 'Claim queued' : 'Claim';
  const f = $('#follow-btn');
  const following = app.follows.has(id);
  f.dataset.following = String(following);
  f.textContent = following ? 'Unfollow' : 'Follow';
}

function claimResult(text, state) {
  const r = $('#claim-result');
  r.textContent = text;
  r.dataset.state = state;
}

async function showCoupon(id) {
  const prev = app.current;
  app.current = id;
  if (prev && prev !== id && !app.follows.has(prev)) app.client.unsubscribe([prev]).catch(() => {});
  show($('#list-view'), false);
  show($('#coupon-view'), true);
  show($('#coupon-error'), false);
  claimResult('', '');
  for (const s of ['#coupon-title', '#coupon-meta', '#coupon-description']) $(s).textContent = '';
  for (const s of ['#claimed', '#remaining', '#coupon-status']) $(s).textContent = '–';
  const mine = app.wallet.find((x) => x.coupon === id);
  if (mine) claimResult(`Your code: ${mine.code}`, 'ok');
  else if (app.pending.some((x) => x.coupon === id)) claimResult(QUEUED_TEXT, 'queued'); // e.g. after a reload offline
  renderClaimButton();
  renderStale();

  if (!app.client.coupon(id)) {
    const entry = await cache.getCacheEntry(`coupon:${id}`);
    if (entry) app.client.applyCoupon(entry.value);
  }
  if (app.current !== id) return;
  renderCoupon(app.client.coupon(id));
  if (!app.client.coupon(id)) {
    try {
      app.client.applyCoupon(await api.getCoupon(id));
    } catch (err) {
      if (online() || err.status) {
        $('#coupon-error').textContent = err.code === 'not_found' ? 'No such coupon.' : `Could not load the coupon (${errText(err)}).`;
        show($('#coupon-error'), true);
      }
    }
  }
  app.client.subscribe([id]).catch((err) => {
    if (err.code !== 'disconnected') {
      $('#coupon-error').textContent = `Live updates failed (${errText(err)}).`;
      show($('#coupon-error'), true);
    }
  });
}

function onCoupon(c) {
  cache.set(`coupon:${c.id}`, c, COUPON_TTL);
  if (app.current === c.id) renderCoupon(c);
  const li = document.querySelector(`#coupon-list [data-coupon-id="${CSS.escape(c.id)}"]`);
  if (li) li.replaceWith(couponItem(c));
}

// ---- claims and wallet ----

const QUEUED_TEXT = 'Offline: your claim is queued and will be sent when you are back online.';

async function claim() {
  const id = app.current;
  if (!id) return;
  $('#claim-btn').disabled = true;
  claimResult('Claiming…', 'pending');
  try {
    const res = await app.client.claim(id);
    if (res.queued) {
      app.pending = await app.client.pendingClaims();
      claimResult(QUEUED_TEXT, 'queued');
      renderWallet();
    }
    // an answered claim is shown by onClaim
  } catch (err) {
    claimResult(err.code === 'already_claimed' ? 'You claimed this coupon already.' : `Not claimed: ${errText(err)}`, 'error');
  }
  renderClaimButton();
}

async function onClaim(res) {
  app.pending = await app.client.pendingClaims();
  if (res.claim) addToWallet(res.claim);
  if (app.current === res.coupon) {
    if (res.claim) claimResult(`Claimed! Your code: ${res.claim.code}`, 'ok');
    else if (res.error) claimResult(res.error.code === 'already_claimed' ? 'You claimed this coupon already.' : `Not claimed: ${errText(res.error)}`, 'error');
  }
  if (res.error && res.error.code === 'already_claimed') refreshWallet();
  renderWallet();
  renderClaimButton();
}

function addToWallet(cl) {
  if (app.wallet.some((x) => x.coupon === cl.coupon)) return;
  app.wallet.push(cl);
  cache.set(key('wallet'), app.wallet, WALLET_TTL);
}

async function refreshWallet() {
  try {
    app.wallet = await app.client.wallet();
    await cache.set(key('wallet'), app.wallet, WALLET_TTL);
  } catch {
    return; // keep what we have
  }
  app.pending = await app.client.pendingClaims();
  renderWallet();
  renderClaimButton();
}

function renderWallet() {
  const ul = $('#wallet');
  ul.replaceChildren();
  for (const p of app.pending) {
    ul.append(el('li', { 'data-pending-rid': p.rid, class: 'pending' }, el('a', { href: `#/coupon/${encodeURIComponent(p.coupon)}`, text: p.coupon }), el('span', { text: 'queued' })));
  }
  for (const cl of [...app.wallet].reverse()) {
    ul.append(
      el('li', { 'data-claim-code': cl.code, 'data-coupon': cl.coupon }, el('a', { href: `#/coupon/${encodeURIComponent(cl.coupon)}`, text: cl.coupon }), el('code', { text: cl.code })),
    );
  }
  show($('#wallet-empty'), ul.children.length === 0);
}

// ---- follow and feed ----

async function toggleFollow() {
  const id = app.current;
  const btn = $('#follow-btn');
  btn.disabled = true;
  try {
    if (app.follows.has(id)) {
      await app.client.unfollow(id);
      app.follows.delete(id);
    } else {
      await app.client.follow(id);
      app.follows.add(id);
    }
    cache.set(key('follows'), [...app.follows]);
    show($('#coupon-error'), false);
  } catch (err) {
    $('#coupon-error').textContent = err.code === 'disconnected' ? 'Offline: follow needs a connection.' : `Failed: ${errText(err)}`;
    show($('#coupon-error'), true);
  }
  btn.disabled = false;
  renderClaimButton();
}

let feedSaveTimer;
function onFeed(e) {
  if (e.type === 'followed') app.follows.add(e.coupon);
  if (e.type === 'unfollowed') app.follows.delete(e.coupon);
  if (e.type === 'followed' && !app.client.subscriptions.has(e.coupon)) app.client.subscribe([e.coupon]).catch(() => {});
  if (e.type === 'claimed' && e.claim) addToWallet(e.claim);
  app.feed.unshift(e);
  if (app.feed.length > FEED_KEEP) app.feed.length = FEED_KEEP;
  clearTimeout(feedSaveTimer);
  feedSaveTimer = setTimeout(() => {
    cache.set(key('feed'), { entries: app.feed, lastSeq: app.client.lastSeq });
    cache.set(key('follows'), [...app.follows]);
  }, 200);
  renderFeed();
  renderWallet();
  if (app.current === e.coupon) renderClaimButton();
}

const FEED_TEXT = { claimed: 'claimed', followed: 'followed', unfollowed: 'unfollowed', coupon_changed: 'changed' };

function renderFeed() {
  const ul = $('#feed');
  ul.replaceChildren(
    ...app.feed.map((e) =>
      el(
        'li',
        { 'data-seq': String(e.seq), 'data-type': e.type },
        el('span', { class: 'muted', text: `#${e.seq}` }),
        ' ',
        el('span', { text: `${FEED_TEXT[e.type] || e.type} ` }),
        el('a', { href: `#/coupon/${encodeURIComponent(e.coupon)}`, text: e.coupon }),
        e.claim ? el('code', { text: ` ${e.claim.code}` }) : null,
      ),
    ),
  );
  show($('#feed-empty'), app.feed.length === 0);
}

// ---- routing ----

function route() {
  if (!app.client) return;
  const m = /^#\/coupon\/(.+)$/.exec(location.hash);
  if (m) {
    showCoupon(decodeURIComponent(m[1]));
    return;
  }
  if (app.current && !app.follows.has(app.current)) app.client.unsubscribe([app.current]).catch(() => {});
  app.current = null;
  show($('#coupon-view'), false);
  show($('#list-view'), true);
  loadList(true);
}

// ---- boot ----

function wire() {
  $('#login-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    show($('#login-error'), false);
    $('#login-btn').disabled = true;
    try {
      await login($('#login-user').value.trim(), $('#login-role').value);
      await startSession();
    } catch (err) {
      $('#login-error').textContent = `Sign-in failed: ${errText(err)}`;
      show($('#login-error'), true);
    }
    $('#login-btn').disabled = false;
  });
  $('#logout-btn').addEventListener('click', async () => {
    await cache.remove('session');
    if (app.client) app.client.destroy();
    location.hash = '#/';
    location.reload();
  });
  $('#filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    loadList(true);
  });
  $('#filter-status').addEventListener('change', () => loadList(true));
  $('#more-btn').addEventListener('click', () => loadList(false));
  $('#claim-btn').addEventListener('click', claim);
  $('#follow-btn').addEventListener('click', toggleFollow);
  $('#create-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const out = $('#create-result');
    try {
      const c = await api.createCoupon(await tokenProvider(), {
        title: $('#create-title').value,
        discount: $('#create-discount').value,
        description: $('#create-description').value,
        quantity: Number($('#create-quantity').value),
      });
      out.textContent = `Created ${c.id}.`;
      $('#create-form').reset();
      loadList(true);
    } catch (err) {
      out.textContent = `Failed: ${errText(err)}`;
    }
  });
  window.addEventListener('hashchange', route);
}

async function boot() {
  wire();
  if ('serviceWorker' in navigator && import.meta.env.PROD) {
    navigator.serviceWorker.register('/sw.js').catch(() => {});
  }
  app.session = await cache.get('session').catch(() => undefined);
  if (app.session && app.session.token) {
    await startSession();
  } else {
    show($('#login-view'), true);
  }
}

boot();
