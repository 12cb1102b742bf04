// The couponmesh web app: plain DOM over the SDK. Visitors browse and watch
// coupons live without an account (an anonymous session); signing in is
// asked for when they claim, follow or open the wallet, and brings them back
// to what they were doing.
import './style.css';
import { CouponmeshClient, ClaimQueue, createCache } from '../sdk/index.js';
import * as api from './api.js';
import { $, el, show, setText, setAttr, renderKeyed, errText } from './dom.js';
import { couponClock, formatWhen } from './time.js';
import { watchingText } from './presence.js';
import { qrSvg } from './qr.js';
import { setupInstall } from './install.js';
import { route, render, navigate, startRouter, couponPath } from './router.js';
import { setupMerchant } from './merchant.js';

const COUPON_TTL = 5 * 60_000;
const LIST_TTL = 60_000;
const WALLET_TTL = 60_000;
const FEED_KEEP = 50;

const cache = createCache({ name: 'couponmesh' });

const app = {
  session: null, // {user, role, token, expiresAt}; null for a visitor
  client: null,
  view: null, // the section on screen
  current: null, // coupon id on the coupon page
  watching: new Set(), // coupons subscribed for what is on screen (not followed)
  follows: new Set(),
  wallet: [], // claims
  pending: [], // queued claims [{rid, coupon}]
  feed: [], // newest first
  list: { query: null, next: '', fromCache: false },
  clockTimer: null,
};

const key = (k) => `u:${app.session.user}:${k}`;
const signedIn = () => !!(app.session && app.session.token);
const online = () => app.client && app.client.state === 'online';

// ---- session ----

async function login(user, role) {
  const { token, expiresAt } = await api.devLogin(user, role);
  app.session = { user, role, token, expiresAt };
  await cache.set('session', app.session);
}

/** The token for the SDK: undefined for a visitor (an anonymous session). */
async function tokenProvider() {
  const s = app.session;
  if (!s) return undefined;
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

function renderWho() {
  const s = app.session;
  $('#whoami').textContent = s ? `${s.user} (${s.role})` : '';
  show($('#whoami'), !!s);
  show($('#logout-btn'), !!s);
  show($('#signin-link'), !s);
  show($('#merchant-tab'), !!s && s.role !== 'shopper');
}

/** Loads the signed-in user's cached data and starts the feed. */
async function startUser() {
  const [wallet, feed, follows] = await Promise.all([cache.getCacheEntry(key('wallet')), cache.get(key('feed')), cache.get(key('follows'))]);
  app.wallet = (wallet && wallet.value) || [];
  app.feed = (feed && feed.entries) || [];
  app.follows = new Set(follows || []);
  const client = app.client;
  client.claimQueue = new ClaimQueue({ storage: cache, key: key('claims') });
  client.lastSeq = Math.max(client.lastSeq, (feed && feed.lastSeq) || 0);
  app.pending = await client.pendingClaims();
  if (app.follows.size) client.subscribe([...app.follows]).catch(() => {});
  client.startFeed().catch(() => {});
  renderWho();
  renderWallet();
  renderFeed();
}

function createClient() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const client = new CouponmeshClient({
    urls: [`${proto}//${location.host}/ws`],
    token: tokenProvider,
    anonymous: true, // visitors watch coupons live too
    pingIntervalMs: 25_000,
  });
  app.client = client;
  window.couponmesh = client; // for the console and browser tests
  client.on('state', onState);
  client.on('coupon', onCoupon);
  client.on('feed', onFeed);
  client.on('presence', onPresence);
  client.on('claim', onClaim);
  client.on('resync', refreshWallet);
  let relogins = 0;
  client.on('auth', () => {
    relogins = 0;
    onState(client.state); // a visitor's session signed in: no state change
  });
  client.on('unauthorized', async () => {
    // The token was refused (e.g. the node's signing key changed): in dev
    // mode get a fresh one once; otherwise sign out.
    if (relogins++ === 0 && app.session) {
      try {
        await login(app.session.user, app.session.role);
        client.connect();
        return;
      } catch {
        /* fall through */
      }
    }
    await signOut();
  });
  return client;
}

