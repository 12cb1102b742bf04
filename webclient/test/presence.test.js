import { describe, it, expect } from 'vitest';
import { watchingText } from '../src/app/presence.js';

describe('presence', () => {
  it('says how many shoppers watch a coupon, nothing when none or unknown', () => {
    expect(watchingText(1)).toBe('1 watching');
    expect(watchingText(1234)).toBe('1,234 watching');
    expect(watchingText(0)).toBe('');
    expect(watchingText(undefined)).toBe('');
    expect(watchingText(-3)).toBe('');
  });
});
