// Presence on the coupon card and page (pure functions, unit-tested).

/**
 * What the app says about the shoppers watching a coupon: "1 watching",
 * "1,234 watching"; '' when the count is not known or nobody watches
 * (signed-in shoppers only: visitors are not counted, docs/PROTOCOL.md).
 */
export function watchingText(n) {
  if (typeof n !== 'number' || !(n > 0)) return '';
  return `${Math.floor(n).toLocaleString('en-US')} watching`;
}
