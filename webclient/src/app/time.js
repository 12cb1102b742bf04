// Time formatting of the app (pure functions, unit-tested).

/**
 * A countdown for ms milliseconds left: "2d 03:04:05" from a day on,
 * "03:04:05" below, "00:00:00" when ms <= 0.
 */
export function formatCountdown(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400);
  const hms = [Math.floor((s % 86400) / 3600), Math.floor((s % 3600) / 60), s % 60].map((n) => String(n).padStart(2, '0')).join(':');
  return d > 0 ? `${d}d ${hms}` : hms;
}

/**
 * What a coupon page says about time: {text, ended[, starting]} for a
 * coupon with a start or an end at `now`, or undefined without either. A
 * scheduled drop (status scheduled, startsAt) counts down to its start, then
 * says "Starting…" until the server's push makes it active (the status is
 * the server's, never guessed from the clock); an active one counts down to
 * its end. Withdrawn, sold-out and expired coupons say so instead.
 */
export function couponClock(c, now) {
  if (!c) return undefined;
  if (c.status === 'withdrawn') return { text: 'Withdrawn by the merchant', ended: true };
  if (c.status === 'expired') return { text: 'Ended', ended: true };
  if (c.status === 'sold_out') return { text: 'Sold out', ended: true };
  const start = Date.parse(c.startsAt || '');
  if (Number.isFinite(start) && start > now) return { text: `Starts in ${formatCountdown(start - now)}`, ended: false, starting: true };
  if (c.status === 'scheduled') return { text: 'Starting…', ended: false, starting: true };
  const end = Date.parse(c.expiresAt || '');
  if (!Number.isFinite(end)) return undefined;
  if (end <= now) return { text: 'Ended', ended: true };
  return { text: `Ends in ${formatCountdown(end - now)}`, ended: false };
}

/** A short local date and time for messages ("7 Dec, 14:05:00"). */
export function formatWhen(iso) {
  const t = Date.parse(iso || '');
  if (!Number.isFinite(t)) return '';
  return new Date(t).toLocaleString(undefined, { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

/** The value of a datetime-local input for an RFC 3339 time (local time), '' for none. */
export function toLocalInput(iso) {
  const t = Date.parse(iso || '');
  if (!Number.isFinite(t)) return '';
  const d = new Date(t);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** An RFC 3339 UTC time from a datetime-local value, undefined for ''. */
export function fromLocalInput(v) {
  if (!v) return undefined;
  const t = new Date(v).getTime(); // datetime-local values parse as local time
  return Number.isFinite(t) ? new Date(t).toISOString() : undefined;
}
