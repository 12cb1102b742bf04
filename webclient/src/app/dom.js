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

const keys = new WeakMap(); // node -> its key, for the nodes renderKeyed made

/**
 * Shows items in list, keyed: the node of an item whose key(item) already
 * has one in list is kept and updated in place (fill(node, item)); the
 * others are made (make(item), which fills them). With append, new nodes go
 * at the end and nothing else moves or goes (the next page of a list); else
 * list becomes exactly these nodes in this order: nodes of other keys, and
 * nodes renderKeyed did not make, are removed, kept ones move only when the
 * order changed. Every list of the app goes through here: a push or a reload
 * never replaces a node that did not change (one under a finger or the
 * keyboard focus: a tap between a re-render and the click landed on a node
 * that was gone). Returns the nodes, in the order of items.
 */
export function renderKeyed(list, items, { key, make, fill, append = false }) {
  const old = new Map();
  for (const node of list.children) {
    const k = keys.get(node);
    if (k !== undefined && !old.has(k)) old.set(k, node);
  }
  const nodes = items.map((item) => {
    const k = key(item);
    const node = old.get(k);
    if (node) {
      old.delete(k); // a second item of the same key gets a node of its own
      fill(node, item);
      return node;
    }
    const made = make(item);
    keys.set(made, k);
    return made;
  });
  if (append) {
    for (const node of nodes) if (node.parentNode !== list) list.append(node);
    return nodes;
  }
  const keep = new Set(nodes);
  for (const node of [...list.children]) if (!keep.has(node)) node.remove();
  let at = list.firstElementChild;
  for (const node of nodes) {
    if (node === at) at = at.nextElementSibling;
    else list.insertBefore(node, at); // a new node, or one that moved
  }
  return nodes;
}

export function show(node, on) {
  node.hidden = !on;
}

export function errText(err) {
  return err && err.code ? `${err.code}: ${err.message}` : String((err && err.message) || err);
}
