// couponmesh service worker: caches the app shell so the app opens offline.
// Never touches /api or /ws: live data goes to the network, and the app's
// own cache (localforage) keeps what it shows offline.
const CACHE = 'couponmesh-shell-f54cec24a740c689';
const SHELL = [
  "/",
  "/manifest.webmanifest",
  "/icons/icon.svg",
  "/icons/icon-192.png",
  "/icons/icon-512.png",
  "/assets/index-C8FlpJAs.css",
  "/assets/index-CG8WPFtz.js"
];

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((c) => c.addAll(SHELL.map((u) => new Request(u, { cache: 'reload' }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('couponmesh-shell-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function bypass(url, request) {
  return (
    request.method !== 'GET' ||
    url.origin !== self.location.origin ||
    url.pathname === '/ws' ||
    url.pathname.startsWith('/ws/') ||
    url.pathname.startsWith('/api/') ||
    url.pathname === '/api' ||
    url.pathname === '/healthz' ||
    url.pathname === '/readyz'
  );
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (bypass(url, request)) return; // the network, uncached

  if (request.mode === 'navigate') {
    // The entry page: network first (it is no-cache), the cached shell offline.
    event.respondWith(
      fetch(request)
        .then((res) => {
          if (res.ok) {
            const copy = res.clone();
            caches.open(CACHE).then((c) => c.put('/', copy));
          }
          return res;
        })
        .catch(() => caches.match('/').then((r) => r || Response.error())),
    );
    return;
  }

  // Hashed assets and the other shell files: cache first.
  event.respondWith(
    caches.match(request).then(
      (hit) =>
        hit ||
        fetch(request).then((res) => {
          if (res.ok && url.pathname.startsWith('/assets/')) {
            const copy = res.clone();
            caches.open(CACHE).then((c) => c.put(request, copy));
          }
          return res;
        }),
    ),
  );
});
