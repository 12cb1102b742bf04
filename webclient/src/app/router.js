// Path routing (History API) over real links: every screen has its own URL
// (/c/<id> for a coupon), links work with the keyboard, in new tabs and
// when shared; the node answers every such URL with the app.

const routes = [];
let onRoute = () => {};

/** Registers a route: pattern is a RegExp over the path, view(params, url). */
export function route(pattern, view) {
  routes.push({ pattern, view });
}

/** Finds the view of a path: {view, params} or undefined. */
export function match(path) {
  for (const r of routes) {
    const m = r.pattern.exec(path);
    if (m) return { view: r.view, params: m.slice(1).map(decodeURIComponent) };
  }
  return undefined;
}

/** Shows the screen of the current URL; resolves when its view has. */
export function render() {
  const url = new URL(location.href);
  const hit = match(url.pathname) || match('/');
  onRoute(url);
  return Promise.resolve(hit.view(hit.params, url));
}

/** Goes to path (pushState, or replaceState with replace) and renders it. */
export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  return render();
}

/** Starts routing: same-origin links marked data-link, and back/forward. */
export function startRouter(hook) {
  onRoute = hook || onRoute;
  document.addEventListener('click', (ev) => {
    const a = ev.target.closest && ev.target.closest('a[data-link]');
    if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
    const url = new URL(a.href);
    if (url.origin !== location.origin) return;
    ev.preventDefault();
    if (url.pathname + url.search !== location.pathname + location.search) navigate(url.pathname + url.search);
  });
  window.addEventListener('popstate', () => render());
}

/** The path of a coupon's page. */
export const couponPath = (id) => `/c/${encodeURIComponent(id)}`;
