import { describe, it, expect } from 'vitest';
import { decodeQR } from '@paulmillr/qr/decode.js';
import { qrMarkup } from '../src/app/qr.js';

// Draws the SVG the wallet shows (uqr's: a white rect, then one path of
// axis-aligned squares "Mx,yhWvHh-Wz") into an RGBA image, `scale` pixels
// per SVG unit.
function rasterize(svg, scale = 1) {
  const [, w, h] = /viewBox="0 0 (\d+) (\d+)"/.exec(svg).map(Number);
  const width = w * scale,
    height = h * scale;
  const data = new Uint8ClampedArray(width * height * 4).fill(255);
  const d = /<path[^>]* d="([^"]+)"/.exec(svg)[1];
  const squares = d.matchAll(/M(\d+),(\d+)h(\d+)v(\d+)h-\d+z/g);
  let n = 0;
  for (const [, x, y, sw, sh] of squares) {
    n++;
    for (let py = +y * scale; py < (+y + +sh) * scale; py++) {
      for (let px = +x * scale; px < (+x + +sw) * scale; px++) {
        const i = (py * width + px) * 4;
        data[i] = data[i + 1] = data[i + 2] = 0;
      }
    }
  }
  expect(n).toBeGreaterThan(50); // the path is what was parsed
  return { width, height, data };
}

describe('wallet QR codes', () => {
  // An independent decoder reads back what the wallet draws.
  for (const code of ['c42-0017', 'YMSW8JTNJH', 'pizza.2for1-0005', 'a-very-long-claim-code-of-a-coupon-with-a-long-id-000123']) {
    it(`scans back as ${code}`, () => {
      expect(decodeQR(rasterize(qrMarkup(code), 2))).toBe(code);
    });
  }
});
