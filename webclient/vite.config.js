import { defineConfig } from 'vite';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, sep } from 'node:path';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';

// Emits sw.js at the root of dist/ (a stable, unhashed URL) with the list of
// app-shell files to precache and a cache version derived from their
// contents, so a new build installs a new service worker.
function serviceWorker() {
  const src = fileURLToPath(new URL('./src/sw/sw.js', import.meta.url));
  const publicDir = fileURLToPath(new URL('./public', import.meta.url));
  return {
    name: 'couponmesh-sw',
    apply: 'build',
    generateBundle(_options, bundle) {
      const files = Object.keys(bundle)
        .filter((f) => f.startsWith('assets/') || f === 'index.html')
        .sort();
      const hash = createHash('sha256');
      for (const f of files) {
        const b = bundle[f];
        hash.update(f).update(b.type === 'chunk' ? b.code : typeof b.source === 'string' ? b.source : Buffer.from(b.source));
      }
      // the public files (manifest, icons) count too, in a stable order
      for (const f of readdirSync(publicDir, { recursive: true }).map(String).sort()) {
        try {
          hash.update(f).update(readFileSync(join(publicDir, f)));
        } catch {
          /* a directory */
        }
      }
      const shell = ['/', '/manifest.webmanifest', '/icons/icon.svg', '/icons/icon-192.png', '/icons/icon-512.png', ...files.filter((f) => f !== 'index.html').map((f) => '/' + f)];
      const code = readFileSync(src, 'utf8')
        .replace('__CACHE_VERSION__', hash.digest('hex').slice(0, 16))
        .replace('[/*__SHELL__*/]', JSON.stringify(shell, null, 2));
      this.emitFile({ type: 'asset', fileName: 'sw.js', source: code });
    },
  };
}

// The files dist/ is built from. embed_test.go hashes the same list the same
// way and fails when dist/source.sha256 differs: a dist/ older than its
// sources (someone changed src/ and did not run `make web`).
const SOURCES = ['index.html', 'package.json', 'package-lock.json', 'vite.config.js', 'src', 'public'];

function sourceHash() {
  const root = fileURLToPath(new URL('.', import.meta.url));
  const files = [];
  for (const s of SOURCES) {
    const st = statSync(join(root, s));
    if (st.isDirectory()) {
      for (const f of readdirSync(join(root, s), { recursive: true }).map(String)) {
        if (statSync(join(root, s, f)).isFile()) files.push(`${s}/${f.split(sep).join('/')}`);
      }
    } else files.push(s);
  }
  const hash = createHash('sha256');
  for (const f of files.sort()) hash.update(f + '\0').update(readFileSync(join(root, f))).update('\0');
  return hash.digest('hex');
}

function sourceStamp() {
  return {
    name: 'couponmesh-source-stamp',
    apply: 'build',
    generateBundle() {
      this.emitFile({ type: 'asset', fileName: 'source.sha256', source: sourceHash() + '\n' });
    },
  };
}

export default defineConfig({
  base: '/',
  plugins: [serviceWorker(), sourceStamp()],
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    sourcemap: false,
    target: 'es2022',
  },
  test: {
    include: ['test/**/*.test.js'],
    environment: 'node',
  },
});
