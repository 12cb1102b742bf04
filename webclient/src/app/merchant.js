// Merchant screens: my coupons, create and edit (every field, the start
// and end times included), a live view of one coupon (claimed over time, remaining, the
// latest claims as they happen) and withdrawal with a confirmation.
import * as api from './api.js';
import { $, el, show, setText, setAttr, renderKeyed, errText } from './dom.js';
import { toLocalInput, fromLocalInput } from './time.js';
import { navigate } from './router.js';

const CHART_POINTS = 200;
const CLAIMS_SHOWN = 20;

/**
 * The latest claims between two states of a coupon: one entry per unit
 * claimed from `before` to `after` (numbers before.claimed+1 … after.claimed),
 * stamped with the time of `after`'s change. Pushes carry counts, not
 * claimants, so a merchant sees claim numbers and times, never shoppers.
 */
export function newClaims(before, after) {
  if (!before || !after || after.claimed <= before.claimed) return [];
  const at = after.updatedAt || new Date().toISOString();
  const out = [];
  for (let n = before.claimed + 1; n <= after.claimed; n++) out.push({ n, at });
  return out;
}

export function setupMerchant({ app, route, showView, requireSignIn, signedIn, renderStale, watch, unwatch, token }) {
  const live = { id: null, last: null, points: [], claims: [] };
  const isMerchant = () => signedIn() && app.session.role !== 'shopper';

  function gate(path) {
    if (!signedIn()) {
      requireSignIn('merchant', path, { replace: true });
      return false;
    }
    if (!isMerchant()) {
      showView('#merchant-view', 'My coupons');
      $('#my-coupons').replaceChildren();
      show($('#my-empty'), false);
      $('#my-error').textContent = `You are signed in as ${app.session.user}, a shopper: sign out and sign in as a merchant to run coupons.`;
      show($('#my-error'), true);
      return false;
    }
    return true;
  }

  // ---- my coupons ----

  /** A card of my coupons, made once per coupon and then updated in place (fillMyItem). */
  function myItem(c) {
    const li = el(
      'li',
      { 'data-coupon-id': c.id },
      el(
        'a',
        { href: `/merchant/c/${encodeURIComponent(c.id)}`, 'data-link': '' },
        el('strong', {}),
        el('span', { class: 'discount' }),
        el('span', { class: 'rem' }),
        el('span', {}),
      ),
    );
    fillMyItem(li, c);
    return li;
  }

  /** Updates a card made by myItem to c, changing only what differs. */
  function fillMyItem(li, c) {
    setAttr(li, 'data-status', c.status);
    const [title, discount, rem, status] = li.firstElementChild.children;
    setText(title, c.title);
    setText(discount, c.discount || '');
    setText(rem, `${c.claimed} claimed · ${c.remaining} of ${c.quantity} left`);
    setAttr(status, 'class', `status s-${c.status}`);
    setText(status, c.status.replace('_', ' '));
  }

  async function showMine() {
    if (!gate('/merchant')) return;
    showView('#merchant-view', 'My coupons');
    show($('#my-error'), false);
    live.id = null;
    unwatch();
    try {
      const page = await api.browse({ merchant: app.session.user, limit: 100 });
      renderKeyed(
        $('#my-coupons'),
        page.coupons.map((c) => app.client.coupon(c.id) || c),
        { key: (c) => c.id, make: myItem, fill: fillMyItem },
      );
      for (const c of page.coupons) app.client.applyCoupon(c);
      watch(page.coupons.map((c) => c.id));
      show($('#my-empty'), page.coupons.length === 0);
    } catch (err) {
      $('#my-error').textContent = `Could not load your coupons (${errText(err)}).`;
      show($('#my-error'), true);
    }
  }

  // ---- create and edit ----

  let editing = null; // the coupon being edited, null for a new one

  async function showEdit([id], url) {
    const path = url.pathname;
    if (!gate(path)) return;
    live.id = null;
    editing = null;
    const form = $('#edit-form');
    form.reset();
    $('#edit-result').textContent = '';
    $('#f-id').disabled = !!id;
    if (id) {
      showView('#edit-view', 'Edit coupon');
      $('#edit-h').textContent = 'Edit coupon';
      $('#edit-submit').textContent = 'Save';
      $('#edit-back').setAttribute('href', `/merchant/c/${encodeURIComponent(id)}`);
      try {
        editing = app.client.coupon(id) || (await api.getCoupon(id));
      } catch (err) {
        $('#edit-result').textContent = `Could not load ${id} (${errText(err)}).`;
        return;
      }
      $('#f-id').value = editing.id;
      $('#f-title').value = editing.title;
      $('#f-discount').value = editing.discount || '';
      $('#f-description').value = editing.description || '';
      $('#f-quantity').value = String(editing.quantity);
      $('#f-quantity').min = String(Math.max(1, editing.claimed));
      $('#f-starts').value = toLocalInput(editing.startsAt);
      $('#f-expires').value = toLocalInput(editing.expiresAt);
    } else {
      showView('#edit-view', 'New coupon');
      $('#edit-h').textContent = 'New coupon';
      $('#edit-submit').textContent = 'Create';
      $('#edit-back').setAttribute('href', '/merchant');
      $('#f-quantity').min = '1';
    }
  }

  /** The spec of the form: every field for a new coupon, the changed ones for an edit. */
  function formSpec() {
    const spec = {
      title: $('#f-title').value,
      discount: $('#f-discount').value,
      description: $('#f-description').value,
      quantity: Number($('#f-quantity').value),
    };
    const exp = fromLocalInput($('#f-expires').value);
    const starts = fromLocalInput($('#f-starts').value);
    if (!editing) {
      const id = $('#f-id').value.trim();
      if (id) spec.id = id;
      if (starts) spec.startsAt = starts;
      if (exp) spec.expiresAt = exp;
      return spec;
    }
    const changed = {};
    for (const [k, v] of Object.entries(spec)) if (v !== (editing[k] ?? '')) changed[k] = v;
    if (starts && toLocalInput(starts) !== toLocalInput(editing.startsAt)) changed.startsAt = starts;
    // A start cleared before it came: the drop starts now.
    if (!starts && editing.status === 'scheduled') changed.startsAt = new Date().toISOString();
    if (exp && toLocalInput(exp) !== toLocalInput(editing.expiresAt)) changed.expiresAt = exp;
    return changed;
  }

  async function submitEdit(ev) {
    ev.preventDefault();
    const out = $('#edit-result');
    const btn = $('#edit-submit');
    btn.disabled = true;
    try {
      const spec = formSpec();
      let c;
      if (editing) {
        if (Object.keys(spec).length === 0) {
          out.textContent = 'Nothing changed.';
          return;
        }
        c = await api.updateCoupon(await token(), editing.id, spec);
      } else {
        c = await api.createCoupon(await token(), spec);
      }
      app.client.applyCoupon(c);
      await navigate(`/merchant/c/${encodeURIComponent(c.id)}`);
      $('#live-result').textContent = editing ? 'Saved.' : `Created ${c.id}.`;
    } catch (err) {
      out.textContent = `Failed: ${errText(err)}`;
    } finally {
      btn.disabled = false;
    }
  }

  // ---- live view ----

  function renderLive(c) {
    if (!c) return;
    $('#live-title').textContent = c.title;
    const from = c.startsAt ? `from ${new Date(c.startsAt).toLocaleString()} ` : '';
    $('#live-meta').textContent = `${c.discount ? c.discount + ' · ' : ''}${from}${c.expiresAt ? 'until ' + new Date(c.expiresAt).toLocaleString() : 'no end'} · id ${c.id}`;
    $('#live-claimed').textContent = String(c.claimed);
    $('#live-remaining').textContent = String(c.remaining);
    $('#live-status').textContent = c.status.replace('_', ' ');
    $('#live-remaining-text').textContent = `${c.remaining} of ${c.quantity} left`;
    const bar = $('#live-bar');
    bar.max = Math.max(1, c.quantity);
    bar.value = c.remaining;
    $('#live-view').dataset.version = String(c.version);
    $('#live-view').dataset.status = c.status;
    $('#withdraw-btn').disabled = c.status === 'withdrawn';
    renderChart(c);
    renderClaims();
  }

  function renderChart(c) {
    const svg = $('#live-chart');
    const pts = live.points;
    const NS = 'http://www.w3.org/2000/svg';
    const t0 = pts.length ? pts[0].t : Date.now();
    const t1 = Math.max(Date.now(), t0 + 1000);
    const max = Math.max(1, c.quantity);
    const xy = pts.map((p) => `${(((p.t - t0) / (t1 - t0)) * 300).toFixed(1)},${(100 - (p.claimed / max) * 96).toFixed(1)}`);
    if (pts.length) xy.push(`300,${(100 - (pts[pts.length - 1].claimed / max) * 96).toFixed(1)}`);
    // The axis and the line are made once; a push moves the line's points.
    let line = svg.querySelector('polyline.chart-line');
    if (!line) {
      line = document.createElementNS(NS, 'polyline');
      line.setAttribute('class', 'chart-line');
      const base = document.createElementNS(NS, 'line');
      for (const [k, v] of Object.entries({ x1: 0, y1: 100, x2: 300, y2: 100, class: 'chart-axis' })) base.setAttribute(k, String(v));
      svg.replaceChildren(base, line);
    }
    setAttr(line, 'points', xy.join(' '));
    const mins = Math.round((t1 - t0) / 60000);
    const since = pts.length ? pts[0].claimed : c.claimed;
    const ago = mins < 1 ? 'less than a minute ago' : `${mins} min ago`;
    $('#chart-desc').textContent = `${c.claimed} of ${c.quantity} claimed; ${c.claimed - since} since you opened this page ${ago}.`;
  }

  /** The latest claims, newest first, keyed by claim number (renderKeyed): a push adds its claims and leaves the others be. */
  function renderClaims() {
    renderKeyed($('#live-claims'), live.claims.slice(0, CLAIMS_SHOWN), {
      key: (x) => String(x.n),
      make: (x) => {
        const li = el('li', {}, el('strong', {}), el('span', { class: 'muted' }));
        fillClaim(li, x);
        return li;
      },
      fill: fillClaim,
    });
    show($('#live-claims-empty'), live.claims.length === 0);
  }

  function fillClaim(li, x) {
    setAttr(li, 'data-n', String(x.n));
    setText(li.firstElementChild, `Claim #${x.n}`);
    setText(li.lastElementChild, new Date(x.at).toLocaleTimeString());
  }

  function onLiveCoupon(c) {
    if (c.id !== live.id) return;
    live.claims.unshift(...newClaims(live.last, c).reverse());
    live.claims.length = Math.min(live.claims.length, 100);
    live.last = c;
    live.points.push({ t: Date.now(), claimed: c.claimed });
    if (live.points.length > CHART_POINTS) live.points.splice(0, live.points.length - CHART_POINTS);
    if (app.view === '#live-view') renderLive(c);
  }

  async function showLive([id]) {
    if (!gate(`/merchant/c/${encodeURIComponent(id)}`)) return;
    showView('#live-view', 'Live view');
    $('#live-result').textContent = '';
    if (live.id !== id) {
      live.id = id;
      live.last = null;
      live.points = [];
      live.claims = [];
      for (const s of ['#live-title', '#live-meta', '#live-remaining-text']) $(s).textContent = '';
    }
    $('#live-edit').setAttribute('href', `/merchant/c/${encodeURIComponent(id)}/edit`);
    $('#live-public').setAttribute('href', `/c/${encodeURIComponent(id)}`);
    renderStale();
    unwatch([id]);
    let c = app.client.coupon(id);
    if (!c) {
      try {
        c = await api.getCoupon(id);
        app.client.applyCoupon(c);
        c = app.client.coupon(id);
      } catch (err) {
        $('#live-result').textContent = `Could not load ${id} (${errText(err)}).`;
        return;
      }
    }
    if (!live.last) {
      live.last = c;
      live.points.push({ t: Date.now(), claimed: c.claimed });
    }
    renderLive(c);
    watch([id]);
  }

  function askWithdraw() {
    const d = $('#withdraw-dialog');
    d.returnValue = '';
    d.showModal();
    $('#withdraw-cancel').focus();
  }

  async function onWithdrawClosed() {
    const d = $('#withdraw-dialog');
    const id = live.id;
    $('#withdraw-btn').focus();
    if (d.returnValue !== 'confirm' || !id) return;
    const out = $('#live-result');
    try {
      const c = await api.withdrawCoupon(await token(), id);
      app.client.applyCoupon(c);
      out.textContent = 'Withdrawn: nobody can claim it any more.';
    } catch (err) {
      out.textContent = `Failed: ${errText(err)}`;
    }
  }

  $('#edit-form').addEventListener('submit', submitEdit);
  $('#withdraw-btn').addEventListener('click', askWithdraw);
  $('#withdraw-dialog').addEventListener('close', onWithdrawClosed);
  document.addEventListener('coupon', (ev) => {
    onLiveCoupon(ev.detail);
    const li = document.querySelector(`#my-coupons [data-coupon-id="${CSS.escape(ev.detail.id)}"]`);
    if (li) fillMyItem(li, ev.detail);
  });

  route(/^\/merchant$/, showMine);
  route(/^\/merchant\/new$/, (p, url) => showEdit([undefined], url));
  route(/^\/merchant\/c\/([^/]+)\/edit$/, showEdit);
  route(/^\/merchant\/c\/([^/]+)$/, showLive);
}