async function signOut() {
  await cache.remove('session');
  if (app.client) app.client.destroy();
  location.assign('/');
}

// ---- connection ----

function onState(state) {
  const c = $('#conn-state');
  c.textContent = state === 'online' && app.client.anonymous ? 'online (visitor)' : state;
  c.dataset.state = state;
  document.body.dataset.conn = state;
  renderStale();
}

function renderStale() {
  const stale = !online();
  show(document.querySelector('[data-testid="coupon-stale"]'), stale && !!app.current);
  show(document.querySelector('[data-testid="wallet-stale"]'), stale);
  show(document.querySelector('[data-testid="live-stale"]'), stale);
  show(document.querySelector('[data-testid="list-stale"]'), stale || app.list.fromCache);
  $('#main').dataset.stale = String(stale);
}

// ---- views ----

const VIEWS = ['#login-view', '#list-view', '#coupon-view', '#wallet-view', '#merchant-view', '#edit-view', '#live-view'];
let firstRender = true;

/** Shows one section, names the page and, after a navigation, moves focus to its heading. */
export function showView(sel, title) {
  for (const v of VIEWS) show($(v), v === sel);
  app.view = sel;
  document.title = title ? `${title} · couponmesh` : 'couponmesh';
  if (sel !== '#coupon-view') leaveCoupon();
  if (!firstRender) {
    const h = $(sel).querySelector('h1');
    if (h) {
      h.tabIndex = -1;
      h.focus({ preventScroll: true });
    }
    window.scrollTo(0, 0);
  }
  firstRender = false;
}

