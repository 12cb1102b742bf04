import { describe, it, expect } from 'vitest';
import { formatCountdown, couponClock, fromLocalInput, toLocalInput } from '../src/app/time.js';
import { shouldOffer } from '../src/app/install.js';
import { newClaims } from '../src/app/merchant.js';

describe('countdown', () => {
  it('formats what is left', () => {
    expect(formatCountdown(0)).toBe('00:00:00');
    expect(formatCountdown(-5000)).toBe('00:00:00');
    expect(formatCountdown(59_999)).toBe('00:00:59');
    expect(formatCountdown(3_600_000 + 61_000)).toBe('01:01:01');
    expect(formatCountdown(2 * 86_400_000 + 3_723_000)).toBe('2d 01:02:03');
  });

  it('says what a coupon page shows about time', () => {
    const now = Date.parse('2030-01-01T00:00:00Z');
    const c = { status: 'active', expiresAt: '2030-01-02T01:00:00Z' };
    expect(couponClock(c, now)).toEqual({ text: 'Ends in 1d 01:00:00', ended: false });
    expect(couponClock({ ...c, expiresAt: undefined }, now)).toBeUndefined();
    expect(couponClock(c, Date.parse('2030-01-02T01:00:00Z'))).toEqual({ text: 'Ended', ended: true });
    expect(couponClock({ ...c, status: 'expired' }, now)).toEqual({ text: 'Ended', ended: true });
    expect(couponClock({ ...c, status: 'withdrawn' }, now).text).toBe('Withdrawn by the merchant');
    expect(couponClock({ status: 'sold_out' }, now).text).toBe('Sold out');
    // A scheduled drop counts down to its start, then to its end.
    const drop = { status: 'scheduled', startsAt: '2030-01-01T00:10:00Z', expiresAt: '2030-01-01T01:00:00Z' };
    expect(couponClock(drop, now).text).toBe('Starts in 00:10:00');
    expect(couponClock({ ...drop, status: 'active' }, Date.parse('2030-01-01T00:30:00Z')).text).toBe('Ends in 00:30:00');
    expect(couponClock(drop, Date.parse('2030-01-01T00:10:00Z'))).toEqual({ text: 'Starting…', ended: false, starting: true }); // until the push
    expect(couponClock({ status: 'scheduled', startsAt: '2030-01-01T00:00:05Z' }, now).text).toBe('Starts in 00:00:05'); // no end
    expect(couponClock({ ...drop, status: 'expired' }, now).text).toBe('Ended');
  });

  it('round-trips the end time through a datetime-local field', () => {
    const iso = '2030-06-01T09:30:00.000Z';
    expect(fromLocalInput(toLocalInput(iso))).toBe(iso);
    expect(toLocalInput(undefined)).toBe('');
    expect(fromLocalInput('')).toBeUndefined();
  });
});

describe('install prompt', () => {
  it('is offered from the second use on, until dismissed', () => {
    expect(shouldOffer(1, false)).toBe(false);
    expect(shouldOffer(2, false)).toBe(true);
    expect(shouldOffer(9, false)).toBe(true);
    expect(shouldOffer(9, true)).toBe(false);
  });
});

describe('merchant live view', () => {
  it('lists one claim per unit claimed between two states', () => {
    const at = '2030-01-01T00:00:05Z';
    expect(newClaims({ claimed: 3 }, { claimed: 5, updatedAt: at })).toEqual([
      { n: 4, at },
      { n: 5, at },
    ]);
    expect(newClaims({ claimed: 5 }, { claimed: 5 })).toEqual([]); // an edit, not a claim
    expect(newClaims(null, { claimed: 5 })).toEqual([]);
  });
});
