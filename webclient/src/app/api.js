// The HTTP API of a couponmesh node (same origin as the app).

export class HttpError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, { body, token } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  let data;
  try {
    data = await res.json();
  } catch {
    data = undefined;
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    throw new HttpError(res.status, e.code || 'internal', e.message || `HTTP ${res.status}`);
  }
  return data;
}

/** POST /api/dev/login → {token, expiresAt}. */
export function devLogin(user, role) {
  return call('POST', '/api/dev/login', { body: { user, role } });
}

/** GET /api/coupons (newest first) → {coupons, next}. */
export function browse({ status, merchant, limit = 20, after } = {}) {
  const q = new URLSearchParams();
  if (status) q.set('status', status);
  if (merchant) q.set('merchant', merchant);
  if (limit) q.set('limit', String(limit));
  if (after) q.set('after', after);
  return call('GET', `/api/coupons?${q}`);
}

/** GET /api/coupons/{id} → Coupon. */
export function getCoupon(id) {
  return call('GET', `/api/coupons/${encodeURIComponent(id)}`);
}

/** POST /api/coupons (merchant or admin) → Coupon. */
export function createCoupon(token, spec) {
  return call('POST', '/api/coupons', { body: spec, token });
}

/** PUT /api/coupons/{id} (its merchant or an admin): the fields set in spec → Coupon. */
export function updateCoupon(token, id, spec) {
  return call('PUT', `/api/coupons/${encodeURIComponent(id)}`, { body: spec, token });
}

/** DELETE /api/coupons/{id} (its merchant or an admin): withdraws it → Coupon. */
export function withdrawCoupon(token, id) {
  return call('DELETE', `/api/coupons/${encodeURIComponent(id)}`, { token });
}