function markTab(url) {
  const tab = url.pathname === '/' || url.pathname.startsWith('/c/') ? 'list' : url.pathname.startsWith('/wallet') ? 'wallet' : url.pathname.startsWith('/merchant') ? 'merchant' : '';
  for (const a of document.querySelectorAll('nav.tabs a')) {
    if (a.dataset.tab === tab) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

/**
 * Sends a visitor to sign in, then back to path, where `action` is done.
 * replace: the sign-in screen takes the place of the current entry (a
 * screen that needs a user), so that Back does not lead into it again.
 */
export function requireSignIn(action, path = location.pathname, { replace = false } = {}) {
  const q = new URLSearchParams({ next: path });
  if (action) q.set('do', action);
  return navigate(`/signin?${q}`, { replace });
}

const REASONS = {
  claim: 'Sign in to claim this coupon: you come back to it and the claim goes through.',
  follow: 'Sign in to follow this coupon and hear of its changes.',
  wallet: 'Sign in to see your wallet.',
  merchant: 'Sign in as a merchant to run your coupons.',
};

function showSignIn(_params, url) {
  const action = url.searchParams.get('do') || '';
  if (signedIn()) return navigate(safeNext(url.searchParams.get('next')), { replace: true });
  showView('#login-view', 'Sign in');
  $('#login-reason').textContent = REASONS[action] || 'Sign in to claim, follow and keep a wallet.';
  if (action === 'merchant') $('#login-role').value = 'merchant';
  const next = safeNext(url.searchParams.get('next'));
  $('#login-cancel').setAttribute('href', action === 'wallet' || action === 'merchant' ? '/' : next);
  show($('#login-error'), false);
}

/** A same-app path to return to (never another origin). */
function safeNext(p) {
  return typeof p === 'string' && p.startsWith('/') && !p.startsWith('//') ? p : '/';
}

async function submitSignIn(ev) {
  ev.preventDefault();
  show($('#login-error'), false);
  $('#login-btn').disabled = true;
  const url = new URL(location.href);
  try {
    await login($('#login-user').value.trim(), $('#login-role').value);
    await startUser();
    // Authenticates the visitor's session on the spot (or the next one).
    await app.client.signIn(tokenProvider).catch(() => app.client.reconnect());
    const next = safeNext(url.searchParams.get('next'));
    const action = url.searchParams.get('do');
    await navigate(next, { replace: true });
    if (action === 'claim' && app.current) await claim();
    else if (action === 'follow' && app.current && !app.follows.has(app.current)) await toggleFollow();
  } catch (err) {
    $('#login-error').textContent = `Sign-in failed: ${errText(err)}`;
    show($('#login-error'), true);
  } finally {
    $('#login-btn').disabled = false;
  }
}

// ---- coupons: list ----

/**
 * A coupon card of the list. A card is made once per coupon and then updated
 * in place (fillCouponItem): a push or a reload of the list never replaces
 * the card under a finger or the keyboard focus (it did: a tap between a
 * re-render and the click landed on a node that was gone).
 */
function couponItem(c) {
  const li = el(
    'li',
    { 'data-coupon-id': c.id },
    el(
      'a',
      { href: couponPath(c.id), 'data-link': '' },
      el('strong', {}),
      el('span', { class: 'discount' }),
      el('span', { class: 'muted' }),
      el('span', { class: 'rem', 'data-testid': 'list-remaining' }),
      el('span', { class: 'watching', 'data-testid': 'list-watching' }),
      el('span', {}),
    ),
  );
  fillCouponItem(li, c);
  return li;
}

/** Updates a card made by couponItem to c, changing only what differs. */
function fillCouponItem(li, c) {
  setAttr(li, 'data-status', c.status);
  const [title, discount, merchant, rem, watching, status] = li.firstElementChild.children;
  setText(title, c.title);
  setText(discount, c.discount || '');
  setText(merchant, `by ${c.merchant}`);
  setText(rem, `${c.remaining} of ${c.quantity} left`);
  setText(watching, watchingText(app.client.watching(c.id)));
  setAttr(status, 'class', `status s-${c.status}`);
  setText(status, c.status.replace('_', ' '));
}

/**
 * Shows coupons in the list, keyed by coupon id (renderKeyed): a card already
 * on screen is updated in place, new ones are made; reset makes the list
 * exactly these coupons in this order (cards of others removed), else they
 * are added at the end (the next page).
 */
function renderList(coupons, reset) {
  renderKeyed(
    $('#coupon-list'),
    coupons.map((c) => app.client.coupon(c.id) || c),
    { key: (c) => c.id, make: couponItem, fill: fillCouponItem, append: !reset },
  );
}

/** Watches coupons live while they are on screen (anonymous sessions may). */
function watch(ids) {
  const fresh = ids.filter((id) => !app.client.subscriptions.has(id));
  for (const id of fresh) app.watching.add(id);
  if (fresh.length) app.client.subscribe(fresh).catch(() => {});
}

/** Stops watching what is no longer on screen (followed coupons stay). */
function unwatch(keep = []) {
  const drop = [...app.watching].filter((id) => !keep.includes(id) && !app.follows.has(id));
  for (const id of drop) app.watching.delete(id);
  if (drop.length) app.client.unsubscribe(drop).catch(() => {});
}

function showList() {
  showView('#list-view', '');
  return loadList(true);
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
    for (const c of page.coupons) {
      cache.set(`coupon:${c.id}`, c, COUPON_TTL);
      app.client.applyCoupon(c);
    }
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
  if (app.view !== '#list-view') return;
  const ids = page.coupons.map((c) => c.id);
  if (reset) unwatch(ids); // what stays on screen stays watched
  renderList(page.coupons, reset);
  watch(ids);
  const list = $('#coupon-list');
  list.dataset.loads = String(Number(list.dataset.loads || 0) + 1); // loads rendered: for tests and the console
  app.list.next = page.next || '';
  show($('#more-btn'), !!app.list.next);
  show($('#list-empty'), list.children.length === 0);
  renderStale();
}

// ---- coupons: one ----

function renderCoupon(c) {
  if (!c) return;
  $('#coupon-title').textContent = c.title;
  $('#coupon-meta').textContent = `${c.discount ? c.discount + ' · ' : ''}by ${c.merchant}${c.startsAt ? ' · from ' + new Date(c.startsAt).toLocaleString() : ''}${c.expiresAt ? ' · until ' + new Date(c.expiresAt).toLocaleString() : ''}`;
  $('#coupon-description').textContent = c.description || '';
  $('#claimed').textContent = String(c.claimed);
  $('#remaining').textContent = String(c.remaining);
  $('#coupon-status').textContent = c.status.replace('_', ' ');
  $('#remaining-text').textContent = `${c.remaining} of ${c.quantity} left`;
  const bar = $('#remaining-bar');
  bar.max = Math.max(1, c.quantity);
  bar.value = c.remaining;
  $('#coupon-view').dataset.version = String(c.version);
  $('#coupon-view').dataset.status = c.status;
  document.title = `${c.title} · couponmesh`;
  renderClock();
  renderClaimButton();
}

/** Shows how many shoppers watch the coupon on screen. */
function renderWatching() {
  const out = $('#watching');
  const text = app.current ? watchingText(app.client.watching(app.current)) : '';
  out.textContent = text;
  show(out, !!text);
}

function onPresence({ coupon, watching }) {
  if (app.current === coupon) renderWatching();
  const li = document.querySelector(`#coupon-list [data-coupon-id="${CSS.escape(coupon)}"] .watching`);
  if (li) setText(li, watchingText(watching));
}

function renderClock() {
  const c = app.current && app.client.coupon(app.current);
  const clock = couponClock(c, Date.now());
  const out = $('#countdown');
  show(out, !!clock);
  if (clock) {
    out.textContent = clock.text;
    out.dataset.ended = String(clock.ended);
  }
}

function renderClaimButton() {
  const id = app.current;
  if (!id) return;
  const c = app.client.coupon(id);
  const mine = app.wallet.find((x) => x.coupon === id);
  const queued = app.pending.find((x) => x.coupon === id);
  const btn = $('#claim-btn');
  btn.disabled = !c || !!mine || !!queued || c.status !== 'active';
  btn.textContent = mine ? 'Claimed' : queued ? 'Claim queued' : 'Claim';
  // A scheduled drop says when claims open; the push at its start enables the button.
  const hint = $('#claim-hint');
  const notYet = !!c && c.status === 'scheduled' && !mine && !queued;
  show(hint, notYet);
  hint.textContent = notYet ? `Claims open at ${formatWhen(c.startsAt)}.` : '';
  const f = $('#follow-btn');
  const following = app.follows.has(id);
  f.setAttribute('aria-pressed', String(following));
  f.dataset.following = String(following);
  f.textContent = following ? 'Following' : 'Follow';
  renderTicket(mine);
}

function renderTicket(claim) {
  const t = $('#claim-ticket');
  show(t, !!claim);
  if (!claim) return;
  if ($('#claim-code').textContent !== claim.code) {
    $('#claim-code').textContent = claim.code;
    $('#claim-qr').replaceChildren(qrSvg(claim.code, `QR code of your claim code ${claim.code}`));
  }
}

function claimResult(text, state) {
  const r = $('#claim-result');
  r.textContent = text;
  r.dataset.state = state;
}

function leaveCoupon() {
  if (!app.current) return;
  app.current = null;
  clearInterval(app.clockTimer);
  app.clockTimer = null;
}

async function showCoupon([id]) {
  const same = app.current === id;
  showView('#coupon-view', 'Coupon');
  app.current = id;
  unwatch([id]);
  show($('#coupon-error'), false);
  if (!same) {
    claimResult('', '');
    $('#share-result').textContent = '';
    for (const s of ['#coupon-title', '#coupon-meta', '#coupon-description', '#remaining-text']) $(s).textContent = '';
    for (const s of ['#claimed', '#remaining', '#coupon-status']) $(s).textContent = '–';
    $('#claim-code').textContent = '';
  }
  const mine = app.wallet.find((x) => x.coupon === id);
  if (mine) claimResult(`Your code: ${mine.code}`, 'ok');
  else if (app.pending.some((x) => x.coupon === id)) claimResult(QUEUED_TEXT, 'queued'); // e.g. after a reload offline
  renderClaimButton();
  renderWatching();
  renderStale();
  clearInterval(app.clockTimer);
  app.clockTimer = setInterval(renderClock, 1000);

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
  watch([id]);
}

function onCoupon(c) {
  cache.set(`coupon:${c.id}`, c, COUPON_TTL);
  if (app.current === c.id) renderCoupon(c);
  const li = document.querySelector(`#coupon-list [data-coupon-id="${CSS.escape(c.id)}"]`);
  if (li) fillCouponItem(li, c);
  document.dispatchEvent(new CustomEvent('coupon', { detail: c }));
}

async function share() {
  const c = app.client.coupon(app.current);
  const url = new URL(couponPath(app.current), location.origin).href;
  const out = $('#share-result');
  if (navigator.share) {
    try {
      await navigator.share({ title: c ? c.title : 'couponmesh', text: c ? `${c.title} ${c.discount || ''}`.trim() : '', url });
      out.textContent = 'Shared.';
      return;
    } catch (err) {
      if (err && err.name === 'AbortError') return;
    }
  }
  try {
    await navigator.clipboard.writeText(url);
    out.textContent = `Link copied: ${url}`;
  } catch {
    out.textContent = `Copy this link: ${url}`;
  }
}

// ---- claims and wallet ----

const QUEUED_TEXT = 'Offline: your claim is queued and will be sent when you are back online.';

async function claim() {
  const id = app.current;
  if (!id) return;
  if (!signedIn()) {
    await requireSignIn('claim');
    return;
  }
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
    claimResult(claimErrorText(err, id), 'error');
  }
  renderClaimButton();
}

/** What a refused claim says: the refusals a shopper can meet in plain words. */
function claimErrorText(err, id) {
  const c = app.client.coupon(id);
  switch (err && err.code) {
    case 'already_claimed':
      return 'You claimed this coupon already.';
    case 'not_started':
      return c && c.startsAt ? `Not yet: claims open at ${formatWhen(c.startsAt)}.` : 'Not yet: this coupon has not started.';
    case 'expired':
      return 'Too late: this coupon has ended.';
    default:
      return `Not claimed: ${errText(err)}`;
  }
}

async function onClaim(res) {
  app.pending = await app.client.pendingClaims();
  if (res.claim) addToWallet(res.claim);
  if (app.current === res.coupon) {
    if (res.claim) claimResult(`Claimed! Your code: ${res.claim.code}`, 'ok');
    else if (res.error) claimResult(claimErrorText(res.error, res.coupon), 'error');
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
  if (!signedIn()) return;
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

function couponTitle(id) {
  const c = app.client && app.client.coupon(id);
  return c ? c.title : id;
}

/**
 * The wallet: queued claims first, then the claims, newest first. Keyed by
 * the queued claim's rid and the claim's code (renderKeyed): a push or a
 * refresh updates the tickets in place.
 */
function renderWallet() {
  const ul = $('#wallet');
  const tickets = [...app.pending.map((p) => ({ pending: p })), ...[...app.wallet].reverse().map((cl) => ({ claim: cl }))];
  renderKeyed(ul, tickets, {
    key: (t) => (t.pending ? `pending:${t.pending.rid}` : `claim:${t.claim.code}`),
    make: ticketItem,
    fill: fillTicketItem,
  });
  show($('#wallet-empty'), ul.children.length === 0);
}

/** A ticket of the wallet: a queued claim ({pending}) or a claim ({claim}). */
function ticketItem(t) {
  let li;
  if (t.pending) {
    li = el('li', { 'data-pending-rid': t.pending.rid, class: 'pending ticket' }, el('a', { 'data-link': '' }), el('span', { text: 'queued: sent when back online' }));
  } else {
    const code = t.claim.code;
    li = el('li', { 'data-claim-code': code, class: 'ticket' }, el('a', { 'data-link': '' }), el('span', {}, 'Code ', el('code', { text: code })), el('div', { class: 'qr' }, qrSvg(code, `QR code of claim code ${code}`)));
  }
  fillTicketItem(li, t);
  return li;
}

/** Updates a ticket made by ticketItem (of the same rid or code) to t. */
function fillTicketItem(li, t) {
  const coupon = (t.pending || t.claim).coupon;
  setAttr(li, 'data-coupon', coupon);
  const a = li.firstElementChild;
  setAttr(a, 'href', couponPath(coupon));
  setText(a, couponTitle(coupon));
}

function showWallet() {
  if (!signedIn()) return requireSignIn('wallet', '/wallet', { replace: true });
  showView('#wallet-view', 'Wallet');
  renderWallet();
  renderFeed();
  renderStale();
  refreshWallet();
  // Titles of claimed coupons from the cache, when not at hand.
  for (const cl of [...app.wallet, ...app.pending]) {
    if (!app.client.coupon(cl.coupon)) {
      cache.getCacheEntry(`coupon:${cl.coupon}`).then((e) => e && app.client.applyCoupon(e.value) && renderWallet());
    }
  }
}

// ---- follow and feed ----

async function toggleFollow() {
  const id = app.current;
  if (!signedIn()) {
    await requireSignIn('follow');
    return;
  }
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
    $('#coupon-error').textContent = err.code === 'disconnected' ? 'Offline: following needs a connection.' : `Failed: ${errText(err)}`;
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
    if (!app.session) return;
    cache.set(key('feed'), { entries: app.feed, lastSeq: app.client.lastSeq });
    cache.set(key('follows'), [...app.follows]);
  }, 200);
  renderFeed();
  renderWallet();
  if (app.current === e.coupon) renderClaimButton();
}

const FEED_TEXT = { claimed: 'claimed', followed: 'followed', unfollowed: 'unfollowed', coupon_changed: 'changed' };

/** The feed, newest first, keyed by seq (renderKeyed): a push adds its entry and leaves the others be. */
function renderFeed() {
  renderKeyed($('#feed'), app.feed, { key: (e) => String(e.seq), make: feedItem, fill: fillFeedItem });
  show($('#feed-empty'), app.feed.length === 0);
}

function feedItem(e) {
  const li = el('li', {}, el('span', { class: 'muted' }), ' ', el('span', {}), el('a', { 'data-link': '' }));
  fillFeedItem(li, e);
  return li;
}

/** Updates a feed entry made by feedItem to e. */
function fillFeedItem(li, e) {
  setAttr(li, 'data-seq', String(e.seq));
  setAttr(li, 'data-type', e.type);
  const [seq, what, a, code] = li.children;
  setText(seq, `#${e.seq}`);
  setText(what, `${FEED_TEXT[e.type] || e.type} `);
  setAttr(a, 'href', couponPath(e.coupon));
  setText(a, couponTitle(e.coupon));
  if (!e.claim) {
    if (code) code.remove();
  } else if (code) setText(code, ` ${e.claim.code}`);
  else li.append(el('code', { text: ` ${e.claim.code}` }));
}

// ---- boot ----

function wire() {
  $('#login-form').addEventListener('submit', submitSignIn);
  $('#logout-btn').addEventListener('click', signOut);
  $('#filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    loadList(true);
  });
  $('#filter-status').addEventListener('change', () => loadList(true));
  $('#more-btn').addEventListener('click', () => loadList(false));
  $('#claim-btn').addEventListener('click', claim);
  $('#follow-btn').addEventListener('click', toggleFollow);
  $('#share-btn').addEventListener('click', share);
}

async function boot() {
  wire();
  setupInstall();
  if ('serviceWorker' in navigator && import.meta.env.PROD) {
    navigator.serviceWorker.register('/sw.js').catch(() => {});
  }
  // Links of the hash routes of earlier versions still work.
  const old = /^#\/coupon\/(.+)$/.exec(location.hash);
  if (old) history.replaceState(null, '', `/c/${old[1]}`);

  route(/^\/$/, showList);
  route(/^\/c\/([^/]+)$/, showCoupon);
  route(/^\/wallet$/, showWallet);
  route(/^\/signin$/, showSignIn);
  setupMerchant({ app, route, showView, requireSignIn, signedIn, renderStale, watch, unwatch, token: tokenProvider });
  startRouter(markTab);

  app.session = (await cache.get('session').catch(() => undefined)) || null;
  const client = createClient();
  renderWho();
  if (signedIn()) await startUser();
  onState(client.state);
  client.connect();
  await render();
}

boot();
