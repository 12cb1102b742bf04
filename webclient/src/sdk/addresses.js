/**
 * Normalises a node address to a WebSocket URL. Accepted: ws:// and wss://
 * URLs (kept), http:// and https:// URLs (scheme mapped), and bare host:port
 * or [v6]:port (given the scheme and path of `like`, by default ws: and /ws).
 * Returns undefined for what cannot be an address.
 */
export function normalizeAddress(addr, like) {
  let s = String(addr || '').trim();
  if (!s) return undefined;
  let base;
  try {
    base = like ? new URL(like) : undefined;
  } catch {
    base = undefined;
  }
  const scheme = base && base.protocol === 'wss:' ? 'wss:' : 'ws:';
  const path = base && base.pathname && base.pathname !== '/' ? base.pathname : '/ws';
  const m = /^([a-z][a-z0-9+.-]*):\/\//i.exec(s);
  if (m) {
    const proto = m[1].toLowerCase();
    const map = { ws: 'ws:', wss: 'wss:', http: 'ws:', https: 'wss:' };
    if (!map[proto]) return undefined;
    let u;
    try {
      u = new URL(s);
    } catch {
      return undefined;
    }
    if (!u.host) return undefined;
    const p = u.pathname && u.pathname !== '/' ? u.pathname : path;
    return `${map[proto]}//${u.host}${p}${u.search}`;
  }
  // host:port, host, [v6]:port; a path may follow.
  const slash = s.indexOf('/');
  let hostPart = slash >= 0 ? s.slice(0, slash) : s;
  let p = slash >= 0 ? s.slice(slash) : path;
  if (!/^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(:\d{1,5})?$/i.test(hostPart)) return undefined;
  try {
    const u = new URL(`${scheme}//${hostPart}${p}`);
    return `${scheme}//${u.host}${u.pathname}${u.search}`;
  } catch {
    return undefined;
  }
}

/**
 * Parses the reason of a 1012 close (node draining) leniently: addresses
 * separated by commas, semicolons or white space; each host:port or a
 * ws/wss/http/https URL. Unparseable items are skipped; duplicates dropped.
 * A bare word without a port is prose, not an address: a node with no other
 * node to name closes with "node draining", and dialling ws://node/ws would
 * only waste a reconnect attempt (and break the page's connect-src policy).
 */
export function parseAddresses(reason, like) {
  const out = [];
  for (const item of String(reason || '').split(/[\s,;]+/)) {
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(item) && !/^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):\d{1,5}(\/|$)/i.test(item)) continue;
    const u = normalizeAddress(item, like);
    if (u && !out.includes(u)) out.push(u);
  }
  return out;
}
