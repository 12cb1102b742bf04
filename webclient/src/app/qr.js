// QR codes of claim codes, drawn by uqr (no hand-written encoder) as SVG
// DOM nodes: no innerHTML, nothing the Content-Security-Policy refuses.
import { renderSVG } from 'uqr';

/** The SVG markup of text as a QR code: error correction M, a 2-module quiet zone, black on white. */
export function qrMarkup(text) {
  return renderSVG(text, { ecc: 'M', border: 2 });
}

/**
 * An <svg> element showing text as a QR code, labelled for screen readers
 * (role img, aria-label). Black on white with a quiet zone, so it scans in
 * dark mode too.
 */
export function qrSvg(text, label = `QR code of ${text}`) {
  const doc = new DOMParser().parseFromString(qrMarkup(text), 'image/svg+xml');
  const svg = document.importNode(doc.documentElement, true);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', label);
  svg.setAttribute('data-qr', text);
  svg.setAttribute('shape-rendering', 'crispEdges');
  return svg;
}
