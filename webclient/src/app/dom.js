// Small DOM helpers of the app.

export const $ = (sel) => document.querySelector(sel);

/** Creates an element: attrs `text` sets textContent, data-*, aria-*, href, class and role are attributes, the rest properties. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'href' || k === 'class' || k === 'role') e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

/** Sets node's text when it differs (an update in place touches nothing that did not change). */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** Sets an attribute when it differs. */
export function setAttr(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}

export function show(node, on) {
  node.hidden = !on;
}

export function errText(err) {
  return err && err.code ? `${err.code}: ${err.message}` : String((err && err.message) || err);
}
