/// <reference types="vitest" />
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The bundle ships inside the Python package, so `aiaas serve` needs no Node.js. It must be
// reproducible byte for byte (CI rebuilds it and diffs) and load under a strict CSP
// (`script-src 'self'; style-src 'self'`): no inline script, no inline style, no eval.
export default defineConfig({
  plugins: [react()],
  base: '/',
  build: {
    outDir: '../src/aiaas/portal_bundle',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    // The polyfill is an inline <script>, which the CSP refuses.
    modulePreload: { polyfill: false },
    // Keep assets as files: an inlined data: URL would need a wider CSP.
    assetsInlineLimit: 0,
    target: 'es2020',
    rollupOptions: {
      // The chart library in a chunk of its own name, loaded by the pages that chart.
      output: { manualChunks: { uplot: ['uplot'] } },
    },
  },
  server: {
    // `npm run dev` against a running `aiaas dev` on its default port.
    proxy: {
      '/graphql': { target: 'http://127.0.0.1:8000', ws: true },
      '/v1': { target: 'http://127.0.0.1:8000' },
    },
  },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.{ts,tsx}'],
  },
});
