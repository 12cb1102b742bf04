// The install prompt: offered once the app has been opened twice, with the
// browser's own prompt (beforeinstallprompt), and never again once
// dismissed or installed.
import { $, show } from './dom.js';

const USES = 'couponmesh.uses';
const DISMISSED = 'couponmesh.install-dismissed';

/** Whether the prompt may be offered after `uses` app starts. */
export function shouldOffer(uses, dismissed) {
  return uses >= 2 && !dismissed;
}

function stored(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function store(key, v) {
  try {
    localStorage.setItem(key, v);
  } catch {
    /* private mode: no memory of it */
  }
}

/** Counts this start of the app and wires the install banner. */
export function setupInstall() {
  const uses = (Number(stored(USES)) || 0) + 1;
  store(USES, String(uses));
  let deferred = null;
  const banner = $('#install-banner');
  const offer = () => show(banner, !!deferred && shouldOffer(uses, stored(DISMISSED) === '1'));
  window.addEventListener('beforeinstallprompt', (ev) => {
    ev.preventDefault(); // our banner, at the right moment, instead of the browser's mini bar
    deferred = ev;
    offer();
  });
  window.addEventListener('appinstalled', () => {
    deferred = null;
    store(DISMISSED, '1');
    offer();
  });
  $('#install-btn').addEventListener('click', async () => {
    const ev = deferred;
    deferred = null;
    offer();
    if (!ev) return;
    try {
      await ev.prompt();
      const choice = await ev.userChoice;
      if (choice && choice.outcome === 'dismissed') store(DISMISSED, '1');
    } catch {
      /* the browser refused to prompt */
    }
  });
  $('#install-later').addEventListener('click', () => {
    store(DISMISSED, '1');
    offer();
  });
}
